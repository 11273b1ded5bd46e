//! One ztunnel connection: the greeting, the replay that precedes adopting it, and the
//! request/ack exchange every message goes through.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use mesh_api::handoff::{
    AgentRequest, HandoffError, PROTOCOL_VERSION, Reply, SeqPacketConn, SeqPacketListener,
    ZtunnelMessage,
};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{HandoffServerError, Shared};

/// Pause after a failed accept() so a persistent error (e.g. EMFILE) does not spin a core.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Accepts ztunnels until the server is dropped.
pub(super) fn accept_loop(shared: &Shared, listener: &SeqPacketListener) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok(conn) => {
                if let Err(err) = adopt(shared, conn) {
                    tracing::warn!(%err, "handoff connection not adopted; waiting for a new one");
                }
            }
            Err(err) => {
                tracing::warn!(%err, "accepting a handoff connection failed");
                std::thread::sleep(ACCEPT_RETRY);
            }
        }
    }
}

/// Greets a new connection, replays every enrolled pod plus `SnapshotDone` on it, then makes it
/// the current connection (closing the previous one). The pod set is locked for the whole
/// replay, so API calls wait and nothing interleaves.
fn adopt(shared: &Shared, conn: SeqPacketConn) -> Result<(), HandoffServerError> {
    let version = greet(&conn, shared.config.hello_timeout)?;
    let after = shared.config.ack_timeout;
    let setup_err = |source| HandoffServerError::Connection {
        request: "setup".into(),
        source,
    };
    conn.set_read_timeout(Some(after)).map_err(setup_err)?;
    conn.set_write_timeout(Some(after)).map_err(setup_err)?;

    let mut state = shared.lock();
    let mut refused = 0usize;
    for (uid, pod) in &state.pods {
        let name = format!("Add pod {uid} (replay)");
        let request = AgentRequest::add(&pod.info);
        match exchange(&conn, &request, Some(pod.netns.as_fd()), &name, after) {
            Ok(()) => {}
            Err(err @ HandoffServerError::Refused { .. }) => {
                tracing::warn!(%err, "pod stays enrolled; ztunnel gets it again on reconnect");
                refused += 1;
            }
            Err(err) => return Err(err),
        }
    }
    exchange(
        &conn,
        &AgentRequest::snapshot_done(),
        None,
        "SnapshotDone",
        after,
    )?;
    let replaced = state.conn.replace(conn).is_some();
    state.snapshots += 1;
    shared.adopted.notify_all();
    tracing::info!(
        version,
        pods = state.pods.len(),
        refused,
        replaced,
        "ztunnel connected; snapshot replayed"
    );
    Ok(())
}

/// Waits for `Hello` and checks its version.
fn greet(conn: &SeqPacketConn, timeout: Duration) -> Result<u32, HandoffServerError> {
    let name = "Hello";
    conn.set_read_timeout(Some(timeout))
        .map_err(|source| HandoffServerError::Connection {
            request: name.into(),
            source,
        })?;
    match receive(conn, name, timeout)? {
        Reply::Hello { version } if version == PROTOCOL_VERSION => Ok(version),
        Reply::Hello { version } => Err(protocol(
            name,
            format!("ztunnel speaks version {version}, this agent {PROTOCOL_VERSION}"),
        )),
        Reply::Ack(_) => Err(protocol(name, "got an Ack before Hello".into())),
    }
}

/// Sends `request` (with `fd` attached) and waits for its Ack. The socket's timeouts must be set
/// to `after` (only used in the error).
pub(super) fn exchange(
    conn: &SeqPacketConn,
    request: &AgentRequest,
    fd: Option<BorrowedFd<'_>>,
    name: &str,
    after: Duration,
) -> Result<(), HandoffServerError> {
    conn.send(request, fd)
        .map_err(|e| transport(name, after, e))?;
    match receive(conn, name, after)? {
        Reply::Ack(Ok(())) => Ok(()),
        Reply::Ack(Err(reason)) => Err(HandoffServerError::Refused {
            request: name.into(),
            reason,
        }),
        Reply::Hello { .. } => Err(protocol(name, "got Hello instead of an Ack".into())),
    }
}

fn receive(conn: &SeqPacketConn, name: &str, after: Duration) -> Result<Reply, HandoffServerError> {
    let (msg, fds) = conn
        .recv::<ZtunnelMessage>()
        .map_err(|e| transport(name, after, e))?;
    Reply::from_message(msg, fds).map_err(|e| protocol(name, e.to_string()))
}

fn transport(name: &str, after: Duration, err: HandoffError) -> HandoffServerError {
    match err {
        HandoffError::Timeout => HandoffServerError::Timeout {
            request: name.into(),
            after,
        },
        HandoffError::Decode(_) | HandoffError::Command(_) | HandoffError::Truncated { .. } => {
            protocol(name, err.to_string())
        }
        source => HandoffServerError::Connection {
            request: name.into(),
            source,
        },
    }
}

fn protocol(name: &str, detail: String) -> HandoffServerError {
    HandoffServerError::Protocol {
        request: name.into(),
        detail,
    }
}

/// Whether the connection is readable while no request is outstanding: ztunnel hung up (EOF),
/// the socket failed, or it sent something unsolicited; the lock-step is broken in every case.
pub(super) fn hung_up(conn: &SeqPacketConn) -> bool {
    let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) => n > 0,
        Err(Errno::EINTR) => false,
        Err(err) => {
            tracing::warn!(%err, "poll on the handoff connection failed");
            true
        }
    }
}
