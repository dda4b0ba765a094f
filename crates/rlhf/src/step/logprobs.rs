//! Log-probabilities of chosen tokens (and each position's entropy) without holding the logits of
//! every position at once: `[batch, seq, vocab]` f32 is 311 MB for 4 DPO pairs of 64 tokens on
//! Qwen's 151,936-token vocabulary, and autodiff would keep it, and the log-softmax, until the
//! backward pass.
//!
//! When the LM head is frozen (LoRA runs, sampling, the reference), the positions go through the
//! head in chunks of a few megabytes, none tracked:
//!
//! ```text
//! log p(t | h) = h · w_t − lse(h W)        d/dh = w_t − Σ_v p_v w_v
//! ```
//!
//! The first term is differentiable through the chosen rows `w_t` (`[n, d]`); the log-sum-exp is
//! a constant, and its gradient enters as `(h − stop(h)) · E_p[w]`, which is 0 in value and
//! carries `E_p[w]` (`[n, d]`) back. A head that trains (a full-weight run) needs the whole
//! logits' gradient for its own, and soft-capped logits are not a plain product: those take the
//! direct path, as before.

use burn::tensor::{Int, Tensor};
use tinyrlhf_model::{CausalLm, LmHead, has_row_kernels, log_sum_exp_rows, softmax_with_stats};

use crate::data::examples::LmBatch;
use crate::step::losses::{token_entropy, token_logprobs};

/// How many logits a chunk holds (16 MiB of f32): Qwen's vocabulary goes 110 positions at a time,
/// a small model's whole batch at once.
const CHUNK_LOGITS: usize = 1 << 22;

/// Log-probabilities of `targets` `[b, t]` after `hidden` `[b, t, d]` under `model`'s head with
/// its logits divided by `temperature`, `[b, t]`; with `entropy`, also each position's entropy
/// (not differentiated). Differentiable in `hidden` when it is tracked.
pub fn chosen_logprobs(
    model: &CausalLm,
    hidden: Tensor<3>,
    targets: Tensor<2, Int>,
    temperature: f64,
    entropy: bool,
) -> (Tensor<2>, Option<Tensor<2>>) {
    chosen_logprobs_by(model, hidden, targets, temperature, entropy, CHUNK_LOGITS)
}

/// Log-probabilities `[m]` of `batch`'s counted targets after its hidden states `[b, len, d]`: only
/// their positions go through the LM head.
pub fn trained_logprobs(model: &CausalLm, hidden: Tensor<3>, batch: &LmBatch) -> Tensor<1> {
    let [b, len, d] = hidden.dims();
    let m = batch.target_tokens;
    let rows = hidden.reshape([b * len, d]).select(0, batch.trained.clone()).reshape([1, m, d]);
    chosen_logprobs(model, rows, batch.targets.clone().reshape([1, m]), 1.0, false).0.reshape([m])
}

/// Mean next-token cross-entropy of `model` over `batch`'s counted targets (SFT's loss, PPO-ptx's
/// term), from the batch's hidden states `[b, len, d]`.
pub fn next_token_loss(model: &CausalLm, hidden: Tensor<3>, batch: &LmBatch) -> Tensor<1> {
    if batch.target_tokens == 0 {
        return hidden.sum() * 0.0;
    }
    trained_logprobs(model, hidden, batch).mean().neg()
}

