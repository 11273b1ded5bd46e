//! The ztunnel side of the handoff protocol: connect to the node agent, say Hello, apply each request in
//! lock-step and Ack it; after a (re)connect, pods not named before SnapshotDone are released.
//!
//! Runs on a dedicated OS thread (the socket is blocking SOCK_SEQPACKET); pod changes are applied on the async
//! runtime through its handle and the result is acknowledged before the next request is read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mesh_api::handoff::{self, AgentRequest, Command, HandoffError, SeqPacketConn, ZtunnelMessage};
use prost::Message;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::pods::PodManager;

/// First reconnect delay; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a read may block before the stop flag is checked again.
const READ_POLL: Duration = Duration::from_millis(500);

/// Errors of one handoff session; the client reconnects after any of them.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting to the agent failed (is the node agent running, is the path right?).
    #[error("cannot connect to node agent at {0}: {1}")]
    Connect(PathBuf, handoff::HandoffError),
    /// The session broke while exchanging messages.
    #[error("handoff session with {0} failed: {1}")]
    Session(PathBuf, handoff::HandoffError),
}

/// Starts the handoff client thread. `on_snapshot` runs after each completed snapshot (readiness).
pub fn spawn(
    path: PathBuf,
    pods: Arc<PodManager>,
    rt: Handle,
    stop: CancellationToken,
    on_snapshot: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("handoff".into()).spawn(move || {
        let mut backoff = MIN_BACKOFF;
        while !stop.is_cancelled() {
            match session(&path, &pods, &rt, &stop, on_snapshot.as_ref()) {
                Ok(()) => return,
                Err(ClientError::Connect(p, e)) => {
                    tracing::debug!(path = %p.display(), error = %e, "node agent not reachable yet");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "handoff session ended, reconnecting");
                    backoff = MIN_BACKOFF;
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// One connection to the agent; returns Ok only when asked to stop.
fn session(
    path: &Path,
    pods: &PodManager,
    rt: &Handle,
    stop: &CancellationToken,
    on_snapshot: &(dyn Fn() + Send + Sync),
) -> Result<(), ClientError> {
    let conn =
        SeqPacketConn::connect(path).map_err(|e| ClientError::Connect(path.to_path_buf(), e))?;
    let session_err = |e| ClientError::Session(path.to_path_buf(), e);
    conn.set_read_timeout(Some(READ_POLL))
        .map_err(session_err)?;
    conn.send(&ZtunnelMessage::hello(), None)
        .map_err(session_err)?;
    tracing::info!(path = %path.display(), "connected to node agent");
    let mut seen: Option<HashSet<String>> = Some(HashSet::new());
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        let result = match conn.recv_raw() {
            Ok((bytes, fds)) => match decode(&bytes, fds) {
                Ok(cmd) => apply(cmd, pods, rt, &mut seen, on_snapshot),
                Err(e) => Err(format!("invalid request: {e}")),
            },
            Err(HandoffError::Timeout) => continue,
            // A datagram that did not fit is refused; the session goes on.
            Err(e @ HandoffError::Truncated { .. }) => Err(format!("invalid request: {e}")),
            Err(e) => return Err(session_err(e)),
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "handoff request refused");
        }
        conn.send(&ZtunnelMessage::ack(result), None)
            .map_err(session_err)?;
    }
}

/// Parses one datagram; garbage and wrong fd counts are refused (the fds are closed) and change nothing.
fn decode(bytes: &[u8], fds: Vec<std::os::fd::OwnedFd>) -> Result<Command, HandoffError> {
    let req = AgentRequest::decode(bytes)?;
    Ok(Command::from_request(req, fds)?)
}

fn apply(
    cmd: Command,
    pods: &PodManager,
    rt: &Handle,
    seen: &mut Option<HashSet<String>>,
    on_snapshot: &(dyn Fn() + Send + Sync),
) -> Result<(), String> {
    match cmd {
        Command::Add { pod, netns } => {
            if let Some(seen) = seen.as_mut() {
                seen.insert(pod.uid.clone());
            }
            rt.block_on(pods.add(pod, netns)).map_err(|e| e.to_string())
        }
        Command::Keep { uid } => {
            if let Some(seen) = seen.as_mut() {
                seen.insert(uid.clone());
            }
            pods.keep(&uid).map_err(|e| e.to_string())
        }
        Command::Del { uid } => pods.del(&uid).map_err(|e| e.to_string()),
        Command::SnapshotDone => {
            let named = seen.take().unwrap_or_default();
            pods.retain(&named);
            on_snapshot();
            Ok(())
        }
    }
}
