//! A rollout as the models read it: prompts left-padded, answers right-padded after their EOS,
//! explicit positions so padding changes nothing; the tempered log-probs and values at the answer
//! positions; and two read-outs built on them for people — KL to the reference per answer, and a
//! per-token explanation of one answer (log ratio and advantage).

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tinyrlhf_model::{CausalLm, SamplingConfig, ScalarModel, generate};
use web_time::Instant;

use crate::checkpoint::TrainError;
use crate::methods::ppo_config::PpoConfig;
use crate::methods::ppo_math::{
    AdvantageConfig, KlEstimator, Postprocessed, Rows, compute_advantages, padding_masks, per_token_kl, postprocess_generated,
};
use crate::parallel::peers::{Peers, Reader, Wire, gather};
use crate::parallel::threads::both;
use crate::step::logprobs::chosen_logprobs;
use crate::step::read::values as read_values;

/// One iteration's rollouts laid out as the models read them: the prompt left-padded to
/// `query_len`, then the response right-padded to `response_len` (one column past the longest
/// response, where the score is paid).
pub(crate) struct RolloutBatch {
    ids: Vec<i64>,
    positions: Vec<i64>,
    mask: Vec<i64>,
    pub(crate) rows: usize,
    pub(crate) query_len: usize,
    pub(crate) response_len: usize,
}

impl RolloutBatch {
    /// The batch of `prompts` and the `generated` answers as the sampler returns them (up to and
    /// including EOS): answers truncated after their first EOS and right-padded one column past
    /// the longest, with the lengths PPO's arithmetic reads.
    pub(crate) fn from_generated(prompts: &[Vec<u32>], generated: &[Vec<u32>], eos: u32, pad: u32) -> (Self, Postprocessed) {
        let post = postprocess_generated(generated, eos, pad);
        (Self::new(prompts, &post.responses, &post.sequence_lengths, pad), post)
    }

    fn new(prompts: &[Vec<u32>], responses: &[Vec<u32>], sequence_lengths: &[usize], pad: u32) -> Self {
        let query_len = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let response_len = responses.first().map_or(0, Vec::len);
        let mut out = Self { ids: vec![], positions: vec![], mask: vec![], rows: prompts.len(), query_len, response_len };
        for ((prompt, response), &last) in prompts.iter().zip(responses).zip(sequence_lengths) {
            let padding = query_len - prompt.len();
            out.ids.extend(
                std::iter::repeat_n(pad as i64, padding).chain(prompt.iter().map(|&t| t as i64)).chain(response.iter().map(|&t| t as i64)),
            );
            let real = |t: usize| t <= last;
            out.mask.extend(
                std::iter::repeat_n(0, padding)
                    .chain(std::iter::repeat_n(1, prompt.len()))
                    .chain((0..response_len).map(|t| i64::from(real(t)))),
            );
            let p = prompt.len() as i64;
            out.positions.extend(
                std::iter::repeat_n(0, padding).chain(0..p).chain((0..response_len).map(|t| if real(t) { p + t as i64 } else { 0 })),
            );
        }
        out
    }

    fn width(&self) -> usize {
        self.query_len + self.response_len
    }

    /// `(ids, positions, mask)` tensors of the rows `rows`.
    pub(crate) fn tensors(&self, rows: &[usize], device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
        let w = self.width();
        let pick = |v: &Vec<i64>| {
            let data: Vec<i64> = rows.iter().flat_map(|&r| v[r * w..(r + 1) * w].iter().copied()).collect();
            Tensor::<2, Int>::from_data(TensorData::new(data, [rows.len(), w]), device)
        };
        (pick(&self.ids), pick(&self.positions), pick(&self.mask))
    }

    /// The response ids of `rows`, `[rows, response_len]`.
    fn targets(&self, rows: &[usize], device: &Device) -> Tensor<2, Int> {
        let (w, q) = (self.width(), self.query_len);
        let data: Vec<i64> = rows.iter().flat_map(|&r| self.ids[r * w + q..(r + 1) * w].iter().copied()).collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), self.response_len]), device)
    }
}

/// Response-position outputs of a forward pass: position q-1+t predicts response token t.
fn response_slice<const D: usize>(full: Tensor<D>, query_len: usize, response_len: usize) -> Tensor<D> {
    full.narrow(1, query_len - 1, response_len)
}

