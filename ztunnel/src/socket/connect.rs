//! Outgoing sockets that ztunnel creates on behalf of a pod.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Congestion, SocketError, ZTUNNEL_MARK, opt_err};

/// Builds an unconnected, non-blocking TCP socket for a connection to `target`, marked
/// [`ZTUNNEL_MARK`] with `TCP_NODELAY`, optionally bound to a foreign source address with
/// `IP_TRANSPARENT` (to present the original client's address to a local application).
///
/// Call [`ConnectBuilder::build`] inside the pod's namespace, then connect from async code with
/// `into_tokio_socket(socket).connect(target).await` (the connect itself may run on any thread).
#[derive(Debug, Clone)]
pub struct ConnectBuilder {
    target: SocketAddr,
    mark: Option<u32>,
    nodelay: bool,
    transparent_source: Option<SocketAddr>,
    congestion: Option<Congestion>,
}

impl ConnectBuilder {
    /// A socket of `target`'s address family, marked [`ZTUNNEL_MARK`], with `TCP_NODELAY`.
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            mark: Some(ZTUNNEL_MARK),
            nodelay: true,
            transparent_source: None,
            congestion: None,
        }
    }

    /// Sets the TCP congestion control (`None`: the kernel's default). Best effort: a kernel that
    /// refuses it leaves the default, the connection is not failed over a tuning choice.
    pub fn congestion(mut self, congestion: Option<Congestion>) -> Self {
        self.congestion = congestion;
        self
    }

    /// Replaces the mark (`None` leaves the socket unmarked).
    pub fn mark(mut self, mark: Option<u32>) -> Self {
        self.mark = mark;
        self
    }

    /// Sets or clears `TCP_NODELAY` (on by default: ztunnel relays bytes, it must not add delay).
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Binds the socket to `source` (usually with port 0) with `IP_TRANSPARENT`, so the peer sees that
    /// address. Needs CAP_NET_ADMIN and the pod's `fwmark 0x111 lookup 100` routing for the replies.
    pub fn transparent_source(mut self, source: SocketAddr) -> Self {
        self.transparent_source = Some(source);
        self
    }

    /// The address the socket is meant to connect to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Creates and configures the socket in the calling thread's network namespace.
    pub fn build(&self) -> Result<Socket, SocketError> {
        let addr = self.target;
        // Non-blocking from the start (SOCK_NONBLOCK): no fcntl round trips per connection.
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )
        .map_err(|err| SocketError::Create { addr, err })?;
        if let Some(mark) = self.mark {
            socket.set_mark(mark).map_err(opt_err("SO_MARK", addr))?;
        }
        socket
            .set_tcp_nodelay(self.nodelay)
            .map_err(opt_err("TCP_NODELAY", addr))?;
        if let Some(cc) = &self.congestion {
            cc.apply_best_effort(&socket, addr);
        }
        if let Some(source) = self.transparent_source {
            if addr.is_ipv4() {
                socket
                    .set_ip_transparent_v4(true)
                    .map_err(opt_err("IP_TRANSPARENT", addr))?;
            } else {
                socket
                    .set_ip_transparent_v6(true)
                    .map_err(opt_err("IPV6_TRANSPARENT", addr))?;
            }
            // The port is then chosen at connect time, against the whole 4-tuple: picked at bind
            // time it could not reuse a port that a TIME_WAIT socket to another destination holds,
            // and a busy client would run out of ports (EADDRINUSE) after ~28,000 connections a
            // minute. Best effort: without it, bind still works, only with fewer ports.
            if let Err(err) = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            ) {
                tracing::debug!(%addr, %err, "cannot set IP_BIND_ADDRESS_NO_PORT");
            }
            socket
                .bind(&source.into())
                .map_err(|err| SocketError::Bind { addr: source, err })?;
        }
        Ok(socket)
    }
}

/// Hands a socket from [`ConnectBuilder::build`] to tokio; it registers with the reactor when
/// `connect` is called, so this needs no runtime context.
pub fn into_tokio_socket(socket: Socket) -> tokio::net::TcpSocket {
    tokio::net::TcpSocket::from_std_stream(socket.into())
}
