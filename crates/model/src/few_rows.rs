//! Decoding's products — a few rows by a large weight — cut into blocks that the CPU's threads
//! compute at once.
//!
//! Decoding is bound by memory: each token reads every weight once. burn's CPU backend computes a
//! product of few rows on one thread (below its size threshold it asks `gemm` for no parallelism,
//! and `gemm`'s matrix-vector path for one row has none), and reading a `[d_in, d_out]` weight as
//! `x @ W` streams it at about 22 GB/s on one core of this project's machine, where a copy on both
//! cores moves 40. Cut along `d_in` into contiguous blocks of rows of `W`, each thread streams its
//! own region and the partial products are summed: batch-1 sampling of a 135 M model went from 42-44
//! to 52-55 tokens/s. A tied head (`E @ x^T`, `E` `[vocab, d]`) is cut along the vocabulary instead.
//!
//! Products that read the same rows (a layer's query, key and value projections; its gate and up
//! projections) are split together ([`by_depth_together`]): the threads wake once for all of them,
//! and narrow weights (SmolLM2's 576 x 192 keys and values) are split with the wide ones instead of
//! running whole on one thread.
//!
//! The blocks are fixed ([`BLOCKS`]), not the number of threads, so a product gives the same bits on
//! every machine that splits. On a GPU the blocks would be more launches for the same work and the
//! tab's worker has one thread, so splitting is off unless the edge that picks the CPU backend turns
//! it on ([`split_few_row_products`]).

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Tensor;
use rayon::prelude::*;

/// Products of at most this many rows count as few (decoding at a batch of up to 16).
pub(crate) const FEW_ROWS: usize = 16;

/// How many blocks a split product is cut into: enough for the cores that saturate a machine's
/// memory, few enough that the partial sums (`[rows, d_out]` each) cost nothing.
const BLOCKS: usize = 4;

/// Every block but the last is a multiple of this many rows or columns (one AVX-512 vector of f32).
const ALIGN: usize = 16;

/// Only weights at least this wide on both sides are split. Smaller ones belong to small models,
/// which decode a layer in microseconds: between their few splits rayon's threads fall asleep, and
/// waking them (tens of µs here) costs more than the split saves (the 1 M-parameter `tiny` preset
/// sampled at 2000-3500 tokens/s split, 6700 whole). SmolLM2's 576-wide products come close enough
/// to keep the threads awake; its 576 x 192 key and value projections are left whole.
const MIN_SIDE: usize = 512;

static SPLIT: AtomicBool = AtomicBool::new(false);

/// Whether decoding's products are split over the CPU's threads (off by default; see the module
/// header). The CLI turns it on for `--backend cpu`.
pub fn split_few_row_products(on: bool) {
    SPLIT.store(on, Ordering::Relaxed);
}

/// Whether a product of `x` `[rows, _]` by a `weight`-shaped matrix (or by weights side by side,
/// `[d_in, their d_out summed]`) is split: splitting is on, the rows are few, the weight large, and
/// nothing is differentiated (autodiff records one graph).
pub(crate) fn splits(x: &Tensor<2>, weight: [usize; 2]) -> bool {
    SPLIT.load(Ordering::Relaxed) && x.dims()[0] <= FEW_ROWS && weight.iter().all(|&side| side >= MIN_SIDE) && !x.device().is_autodiff()
}

/// `x @ w` for each `w` of `weights` (`x` `[n, d_in]`, each `w` `[d_in, d_out]` -> `[n, d_out]`),
/// each as the sum of [`BLOCKS`] products over contiguous blocks of `d_in`, summed in block order;
/// the blocks of every weight are computed at once on rayon's threads.
pub(crate) fn by_depth_together(x: Tensor<2>, weights: Vec<Tensor<2>>) -> Vec<Tensor<2>> {
    let work: Vec<(&Tensor<2>, usize, usize)> =
        weights.iter().flat_map(|w| blocks(w.dims()[0]).map(move |(start, len)| (w, start, len))).collect();
    let partials: Vec<Tensor<2>> =
        work.into_par_iter().map(|(w, start, len)| x.clone().narrow(1, start, len).matmul(w.clone().narrow(0, start, len))).collect();
    let mut partials = partials.into_iter(); // in weight order, then block order
    weights
        .iter()
        .map(|w| partials.by_ref().take(blocks(w.dims()[0]).count()).reduce(|sum, partial| sum + partial).expect("d_in > 0 gives a block"))
        .collect()
}

/// `m @ x_t`, `m` `[rows, d]`, `x_t` `[d, n]` -> `[rows, n]`, as [`BLOCKS`] contiguous blocks of
/// `m`'s rows stacked: each output is computed as when the product is whole.
pub(crate) fn by_rows(m: Tensor<2>, x_t: Tensor<2>) -> Tensor<2> {
    let rows = m.dims()[0];
    Tensor::cat(on_threads(rows, |start, len| m.clone().narrow(0, start, len).matmul(x_t.clone())), 0)
}

/// `(start, len)` of the [`BLOCKS`] aligned blocks of `0..len`, in order.
fn blocks(len: usize) -> impl Iterator<Item = (usize, usize)> {
    let size = len.div_ceil(BLOCKS).next_multiple_of(ALIGN);
    (0..len).step_by(size).map(move |start| (start, size.min(len - start)))
}

/// `block(start, len)` for each of [`blocks`]`(len)`, computed on rayon's threads, in order.
fn on_threads(len: usize, block: impl Fn(usize, usize) -> Tensor<2> + Sync) -> Vec<Tensor<2>> {
    let blocks: Vec<(usize, usize)> = blocks(len).collect();
    blocks.into_par_iter().map(|(start, len)| block(start, len)).collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;

    fn random(shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32 tensor")
    }

    fn by_depth(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        by_depth_together(x, vec![w]).pop().expect("one weight in, one product out")
    }

    #[test]
    fn depth_blocks_sum_to_the_whole_product() {
        let device = Device::flex();
        let (x, w) = (random([3, 200], &device), random([200, 40], &device));
        let whole = values(x.clone().matmul(w.clone()));
        let split = values(by_depth(x, w));
        assert_eq!(whole.len(), split.len());
        for (a, b) in whole.iter().zip(&split) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn weights_split_together_give_each_weight_split_alone_bit_for_bit() {
        let device = Device::flex();
        let x = random([2, 576], &device);
        let weights = vec![random([576, 64], &device), random([576, 24], &device), random([576, 24], &device)];
        let alone: Vec<Vec<f32>> = weights.iter().map(|w| values(by_depth(x.clone(), w.clone()))).collect();
        let together: Vec<Vec<f32>> = by_depth_together(x, weights).into_iter().map(values).collect();
        assert_eq!(alone, together);
    }

    #[test]
    fn row_blocks_give_the_whole_product_bit_for_bit() {
        let device = Device::flex();
        let (m, x_t) = (random([1000, 48], &device), random([48, 2], &device));
        assert_eq!(values(m.clone().matmul(x_t.clone())), values(by_rows(m, x_t)));
    }

    #[test]
    fn split_products_are_the_same_bits_on_one_thread_and_on_several() {
        let device = Device::flex();
        let (x, w) = (random([1, 576], &device), random([576, 96], &device));
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
            pool.install(|| values(by_depth(x.clone(), w.clone())))
        };
        assert_eq!(on(1), on(3));
    }
}
