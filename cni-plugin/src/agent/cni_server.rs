//! The unix stream socket the `mesh-cni` plugin talks to (see [`crate::protocol`]): one thread
//! accepts, one short-lived thread per request forwards it to the reconciler and writes its
//! answer back.

use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use super::Msg;
use crate::protocol::{self, CniReply, CniRequest};

/// How long a plugin may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the CNI socket.
#[derive(Debug, thiserror::Error)]
pub enum CniServerError {
    /// The socket could not be created.
    #[error(
        "cannot listen on the CNI socket {path}: {source} (is the directory writable, another agent running?)"
    )]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The listening socket; dropping it stops accepting and removes the file.
#[derive(Debug)]
pub struct CniServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CniServer {
    /// Listens on `path` (replacing a stale socket) and forwards requests to `tx`, waiting up
    /// to `reply_timeout` for each answer.
    pub fn bind(
        path: &Path,
        tx: Sender<Msg>,
        reply_timeout: Duration,
    ) -> Result<Self, CniServerError> {
        let err = |source| CniServerError::Bind {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        // Only root (the container runtime) may ask for pods to be enrolled or released.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("cni-accept".into())
                .spawn(move || accept_loop(&listener, &tx, &stop, reply_timeout))
                .map_err(err)?
        };
        tracing::info!(path = %path.display(), "CNI socket listening");
        Ok(Self {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for CniServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() with a connection of our own.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::warn!("CNI accept thread panicked");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: &UnixListener,
    tx: &Sender<Msg>,
    stop: &AtomicBool,
    reply_timeout: Duration,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok(stream) => {
                let tx = tx.clone();
                let spawned = std::thread::Builder::new()
                    .name("cni-request".into())
                    .spawn(move || serve(stream, &tx, reply_timeout));
                if let Err(err) = spawned {
                    tracing::warn!(%err, "cannot start a CNI request thread");
                }
            }
            Err(err) => {
                tracing::warn!(%err, "CNI socket accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn serve(stream: UnixStream, tx: &Sender<Msg>, reply_timeout: Duration) {
    let reply = match read_request(&stream) {
        Ok(request) => forward(request, tx, reply_timeout),
        Err(message) => CniReply::Error {
            message,
            retry: false,
        },
    };
    match protocol::encode_line(&reply) {
        Ok(line) => {
            if let Err(err) = (&stream).write_all(&line) {
                tracing::debug!(%err, "CNI plugin went away before the reply");
            }
        }
        Err(err) => tracing::warn!(%err, "cannot encode a CNI reply"),
    }
}

fn read_request(stream: &UnixStream) -> Result<CniRequest, String> {
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let line = protocol::read_line(&mut BufReader::new(stream))
        .map_err(|e| format!("cannot read the request: {e}"))?;
    serde_json::from_slice(&line).map_err(|e| format!("invalid request: {e}"))
}

fn forward(request: CniRequest, tx: &Sender<Msg>, reply_timeout: Duration) -> CniReply {
    let (reply_tx, reply_rx) = mpsc::channel();
    if tx.send(Msg::Cni(request, reply_tx)).is_err() {
        return CniReply::Error {
            message: "the node agent is shutting down".into(),
            retry: true,
        };
    }
    reply_rx
        .recv_timeout(reply_timeout)
        .unwrap_or_else(|_| CniReply::Error {
            message: format!("the node agent did not finish within {reply_timeout:?}"),
            retry: true,
        })
}
