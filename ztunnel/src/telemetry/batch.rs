//! Log output gathered in memory and written in batches, as Envoy writes its access logs.
//!
//! With one access-log record per request or connection, a `write` per record was one of the
//! waypoint's seven system calls per request, and the file system's write path is not cheap. Here a
//! record is appended to a buffer under a mutex; a flusher thread writes the buffer out
//! [`FLUSH_INTERVAL`] after the first record lands in an empty buffer (so an idle proxy has no
//! periodic wake-ups), and a writer that fills [`HIGH_WATER`] bytes writes them itself (so memory is
//! bounded under a burst). [`flush`] writes whatever is buffered; the proxies call it when they
//! exit, and a panic hook calls it before the panic message.
//!
//! Order is kept: every write to the sink happens under one lock, and each takes the whole buffer
//! as it stands, so records reach the sink in the order they were appended.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a record may wait in memory before the flusher writes it.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Buffered bytes at which the appending thread writes the buffer out itself.
pub const HIGH_WATER: usize = 64 * 1024;

/// The process-wide batch behind stdout, once [`super::init_logging`] installed it.
static STDOUT: OnceLock<Arc<Batch>> = OnceLock::new();

/// Records waiting for the sink, and the sink. Lock order: `sink`, then `pending`.
pub(super) struct Batch {
    pending: Mutex<Vec<u8>>,
    /// Signalled when a record lands in an empty buffer.
    arrived: Condvar,
    sink: Mutex<Sink>,
}

struct Sink {
    out: Box<dyn Write + Send>,
    /// The previous buffer, emptied, reused so that steady logging does not allocate.
    spare: Vec<u8>,
}

impl Batch {
    /// A batch writing to `out`, with no flusher thread (see [`Batch::start_flusher`]).
    pub(super) fn new(out: Box<dyn Write + Send>) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            sink: Mutex::new(Sink {
                out,
                spare: Vec::new(),
            }),
        })
    }

    /// Starts the thread that writes records out `interval` after they arrive.
    pub(super) fn start_flusher(self: &Arc<Self>, interval: Duration) -> io::Result<()> {
        let batch = self.clone();
        std::thread::Builder::new()
            .name("log-flush".to_owned())
            .spawn(move || {
                loop {
                    batch.wait_for_records();
                    std::thread::sleep(interval);
                    batch.flush();
                }
            })
            .map(drop)
    }

    fn wait_for_records(&self) {
        let mut pending = lock(&self.pending);
        while pending.is_empty() {
            pending = self
                .arrived
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Appends one formatted record (tracing-subscriber hands over a whole line at a time).
    pub(super) fn append(&self, record: &[u8]) {
        let mut pending = lock(&self.pending);
        let was_empty = pending.is_empty();
        pending.extend_from_slice(record);
        let full = pending.len() >= HIGH_WATER;
        drop(pending);
        if full {
            self.flush();
        } else if was_empty {
            self.arrived.notify_one();
        }
    }

    /// Writes everything appended so far to the sink. A failed write drops those records: a log
    /// that cannot be written must not stop the proxy or grow without bound.
    pub(super) fn flush(&self) {
        let mut sink = lock(&self.sink);
        let pending = lock(&self.pending);
        Self::write_out(&mut sink, pending);
    }

    /// [`Batch::flush`] for a panic hook: gives up rather than wait for a lock (the panicking
    /// thread may be the one holding it).
    fn try_flush(&self) {
        if let Ok(mut sink) = self.sink.try_lock()
            && let Ok(pending) = self.pending.try_lock()
        {
            Self::write_out(&mut sink, pending);
        }
    }

    /// Takes the pending records (releasing their lock at once) and writes them to the sink.
    fn write_out(sink: &mut Sink, mut pending: MutexGuard<'_, Vec<u8>>) {
        let Sink { out, spare } = sink;
        std::mem::swap(&mut *pending, spare);
        drop(pending);
        if spare.is_empty() {
            return;
        }
        // There is nowhere to report a failed log write but the log itself.
        let _ = out.write_all(spare).and_then(|()| out.flush());
        spare.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `MakeWriter` of the batched output: each record becomes one [`Batch::append`].
#[derive(Clone)]
pub(super) struct BatchWriter(pub(super) Arc<Batch>);

impl Write for &Batch {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = &'a Batch;

    fn make_writer(&'a self) -> Self::Writer {
        &self.0
    }
}

/// Makes `batch` the process's stdout batch: started flusher, flushed by [`flush`] and by a panic
/// hook placed in front of the current one.
pub(super) fn install_stdout(batch: Arc<Batch>) -> io::Result<()> {
    batch.start_flusher(FLUSH_INTERVAL)?;
    if STDOUT.set(batch).is_ok() {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(batch) = STDOUT.get() {
                batch.try_flush();
            }
            previous(info);
        }));
    }
    Ok(())
}

/// Writes out every log record still in memory. Call before the process exits.
pub fn flush() {
    if let Some(batch) = STDOUT.get() {
        batch.flush();
    }
}

#[cfg(test)]
mod tests;
