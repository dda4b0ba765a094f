//! `tinyrlhf bench`: speed of the model on this machine, in the shape `bench/gpt2_step.py` measures
//! in PyTorch so the two can be compared line by line.
//!
//! Medians over repeated runs, after warm-up (the first runs include kernel compilation on GPU).

use std::time::{Duration, Instant};

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Args;
use tinyrlhf_model::{CausalLm, ModelConfig, SamplingConfig, generate};

use crate::backend::Backend;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Backends to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    backend: Vec<Backend>,
    /// Presets to measure, comma-separated (tiny, small, gpt2-124m).
    #[arg(long, value_delimiter = ',', default_value = "tiny,small")]
    preset: Vec<String>,
    /// Vocabulary size of the benchmarked models.
    #[arg(long, default_value_t = 2048)]
    vocab: usize,
    /// Training batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Training sequence length; default half the preset's context (tiny 64, small 128).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Timed training steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Tokens generated per row in the generation benchmark (after a 16-token prompt).
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Timed generation runs per setting (after 1 warm-up run).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Timed PPO iterations per preset (after 1 warm-up iteration); 0 skips the PPO benchmark.
    #[arg(long, default_value_t = 3)]
    ppo_iterations: usize,
    /// Print every figure as one JSON object instead of the table (what `bench/gpt2_step.py
    /// --compare` reads to print ratios, and what a script tracking speed should read).
    #[arg(long)]
    json: bool,
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    let mut runs = vec![];
    for &backend in &args.backend {
        let device = backend.device()?;
        for preset in &args.preset {
            let config = ModelConfig::preset(preset, args.vocab).ok_or_else(|| format!("unknown preset {preset:?}"))?;
            let figures = measure(args, &config, &device)?;
            if !args.json {
                print_table(backend, preset, &config, &figures);
            }
            runs.push(serde_json::json!({"backend": backend.name(), "preset": preset, "figures": figures}));
        }
    }
    if args.json {
        println!("{}", serde_json::json!({"impl": "tinyrlhf", "runs": runs}));
    }
    Ok(())
}

/// Every figure of one preset on one backend.
#[derive(Debug, serde::Serialize)]
struct Figures {
    params: usize,
    train_step: TrainStep,
    generate: Vec<Generate>,
    /// Absent with `--ppo-iterations 0`, as everything below.
    ppo_iteration: Option<PpoIteration>,
    /// Reads back from the device in one PPO iteration (rollout, scoring and update together).
    device_reads_per_ppo_iteration: Option<u64>,
    grpo_iteration: Option<Iteration>,
    rloo_iteration: Option<Iteration>,
    dpo_step: Option<Iteration>,
    /// One step of the reward model on 8 rankings of 4 answers.
    reward_step: Option<Iteration>,
    device_reads_per_reward_step: Option<u64>,
}

#[derive(Debug, serde::Serialize)]
struct TrainStep {
    batch: usize,
    seq: usize,
    ms: f64,
    tok_s: f64,
}

#[derive(Debug, serde::Serialize)]
struct Generate {
    batch: usize,
    new_tokens: usize,
    kv_cache_tok_s: f64,
    no_cache_tok_s: f64,
    /// Reads back from the device per generated position (all rows together).
    device_reads_per_token: f64,
}

#[derive(Debug, serde::Serialize)]
struct PpoIteration {
    batch: usize,
    new_tokens: usize,
    secs: f64,
    rollout_secs: f64,
    scoring_secs: f64,
    update_secs: f64,
}

/// One GRPO/RLOO iteration, DPO step or reward-model step.
#[derive(Debug, serde::Serialize)]
struct Iteration {
    answers: usize,
    secs: f64,
    device_reads: u64,
}

