//! Linux socket plumbing for ztunnel: entering a pod's network namespace to create sockets there,
//! listener and connecting-socket builders with the options the redirect rules rely on, and the
//! original destination of a redirected connection.
//!
//! A socket belongs to the network namespace that was current for the thread that called
//! `socket(2)`; once created it can be bound, connected and polled from any thread. So ztunnel only
//! needs to be "inside" a pod's netns for the instant a socket is created: [`PodNetns::run`] enters
//! it on the calling thread and returns the thread home before returning (aborting the process if
//! that ever failed, so no thread can be left in the wrong namespace).

mod congestion;
mod connect;
mod listener;
mod netns;
mod orig_dst;

use std::io;
use std::net::SocketAddr;

pub use congestion::{
    BadCongestion, Congestion, CongestionChoice, DEFAULT_TUNNEL_CONGESTION, KERNEL_DEFAULT,
};
pub use connect::{ConnectBuilder, into_tokio_socket};
pub use listener::ListenerBuilder;
pub use netns::{PodNetns, in_netns};
pub use orig_dst::original_dst;

/// The `SO_MARK` ztunnel puts on every socket it creates for a pod, so the pod's redirect rules
/// (DESIGN.md 4.4) let ztunnel's own traffic through instead of capturing it again.
pub const ZTUNNEL_MARK: u32 = 0x539;

/// Listen backlog of ztunnel's listeners: a connection burst on a busy pod must not overflow the
/// accept queue before the accept loop catches up (the kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: i32 = 1024;

/// Errors of socket creation, namespace switching and original-destination lookup.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The namespace fd could not be duplicated for a helper thread.
    #[error(
        "cannot duplicate the network namespace file descriptor (check the process fd limit): {0}"
    )]
    DupNetns(io::Error),
    /// No OS thread could be started to enter the namespace.
    #[error(
        "cannot start a helper thread to enter a pod network namespace (check thread and memory limits): {0}"
    )]
    SpawnThread(io::Error),
    /// `setns(CLONE_NEWNET)` was refused.
    #[error(
        "cannot enter the network namespace with setns(CLONE_NEWNET): {0} (is the fd a network namespace, \
         e.g. /proc/<pid>/ns/net, and does ztunnel have CAP_SYS_ADMIN?)"
    )]
    EnterNetns(nix::Error),
    /// The closure run inside the namespace panicked.
    #[error(
        "the function run inside a pod network namespace panicked (see the panic message above)"
    )]
    Panicked,
    /// `socket(2)` failed.
    #[error(
        "cannot create a TCP socket for {addr}: {err} (check the fd limit and that the address family is enabled)"
    )]
    Create {
        /// Address the socket was for.
        addr: SocketAddr,
        /// Underlying error.
        err: io::Error,
    },
    /// A socket option could not be set.
    #[error(
        "cannot set socket option {option} on the socket for {addr}: {err} (SO_MARK and IP_TRANSPARENT need CAP_NET_ADMIN)"
    )]
    SetOption {
        /// Option name, e.g. `SO_MARK`.
        option: &'static str,
        /// Address the socket was for.
        addr: SocketAddr,
        /// Underlying error.
        err: io::Error,
    },
    /// `bind(2)` failed.
    #[error(
        "cannot bind {addr}: {err} (is the address configured in this netns, or is the port taken by a socket without SO_REUSEPORT?)"
    )]
    Bind {
        /// Address that could not be bound.
        addr: SocketAddr,
        /// Underlying error.
        err: io::Error,
    },
    /// `listen(2)` failed.
    #[error("cannot listen on {addr}: {err}")]
    Listen {
        /// Address of the listener.
        addr: SocketAddr,
        /// Underlying error.
        err: io::Error,
    },
    /// The socket's local address could not be read.
    #[error("cannot read the local address of an accepted connection: {0}")]
    LocalAddr(io::Error),
    /// `SO_ORIGINAL_DST` failed.
    #[error(
        "cannot read the original destination (SO_ORIGINAL_DST) of a connection to {local}: {err} (was it \
         redirected by the nat table in the pod's netns? is the nf_conntrack module loaded?)"
    )]
    OriginalDst {
        /// Local address of the connection (the redirect port).
        local: SocketAddr,
        /// Underlying error.
        err: io::Error,
    },
}

impl SocketError {
    /// The OS error underneath, if there is one.
    fn io_kind(&self) -> io::ErrorKind {
        match self {
            Self::DupNetns(e) | Self::SpawnThread(e) | Self::LocalAddr(e) => e.kind(),
            Self::Create { err, .. }
            | Self::SetOption { err, .. }
            | Self::Bind { err, .. }
            | Self::Listen { err, .. }
            | Self::OriginalDst { err, .. } => err.kind(),
            Self::EnterNetns(errno) => io::Error::from(*errno).kind(),
            Self::Panicked => io::ErrorKind::Other,
        }
    }
}

impl From<SocketError> for io::Error {
    /// Keeps the OS error kind (e.g. `AddrInUse`) so callers working in `io::Result` can still match
    /// on it, with the full contextual message.
    fn from(e: SocketError) -> Self {
        io::Error::new(e.io_kind(), e)
    }
}

/// Wraps a failed `setsockopt` with its name and the socket's address.
fn opt_err(option: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> SocketError {
    move |err| SocketError::SetOption { option, addr, err }
}

#[cfg(test)]
mod tests;
