//! Kernels launched on a GPU backend, counted by cubecl's launch observer: on a GPU each launch
//! costs a dispatch (tens of microseconds on Vulkan or Metal), so for a small model their number,
//! like the number of reads back, decides the speed. A software adapter (lavapipe, SwiftShader)
//! launches exactly what a real GPU would, so the counts hold on any machine.
//!
//! `tinyrlhf bench` counts while it measures a GPU backend; its figures are differences of
//! [`launched`]. On the CPU backend, or in a binary without a GPU backend, every count is `None`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
/// How many of the most launched kernels [`print_names`] prints; 0 keeps no names.
static NAMES_SHOWN: AtomicUsize = AtomicUsize::new(0);
static NAMES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

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

/// Keeps each launch's kernel name from now on, for [`print_names`] to print the `shown` most
/// launched (0: none kept).
pub fn keep_names(shown: usize) {
    NAMES_SHOWN.store(shown, Ordering::Relaxed);
}

/// Forgets the names kept so far (what ran before the launches a figure counts).
pub fn forget_names() {
    NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
}

/// Prints, on standard error, the kernels launched since [`forget_names`] by how often, most first
/// (the `shown` of [`keep_names`]), and forgets them.
pub fn print_names(what: &str) {
    let shown = NAMES_SHOWN.load(Ordering::Relaxed);
    let names = std::mem::take(&mut *NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    if shown == 0 || names.is_empty() {
        return;
    }
    let mut by_count: Vec<(u64, &str)> = names.into_iter().map(|(name, n)| (n, name)).collect();
    by_count.sort_by(|a, b| b.cmp(a));
    eprintln!("kernels of the {what}, most launched first (of {}):", by_count.iter().map(|(n, _)| n).sum::<u64>());
    for (n, name) in by_count.into_iter().take(shown) {
        // Generic kernels' names run to hundreds of characters; their head says which op it is.
        eprintln!("{n:>8}  {}", name.chars().take(140).collect::<String>());
    }
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
        fn launched(&self, kernel: &'static str) {
            COUNT.fetch_add(1, Ordering::Relaxed);
            if super::NAMES_SHOWN.load(Ordering::Relaxed) > 0 {
                *super::NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(kernel).or_insert(0) += 1;
            }
        }
    }

    pub fn install() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // Never dropped: the observer stays installed for the rest of the process.
        ONCE.call_once(|| std::mem::forget(LaunchObservation::new(Arc::new(Counter))));
    }
}
