//! Times gemm's f32 product `[m, k] @ [k, n]` on one thread, the kernel burn's CPU backend runs in
//! the tab and natively: in cache (one weight, products back to back) and streaming (distinct
//! weights, 200 MB in all, as decoding reads a model's). `main.rs` prints it natively, `run.cjs`
//! from the wasm export [`seconds`].

/// The shapes measured: SmolLM2-135M's MLP at a training step's 512 rows, then decoding's 8, 4, 1.
pub const SHAPES: [(usize, usize, usize); 4] = [(512, 576, 1536), (8, 576, 1536), (4, 576, 1536), (1, 576, 1536)];

/// Seconds for `products` products of `[m, k] @ [k, n]`, `streaming` over distinct weights or not,
/// timed by `now` (seconds).
pub fn time_products(m: usize, k: usize, n: usize, products: usize, streaming: bool, now: impl Fn() -> f64) -> f64 {
    let weights = if streaming { ((200usize << 20) / (k * n * 4)).max(1) } else { 1 };
    let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let ws: Vec<Vec<f32>> = (0..weights).map(|j| (0..k * n).map(|i| ((i + j) % 5) as f32 * 0.1).collect()).collect();
    let mut out = vec![0f32; m * n];
    let mut product = |w: &[f32]| {
        // SAFETY: every pointer covers its matrix: x `[m, k]`, w `[k, n]`, out `[m, n]`, all row-major.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    };
    for w in &ws {
        product(w); // warm-up: each weight touched once
    }
    let start = now();
    for i in 0..products {
        product(&ws[i % weights]);
    }
    let seconds = now() - start;
    std::hint::black_box(&out);
    seconds
}

/// The figure printed for one measurement: GFLOP/s, and GB/s of weights read.
pub fn line(side: &str, (m, k, n): (usize, usize, usize), products: usize, streaming: bool, seconds: f64) -> String {
    let gflops = 2.0 * (m * k * n * products) as f64 / seconds / 1e9;
    let gbs = 4.0 * (k * n * products) as f64 / seconds / 1e9;
    let how = if streaming { "streaming" } else { "in cache " };
    format!("{side:<22} {how} [{m:>3}, {k}] @ [{k}, {n}]: {gflops:6.1} GFLOP/s {gbs:6.1} GB/s of weights")
}

/// Products per measurement: about 2 GFLOP of work.
pub fn products((m, k, n): (usize, usize, usize)) -> usize {
    (2_000_000_000 / (2 * m * k * n)).max(1)
}

#[cfg(target_family = "wasm")]
mod wasm {
    unsafe extern "C" {
        fn now_ms() -> f64;
    }

    /// Seconds for the `shape`-th of [`super::SHAPES`], for `run.cjs`.
    #[unsafe(no_mangle)]
    pub extern "C" fn seconds(shape: usize, streaming: bool) -> f64 {
        let (m, k, n) = super::SHAPES[shape];
        // SAFETY: `now_ms` is `performance.now`, given by run.cjs.
        super::time_products(m, k, n, super::products((m, k, n)), streaming, || unsafe { now_ms() } / 1e3)
    }
}
