//! A relay between a TCP socket and a tunnel that moves to another worker when it turns out to
//! carry a bulk transfer.
//!
//! A tunnel's relay task and its HTTP/2 connection task normally share one worker thread, which
//! is what request/response traffic wants: every hand-off between them stays on the thread, and
//! no message waits for another CPU to wake up. A bulk transfer is the opposite case: one thread
//! then reads the socket *and* encrypts and writes the TLS records (or reads, decrypts and
//! writes to the socket), and becomes the bottleneck of the whole path while another core has
//! room. Once the relay sees bulk transfer ([`super::bulk`]), it takes its socket out of this
//! worker's reactor and continues on `offload`, leaving the connection task where it is: the two
//! halves of the work then run on two cores. It moves at most once, and only at a point where
//! nothing is in flight (both directions waiting).

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::bulk::{self, Meter};
use super::{CopyError, Relay, Side, Step, Transferred};
use crate::stream::H2Stream;

/// Where a relay moves for a bulk transfer, and what counts as one.
#[derive(Debug, Clone)]
pub struct Offload {
    handle: Handle,
    window_bytes: u64,
    window: Duration,
}

impl Offload {
    /// Moves to `handle`'s runtime once 4 MiB pass within 20 ms (about 1.7 Gbit/s).
    pub fn new(handle: Handle) -> Self {
        Self {
            handle,
            window_bytes: bulk::WINDOW_BYTES,
            window: bulk::WINDOW,
        }
    }

    /// The runtime the relay moves to.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Counts as bulk `bytes` relayed (both directions together) within `within`.
    pub fn with_window(mut self, bytes: u64, within: Duration) -> Self {
        self.window_bytes = bytes;
        self.window = within;
        self
    }
}

/// Relays like [`super::copy_bidirectional`]; with `offload`, a bulk transfer continues on its
/// runtime (`Transferred::offloaded` says whether it did). The connection's span follows it.
/// Dropping the returned future stops the relay wherever it runs.
pub async fn relay_tcp(
    mut socket: TcpStream,
    mut tunnel: H2Stream,
    offload: Option<Offload>,
) -> Result<Transferred, CopyError> {
    let Some(offload) = offload else {
        return super::copy_bidirectional(&mut socket, &mut tunnel).await;
    };
    let mut relay = Relay::new(Some(Meter::new(offload.window_bytes, offload.window)));
    if let Step::Done(result) = relay.run(&mut socket, &mut tunnel).await {
        return result;
    }
    let at_move = relay.totals();
    let std = match socket.into_std() {
        Ok(s) => s,
        Err(e) => {
            tunnel.reset(h2::Reason::CANCEL);
            return Err(moving_failed(at_move, e));
        }
    };
    relay.offloaded = true;
    let moved = offload.handle.spawn(
        async move {
            let mut socket = match TcpStream::from_std(std) {
                Ok(s) => s,
                Err(e) => {
                    tunnel.reset(h2::Reason::CANCEL);
                    return Err(moving_failed(relay.totals(), e));
                }
            };
            tracing::debug!("bulk transfer: relay moved to another worker");
            loop {
                if let Step::Done(result) = relay.run(&mut socket, &mut tunnel).await {
                    return result;
                }
            }
        }
        .in_current_span(),
    );
    let mut moved = AbortOnDrop(moved);
    match (&mut moved.0).await {
        Ok(result) => result,
        // The other worker stopped (shutdown) before the relay finished.
        Err(e) => Err(moving_failed(at_move, io::Error::other(e))),
    }
}

fn moving_failed(transferred: Transferred, source: io::Error) -> CopyError {
    CopyError::ToTunnel {
        side: Side::Socket,
        transferred: Transferred {
            offloaded: true,
            ..transferred
        },
        source: io::Error::new(
            source.kind(),
            format!("moving the relay to another worker failed: {source}"),
        ),
    }
}

/// Aborts the moved relay when the task waiting for it goes away (connection cancelled).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
