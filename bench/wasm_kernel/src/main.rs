//! gemm's kernel on one native thread (the dispatch picks AVX-512 where the CPU has it).

use std::time::Instant;

use tinyrlhf_wasm_kernel::{SHAPES, line, products, time_products};

fn main() {
    let start = Instant::now();
    let now = || start.elapsed().as_secs_f64();
    for streaming in [false, true] {
        for shape in SHAPES {
            let (m, k, n) = shape;
            let seconds = (0..3).map(|_| time_products(m, k, n, products(shape), streaming, now)).fold(f64::MAX, f64::min);
            println!("{}", line("native, 1 thread", shape, products(shape), streaming, seconds));
        }
    }
}
