//! Per-direction TCP byte streams rebuilt from captured segments.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::pcap::Segment;

/// Streams longer than this are cut: the testbed looks for markers, not bulk data.
const MAX_STREAM: usize = 64 << 20;

/// One direction of one TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
}

/// What a capture saw: TCP streams, reassembled by sequence number (retransmissions overlap).
#[derive(Debug, Default, Clone)]
pub struct CaptureSummary {
    /// Number of TCP segments in the capture.
    pub segments: usize,
    streams: BTreeMap<FlowKey, Vec<u8>>,
}

impl CaptureSummary {
    /// Rebuilds the per-direction streams from `segments`, in capture order.
    pub fn from_segments(segments: &[Segment]) -> CaptureSummary {
        let mut isn: BTreeMap<FlowKey, u32> = BTreeMap::new();
        let mut streams: BTreeMap<FlowKey, Vec<u8>> = BTreeMap::new();
        for s in segments {
            let key = FlowKey {
                src: s.src,
                dst: s.dst,
            };
            // The first byte of data has sequence ISN+1; without a SYN, the first segment seen
            // starts the stream.
            let base = *isn
                .entry(key)
                .or_insert(if s.syn { s.seq.wrapping_add(1) } else { s.seq });
            let stream = streams.entry(key).or_default();
            if s.payload.is_empty() {
                continue;
            }
            let offset = s.seq.wrapping_sub(base) as usize;
            let end = offset + s.payload.len();
            if end > MAX_STREAM {
                continue;
            }
            if stream.len() < end {
                stream.resize(end, 0);
            }
            stream[offset..end].copy_from_slice(&s.payload);
        }
        CaptureSummary {
            segments: segments.len(),
            streams,
        }
    }

    /// Whether `marker` appears in any reassembled stream.
    pub fn contains(&self, marker: &[u8]) -> bool {
        !marker.is_empty()
            && self
                .streams
                .values()
                .any(|s| s.windows(marker.len()).any(|w| w == marker))
    }

    /// Every TCP port seen, as source or destination.
    pub fn ports(&self) -> BTreeSet<u16> {
        self.streams
            .keys()
            .flat_map(|k| [k.src.port(), k.dst.port()])
            .collect()
    }

    /// The directions seen and how many payload bytes each carried.
    pub fn flows(&self) -> impl Iterator<Item = (FlowKey, usize)> + '_ {
        self.streams.iter().map(|(k, v)| (*k, v.len()))
    }

    /// The reassembled bytes of one direction.
    pub fn stream(&self, key: &FlowKey) -> Option<&[u8]> {
        self.streams.get(key).map(Vec::as_slice)
    }
}
