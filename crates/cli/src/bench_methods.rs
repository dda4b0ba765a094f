//! `tinyrlhf bench`'s training-method figures: a PPO, GRPO and RLOO iteration, a reward-model and
//! a DPO step at the library's defaults, and a LoRA DPO step in the shape TRL's `DPOTrainer` with a
//! PEFT config runs (`bench/llama_step.py` times the same step in PyTorch).

use std::time::Instant;

use burn::tensor::Device;
use tinyrlhf_model::{GgmlType, LoraConfig, ModelConfig};

use crate::bench_inputs::{PROMPT_LEN, prompts, random_tokens};

const PPO_BATCH: usize = 16;
pub(crate) const PPO_TOKENS: usize = 48;

#[derive(Debug, serde::Serialize)]
pub(crate) struct PpoIteration {
    pub batch: usize,
    pub new_tokens: usize,
    pub secs: f64,
    pub rollout_secs: f64,
    pub scoring_secs: f64,
    pub update_secs: f64,
}

/// One GRPO/RLOO iteration, DPO step or reward-model step.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Iteration {
    pub answers: usize,
    pub secs: f64,
    pub device_reads: u64,
    /// Kernels launched by the step, on a GPU backend.
    pub kernels: Option<u64>,
}

/// One LoRA DPO step: the reference's log-probs of a batch of pairs (no gradients), then the
/// policy's through its adapters, the loss, backward and AdamW on the adapters.
#[derive(Debug, serde::Serialize)]
pub(crate) struct LoraDpoStep {
    pub pairs: usize,
    /// Prompt and answer tokens of one sequence.
    pub seq: usize,
    pub rank: usize,
    /// The frozen base's types: `F32`, or a quantized base's projection and embedding types.
    pub base: String,
    pub secs: f64,
    pub reference_secs: f64,
    pub policy_secs: f64,
    /// Kernels launched by the step (reference and policy), on a GPU backend.
    pub kernels: Option<u64>,
    /// Sequences' tokens (chosen and rejected) through the step, per second.
    pub tok_s: f64,
}

/// Answers of a LoRA DPO pair: the prompt is [`PROMPT_LEN`] tokens.
pub(crate) const DPO_ANSWER_TOKENS: usize = 48;

/// One LoRA DPO step (median of `runs` after a warm-up) on `pairs` pairs of a 16-token prompt and
/// 48-token answers, rank 8 on PEFT's targets, the frozen base f32 as drawn or packed as
/// `quantized_base`. Our trainer scores the reference once per run,
/// when it is made; TRL's scores it every step, so making the trainer (on exactly one batch of
/// rankings) is timed as the step's reference forward, and the sum is the step.
pub(crate) fn lora_dpo_step(
    config: &ModelConfig,
    device: &Device,
    quantized_base: Option<GgmlType>,
    pairs: usize,
    activation_budget_mib: u64,
    runs: usize,
) -> Result<LoraDpoStep, String> {
    use tinyrlhf_rlhf::{DpoConfig, DpoTrainer, TokenRanking, TrainSettings};
    let lora = LoraConfig::default();
    let seq = PROMPT_LEN + DPO_ANSWER_TOKENS;
    let sequences = random_tokens(2 * pairs, seq, config.vocab_size(), 11);
    let rankings: Vec<TokenRanking> = sequences
        .chunks(2 * seq)
        .map(|pair| TokenRanking {
            sequences: pair.chunks(seq).map(|s| s.iter().map(|&t| t as u32).collect()).collect(),
            order: vec![0, 1],
            prompt_len: PROMPT_LEN,
        })
        .collect();
    let train = TrainSettings { lora: Some(lora.clone()), activation_budget_mib, ..DpoConfig::default().train };
    let settings = DpoConfig { batch_size: pairs, epochs: 1, train, ..DpoConfig::default() };
    // Drawn once: each timed trainer would otherwise draw the base's 135 M random numbers again
    // (about a twelfth of a SmolLM2-shaped step on a 2-core AMD EPYC), which loaded weights never do.
    let mut base = tinyrlhf_model::drawn(config.init(device));
    let mut base_types = "F32".to_owned();
    if let Some(projections) = quantized_base {
        // A tied head stays at 8 bits, as llama.cpp's quantizer keeps the output matrix finer.
        let embedding = if projections.block_len() == 1 { projections } else { GgmlType::Q8_0 };
        base = base
            .quantized(projections, embedding)
            .ok_or_else(|| format!("this preset's rows are not whole {} blocks", projections.name()))?;
        // GPT-2's embedding stays f32.
        let packed_embedding = base.packed().iter().find(|w| w.shape()[0] == config.vocab_size()).map(|w| w.ggml_type());
        base_types = format!("{} (embedding {})", projections.name(), packed_embedding.map_or("F32", GgmlType::name));
    }
    let (times, counts) = timed_steps(runs, || {
        crate::kernels::forget_names();
        let start = Instant::now();
        let mut trainer = pollster::block_on(DpoTrainer::new(base.clone(), config.clone(), rankings.clone(), vec![], 0, settings.clone()))
            .map_err(|e| e.to_string())?;
        let reference = start.elapsed().as_secs_f64();
        pollster::block_on(trainer.step()).map_err(|e| e.to_string())?;
        Ok((reference, start.elapsed().as_secs_f64() - reference))
    })?;
    crate::kernels::print_names(&format!("LoRA DPO step ({base_types} base)"));
    let reference_secs = median_of(times.iter().map(|t| t.0).collect());
    let policy_secs = median_of(times.iter().map(|t| t.1).collect());
    let secs = reference_secs + policy_secs;
    Ok(LoraDpoStep {
        pairs,
        seq,
        rank: lora.rank,
        base: base_types,
        secs,
        reference_secs,
        policy_secs,
        kernels: counts.kernels,
        tok_s: (2 * pairs * seq) as f64 / secs,
    })
}

