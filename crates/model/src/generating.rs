//! Whether this thread is generating: the one thing that lets a prompt's prefill take decoding's
//! integer products (`packed.rs`) while training and scoring keep the widened product.

thread_local! {
    static GENERATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While one lives, this thread is generating (`sample::generate`): its products of a weight laid
/// out in lanes (Q4_0 and Q8_0 on AVX2 and AVX-512, `packed/cpu.rs`) take the integer kernels at any
/// number of rows, a prompt's prefill too, where widened tiles of f32 took twice as long
/// (docs/benchmarks.md). Only there: training's product and the scores measured beside it keep the
/// widened product, so that a reference and a policy are the same function. A flag of the thread,
/// since a generation is polled on one (the CLI's `block_on`, a page's worker).
pub struct Generating {
    was: bool,
}

impl Generating {
    pub fn start() -> Self {
        Self { was: GENERATING.replace(true) }
    }
}

impl Drop for Generating {
    fn drop(&mut self) {
        GENERATING.set(self.was);
    }
}

/// Whether a [`Generating`] lives on this thread.
pub(crate) fn now() -> bool {
    GENERATING.get()
}
