//! The plugin <-> node agent protocol: the `mesh-cni` executable connects to the agent's unix
//! stream socket, writes one JSON request line, and reads one JSON reply line.
//!
//! JSON lines keep it debuggable by hand (`echo '{"op":"status"}' | socat - UNIX:/var/run/mesh-cni/cni.sock`)
//! and it is a handful of messages per pod start, far from any hot path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest request or reply line accepted (a pod's request is a few hundred bytes).
pub const MAX_LINE: usize = 64 * 1024;

/// A pod as the container runtime describes it to the CNI plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniPod {
    /// `K8S_POD_UID` (empty when the runtime did not pass it: the agent looks the pod up by name).
    #[serde(default)]
    pub uid: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `CNI_CONTAINERID` (the sandbox id).
    pub container_id: String,
    /// `CNI_NETNS`: path of the pod's network namespace.
    pub netns: PathBuf,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The pod's addresses, from `prevResult`.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
}

/// Identifies a pod for DEL and CHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniPodRef {
    /// `K8S_POD_UID`, possibly empty.
    #[serde(default)]
    pub uid: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
}

/// A request of the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum CniRequest {
    /// A pod sandbox was created: enrol it if its labels say so; answer when done.
    Add(CniPod),
    /// A pod sandbox is being torn down: release it.
    Del(CniPodRef),
    /// Is the pod in the state it should be in (enrolled and enforced, or not enrolled)?
    Check(CniPodRef),
    /// Is the agent ready to serve ADDs?
    Status,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum CniReply {
    /// The pod is enrolled: rules installed and ztunnel serving it.
    Enrolled,
    /// The pod is not in the mesh (its labels, hostNetwork or a waypoint).
    NotEnrolled,
    /// DEL, CHECK or STATUS succeeded.
    Ok,
    /// The request failed.
    Error {
        /// What went wrong, for the operator.
        message: String,
        /// The condition may clear by itself (agent starting, pod not yet seen): retry later.
        #[serde(default)]
        retry: bool,
    },
}

/// Errors of talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket could not be reached.
    #[error(
        "cannot connect to the mesh node agent at {path}: {source} (is mesh-cni-agent running on this node?)"
    )]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading or writing failed, or the deadline passed.
    #[error("talking to the mesh node agent at {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// The cause (`WouldBlock`/`TimedOut` on a timeout).
        source: std::io::Error,
    },
    /// The peer sent something that is not a message of this protocol.
    #[error("the mesh node agent at {path} sent an invalid reply: {detail}")]
    Decode {
        /// Socket path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

impl ProtocolError {
    /// Whether the agent did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProtocolError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    }
}

/// Sends `request` to the agent at `path` and waits up to `timeout` for its reply.
pub fn call(
    path: &Path,
    request: &CniRequest,
    timeout: Duration,
) -> Result<CniReply, ProtocolError> {
    let io = |source| ProtocolError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(|source| ProtocolError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let line = encode_line(request).map_err(|detail| ProtocolError::Decode {
        path: path.to_path_buf(),
        detail,
    })?;
    (&stream).write_all(&line).map_err(io)?;
    let mut reader = BufReader::new(&stream);
    let reply = read_line(&mut reader).map_err(io)?;
    serde_json::from_slice(&reply).map_err(|e| ProtocolError::Decode {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// One message as a JSON line.
pub fn encode_line<T: Serialize>(msg: &T) -> Result<Vec<u8>, String> {
    let mut line = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
    line.push(b'\n');
    Ok(line)
}

/// Reads one line (without the newline), at most [`MAX_LINE`] bytes.
pub fn read_line<R: BufRead>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let read = Read::take(reader, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a complete message",
        ));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("message longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json_lines() {
        let req = CniRequest::Add(CniPod {
            uid: "u1".into(),
            name: "p".into(),
            namespace: "ns".into(),
            container_id: "c".into(),
            netns: "/var/run/netns/x".into(),
            ifname: "eth0".into(),
            ips: vec!["10.1.0.2".parse().expect("ip")],
        });
        let line = encode_line(&req).expect("encode");
        assert_eq!(line.last(), Some(&b'\n'));
        let text = String::from_utf8(line.clone()).expect("utf8");
        assert!(text.starts_with("{\"op\":\"add\""), "{text}");
        let back: CniRequest =
            serde_json::from_slice(&read_line(&mut &line[..]).expect("line")).expect("decode");
        assert_eq!(back, req);
        let status: CniRequest = serde_json::from_str(r#"{"op":"status"}"#).expect("status");
        assert_eq!(status, CniRequest::Status);
        let err: CniReply =
            serde_json::from_str(r#"{"result":"error","message":"m"}"#).expect("reply");
        assert_eq!(
            err,
            CniReply::Error {
                message: "m".into(),
                retry: false
            }
        );
    }

    #[test]
    fn overlong_and_truncated_lines_are_errors() {
        let long = vec![b'x'; MAX_LINE + 10];
        assert!(read_line(&mut &long[..]).is_err());
        assert!(read_line(&mut &b""[..]).is_err());
        assert_eq!(read_line(&mut &b"abc"[..]).expect("eof line"), b"abc");
    }
}
