//! Two independent pieces of work at once where the platform has threads.
//!
//! Natively the CPU backend's kernels use both cores only for large tensors; a PPO update's policy
//! and value passes are each too small to fill them, and they share no weights, so running the two
//! side by side is the cheapest way to use the second core. In the browser a wasm instance has one
//! thread (threads need a nightly toolchain), so there the two run one after the other. The
//! results are the same either way: neither piece reads what the other writes.

/// `(a(), b())`, on two threads natively, in turn in wasm.
pub(crate) fn both<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    #[cfg(not(target_family = "wasm"))]
    {
        std::thread::scope(|scope| {
            let second = scope.spawn(b);
            let first = a();
            (first, second.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        })
    }
    #[cfg(target_family = "wasm")]
    {
        (a(), b())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_results_come_back_in_order() {
        let (a, b) = both(|| (0..1000u64).sum::<u64>(), || "value");
        assert_eq!((a, b), (499_500, "value"));
    }
}
