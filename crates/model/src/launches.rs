//! Kernels launched on cubecl's GPU runtimes, counted by cubecl's launch observer: on a GPU each
//! launch costs a dispatch (tens of microseconds on Vulkan, Metal or a browser's WebGPU), so for a
//! small model their number decides the speed. A software adapter (lavapipe, SwiftShader) launches
//! exactly what a real GPU would, so the counts hold on any machine. The CLI's `bench` and the
//! tab's sampling read them; a figure is a difference of [`launched`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static KEEP_NAMES: AtomicBool = AtomicBool::new(false);
static NAMES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Kernels launched so far in this process (from the first call on); `None` in a build without a
/// GPU runtime.
pub fn launched() -> Option<u64> {
    #[cfg(feature = "cube")]
    {
        observed::install();
        Some(observed::COUNT.load(std::sync::atomic::Ordering::Relaxed))
    }
    #[cfg(not(feature = "cube"))]
    None
}

/// Kernels launched since `before` (a [`launched`] value); `None` in a build without a GPU runtime.
pub fn since(before: Option<u64>) -> Option<u64> {
    Some(launched()? - before?)
}

/// Keeps each launch's kernel name from now on (`true`), for [`take_names`].
pub fn keep_names(on: bool) {
    KEEP_NAMES.store(on, Ordering::Relaxed);
    #[cfg(feature = "cube")]
    observed::install();
}

/// The kernels launched since the last call, by how often, most first; forgets them.
pub fn take_names() -> Vec<(u64, &'static str)> {
    let names = std::mem::take(&mut *NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let mut by_count: Vec<(u64, &str)> = names.into_iter().map(|(name, n)| (n, name)).collect();
    by_count.sort_by(|a, b| b.cmp(a));
    by_count
}

#[cfg(feature = "cube")]
mod observed {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use burn_cubecl::cubecl::logging::{LaunchObservation, LaunchObserver};

    pub static COUNT: AtomicU64 = AtomicU64::new(0);

    struct Counter;

    impl LaunchObserver for Counter {
        fn launched(&self, kernel: &'static str) {
            COUNT.fetch_add(1, Ordering::Relaxed);
            if super::KEEP_NAMES.load(Ordering::Relaxed) {
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
