//! rayon's other threads kept awake while a CPU decodes, as llama.cpp keeps its own.
//!
//! A decoded token is about a hundred products split over the threads, with a layer's serial work
//! (norms, rotations, attention of one answer) between them. Left alone, a rayon thread that finds
//! nothing to do spins briefly, then sleeps; the gaps between a token's products are long enough
//! for it to fall asleep and short enough that waking it (a futex, then the kernel's scheduler:
//! tens of microseconds in a virtual machine) is a real part of the next product. While a
//! [`KeepAwake`] lives, each other thread of the pool runs a job that looks for rayon's work and
//! yields the core when there is none (staying runnable, so nothing has to wake it), so each split
//! is taken at once; dropping it lets them go.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// While it lives, the current rayon pool's other threads spin for work instead of sleeping.
pub(crate) struct KeepAwake {
    done: Option<Arc<AtomicBool>>,
    /// Threads spinning for this guard now (what the tests watch).
    #[cfg_attr(not(test), allow(dead_code))]
    spinning: Arc<AtomicUsize>,
}

impl KeepAwake {
    /// Keeps the other threads of the current pool awake, where there are any; `on` false (a GPU
    /// decoding, whose products are launches) keeps nothing.
    pub(crate) fn new(on: bool) -> Self {
        let (caller, spinning) = (rayon::current_thread_index(), Arc::new(AtomicUsize::new(0)));
        if !on || rayon::current_num_threads() < 2 || caller.is_none() {
            // Outside a pool, work is injected from a thread that waits for it: nothing to gain.
            return Self { done: None, spinning };
        }
        let done = Arc::new(AtomicBool::new(false));
        let (flag, count) = (Arc::clone(&done), Arc::clone(&spinning));
        rayon::spawn_broadcast(move |context| {
            // The caller's own copy runs when it waits inside a join: it must not spin there.
            if Some(context.index()) == caller {
                return;
            }
            count.fetch_add(1, Ordering::AcqRel);
            while !flag.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    // Runnable, never asleep, yet giving the core to any other process's thread
                    // that waits for it: several commands at once on few cores (a test suite)
                    // must not lose their cores to spinning.
                    std::thread::yield_now();
                }
            }
            count.fetch_sub(1, Ordering::AcqRel);
        });
        Self { done: Some(done), spinning }
    }
}

impl Drop for KeepAwake {
    fn drop(&mut self) {
        if let Some(done) = &self.done {
            done.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::*;

    /// Waits (up to a minute: a liveness check, not a timing) until `count` reads `want`.
    fn until(count: &AtomicUsize, want: usize) -> bool {
        for _ in 0..60_000 {
            if count.load(Ordering::Acquire) == want {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn the_other_threads_spin_while_the_guard_lives_take_its_work_and_are_released_when_it_drops() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            let awake = KeepAwake::new(true);
            let spinning = Arc::clone(&awake.spinning);
            assert!(until(&spinning, 2), "the two other threads spin");
            let sum: u64 = (0..100_000u64).into_par_iter().map(|i| i * 2).sum();
            assert_eq!(sum, 99_999 * 100_000);
            drop(awake);
            assert!(until(&spinning, 0), "released");
        });
        assert_eq!(KeepAwake::new(true).spinning.load(Ordering::Acquire), 0, "outside a pool nothing spins");
        pool.install(|| assert!(KeepAwake::new(false).done.is_none(), "off keeps nothing"));
    }
}
