//! A decoded token's choice as one operation a step, on a GPU one kernel: `choose.rs`' greedy pick or its sampling
//! (temperature, the top-k and top-p cuts found by bisection, the inverse CDF), the chosen token's
//! log-prob, the non-finite check, and the stop at EOS, one workgroup a row. Taken as burn's ops the
//! same step was about 25 launches (log-softmax, cumulative sum, comparisons, masks and the
//! concatenation of what is read back); with a cut, every bisection step was several more.
//!
//! On the CPU (`decode_sampler_cpu.rs`) the same step is a few vectorised passes a row, where
//! `choose.rs` as burn's ops is about ten with a fresh tensor each. `choose.rs` stays the
//! reference: a test checks that both choose what it chooses.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};

use crate::decode_sampler_cpu::choose_rows;
use crate::sample::SamplingConfig;

/// What one step of choosing needs besides the tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChooseStep {
    /// Which column of the draws this step reads.
    pub step: usize,
    /// 0: greedy.
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub pad: u32,
    /// `None` when the EOS id lies outside the vocabulary (it is never drawn then).
    pub eos: Option<u32>,
}

impl ChooseStep {
    pub(crate) fn new(step: usize, config: &SamplingConfig, pad: u32, eos: u32, vocab: usize) -> Self {
        let (temperature, top_k, top_p) = (config.temperature, config.top_k, config.top_p);
        Self { step, temperature, top_k, top_p, pad, eos: ((eos as usize) < vocab).then_some(eos) }
    }
}

/// One step's choice for every row: `logits` `[n, vocab]`, `draws` `[n, steps]`, `stopped`
/// `[n, 1]` (1 where the row reached EOS). Returns `[n, 3]` (the id, 1 if a logit was not finite,
/// the id's log-prob: what `sample.rs` reads back) and the rows stopped after this step.
pub(crate) fn choose_decoded(logits: Tensor<2>, draws: Tensor<2>, stopped: Tensor<2>, step: ChooseStep) -> (Tensor<2>, Tensor<2>) {
    let (chosen, stopped) =
        <Dispatch as DecodeSampler>::choose_decoded(logits.into_dispatch(), draws.into_dispatch(), stopped.into_dispatch(), step);
    (Tensor::from_dispatch(chosen), Tensor::from_dispatch(stopped))
}

/// A decoded token's choice (see [`choose_decoded`]).
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait DecodeSampler: Backend {
    #[fusion(meta = chosen_meta)]
    fn choose_decoded(
        logits: FloatTensor<Self>,
        draws: FloatTensor<Self>,
        stopped: FloatTensor<Self>,
        step: ChooseStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

#[cfg(all(feature = "cube", feature = "fusion"))]
type Spec = burn::backend::fusion::custom::TensorSpec;

#[cfg(all(feature = "cube", feature = "fusion"))]
fn chosen_meta(_logits: &Spec, _draws: &Spec, stopped: &Spec, _step: &ChooseStep) -> (Spec, Spec) {
    let mut chosen = stopped.clone();
    chosen.shape = [stopped.shape[0], 3].into();
    (chosen, stopped.clone())
}

impl DecodeSampler for Flex {
    fn choose_decoded(
        logits: FloatTensor<Self>,
        draws: FloatTensor<Self>,
        stopped: FloatTensor<Self>,
        step: ChooseStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let device = logits.device();
        let ([n, vocab], steps) = ([logits.shape()[0], logits.shape()[1]], draws.shape()[1]);
        let read = |t: FloatTensor<Self>| -> Vec<f32> { t.into_data().try_to_vec::<f32>().expect("f32 values") };
        let (draws, mut stopped) = (read(draws), read(stopped));
        let draws: Vec<f32> = (0..n).map(|row| draws[row * steps + step.step]).collect();
        let logits = logits.into_data();
        let logits = logits.as_slice::<f32>().expect("f32 logits");
        let mut chosen = vec![0.0; n * 3];
        for (row, (id, bad, logprob)) in choose_rows(logits, vocab, &draws, &step).into_iter().enumerate() {
            let id = if stopped[row] > 0.5 { step.pad } else { id };
            chosen[row * 3..row * 3 + 3].copy_from_slice(&[id as f32, bad, logprob]);
            if step.eos == Some(id) {
                stopped[row] = 1.0;
            }
        }
        let tensor = |values: Vec<f32>, shape: [usize; 2]| Self::float_from_data(TensorData::new(values, shape), &device);
        (tensor(chosen, [n, 3]), tensor(stopped, [n, 1]))
    }
}

impl<B: Backend + DecodeSampler, C: CheckpointStrategy> DecodeSampler for Autodiff<B, C> {
    // A choice has no gradient: the inner backend's, on the values alone (sampling from a model that
    // is training, on the CPU).
    fn choose_decoded(
        logits: FloatTensor<Self>,
        draws: FloatTensor<Self>,
        stopped: FloatTensor<Self>,
        step: ChooseStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (chosen, stopped) = B::choose_decoded(Self::inner(logits), Self::inner(draws), Self::inner(stopped), step);
        (Self::from_inner(chosen), Self::from_inner(stopped))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::choose::choose_tokens;
    use crate::sample::uniform;

    /// On 64 rows of random logits and draws, greedy and every cut, a vocabulary under one of the
    /// CPU's blocks and one of many blocks and a part: the CPU's choice picks `choose.rs`' tokens
    /// with its log-probs, pads stopped rows and stops rows at EOS.
    #[test]
    fn the_one_step_choice_picks_what_choose_tokens_picks() {
        let (device, n) = (Device::flex(), 64);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let settings = [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (1.0, 10, 0.9), (1.0, 40, 0.95)];
        for (vocab, (temperature, top_k, top_p)) in [50, 1000].into_iter().flat_map(|vocab| settings.map(|s| (vocab, s))) {
            let config = SamplingConfig { temperature, top_k, top_p, ..Default::default() };
            let logits = Tensor::<2>::random([n, vocab], Distribution::Normal(0.0, 2.0), &device);
            let draws = Tensor::<2>::from_data(TensorData::new((0..n * 2).map(|_| uniform(&mut rng)).collect::<Vec<_>>(), [n, 2]), &device);
            let (tokens, logprobs) = choose_tokens(logits.clone(), draws.clone().narrow(1, 1, 1), &config);
            let (tokens, logprobs) =
                (tokens.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), logprobs.into_data().try_to_vec::<f32>().unwrap());
            let stopped: Vec<f32> = (0..n).map(|row| f32::from(u8::from(row % 7 == 0))).collect();
            let stopped = Tensor::<2>::from_data(TensorData::new(stopped, [n, 1]), &device);
            let eos = tokens[1] as u32;
            let step = ChooseStep::new(1, &config, 3, eos, vocab);
            let (chosen, stopped_after) = choose_decoded(logits, draws, stopped, step);
            let (chosen, stopped_after) =
                (chosen.into_data().try_to_vec::<f32>().unwrap(), stopped_after.into_data().try_to_vec::<f32>().unwrap());
            for row in 0..n {
                let expected = if row % 7 == 0 { 3 } else { tokens[row] };
                let what = format!("vocab {vocab}, temperature {temperature}, top-k {top_k}, top-p {top_p}, row {row}");
                assert_eq!(chosen[row * 3] as i64, expected, "{what}");
                assert_eq!(chosen[row * 3 + 1], 0.0, "{what}");
                assert!((chosen[row * 3 + 2] - logprobs[row]).abs() < 1e-5, "{what}");
                assert_eq!(stopped_after[row] > 0.5, row % 7 == 0 || expected as u32 == eos, "{what}");
            }
        }
    }
}
