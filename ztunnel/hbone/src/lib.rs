//! HBONE: HTTP/2 `CONNECT` tunnels over mutual TLS (DESIGN.md 4.1).
//!
//! - [`H2Stream`]: one tunnel, an `AsyncRead + AsyncWrite` byte stream over one HTTP/2 stream
//!   with real flow control (back-pressure, half-close, resets as I/O errors).
//! - [`copy_bidirectional`]: zero-copy relay between a socket and a tunnel, half-close aware.
//! - [`server`]: terminate HBONE connections ([`serve_connection`], [`server::accept_tls`]).
//! - [`client`]: open a tunnel over one HTTP/2 connection ([`client::connect`]).
//! - [`pool`]: HTTP/2 connections pooled by (source, destination identity, destination).

pub mod bufio;
pub mod client;
pub mod config;
pub mod copy;
pub mod pool;
pub mod server;
pub mod stream;

pub use bufio::ReadBuffered;
pub use client::{ConnectError, TunnelRequest};
pub use config::H2Config;
pub use copy::{CopyError, Offload, Transferred, copy_bidirectional, relay_tcp};
pub use pool::{Connector, DialError, Pool, PoolConfig, PoolError, PoolKey};
pub use server::{
    ConnInfo, ConnectHandler, ConnectRequest, Responder, ServeError, ServeOptions, accept_tls,
    serve_connection,
};
pub use stream::H2Stream;

/// The well-known HBONE port (DESIGN.md section 3).
pub const HBONE_PORT: u16 = 15008;