/// Tempered log-probs of the response tokens under `model`, `[rows, response_len]`; with
/// `entropy`, also each position's entropy.
pub(crate) fn response_logprobs(
    model: &CausalLm,
    batch: &RolloutBatch,
    rows: &[usize],
    temperature: f32,
    entropy: bool,
    device: &Device,
) -> (Tensor<2>, Option<Tensor<2>>) {
    let (ids, positions, mask) = batch.tensors(rows, device);
    let hidden = response_slice(model.forward(ids, positions, Some(mask)), batch.query_len, batch.response_len);
    chosen_logprobs(model, hidden, batch.targets(rows, device), f64::from(temperature), entropy)
}

/// The value model's estimate before each response token, `[rows, response_len]`.
pub(crate) fn response_values(model: &ScalarModel, batch: &RolloutBatch, rows: &[usize], device: &Device) -> Tensor<2> {
    let (ids, positions, mask) = batch.tensors(rows, device);
    response_slice(model.forward(ids, positions, Some(mask)), batch.query_len, batch.response_len)
}

/// One iteration's rollouts, read back: the sampled answers, the policy's and the reference's
/// tempered log-probs of them, the policy's entropy, and the reward model's score of each answer
/// at its last token (its EOS when it has one). PPO, GRPO and RLOO all start from this.
pub(crate) struct ScoredRollout {
    pub(crate) batch: RolloutBatch,
    pub(crate) post: Postprocessed,
    /// What the sampler returned for each prompt (up to and including EOS).
    pub(crate) generated: Vec<Vec<u32>>,
    pub(crate) logprobs: Rows,
    pub(crate) ref_logprobs: Rows,
    pub(crate) entropy: Rows,
    pub(crate) scores: Vec<f64>,
    /// The value model's estimate before each answer token, when one was given.
    pub(crate) values: Option<Rows>,
    pub(crate) rollout_secs: f64,
    pub(crate) scoring_secs: f64,
}

/// Samples answers to `prompts` from `policy` and scores them (see [`ScoredRollout`]), with
/// `value`'s estimates too when given. The scores come back in one read.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sample_and_score(
    policy: &CausalLm,
    reference: &CausalLm,
    reward: &ScalarModel,
    value: Option<&ScalarModel>,
    prompts: &[Vec<u32>],
    sampling: &SamplingConfig,
    eos: u32,
    pad: u32,
) -> Result<ScoredRollout, TrainError> {
    if prompts.is_empty() {
        // A peer whose shard of the rollout is empty (more peers than rows).
        let (batch, post) = RolloutBatch::from_generated(&[], &[], eos, pad);
        let values = value.map(|_| vec![]);
        let (logprobs, ref_logprobs, entropy, scores) = (vec![], vec![], vec![], vec![]);
        return Ok(ScoredRollout {
            batch,
            post,
            generated: vec![],
            logprobs,
            ref_logprobs,
            entropy,
            scores,
            values,
            rollout_secs: 0.0,
            scoring_secs: 0.0,
        });
    }
    // 1. Sample at the temperature; the sampler stops each row at its first EOS.
    let start = Instant::now();
    let device = policy.device();
    let generation = generate(policy, prompts, eos, pad, sampling).await.map_err(|e| {
        TrainError::Sampling(format!(
            "the policy could not sample its rollout: {e} (if its weights blew up, a lower learning rate or the last checkpoint helps)"
        ))
    })?;
    let (batch, post) = RolloutBatch::from_generated(prompts, &generation.tokens, eos, pad);
    let rollout_secs = start.elapsed().as_secs_f64();

    // 2. Log-probs of policy and reference under logits / T, and the policy's entropy.
    let start = Instant::now();
    // 3. The reward model's score at each answer's last token. The three models' forwards are
    // independent: natively the reference and reward model run beside the policy (see `parallel`).
    let rows: Vec<usize> = (0..batch.rows).collect();
    let ends: Vec<usize> = post.sequence_lengths.iter().map(|&l| batch.query_len + l).collect();
    let ((logprobs, entropy), (ref_logprobs, scores)) = both(
        || response_logprobs(policy, &batch, &rows, sampling.temperature, true, &device),
        || {
            let (ref_logprobs, _) = response_logprobs(reference, &batch, &rows, sampling.temperature, false, &device);
            let (ids, positions, mask) = batch.tensors(&rows, &device);
            (ref_logprobs, tinyrlhf_model::gather_positions(reward.forward(ids, positions, Some(mask)), &ends))
        },
    );
    let values = value.map(|v| response_values(v, &batch, &rows, &device));
    // One read: [rows, response_len] each of log-probs, reference log-probs, entropy (and values),
    // then the score, side by side.
    let [n, t] = logprobs.dims();
    let mut parts = vec![logprobs, ref_logprobs, entropy.expect("asked for")];
    parts.extend(values);
    let (has_values, blocks) = (parts.len() == 4, parts.len());
    parts.push(scores.reshape([n, 1]));
    let mut columns = split_columns(to_rows(Tensor::cat(parts, 1)).await?, t, blocks).into_iter();
    let mut next = || columns.next().unwrap_or_default();
    let (logprobs, ref_logprobs, entropy) = (next(), next(), next());
    let values = has_values.then(&mut next);
    let scores = next().into_iter().flatten().collect();
    Ok(ScoredRollout {
        batch,
        post,
        generated: generation.tokens,
        logprobs,
        ref_logprobs,
        entropy,
        scores,
        values,
        rollout_secs,
        scoring_secs: start.elapsed().as_secs_f64(),
    })
}