/// The median of `runs` values.
fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `step` once to warm up, then `runs` times; the steps' results and what the last one asked
/// of the device.
fn timed_steps<T>(runs: usize, mut step: impl FnMut() -> Result<T, String>) -> Result<(Vec<T>, Counts), String> {
    step()?;
    let mut out = vec![];
    let mut counts = Counts { device_reads: 0, kernels: None };
    for _ in 0..runs.max(1) {
        let (reads, kernels) = (tinyrlhf_model::device_reads(), crate::kernels::launched());
        out.push(step()?);
        counts = Counts { device_reads: tinyrlhf_model::device_reads() - reads, kernels: crate::kernels::since(kernels) };
    }
    Ok((out, counts))
}

/// What one step asked of the device: reads back, and kernels launched on a GPU backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub device_reads: u64,
    pub kernels: Option<u64>,
}

/// One PPO iteration's phases (medians) with default settings, batch 16, every response the full
/// 48 tokens (the EOS id is outside the vocabulary, so no row stops early).
pub(crate) fn ppo_iteration(config: &ModelConfig, device: &Device, runs: usize) -> Result<(PpoIteration, Counts), String> {
    use tinyrlhf_rlhf::{PpoConfig, PpoModels, PpoTrainer};
    let models = PpoModels {
        sft: config.init(device),
        config: config.clone(),
        reward: tinyrlhf_model::ScalarModel::new(config.init(device)),
        value: None,
        policy: None,
    };
    let settings = PpoConfig { batch_size: PPO_BATCH, max_new_tokens: PPO_TOKENS, iterations: runs + 1, ..PpoConfig::default() };
    let eos = config.vocab_size() as u32;
    let mut trainer = PpoTrainer::new(models, prompts(64, config.vocab_size()), vec![], eos, 0, settings).map_err(|e| e.to_string())?;
    let (stats, counts) = timed_steps(runs, || pollster::block_on(trainer.step()).map_err(|e| e.to_string()))?;
    let phase = |f: fn(&tinyrlhf_rlhf::PpoStats) -> f64| median_of(stats.iter().map(f).collect());
    let (rollout_secs, scoring_secs, update_secs) = (phase(|s| s.rollout_secs), phase(|s| s.scoring_secs), phase(|s| s.update_secs));
    let secs = rollout_secs + scoring_secs + update_secs;
    Ok((PpoIteration { batch: PPO_BATCH, new_tokens: PPO_TOKENS, secs, rollout_secs, scoring_secs, update_secs }, counts))
}