/// [`chosen_logprobs`] with chunks of `chunk_logits` logits.
fn chosen_logprobs_by(
    model: &CausalLm,
    hidden: Tensor<3>,
    targets: Tensor<2, Int>,
    temperature: f64,
    entropy: bool,
    chunk_logits: usize,
) -> (Tensor<2>, Option<Tensor<2>>) {
    let Some(head) = model.head().filter(|head| !head.trains()) else {
        let logits = divided(model.logits(hidden), temperature); // [b, t, vocab]
        let entropy = entropy.then(|| token_entropy(logits.clone().detach()));
        return (token_logprobs(logits, targets), entropy);
    };
    let [b, t, d] = hidden.dims();
    let n = b * t;
    let flat = hidden.reshape([n, d]);
    let chosen = divided((flat.clone() * head.rows(targets.reshape([n]))).sum_dim(1).reshape([n]), temperature); // [n]
    let frozen = flat.clone().detach();
    let chunks = Chunks::of(&head, frozen, chunk_logits, temperature, flat.is_tracked(), entropy);
    let mut logprobs = chosen - chunks.log_sum_exp; // [n]
    if let Some(expected) = chunks.expected_rows {
        logprobs = logprobs - ((flat.clone() - flat.detach()) * expected).sum_dim(1).reshape([n]);
    }
    (logprobs.reshape([b, t]), chunks.entropy.map(|e| e.reshape([b, t])))
}

/// Rows of the head a vocabulary tile holds for `n` positions: as many as `chunk_logits` logits
/// allow (at least 16: a narrower product is not worth the call), and for a packed head never more
/// than its products widen at once. Unbounded, a few positions widened the whole head in one tile:
/// Qwen's 151,936 x 896 is 544 MB of f32, twice over while its pieces were joined, in the policy's
/// and the reference's scoring at once (a one-prompt GRPO iteration on a 0.5 B Q4_0 peaked at 2.7-3.3 GiB).
fn tile_rows(n: usize, chunk_logits: usize, head: &LmHead) -> usize {
    let rows = (chunk_logits / n.max(1)).max(16);
    match head {
        LmHead::Packed(packed) => rows.min(packed.widest_tile_rows().max(16)),
        _ => rows,
    }
}

/// `t / temperature`, or `t` itself at temperature 1 (a pass over every logit saved).
fn divided<const D: usize>(t: Tensor<D>, temperature: f64) -> Tensor<D> {
    if temperature == 1.0 { t } else { t / temperature }
}

/// Per position, from its logits taken a chunk at a time: the log-sum-exp `[n]`, and when asked,
/// `E_p[w] / temperature` `[n, d]` (the log-sum-exp's gradient) and the entropy `[n]`.
struct Chunks {
    log_sum_exp: Tensor<1>,
    expected_rows: Option<Tensor<2>>,
    entropy: Option<Tensor<1>>,
}

impl Chunks {
    fn of(head: &LmHead, hidden: Tensor<2>, chunk_logits: usize, temperature: f64, gradient: bool, entropy: bool) -> Self {
        let [n, _] = hidden.dims();
        // The head is a plain product here: dividing the hidden states divides the logits, at a
        // hundredth of the work.
        let hidden = divided(hidden, temperature);
        if matches!(head, LmHead::Packed(_)) || !has_row_kernels(&hidden.device()) {
            return Self::by_vocabulary_tiles(head, hidden, tile_rows(n, chunk_logits, head), temperature, gradient, entropy);
        }
        // The CPU's row kernels take a chunk of positions' whole rows of logits in one pass each.
        let rows = (chunk_logits / head.vocab_size().max(1)).max(1);
        let (mut lse, mut expected, mut entropies) = (vec![], vec![], vec![]);
        for start in (0..n).step_by(rows) {
            let len = rows.min(n - start);
            let logits = head.logits(hidden.clone().narrow(0, start, len)); // [len, vocab]
            if !gradient && !entropy {
                lse.push(log_sum_exp_rows(logits)); // [len]
                continue;
            }
            let (probs, chunk_lse, chunk_entropy) = softmax_with_stats(logits); // [len, vocab], [len], [len]
            lse.push(chunk_lse);
            if entropy {
                entropies.push(chunk_entropy);
            }
            if gradient {
                expected.push(divided(head.expected_rows(probs), temperature)); // [len, d]
            }
        }
        Self {
            log_sum_exp: Tensor::cat(lse, 0),
            expected_rows: gradient.then(|| Tensor::cat(expected, 0)),
            entropy: entropy.then(|| Tensor::cat(entropies, 0)),
        }
    }

