//! The module's allocator: the system's (dlmalloc on wasm32), remembering an allocation it could not
//! make.
//!
//! A tab's module grows its memory up to 4 GiB; past that, or where the browser will not grow it, an
//! allocation fails and Rust aborts: a wasm `unreachable`, the same trap as a bug, with no message
//! (stable Rust has no hook for allocation failures). The size of the refused allocation, read by
//! the worker after the trap, tells the person it was memory, how much more was asked for, and
//! which setting to lower.

use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_bindgen::prelude::*;

/// Bytes of the last allocation the memory could not hold; 0 while none has failed.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// Only in the module: a native build of this crate (clippy, docs) keeps the host's allocator.
#[cfg(target_family = "wasm")]
#[global_allocator]
static ALLOCATOR: refusals::RememberingRefusals = refusals::RememberingRefusals;

#[cfg(target_family = "wasm")]
mod refusals {
    use super::REFUSED;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::Ordering;

    /// Forwards every call to [`System`] unchanged and stores the size of one that returns null.
    pub struct RememberingRefusals;

    fn remembered(ptr: *mut u8, size: usize) -> *mut u8 {
        if ptr.is_null() {
            REFUSED.store(size, Ordering::Relaxed);
        }
        ptr
    }

    // SAFETY: each method calls the same method of `System` with the caller's arguments, under the
    // caller's guarantees, and returns its result; the only addition is an atomic store of a size.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for RememberingRefusals {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            remembered(unsafe { System.alloc(layout) }, layout.size())
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            remembered(unsafe { System.alloc_zeroed(layout) }, layout.size())
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            remembered(unsafe { System.realloc(ptr, layout, new_size) }, new_size)
        }
    }
}

/// Bytes of the allocation the module's memory could not hold, 0 if none failed. Read after a
/// trap: it allocates nothing, so it answers even when the memory is full.
#[wasm_bindgen(js_name = refusedAllocation)]
pub fn refused_allocation() -> f64 {
    REFUSED.load(Ordering::Relaxed) as f64
}
