//! Telling a bulk transfer from an interactive connection, cheaply: the relay counts bytes and
//! reads the clock only once per window of bytes (by default [`WINDOW_BYTES`]).

use std::time::{Duration, Instant};

/// Bytes per measuring window.
pub(crate) const WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// A window filled faster than this is bulk transfer: 4 MiB in 20 ms is about 1.7 Gbit/s, far
/// beyond request/response traffic (1 KiB messages at 2,000/s fill a window in 2 seconds).
pub(crate) const WINDOW: Duration = Duration::from_millis(20);

/// Measures a relay's rate in windows of [`WINDOW_BYTES`].
#[derive(Debug)]
pub(crate) struct Meter {
    start: Instant,
    start_bytes: u64,
    window_bytes: u64,
    window: Duration,
}

impl Meter {
    /// Bulk is `window_bytes` (at least 1) relayed within `window`.
    pub(crate) fn new(window_bytes: u64, window: Duration) -> Self {
        Self::starting_at(Instant::now(), window_bytes, window)
    }

    fn starting_at(start: Instant, window_bytes: u64, window: Duration) -> Self {
        Self {
            start,
            start_bytes: 0,
            window_bytes: window_bytes.max(1),
            window,
        }
    }

    /// Whether the window that `total` bytes (relayed so far, both directions) completes was
    /// filled in time; starts the next window when one completes.
    pub(crate) fn is_bulk(&mut self, total: u64) -> bool {
        self.is_bulk_at(total, Instant::now)
    }

    fn is_bulk_at(&mut self, total: u64, now: impl FnOnce() -> Instant) -> bool {
        if total.saturating_sub(self.start_bytes) < self.window_bytes {
            return false;
        }
        let now = now();
        let fast = now.saturating_duration_since(self.start) < self.window;
        self.start = now;
        self.start_bytes = total;
        fast
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_filled_quickly_is_bulk() {
        let t0 = Instant::now();
        let mut m = Meter::starting_at(t0, WINDOW_BYTES, WINDOW);
        let clock_read =
            |_: ()| -> Instant { panic!("the clock is read only when a window fills") };
        assert!(!m.is_bulk_at(WINDOW_BYTES - 1, || clock_read(())));
        assert!(m.is_bulk_at(WINDOW_BYTES, || t0 + WINDOW / 2));
    }

    #[test]
    fn a_slowly_filled_window_is_not_bulk_and_starts_the_next() {
        let t0 = Instant::now();
        let mut m = Meter::starting_at(t0, WINDOW_BYTES, WINDOW);
        let t1 = t0 + WINDOW * 10;
        assert!(!m.is_bulk_at(WINDOW_BYTES + 5, || t1));
        // The next window counts from t1 and from the bytes seen then.
        assert!(!m.is_bulk_at(2 * WINDOW_BYTES, || panic!("window not full yet")));
        assert!(m.is_bulk_at(2 * WINDOW_BYTES + 5, || t1 + WINDOW / 4));
    }
}
