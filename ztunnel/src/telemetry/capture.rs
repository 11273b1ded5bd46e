//! Test support: a log writer that keeps what is written, for asserting on log output.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A writer that keeps everything written to it; clones share the buffer.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// The lines written so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        let buf = self.0.lock().expect("capture lock");
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
