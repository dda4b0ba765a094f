//! Kernels launched on a GPU backend while `tinyrlhf bench` measures it (`tinyrlhf_model::launches`
//! counts them): its figures are differences of [`launched`]. On the CPU backend, or in a binary
//! without a GPU backend, every count is `None`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tinyrlhf_model::launches;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// How many of the most launched kernels [`print_names`] prints; 0 keeps no names.
static NAMES_SHOWN: AtomicUsize = AtomicUsize::new(0);

/// Counts launches from now on (`true`, a GPU backend) or stops reporting them (`false`).
pub fn count(on: bool) {
    COUNTING.store(on && launches::launched().is_some(), Ordering::Relaxed);
}

/// Kernels launched so far, while counting; `None` otherwise.
pub fn launched() -> Option<u64> {
    if !COUNTING.load(Ordering::Relaxed) {
        return None;
    }
    launches::launched()
}

/// Keeps each launch's kernel name from now on, for [`print_names`] to print the `shown` most
/// launched (0: none kept).
pub fn keep_names(shown: usize) {
    NAMES_SHOWN.store(shown, Ordering::Relaxed);
    launches::keep_names(shown > 0);
}

/// Forgets the names kept so far (what ran before the launches a figure counts).
pub fn forget_names() {
    launches::take_names();
}

/// Prints, on standard error, the kernels launched since [`forget_names`] by how often, most first
/// (the `shown` of [`keep_names`]), and forgets them.
pub fn print_names(what: &str) {
    let shown = NAMES_SHOWN.load(Ordering::Relaxed);
    let by_count = launches::take_names();
    if shown == 0 || by_count.is_empty() {
        return;
    }
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