/// One GRPO / RLOO iteration (median) with the default settings (8 prompts x K = 4), every answer
/// the full 48 tokens.
pub(crate) fn group_iteration(
    config: &ModelConfig,
    device: &Device,
    runs: usize,
    method: tinyrlhf_rlhf::GroupMethod,
) -> Result<Iteration, String> {
    use tinyrlhf_rlhf::{GroupConfig, GroupTrainer};
    let settings = GroupConfig { method, max_new_tokens: PPO_TOKENS, iterations: runs + 1, ..GroupConfig::default() };
    let answers = settings.prompts_per_iteration * settings.samples_per_prompt;
    let eos = config.vocab_size() as u32;
    let reward = tinyrlhf_model::ScalarModel::new(config.init(device));
    let mut trainer =
        GroupTrainer::new(config.init(device), None, config.clone(), reward, prompts(64, config.vocab_size()), eos, 0, settings)
            .map_err(|e| e.to_string())?;
    let (secs, counts) = timed_steps(runs, || {
        pollster::block_on(trainer.step()).map(|s| s.rollout_secs + s.scoring_secs + s.update_secs).map_err(|e| e.to_string())
    })?;
    Ok(Iteration { answers, secs: median_of(secs), device_reads: counts.device_reads, kernels: counts.kernels })
}

/// `count` rankings of 4 answers, each a 16-token prompt and a 48-token answer, best first.
fn rankings(count: usize, vocab: usize) -> Vec<tinyrlhf_rlhf::TokenRanking> {
    let sequences = random_tokens(4 * count, PROMPT_LEN + PPO_TOKENS, vocab, 7);
    sequences
        .chunks(4 * (PROMPT_LEN + PPO_TOKENS))
        .map(|r| tinyrlhf_rlhf::TokenRanking {
            sequences: r.chunks(PROMPT_LEN + PPO_TOKENS).map(|s| s.iter().map(|&t| t as u32).collect()).collect(),
            order: vec![0, 1, 2, 3],
            prompt_len: PROMPT_LEN,
        })
        .collect()
}

/// One reward-model step (median) with the default settings on 8 rankings of 4 answers.
pub(crate) fn reward_step(config: &ModelConfig, device: &Device, runs: usize) -> Result<Iteration, String> {
    use tinyrlhf_rlhf::{RewardConfig, RewardTrainer};
    let settings = RewardConfig::default();
    let rankings = rankings(settings.batch_size, config.vocab_size());
    let answers = 4 * rankings.len();
    // One step per epoch: every epoch is the same 8 rankings.
    let settings = RewardConfig { epochs: runs + 1, batch_size: rankings.len(), ..settings };
    let mut trainer = RewardTrainer::new(config.init(device), config.clone(), rankings, vec![], 0, settings).map_err(|e| e.to_string())?;
    let (secs, counts) = timed_steps(runs, || {
        let start = Instant::now();
        pollster::block_on(trainer.step()).map(|_| start.elapsed().as_secs_f64()).map_err(|e| e.to_string())
    })?;
    Ok(Iteration { answers, secs: median_of(secs), device_reads: counts.device_reads, kernels: counts.kernels })
}

/// One DPO step (median) with the default settings (8 rankings of K = 4 answers, each a 16-token
/// prompt and a 48-token answer).
pub(crate) fn dpo_step(config: &ModelConfig, device: &Device, runs: usize) -> Result<Iteration, String> {
    use tinyrlhf_rlhf::{DpoConfig, DpoTrainer};
    let settings = DpoConfig::default();
    let rankings = rankings(settings.batch_size, config.vocab_size());
    let answers = 4 * rankings.len();
    let settings = DpoConfig { epochs: runs + 1, ..settings };
    let mut trainer = pollster::block_on(DpoTrainer::new(config.init(device), config.clone(), rankings, vec![], 0, settings))
        .map_err(|e| e.to_string())?;
    let (secs, counts) = timed_steps(runs, || {
        let start = Instant::now();
        pollster::block_on(trainer.step()).map(|_| start.elapsed().as_secs_f64()).map_err(|e| e.to_string())
    })?;
    Ok(Iteration { answers, secs: median_of(secs), device_reads: counts.device_reads, kernels: counts.kernels })
}
