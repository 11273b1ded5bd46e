//! Allocator tuning for a proxy that moves bulk data through short-lived buffers.
//!
//! A bulk tunnel reads into 64-256 KiB buffers that live until h2 has written them out. With
//! glibc's defaults, buffers above the (dynamic) mmap threshold are mapped and unmapped per
//! allocation, and freed heap tops above the trim threshold are handed back to the kernel at
//! once; either way the next buffer's pages fault in again and are zeroed by the kernel, which
//! cost about 8% of ztunnel's CPU in a throughput benchmark. Fixed thresholds keep such buffers
//! in the heap and let a few MiB of freed memory stay mapped for reuse; idle memory is unchanged
//! (nothing is retained before traffic allocates it).

/// Allocations below this come from the heap, not from their own `mmap`.
const MMAP_THRESHOLD: i32 = 1024 * 1024;
/// Free memory at the top of a heap is returned to the kernel only above this.
const TRIM_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Applies the thresholds; call once, first thing in `main`. Failure only costs performance.
pub fn tune() {
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists, so no allocation races with the change.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