fn measure(args: &BenchArgs, config: &ModelConfig, device: &Device) -> Result<Figures, String> {
    let seq = args.seq_len.unwrap_or(config.context_length() / 2).min(config.context_length());
    let step = train_step_time(config, device, args.batch, seq, args.steps);
    let tokens = (args.batch * seq) as f64;
    let train_step = TrainStep { batch: args.batch, seq, ms: ms(step), tok_s: tokens / step.as_secs_f64() };
    let mut generate = vec![];
    for batch in [1, 8] {
        let gpt = config.init(device);
        let before = tinyrlhf_model::device_reads();
        generate_cached(&gpt, batch, args.new_tokens);
        let reads = tinyrlhf_model::device_reads() - before;
        let cached = median(args.runs, || generate_cached(&gpt, batch, args.new_tokens));
        let uncached = median(args.runs, || generate_uncached(&gpt, device, batch, args.new_tokens));
        let generated = (batch * args.new_tokens) as f64;
        generate.push(Generate {
            batch,
            new_tokens: args.new_tokens,
            kv_cache_tok_s: generated / cached.as_secs_f64(),
            no_cache_tok_s: generated / uncached.as_secs_f64(),
            device_reads_per_token: reads as f64 / args.new_tokens as f64,
        });
    }
    let mut figures = Figures {
        params: config.num_params(),
        train_step,
        generate,
        ppo_iteration: None,
        device_reads_per_ppo_iteration: None,
        grpo_iteration: None,
        rloo_iteration: None,
        dpo_step: None,
        reward_step: None,
        device_reads_per_reward_step: None,
    };
    if args.ppo_iterations > 0 {
        let (ppo, reads) = ppo_iteration(config, device, args.ppo_iterations)?;
        (figures.ppo_iteration, figures.device_reads_per_ppo_iteration) = (Some(ppo), Some(reads));
        let reward = reward_step(config, device, args.ppo_iterations)?;
        figures.device_reads_per_reward_step = Some(reward.device_reads);
        figures.reward_step = Some(reward);
        figures.grpo_iteration = Some(group_iteration(config, device, args.ppo_iterations, tinyrlhf_rlhf::GroupMethod::Grpo)?);
        figures.rloo_iteration = Some(group_iteration(config, device, args.ppo_iterations, tinyrlhf_rlhf::GroupMethod::Rloo)?);
        figures.dpo_step = Some(dpo_step(config, device, args.ppo_iterations)?);
    }
    Ok(figures)
}

fn print_table(backend: Backend, preset: &str, config: &ModelConfig, f: &Figures) {
    println!(
        "\n{backend} · {preset} ({}, d {}, {} layers, {} heads, {:.2} M params)",
        config.architecture(),
        config.width(),
        config.num_layers(),
        config.heads(),
        f.params as f64 / 1e6
    );
    let t = &f.train_step;
    println!(
        "  train step  batch {} x {} tokens: {:>9.1} ms   {:>9.0} tok/s   {:.1} GFLOP/s (6·N·tokens)",
        t.batch,
        t.seq,
        t.ms,
        t.tok_s,
        6.0 * f.params as f64 * t.tok_s / 1e9
    );
    for g in &f.generate {
        println!(
            "  generate    batch {} x {} new:  KV cache {:>8.0} tok/s   no cache {:>8.0} tok/s   ({:.1}x)   {:.3} device reads per token",
            g.batch,
            g.new_tokens,
            g.kv_cache_tok_s,
            g.no_cache_tok_s,
            g.kv_cache_tok_s / g.no_cache_tok_s,
            g.device_reads_per_token
        );
    }
    if let Some(p) = &f.ppo_iteration {
        println!(
            "  PPO iteration batch {} x {} new: {:>7.0} ms = rollout {:.0} + scoring {:.0} + update {:.0} ms (4 epochs x 2 minibatches, policy + value), {} device reads",
            p.batch,
            p.new_tokens,
            p.secs * 1e3,
            p.rollout_secs * 1e3,
            p.scoring_secs * 1e3,
            p.update_secs * 1e3,
            f.device_reads_per_ppo_iteration.unwrap_or_default()
        );
    }
    for (name, it) in [("GRPO", &f.grpo_iteration), ("RLOO", &f.rloo_iteration)] {
        if let Some(it) = it {
            println!(
                "  {name} iteration {} answers x {PPO_TOKENS} new: {:>7.0} ms (K = 4, one update, policy only), {} device reads",
                it.answers,
                it.secs * 1e3,
                it.device_reads
            );
        }
    }
    if let Some(it) = &f.reward_step {
        println!(
            "  reward-model step {} answers (8 rankings of 4): {:>7.0} ms (forward + backward + AdamW), {} device reads",
            it.answers,
            it.secs * 1e3,
            it.device_reads
        );
    }
    if let Some(it) = &f.dpo_step {
        println!(
            "  DPO step {} answers (8 rankings of 4): {:>7.0} ms (policy forward + backward), {} device reads",
            it.answers,
            it.secs * 1e3,
            it.device_reads
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median wall time of `runs` calls after one warm-up call.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn random_tokens(rows: usize, len: usize, vocab: usize, salt: usize) -> Vec<i64> {
    // A cheap deterministic hash: the benchmark needs varied ids, not good randomness.
    (0..rows * len).map(|i| ((i * 2_654_435_761 + salt * 40_503) % vocab) as i64).collect()
}

/// One language-modelling step: forward, next-token cross-entropy, backward, AdamW.
fn train_step_time(config: &ModelConfig, device: &Device, batch: usize, seq: usize, steps: usize) -> Duration {
    let device = device.clone().autodiff();
    let mut gpt = config.init(&device);
    let mut optim = AdamWConfig::new().init();
    let positions: Vec<i64> = (0..batch).flat_map(|_| 0..seq as i64).collect();
    let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [batch, seq]), &device);
    let mut step = |i: usize| {
        let tokens = random_tokens(batch, seq + 1, config.vocab_size(), i);
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [batch, seq + 1]), &device);
        let inputs = tokens.clone().narrow(1, 0, seq);
        let targets = tokens.narrow(1, 1, seq).reshape([batch, seq, 1]);
        let logits = gpt.logits(gpt.forward(inputs, positions.clone(), None)); // [b, t, vocab]
        let loss = log_softmax(logits, 2).gather(2, targets).mean().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &gpt);
        gpt = optim.step(3e-4, gpt.clone(), grads);
        // Reading the loss waits for the device, so the time covers the whole step.
        let _: f32 = loss.into_scalar();
    };
    step(0);
    step(1);
    let mut i = 2;
    median(steps, || {
        step(i);
        i += 1;
    })
}

