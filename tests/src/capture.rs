//! Packet capture to prove what crosses the wire (e.g. "the bytes between nodes are TLS, never
//! plaintext"): `tcpdump` runs inside a namespace, writes a pcap file, and [`Capture::stop`]
//! returns a [`CaptureSummary`] that answers whether a marker appeared and which TCP ports
//! were used.

mod flows;
mod pcap;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

pub use flows::{CaptureSummary, FlowKey};
pub use pcap::{PcapError, Segment, parse as parse_pcap};

use crate::netns::{Netns, NetnsError};
use crate::process::{Process, ProcessError};
use crate::topology::Node;

/// How long tcpdump gets to open the interface.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to the kernel to hand the last packets to tcpdump before it is stopped.
const SETTLE: Duration = Duration::from_millis(200);

/// Errors of capturing.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// tcpdump could not be started in the namespace.
    #[error("cannot start tcpdump: {0} (is tcpdump installed?)")]
    Start(#[from] NetnsError),
    /// tcpdump did not come up or failed.
    #[error("tcpdump on {iface}: {source} (does the interface exist in that namespace?)")]
    Tcpdump {
        /// The interface.
        iface: String,
        /// The failure.
        source: ProcessError,
    },
    /// The capture file could not be read.
    #[error("cannot read capture file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The capture file could not be parsed.
    #[error("capture file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: PcapError,
    },
    /// The temporary directory for the capture file could not be made.
    #[error("cannot create a directory for the capture file: {0}")]
    TempDir(std::io::Error),
}

/// A running tcpdump. Dropping it without [`Capture::stop`] just kills it.
#[derive(Debug)]
pub struct Capture {
    process: Process,
    iface: String,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    /// Starts `tcpdump -i <iface> -w <file> -U --immediate-mode <filter>` inside `netns` and
    /// waits until it listens. `filter` is a pcap filter such as `"tcp"`.
    pub fn start(netns: &Netns, iface: &str, filter: &str) -> Result<Capture, CaptureError> {
        let dir = tempfile::Builder::new()
            .prefix("mesh-capture-")
            .tempdir()
            .map_err(CaptureError::TempDir)?;
        let file = dir.path().join("capture.pcap");
        let file_arg = file.to_string_lossy().into_owned();
        let mut args = vec![
            "-i",
            iface,
            "-w",
            &file_arg,
            "-U",
            "--immediate-mode",
            "-n",
            "-s",
            "0",
            "-Z",
            "root",
        ];
        args.extend(filter.split_whitespace());
        let mut process = netns.spawn(&format!("tcpdump-{iface}"), "tcpdump", &args)?;
        process
            .wait_for_output("listening on", START_TIMEOUT)
            .map_err(|source| CaptureError::Tcpdump {
                iface: iface.into(),
                source,
            })?;
        Ok(Capture {
            process,
            iface: iface.into(),
            file,
            _dir: dir,
        })
    }

    /// Captures TCP on a node's fabric interface: everything that goes between this node and
    /// the others.
    pub fn node_fabric(node: &Node) -> Result<Capture, CaptureError> {
        Capture::start(&node.netns, node.fabric_iface(), "tcp")
    }

    /// The pcap file being written (deleted when the capture is dropped).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Stops tcpdump (after a short settle time so in-flight packets are written) and parses
    /// what it captured.
    pub fn stop(mut self) -> Result<CaptureSummary, CaptureError> {
        std::thread::sleep(SETTLE);
        self.process
            .stop_with(Signal::SIGINT, Duration::from_secs(5))
            .map_err(|source| CaptureError::Tcpdump {
                iface: self.iface.clone(),
                source,
            })?;
        let data = std::fs::read(&self.file).map_err(|source| CaptureError::Read {
            path: self.file.clone(),
            source,
        })?;
        let segments = pcap::parse(&data).map_err(|source| CaptureError::Parse {
            path: self.file.clone(),
            source,
        })?;
        Ok(CaptureSummary::from_segments(&segments))
    }
}

#[cfg(test)]
mod tests;