/// The sampling seed of peer `rank`: the first peer's is the run's own, so one peer samples as a
/// trainer alone does.
pub(crate) fn peer_seed(seed: u64, rank: usize) -> u64 {
    seed ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The whole rollout, on every peer, from each one's [`ScoredRollout`] of its shard of `prompts`
/// (consecutive, in rank order): laid out again over all the rows, with each shard's columns
/// padded with zeros to the longest answer of any (padding, which every use masks).
pub(crate) async fn share_rollout(
    peers: &dyn Peers,
    own: ScoredRollout,
    prompts: &[Vec<u32>],
    eos: u32,
    pad: u32,
) -> Result<ScoredRollout, TrainError> {
    if peers.count() == 1 {
        return Ok(own);
    }
    let mut wire = Wire::default();
    wire.len(own.generated.len()).len(usize::from(own.values.is_some()));
    for row in &own.generated {
        wire.u32s(row);
    }
    for rows in [&own.logprobs, &own.ref_logprobs, &own.entropy].into_iter().chain(own.values.as_ref()) {
        for row in rows {
            wire.f64s(row);
        }
    }
    wire.f64s(&own.scores);
    let (mut generated, mut scores) = (vec![], vec![]);
    let mut blocks: [Rows; 4] = Default::default();
    let mut has_values = false;
    for part in gather(peers, wire.bytes()).await? {
        let mut reader = Reader::new(&part);
        let (n, values) = (reader.len()?, reader.len()? == 1);
        has_values |= values;
        for _ in 0..n {
            generated.push(reader.u32s()?);
        }
        for block in blocks.iter_mut().take(3 + usize::from(values)) {
            for _ in 0..n {
                block.push(reader.f64s()?);
            }
        }
        scores.extend(reader.f64s()?);
    }
    if generated.len() != prompts.len() || scores.len() != prompts.len() {
        return Err(TrainError::Peers(format!("the peers sampled {} answers for {} prompts", generated.len(), prompts.len())));
    }
    let (batch, post) = RolloutBatch::from_generated(prompts, &generated, eos, pad);
    let width = batch.response_len;
    let [logprobs, ref_logprobs, entropy, values] = blocks.map(|rows| {
        rows.into_iter()
            .map(|mut row| {
                row.resize(width, 0.0);
                row
            })
            .collect::<Rows>()
    });
    Ok(ScoredRollout {
        batch,
        post,
        generated,
        logprobs,
        ref_logprobs,
        entropy,
        scores,
        values: has_values.then_some(values),
        rollout_secs: own.rollout_secs,
        scoring_secs: own.scoring_secs,
    })
}

/// KL(policy || reference) of each response (k1, summed over its tokens up to and including EOS)
/// under logits / `temperature`: how far a policy has moved from its reference on its own samples.
/// `responses` are generated ids as [`generate`] returns them.
pub async fn response_kl(
    policy: &CausalLm,
    reference: &CausalLm,
    prompts: &[Vec<u32>],
    responses: &[Vec<u32>],
    temperature: f32,
    eos: u32,
    pad: u32,
) -> Result<Vec<f64>, TrainError> {
    let (batch, post) = RolloutBatch::from_generated(prompts, responses, eos, pad);
    let rows: Vec<usize> = (0..batch.rows).collect();
    let device = policy.device();
    let (logprobs, _) = response_logprobs(policy, &batch, &rows, temperature, false, &device);
    let (ref_logprobs, _) = response_logprobs(reference, &batch, &rows, temperature, false, &device);
    let (padding, _) = padding_masks(&post.sequence_lengths, batch.response_len);
    let kl = per_token_kl(&to_rows(logprobs).await?, &to_rows(ref_logprobs).await?, &padding, KlEstimator::K1);
    Ok(kl.iter().map(|row| row.iter().sum()).collect())
}

/// Per-token view of one answer for teaching: log pi/pi_ref of each response token, and its
/// advantage (unwhitened GAE from the value model, with the KL-shaped reward and the reward model's
/// score, as PPO would compute it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenExplanation {
    pub log_ratio: Vec<f64>,
    pub advantage: Vec<f64>,
    /// The score PPO uses: the reward model's at the answer's last token, less the missing-EOS
    /// penalty when it did not end.
    pub score: f64,
    /// What the reward model sees: its score of the prompt alone, then of the prompt and the answer
    /// up to each token (the last one is the reward model's score of the whole answer).
    pub prompt_score: f64,
    pub prefix_scores: Vec<f64>,
}

