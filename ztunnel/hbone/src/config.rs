//! HTTP/2 settings shared by the HBONE client and server.

use std::time::Duration;

/// Per-stream receive window. Large so that one tunnel can fill a fast link: with the 64 KiB
/// HTTP/2 default, a single tunnel stalls after 64 KiB per round trip.
pub const DEFAULT_STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Per-connection receive window: room for a few streams at full speed at once.
pub const DEFAULT_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest DATA frame we accept: fewer frames means less per-frame CPU for bulk transfers.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Largest header block we accept; Istio's ztunnel answers 431 above 64 KiB.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// Streams a peer may open on one connection (the client pool uses about 100).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1000;
/// Bytes h2 may hold queued per stream before the writer is made to wait. Together with the
/// peer's window this bounds the memory of a tunnel whose reader stopped reading.
pub const DEFAULT_MAX_SEND_BUFFER: usize = 1024 * 1024;
/// Encrypted bytes rustls may queue before a write waits for the socket. rustls's default (64 KiB)
/// made a bulk tunnel issue one `writev` per 64 KiB although the relay hands h2 up to 256 KiB at
/// a time; each system call and each wake-up of the peer costs more than the bytes it moves.
/// A relay read and its DATA frame header fill exactly this much: see [`MAX_RELAY_READ`].
pub const TLS_WRITE_BUFFER: usize = 256 * 1024;
/// Length of an HTTP/2 frame header.
pub const FRAME_HEADER_LEN: usize = 9;
/// Largest socket read the relay turns into one DATA frame. Header and payload then make exactly
/// [`TLS_WRITE_BUFFER`] bytes, 16 full TLS records in one `writev`. With a full 256 KiB read the
/// frame overshot rustls's limit by its header, and the last 9 bytes of every frame went out in a
/// TLS record and a system call of their own (and the peer had to wait for them to decode it).
pub const MAX_RELAY_READ: usize = TLS_WRITE_BUFFER - FRAME_HEADER_LEN;
/// How long the TLS + HTTP/2 handshake of a new connection may take.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 tuning of an HBONE endpoint. The defaults follow DESIGN.md 4.1.
#[derive(Debug, Clone)]
pub struct H2Config {
    /// Initial receive window of every stream, in bytes.
    pub stream_window: u32,
    /// Receive window of the whole connection, in bytes.
    pub connection_window: u32,
    /// Largest DATA frame the peer may send, in bytes.
    pub max_frame_size: u32,
    /// Largest header block the peer may send (server: larger requests get 431).
    pub max_header_list_size: u32,
    /// Streams the peer may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Per-stream bytes queued inside h2 before a writer gets back-pressure.
    pub max_send_buffer: usize,
    /// Limit for the TLS and HTTP/2 handshakes of one connection.
    pub handshake_timeout: Duration,
}

impl Default for H2Config {
    fn default() -> Self {
        Self {
            stream_window: DEFAULT_STREAM_WINDOW,
            connection_window: DEFAULT_CONNECTION_WINDOW,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_send_buffer: DEFAULT_MAX_SEND_BUFFER,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl H2Config {
    /// An h2 server builder with these settings.
    pub fn server_builder(&self) -> h2::server::Builder {
        let mut b = h2::server::Builder::new();
        b.initial_window_size(self.stream_window)
            .initial_connection_window_size(self.connection_window)
            .max_frame_size(self.max_frame_size)
            .max_header_list_size(self.max_header_list_size)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_send_buffer_size(self.max_send_buffer);
        b
    }

    /// An h2 client builder with these settings.
    pub fn client_builder(&self) -> h2::client::Builder {
        let mut b = h2::client::Builder::new();
        b.initial_window_size(self.stream_window)
            .initial_connection_window_size(self.connection_window)
            .max_frame_size(self.max_frame_size)
            .max_header_list_size(self.max_header_list_size)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_send_buffer_size(self.max_send_buffer)
            .enable_push(false);
        b
    }
}
