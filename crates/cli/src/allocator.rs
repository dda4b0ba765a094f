//! The CLI's memory allocator: mimalloc, told to keep what is freed.
//!
//! A training step frees and takes again the same few hundred MB of buffers (logits, activations,
//! gradients) every step. glibc's allocator maps each buffer over 32 MB afresh and unmaps it at
//! its free; mimalloc purges freed memory after 10 ms. Either way the next step faults every 4 KiB
//! page in again and the kernel zeroes it: a quarter of a 135 M training step's time on an AMD
//! EPYC (2 cores; `perf record` in docs/benchmarks.md). Kept, a step went from 59-69 to 84-95
//! tokens/s there; the process's peak memory rose from 2.7 to 3.1 GB.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (mimalloc.h): libmimalloc-sys names no
/// constant for it. Pinned with the crate in the workspace.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory stays with the process to be used again (purge delay -1: never purge).
pub(crate) fn keep_freed_memory() {
    // SAFETY: mi_option_set stores one option's value (mimalloc reads it at its next purge); it
    // touches no memory the program holds, and mimalloc is the process's allocator (above).
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
    }
}
