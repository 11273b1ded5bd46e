//! Listening sockets with the options ztunnel needs in a pod's network namespace.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Congestion, DEFAULT_BACKLOG, SocketError, opt_err};

/// Builds a non-blocking TCP listener: `SO_REUSEADDR` and `SO_REUSEPORT` (so a new ztunnel can
/// bind the same ports during an upgrade while the old one drains), an optional `SO_MARK`,
/// `TCP_NODELAY` (inherited by accepted sockets), and a backlog of [`DEFAULT_BACKLOG`].
///
/// Call [`ListenerBuilder::build`] inside the target namespace (see [`super::in_netns`]); adopt the
/// result on the runtime with `tokio::net::TcpListener::from_std`.
#[derive(Debug, Clone)]
pub struct ListenerBuilder {
    addr: SocketAddr,
    mark: Option<u32>,
    backlog: i32,
    reuse_port: bool,
    congestion: Option<Congestion>,
}

impl ListenerBuilder {
    /// A listener on `addr` with `SO_REUSEPORT`, no mark and the default backlog.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            mark: None,
            backlog: DEFAULT_BACKLOG,
            reuse_port: true,
            congestion: None,
        }
    }

    /// Sets the TCP congestion control of the sockets this listener accepts (`None`: the
    /// kernel's default); best effort, like [`super::ConnectBuilder::congestion`].
    pub fn congestion(mut self, congestion: Option<Congestion>) -> Self {
        self.congestion = congestion;
        self
    }

    /// Sets `SO_MARK` on the listener (inherited by accepted sockets), e.g. [`super::ZTUNNEL_MARK`].
    pub fn mark(mut self, mark: u32) -> Self {
        self.mark = Some(mark);
        self
    }

    /// Overrides the listen backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Turns `SO_REUSEPORT` off (on by default), for listeners that must own their port alone.
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.reuse_port = reuse;
        self
    }

    /// Creates, configures, binds and starts listening, in the calling thread's network namespace.
    pub fn build(&self) -> Result<std::net::TcpListener, SocketError> {
        let addr = self.addr;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|err| SocketError::Create { addr, err })?;
        socket
            .set_reuse_address(true)
            .map_err(opt_err("SO_REUSEADDR", addr))?;
        if self.reuse_port {
            socket
                .set_reuse_port(true)
                .map_err(opt_err("SO_REUSEPORT", addr))?;
        }
        if let Some(mark) = self.mark {
            socket.set_mark(mark).map_err(opt_err("SO_MARK", addr))?;
        }
        if let Some(cc) = &self.congestion {
            cc.apply_best_effort(&socket, addr);
        }
        // Inherited by accepted sockets: a proxy relays writes as they come and must not hold
        // small ones back for an ACK (Nagle) when the app on the other end did not ask for it.
        socket
            .set_tcp_nodelay(true)
            .map_err(opt_err("TCP_NODELAY", addr))?;
        socket
            .set_nonblocking(true)
            .map_err(opt_err("O_NONBLOCK", addr))?;
        socket
            .bind(&addr.into())
            .map_err(|err| SocketError::Bind { addr, err })?;
        socket
            .listen(self.backlog)
            .map_err(|err| SocketError::Listen { addr, err })?;
        Ok(socket.into())
    }
}
