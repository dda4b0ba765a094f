//! Kernels launched on a GPU backend, counted by cubecl's launch observer: on a GPU each launch
//! costs a dispatch (tens of microseconds on Vulkan or Metal), so for a small model their number,
//! like the number of reads back, decides the speed. A software adapter (lavapipe, SwiftShader)
//! launches exactly what a real GPU would, so the counts hold on any machine.
//!
//! `tinyrlhf bench` counts while it measures a GPU backend; its figures are differences of
//! [`launched`]. On the CPU backend, or in a binary without a GPU backend, every count is `None`.

use std::sync::atomic::{AtomicBool, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);

/// Counts launches from now on (`true`, a GPU backend) or stops reporting them (`false`).
pub fn count(on: bool) {
    #[cfg(any(feature = "wgpu-without-fusion", feature = "cuda"))]
    observed::install();
    COUNTING.store(on && cfg!(any(feature = "wgpu-without-fusion", feature = "cuda")), Ordering::Relaxed);
}

/// Kernels launched so far, while counting; `None` otherwise.
pub fn launched() -> Option<u64> {
    if !COUNTING.load(Ordering::Relaxed) {
        return None;
    }
    #[cfg(any(feature = "wgpu-without-fusion", feature = "cuda"))]
    return Some(observed::COUNT.load(Ordering::Relaxed));
    #[cfg(not(any(feature = "wgpu-without-fusion", feature = "cuda")))]
    None
}

/// Kernels launched since `before` (a [`launched`] value).
pub fn since(before: Option<u64>) -> Option<u64> {
    Some(launched()? - before?)
}

#[cfg(any(feature = "wgpu-without-fusion", feature = "cuda"))]
mod observed {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use burn::cubecl::logging::{LaunchObservation, LaunchObserver};

    pub static COUNT: AtomicU64 = AtomicU64::new(0);

    struct Counter;

    impl LaunchObserver for Counter {
        fn launched(&self, _kernel: &'static str) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn install() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // Never dropped: the observer stays installed for the rest of the process.
        ONCE.call_once(|| std::mem::forget(LaunchObservation::new(Arc::new(Counter))));
    }
}