const PROMPT_LEN: usize = 16;

fn prompts(batch: usize, vocab: usize) -> Vec<Vec<u32>> {
    let ids = random_tokens(batch, PROMPT_LEN, vocab, 7);
    ids.chunks(PROMPT_LEN).map(|row| row.iter().map(|&t| t as u32).collect()).collect()
}

fn generate_cached(gpt: &CausalLm, batch: usize, new_tokens: usize) {
    let sampling = SamplingConfig { max_new_tokens: new_tokens, temperature: 1.0, ..Default::default() };
    // No EOS id inside the vocabulary: every row runs the full length.
    let out =
        pollster::block_on(generate(gpt, &prompts(batch, gpt.vocab_size()), u32::MAX, 0, &sampling)).expect("benchmark prompts are valid");
    debug_assert!(out.tokens.iter().all(|t| t.len() == new_tokens));
}

/// The same sampling without a cache: each new token re-runs the whole sequence.
fn generate_uncached(gpt: &CausalLm, device: &Device, batch: usize, new_tokens: usize) {
    let prompts: Vec<i64> = prompts(batch, gpt.vocab_size()).concat().into_iter().map(i64::from).collect();
    let mut ids = Tensor::<2, Int>::from_data(TensorData::new(prompts, [batch, PROMPT_LEN]), device);
    let sampling = SamplingConfig::default();
    for step in 0..new_tokens {
        let len = PROMPT_LEN + step;
        let positions: Vec<i64> = (0..batch).flat_map(|_| 0..len as i64).collect();
        let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [batch, len]), device);
        let logits = gpt.logits(gpt.forward(ids.clone(), positions, None).narrow(1, len - 1, 1)).reshape([batch, gpt.vocab_size()]);
        let (token, _) = tinyrlhf_model::choose_tokens(logits, Tensor::<2>::full([batch, 1], 0.5, device), &sampling);
        ids = Tensor::cat(vec![ids, token], 1);
    }
    pollster::block_on(tinyrlhf_model::read_f32(ids.float())).expect("the generated ids can be read");
}

const PPO_BATCH: usize = 16;
const PPO_TOKENS: usize = 48;

/// The median of `runs` values.
fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `step` once to warm up, then `runs` times; the steps' results and the device reads of the
/// last one.
fn timed_steps<T>(runs: usize, mut step: impl FnMut() -> Result<T, String>) -> Result<(Vec<T>, u64), String> {
    step()?;
    let mut out = vec![];
    let mut reads = 0;
    for _ in 0..runs.max(1) {
        let before = tinyrlhf_model::device_reads();
        out.push(step()?);
        reads = tinyrlhf_model::device_reads() - before;
    }
    Ok((out, reads))
}