/// [`TokenExplanation`] of `response` (generated ids, EOS included when it ended) to `prompt`.
#[allow(clippy::too_many_arguments)]
pub async fn explain_response(
    policy: &CausalLm,
    reference: &CausalLm,
    value: &ScalarModel,
    reward: &ScalarModel,
    prompt: &[u32],
    response: &[u32],
    settings: &PpoConfig,
    beta: f64,
    eos: u32,
    pad: u32,
) -> Result<TokenExplanation, TrainError> {
    let (batch, post) = RolloutBatch::from_generated(&[prompt.to_vec()], &[response.to_vec()], eos, pad);
    let device = policy.device();
    let (logprobs, _) = response_logprobs(policy, &batch, &[0], settings.temperature, false, &device);
    let (ref_logprobs, _) = response_logprobs(reference, &batch, &[0], settings.temperature, false, &device);
    let values = response_values(value, &batch, &[0], &device);
    let (ids, positions, mask) = batch.tensors(&[0], &device);
    // [1, query + response]: the reward head reads every position, so one forward scores every prefix.
    let by_position = to_rows(reward.forward(ids, positions, Some(mask))).await?.remove(0);
    let (logprobs, ref_logprobs, values) = (to_rows(logprobs).await?, to_rows(ref_logprobs).await?, to_rows(values).await?);
    let score = by_position[batch.query_len + post.sequence_lengths[0]];
    let config = AdvantageConfig {
        kl_coef: beta,
        kl_estimator: settings.kl_estimator,
        gamma: settings.gamma,
        lam: settings.lam,
        whiten_rewards: false,
        missing_eos_penalty: settings.missing_eos_penalty,
    };
    let adv = compute_advantages(&post, &[score], &logprobs, &ref_logprobs, &values, &config);
    let n = response.len();
    let log_ratio = logprobs[0].iter().zip(&ref_logprobs[0]).take(n).map(|(a, b)| a - b).collect();
    Ok(TokenExplanation {
        log_ratio,
        advantage: adv.advantages_raw[0][..n].to_vec(),
        score: adv.scores[0],
        prompt_score: by_position[batch.query_len - 1],
        prefix_scores: by_position[batch.query_len..batch.query_len + n].to_vec(),
    })
}

/// Rows laid out as `blocks` blocks of `width` columns, then the rest, split into those blocks.
fn split_columns(rows: Rows, width: usize, blocks: usize) -> Vec<Rows> {
    let mut out: Vec<Rows> = vec![vec![]; blocks + 1];
    for row in rows {
        for (b, block) in out.iter_mut().enumerate() {
            let cols = if b < blocks { b * width..(b + 1) * width } else { blocks * width..row.len() };
            block.push(row[cols].to_vec());
        }
    }
    out
}

pub(crate) async fn to_rows(t: Tensor<2>) -> Result<Rows, TrainError> {
    let [_, len] = t.dims();
    Ok(read_values(t).await?.chunks(len.max(1)).map(|c| c.iter().map(|&x| f64::from(x)).collect()).collect())
}