    /// The same a tile of the vocabulary at a time for every position, in one pass over the head
    /// (each tile of a packed head widened once): a running maximum `m` and, scaled by `exp(-m)`,
    /// the sums of `exp(logit)`, of `exp(logit) w` (the expected rows) and of `exp(logit) logit`
    /// (the entropy), each rescaled when `m` grows. On a GPU a dense head goes this way too: its
    /// position chunks' `probs [27, vocab] @ W` (Qwen) is a product of 151,936-long sums over
    /// a few hundred outputs, which GPU matmuls tile poorly (docs/gpu.md: it ran the 0.5 B LoRA DPO
    /// step at half the packed head's pace).
    fn by_vocabulary_tiles(head: &LmHead, hidden: Tensor<2>, tile_rows: usize, temperature: f64, gradient: bool, entropy: bool) -> Self {
        let ([n, d], device) = (hidden.dims(), hidden.device());
        let vocab = head.vocab_size();
        let mut max = Tensor::<1>::full([n], f32::NEG_INFINITY, &device);
        let mut sum = Tensor::<1>::zeros([n], &device);
        let mut weighted_rows = gradient.then(|| Tensor::<2>::zeros([n, d], &device));
        let mut weighted_logits = entropy.then(|| Tensor::<1>::zeros([n], &device));
        for start in (0..vocab).step_by(tile_rows) {
            let len = tile_rows.min(vocab - start);
            let rows = head.rows_range(start, len, &device); // [len, d]
            let logits = hidden.clone().matmul(rows.clone().transpose()); // [n, len]
            let new_max = max.clone().max_pair(logits.clone().max_dim(1).reshape([n]));
            let rescale = (max - new_max.clone()).exp(); // [n]
            let exps = (logits.clone() - new_max.clone().unsqueeze_dim(1)).exp(); // [n, len]
            sum = sum * rescale.clone() + exps.clone().sum_dim(1).reshape([n]);
            weighted_logits = weighted_logits.map(|acc| acc * rescale.clone() + (exps.clone() * logits).sum_dim(1).reshape([n]));
            weighted_rows = weighted_rows.map(|acc| acc * rescale.unsqueeze_dim(1) + exps.matmul(rows)); // [n, d]
            max = new_max;
        }
        let log_sum_exp = max + sum.clone().log(); // [n]
        Self {
            expected_rows: weighted_rows.map(|acc| divided(acc / sum.clone().unsqueeze_dim(1), temperature)),
            // -Σ p log p with log p = logit - lse: lse - Σ p logit.
            entropy: weighted_logits.map(|acc| log_sum_exp.clone() - acc / sum),
            log_sum_exp,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::{Device, TensorData};
    use tinyrlhf_model::{GgmlType, GptConfig, LlamaConfig, ModelConfig, PackedWeight};

    use super::*;
    use crate::data::examples::Example;

    fn close(a: Tensor<2>, b: Tensor<2>, what: &str) {
        let (a, b): (Vec<f32>, Vec<f32>) = (a.into_data().try_to_vec().unwrap(), b.into_data().try_to_vec().unwrap());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{what}[{i}]: chunked {x}, whole {y}");
        }
    }

    fn check(model: CausalLm, name: &str) {
        let device = Device::flex().autodiff();
        let vocab = model.vocab_size() as i64;
        let (b, t) = (3, 5);
        let ids: Vec<i64> = (0..b * t).map(|i| (i * 7 + 3) as i64 % vocab).collect();
        let targets: Vec<i64> = (0..b * t).map(|i| (i * 5 + 1) as i64 % vocab).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [b, t]), &device);
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]).repeat_dim(0, b);
        // Frozen weights (as under LoRA), the hidden states tracked, as in a LoRA run's backward.
        let frozen = model.train().no_grad();
        // Tracked but not a leaf, as the hidden states of a LoRA run are.
        let leaf = frozen.forward(ids, positions, None).detach().require_grad();
        let hidden = || leaf.clone() * 1.0;
        let weights =
            Tensor::<2>::from_data(TensorData::new((0..b * t).map(|i| 1.0 + i as f32 / 7.0).collect::<Vec<_>>(), [b, t]), &device);
        for temperature in [1.0, 0.7] {
            // Four positions a chunk: four chunks, the last one short (a packed head: tiles of 80
            // of its 300 rows, the last one short).
            let (chunked, chunked_entropy) = chosen_logprobs_by(&frozen, hidden(), targets.clone(), temperature, true, 4 * 300);
            let logits = frozen.logits(hidden()) / temperature;
            let (whole, whole_entropy) = (token_logprobs(logits.clone(), targets.clone()), token_entropy(logits));
            close(chunked.clone(), whole.clone(), &format!("{name} log-probs at T={temperature}"));
            close(chunked_entropy.unwrap(), whole_entropy.detach(), &format!("{name} entropy at T={temperature}"));
            let grad_chunked = (chunked * weights.clone()).sum().backward();
            let grad_whole = (whole * weights.clone()).sum().backward();
            let (g1, g2) = (leaf.grad(&grad_chunked).unwrap(), leaf.grad(&grad_whole).unwrap());
            let [gb, gt, gd] = g1.dims();
            close(g1.reshape([gb * gt, gd]), g2.reshape([gb * gt, gd]), &format!("{name} gradient at T={temperature}"));
        }
    }

    #[test]
    fn chunked_log_probs_entropy_and_gradients_equal_the_whole_logits_path_for_tied_and_untied_heads() {
        let device = Device::flex();
        device.seed(3);
        check(ModelConfig::from(GptConfig::new(300, 16, 8, 1, 2)).init(&device), "GPT-2 (tied)");
        let mut llama = LlamaConfig::new(300, 16, 8, 1, 2, 1);
        llama.tie_word_embeddings = false;
        check(ModelConfig::Llama(llama).init(&device), "Llama (untied)");
        check(packed_embeddings(ModelConfig::Llama(LlamaConfig::new(300, 16, 8, 1, 2, 1)).init(&device)), "Llama (tied, packed)");
    }

    /// The GPU's way through a dense head (tiles of the vocabulary, one pass, rescaled sums) gives
    /// the CPU's row chunks' log-sum-exp, expected rows and entropy, for tied and untied heads.
    #[test]
    fn vocabulary_tiles_give_the_row_chunks_values_for_dense_heads() {
        let device = Device::flex();
        device.seed(4);
        let mut untied = LlamaConfig::new(300, 16, 8, 1, 2, 1);
        untied.tie_word_embeddings = false;
        for (model, name) in [
            (ModelConfig::from(GptConfig::new(300, 16, 8, 1, 2)).init(&device), "GPT-2 (tied)"),
            (ModelConfig::Llama(untied).init(&device), "Llama (untied)"),
        ] {
            let model = model.no_grad();
            let head = model.head().unwrap();
            // Logits spread wide (hidden states times 8), so the running maximum moves from tile to tile.
            let hidden = Tensor::<2>::random([7, 8], burn::tensor::Distribution::Normal(0.0, 8.0), &device);
            let rows = Chunks::of(&head, hidden.clone(), 2 * 300, 0.7, true, true);
            // Tiles of 80 of the 300 rows, the last one short.
            let tiles = Chunks::by_vocabulary_tiles(&head, hidden / 0.7, 80, 0.7, true, true);
            close(tiles.log_sum_exp.reshape([1, 7]), rows.log_sum_exp.reshape([1, 7]), &format!("{name} log-sum-exp"));
            close(tiles.entropy.unwrap().reshape([1, 7]), rows.entropy.unwrap().reshape([1, 7]), &format!("{name} entropy"));
            close(tiles.expected_rows.unwrap(), rows.expected_rows.unwrap(), &format!("{name} expected rows"));
        }
    }

    /// Two examples of different lengths, each with a prompt that is not counted: only the counted
    /// positions reach the head, with the log-probs and the gradients of the whole-logits path there.
    #[test]
    fn only_the_counted_targets_go_through_the_head_with_the_whole_paths_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let examples = [
            Example { tokens: vec![1, 7, 9, 4, 2, 8], target: vec![false, false, false, true, true, true] },
            Example { tokens: vec![3, 5, 6, 2], target: vec![false, false, true, true] },
        ];
        let refs: Vec<&Example> = examples.iter().collect();
        let batch = LmBatch::new(&refs, 0, &device);
        // A head that trains takes the whole logits; a frozen one (LoRA) the chunked path.
        let trains = ModelConfig::from(GptConfig::new(30, 16, 8, 1, 2)).init(&device);
        for (model, name) in [(trains.clone(), "full weights"), (trains.no_grad(), "frozen")] {
            let leaf = model.forward(batch.inputs.clone(), batch.positions.clone(), None).detach().require_grad();
            let counted = trained_logprobs(&model, leaf.clone() * 1.0, &batch);
            let whole = token_logprobs(
                model.logits(leaf.clone() * 1.0),
                Tensor::from_data(TensorData::new(vec![7i64, 9, 4, 2, 8, 5, 6, 2, 0, 0], [2, 5]), &device),
            );
            let mask = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0], [2, 5]), &device);
            let expected = whole.clone().reshape([10]).select(0, Tensor::from_data(TensorData::new(vec![2i64, 3, 4, 6, 7], [5]), &device));
            close(counted.clone().reshape([1, 5]), expected.reshape([1, 5]), &format!("{name} log-probs"));
            let (g1, g2) = (leaf.grad(&counted.sum().backward()).unwrap(), leaf.grad(&(whole * mask).sum().backward()).unwrap());
            let d = g1.dims()[2];
            close(g1.reshape([10, d]), g2.reshape([10, d]), &format!("{name} gradient"));
        }
        assert_eq!(batch.rows.into_data().try_to_vec::<f32>().unwrap(), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
    }

    /// `model` with its embeddings (and so its tied head) kept packed as BF16, as a GGUF base's are.
    #[test]
    fn a_packed_head_is_widened_a_bounded_tile_at_a_time_however_few_the_positions() {
        // Qwen2.5-0.5B's tied head's shape, BF16 (its bytes are never read here).
        let [vocab, d] = [151_936, 896];
        let head = PackedWeight::new(GgmlType::Bf16, vec![0; vocab * d * 2], [vocab, d]).unwrap();
        let widest = head.widest_tile_rows();
        assert!(widest * d <= 1 << 22, "{widest} rows of {d} values");
        // From one position to many, for the chunk sizes the trainers use.
        for n in [1, 4, 64, 4096] {
            for chunk_logits in [1 << 20, 1 << 24] {
                let rows = tile_rows(n, chunk_logits, &LmHead::Packed(head.clone()));
                assert!((16..=widest).contains(&rows), "{n} positions, {chunk_logits} logits a chunk: {rows} rows a tile");
            }
        }
    }

    fn packed_embeddings(model: CausalLm) -> CausalLm {
        let CausalLm::Llama(mut llama) = model else { unreachable!("a Llama model") };
        let [vocab, d] = llama.embed_tokens.dims();
        let values: Vec<f32> = llama.embed_tokens.weight.take().unwrap().val().into_data().try_to_vec().unwrap();
        let bytes = values.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
        llama.embed_tokens.packed = Some(PackedWeight::new(GgmlType::Bf16, bytes, [vocab, d]).unwrap());
        CausalLm::Llama(llama)
    }
}