/// One PPO iteration's phases (medians) with default settings, batch 16, every response the full
/// 48 tokens (the EOS id is outside the vocabulary, so no row stops early).
fn ppo_iteration(config: &ModelConfig, device: &Device, runs: usize) -> Result<(PpoIteration, u64), String> {
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
    let (stats, device_reads) = timed_steps(runs, || pollster::block_on(trainer.step()).map_err(|e| e.to_string()))?;
    let phase = |f: fn(&tinyrlhf_rlhf::PpoStats) -> f64| median_of(stats.iter().map(f).collect());
    let (rollout_secs, scoring_secs, update_secs) = (phase(|s| s.rollout_secs), phase(|s| s.scoring_secs), phase(|s| s.update_secs));
    let secs = rollout_secs + scoring_secs + update_secs;
    Ok((PpoIteration { batch: PPO_BATCH, new_tokens: PPO_TOKENS, secs, rollout_secs, scoring_secs, update_secs }, device_reads))
}

/// One GRPO / RLOO iteration (median) with the default settings (8 prompts x K = 4), every answer
/// the full 48 tokens.
fn group_iteration(config: &ModelConfig, device: &Device, runs: usize, method: tinyrlhf_rlhf::GroupMethod) -> Result<Iteration, String> {
    use tinyrlhf_rlhf::{GroupConfig, GroupTrainer};
    let settings = GroupConfig { method, max_new_tokens: PPO_TOKENS, iterations: runs + 1, ..GroupConfig::default() };
    let answers = settings.prompts_per_iteration * settings.samples_per_prompt;
    let eos = config.vocab_size() as u32;
    let reward = tinyrlhf_model::ScalarModel::new(config.init(device));
    let mut trainer =
        GroupTrainer::new(config.init(device), None, config.clone(), reward, prompts(64, config.vocab_size()), eos, 0, settings)
            .map_err(|e| e.to_string())?;
    let (secs, device_reads) = timed_steps(runs, || {
        pollster::block_on(trainer.step()).map(|s| s.rollout_secs + s.scoring_secs + s.update_secs).map_err(|e| e.to_string())
    })?;
    Ok(Iteration { answers, secs: median_of(secs), device_reads })
}

/// `count` rankings of 4 answers, each a 16-token prompt and a 48-token answer, best first.
fn rankings(count: usize, vocab: usize) -> Vec<tinyrlhf_rlhf::TokenRanking> {
    let sequences = random_tokens(4 * count, 16 + PPO_TOKENS, vocab, 7);
    sequences
        .chunks(4 * (16 + PPO_TOKENS))
        .map(|r| tinyrlhf_rlhf::TokenRanking {
            sequences: r.chunks(16 + PPO_TOKENS).map(|s| s.iter().map(|&t| t as u32).collect()).collect(),
            order: vec![0, 1, 2, 3],
            prompt_len: 16,
        })
        .collect()
}

/// One reward-model step (median) with the default settings on 8 rankings of 4 answers.
fn reward_step(config: &ModelConfig, device: &Device, runs: usize) -> Result<Iteration, String> {
    use tinyrlhf_rlhf::{RewardConfig, RewardTrainer};
    let settings = RewardConfig::default();
    let rankings = rankings(settings.batch_size, config.vocab_size());
    let answers = 4 * rankings.len();
    // One step per epoch: every epoch is the same 8 rankings.
    let settings = RewardConfig { epochs: runs + 1, batch_size: rankings.len(), ..settings };
    let mut trainer = RewardTrainer::new(config.init(device), config.clone(), rankings, vec![], 0, settings).map_err(|e| e.to_string())?;
    let (secs, device_reads) = timed_steps(runs, || {
        let start = Instant::now();
        pollster::block_on(trainer.step()).map(|_| start.elapsed().as_secs_f64()).map_err(|e| e.to_string())
    })?;
    Ok(Iteration { answers, secs: median_of(secs), device_reads })
}

/// One DPO step (median) with the default settings (8 rankings of K = 4 answers, each a 16-token
/// prompt and a 48-token answer).
fn dpo_step(config: &ModelConfig, device: &Device, runs: usize) -> Result<Iteration, String> {
    use tinyrlhf_rlhf::{DpoConfig, DpoTrainer};
    let settings = DpoConfig::default();
    let rankings = rankings(settings.batch_size, config.vocab_size());
    let answers = 4 * rankings.len();
    let settings = DpoConfig { epochs: runs + 1, ..settings };
    let mut trainer = pollster::block_on(DpoTrainer::new(config.init(device), config.clone(), rankings, vec![], 0, settings))
        .map_err(|e| e.to_string())?;
    let (secs, device_reads) = timed_steps(runs, || {
        let start = Instant::now();
        pollster::block_on(trainer.step()).map(|_| start.elapsed().as_secs_f64()).map_err(|e| e.to_string())
    })?;
    Ok(Iteration { answers, secs: median_of(secs), device_reads })
}
