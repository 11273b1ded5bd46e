//! Allocator tuning for a proxy that moves bulk data through short-lived buffers.
//!
//! A bulk tunnel reads into 64-256 KiB buffers that live until h2 has written them out. With
//! glibc's defaults, buffers above the (dynamic) mmap threshold are mapped and unmapped per
//! allocation, and freed heap tops above the trim threshold are handed back to the kernel at
//! once; either way the next buffer's pages fault in again and are zeroed by the kernel, which
//! cost about 8% of ztunnel's CPU in a throughput benchmark. Fixed thresholds keep such buffers
//! in the heap and let a few MiB of freed memory stay mapped for reuse; idle memory is unchanged
//! (nothing is retained before traffic allocates it).
//!
//! The trim threshold alone still let a heap thrash: once its free top passed the threshold,
//! glibc gave back everything above its 128 KiB default pad, and the next buffers faulted in
//! again (up to 60,000 page faults a second in a four-stream transfer). A top pad as large as the
//! threshold makes a trim give back only the excess over it, so at most the same few MiB stay
//! mapped as before, but they are the ones the next buffers use.

/// Allocations below this come from the heap, not from their own `mmap`.
const MMAP_THRESHOLD: i32 = 1024 * 1024;
/// Free memory at the top of a heap is returned to the kernel only above this.
const TRIM_THRESHOLD: i32 = 4 * 1024 * 1024;
/// Free memory a trim leaves at the top of a heap (and extra asked for when a heap grows).
const TOP_PAD: i32 = TRIM_THRESHOLD;

/// Applies the thresholds; call once, first thing in `main`. Failure only costs performance.
pub fn tune() {
    // SAFETY: mallopt only changes allocator parameters, under glibc's own arena lock, and
    // touches no memory of ours. (`main` calls this before other threads exist so that every
    // allocation sees the same parameters; a test calls it later, which is still sound.)
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    fn thread_minor_faults() -> i64 {
        // SAFETY: `rusage` holds only integers, for which all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage only writes the struct it is given.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        assert_eq!(rc, 0, "getrusage failed");
        usage.ru_minflt
    }

    /// Allocates `n` buffers of the relay's largest read and writes every page of them.
    fn touched_buffers(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| vec![1u8; hbone::config::MAX_RELAY_READ])
            .collect()
    }

    #[test]
    fn buffers_freed_after_a_burst_are_reused_without_faulting_in_again() {
        tune();
        // A burst makes the heap's free top larger than the trim threshold when it ends...
        let burst = touched_buffers(32);
        drop(burst);
        // ...and the next buffers must come from memory that is still mapped.
        let before = thread_minor_faults();
        let next = touched_buffers(8);
        let faults = thread_minor_faults() - before;
        assert_eq!(next.len(), 8);
        // 2 MiB of new buffers would be about 512 faults if the trim had given their pages back.
        assert!(
            faults < 64,
            "{faults} page faults for 2 MiB of buffers right after a burst freed 8 MiB"
        );
    }
}
