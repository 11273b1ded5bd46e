//! A minimal reader of classic pcap files (what `tcpdump -w` writes): TCP segments over IPv4 and
//! IPv6, on Ethernet, Linux cooked (v1/v2) and raw-IP link types.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Errors of parsing a pcap file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The file does not start with a pcap magic number (pcapng is not supported).
    #[error(
        "not a classic pcap file (magic {0:#010x}); write captures with `tcpdump -w` (not pcapng)"
    )]
    Magic(u32),
    /// The file ends in the middle of a header.
    #[error("pcap file truncated at byte {0}")]
    Truncated(usize),
    /// A link type we do not decode.
    #[error(
        "unsupported pcap link type {0} (supported: 1 Ethernet, 113/276 Linux cooked, 101/228/229 raw IP)"
    )]
    LinkType(u32),
}

/// One captured TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// TCP sequence number.
    pub seq: u32,
    /// Whether SYN was set.
    pub syn: bool,
    /// The TCP payload.
    pub payload: Vec<u8>,
}

fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a whole pcap file into its TCP segments (other packets are skipped).
pub fn parse(data: &[u8]) -> Result<Vec<Segment>, PcapError> {
    let magic_bytes: [u8; 4] = data
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(PcapError::Truncated(0))?;
    let little = match u32::from_le_bytes(magic_bytes) {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        _ => match u32::from_be_bytes(magic_bytes) {
            0xa1b2_c3d4 | 0xa1b2_3c4d => false,
            _ => return Err(PcapError::Magic(u32::from_le_bytes(magic_bytes))),
        },
    };
    let rd = |at: usize| -> Result<u32, PcapError> {
        let b: [u8; 4] = data
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or(PcapError::Truncated(at))?;
        Ok(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let link = rd(20)? & 0x0fff_ffff;
    if !matches!(link, 1 | 113 | 276 | 101 | 228 | 229) {
        return Err(PcapError::LinkType(link));
    }
    let mut segments = Vec::new();
    let mut at = 24;
    while at < data.len() {
        let incl = rd(at + 8)? as usize;
        let start = at + 16;
        let frame = data
            .get(start..start + incl)
            .ok_or(PcapError::Truncated(start))?;
        if let Some(seg) = decode_frame(link, frame) {
            segments.push(seg);
        }
        at = start + incl;
    }
    Ok(segments)
}

fn decode_frame(link: u32, f: &[u8]) -> Option<Segment> {
    let (ethertype, ip) = match link {
        1 => {
            let mut et = u16_be(f, 12)?;
            let mut off = 14;
            while et == 0x8100 || et == 0x88a8 {
                et = u16_be(f, off + 2)?;
                off += 4;
            }
            (et, f.get(off..)?)
        }
        113 => (u16_be(f, 14)?, f.get(16..)?),
        276 => (u16_be(f, 0)?, f.get(20..)?),
        _ => (
            match f.first()? >> 4 {
                4 => 0x0800,
                6 => 0x86dd,
                _ => return None,
            },
            f,
        ),
    };
    match ethertype {
        0x0800 => decode_ipv4(ip),
        0x86dd => decode_ipv6(ip),
        _ => None,
    }
}

fn decode_ipv4(p: &[u8]) -> Option<Segment> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    let total = usize::from(u16_be(p, 2)?);
    if *p.get(9)? != 6 || total < ihl {
        return None;
    }
    let src = IpAddr::V4(Ipv4Addr::from(u32_be(p, 12)?));
    let dst = IpAddr::V4(Ipv4Addr::from(u32_be(p, 16)?));
    // Trim Ethernet padding: the IP total length is authoritative (when not truncated).
    decode_tcp(src, dst, p.get(ihl..total.min(p.len()))?)
}

fn decode_ipv6(p: &[u8]) -> Option<Segment> {
    if *p.get(6)? != 6 {
        return None; // extension headers before TCP are not decoded
    }
    let len = usize::from(u16_be(p, 4)?);
    let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
    let body = p.get(40..(40 + len).min(p.len()))?;
    decode_tcp(
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
        body,
    )
}

fn decode_tcp(src: IpAddr, dst: IpAddr, t: &[u8]) -> Option<Segment> {
    let data_off = usize::from(t.get(12)? >> 4) * 4;
    Some(Segment {
        src: SocketAddr::new(src, u16_be(t, 0)?),
        dst: SocketAddr::new(dst, u16_be(t, 2)?),
        seq: u32_be(t, 4)?,
        syn: t.get(13)? & 0x02 != 0,
        payload: t.get(data_off..)?.to_vec(),
    })
}
