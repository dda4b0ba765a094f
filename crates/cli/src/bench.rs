//! `tinyrlhf bench`: speed of the model on this machine, in the shape `bench/gpt2_step.py` measures
//! in PyTorch so the two can be compared line by line.
//!
//! Medians over repeated runs, after warm-up (the first runs include kernel compilation on GPU).

use std::time::{Duration, Instant};

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Args;
use tinyrlhf_model::{Gpt, GptConfig, SamplingConfig, generate};

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
    /// Print one JSON object per figure instead of the table (what `bench/gpt2_step.py
    /// --compare` reads to print ratios).
    #[arg(long)]
    json: bool,
}

/// One measured figure, in the keys `bench/gpt2_step.py` uses too.
fn report(args: &BenchArgs, backend: Backend, preset: &str, what: &str, batch: usize, tok_s: f64, text: String) {
    if args.json {
        let backend = match backend {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
        };
        let line =
            serde_json::json!({"impl": "tinyrlhf", "backend": backend, "preset": preset, "what": what, "batch": batch, "tok_s": tok_s});
        println!("{line}");
    } else {
        println!("{text}");
    }
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    for &backend in &args.backend {
        let device = backend.device()?;
        for preset in &args.preset {
            let config = GptConfig::preset(preset, args.vocab).ok_or_else(|| format!("unknown preset {preset:?}"))?;
            let seq = args.seq_len.unwrap_or(config.n_positions / 2).min(config.n_positions);
            if !args.json {
                println!(
                    "\n{backend} · {preset} (d {}, {} layers, {} heads, {:.2} M params)",
                    config.n_embd,
                    config.n_layer,
                    config.n_head,
                    config.num_params() as f64 / 1e6
                );
            }
            let step = train_step_time(&config, &device, args.batch, seq, args.steps);
            let tokens = (args.batch * seq) as f64;
            let text = format!(
                "  train step  batch {} x {} tokens: {:>9.1} ms   {:>9.0} tok/s   {:.1} GFLOP/s (6·N·tokens)",
                args.batch,
                seq,
                ms(step),
                tokens / step.as_secs_f64(),
                6.0 * config.num_params() as f64 * tokens / step.as_secs_f64() / 1e9
            );
            report(args, backend, preset, "train_step", args.batch, tokens / step.as_secs_f64(), text);
            for batch in [1, 8] {
                let gpt = config.init(&device);
                let cached = median(args.runs, || generate_cached(&gpt, batch, args.new_tokens));
                let uncached = median(args.runs, || generate_uncached(&gpt, &device, batch, args.new_tokens));
                let generated = (batch * args.new_tokens) as f64;
                let text = format!(
                    "  generate    batch {batch} x {} new:  KV cache {:>8.0} tok/s   no cache {:>8.0} tok/s   ({:.1}x)",
                    args.new_tokens,
                    generated / cached.as_secs_f64(),
                    generated / uncached.as_secs_f64(),
                    uncached.as_secs_f64() / cached.as_secs_f64()
                );
                report(args, backend, preset, "generate_kv_cache", batch, generated / cached.as_secs_f64(), text);
                if args.json {
                    report(args, backend, preset, "generate_no_cache", batch, generated / uncached.as_secs_f64(), String::new());
                }
            }
            if args.ppo_iterations > 0 {
                let [rollout, scoring, update] = ppo_iteration_times(&config, &device, args.ppo_iterations)?;
                let total = rollout + scoring + update;
                let text = format!(
                    "  PPO iteration batch {PPO_BATCH} x {PPO_TOKENS} new: {:>7.0} ms = rollout {:.0} + scoring {:.0} + update {:.0} ms (4 epochs x 2 minibatches, policy + value)",
                    total * 1e3,
                    rollout * 1e3,
                    scoring * 1e3,
                    update * 1e3
                );
                report(args, backend, preset, "ppo_iteration", PPO_BATCH, (PPO_BATCH * PPO_TOKENS) as f64 / total, text);
                for method in [tinyrlhf_rlhf::GroupMethod::Grpo, tinyrlhf_rlhf::GroupMethod::Rloo] {
                    let (secs, rows) = group_iteration_time(&config, &device, args.ppo_iterations, method)?;
                    let name = method.name();
                    let text = format!(
                        "  {} iteration {rows} answers x {PPO_TOKENS} new: {:>7.0} ms (K = 4, one update, policy only)",
                        name.to_uppercase(),
                        secs * 1e3
                    );
                    report(args, backend, preset, &format!("{name}_iteration"), rows, (rows * PPO_TOKENS) as f64 / secs, text);
                }
                let (secs, answers) = dpo_step_time(&config, &device, args.ppo_iterations)?;
                let text = format!("  DPO step {answers} answers (8 rankings of 4): {:>7.0} ms (policy forward + backward)", secs * 1e3);
                report(args, backend, preset, "dpo_step", answers, (answers * (16 + PPO_TOKENS)) as f64 / secs, text);
            }
        }
    }
    Ok(())
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
fn train_step_time(config: &GptConfig, device: &Device, batch: usize, seq: usize, steps: usize) -> Duration {
    let device = device.clone().autodiff();
    let mut gpt = config.init(&device);
    let mut optim = AdamWConfig::new().init();
    let positions: Vec<i64> = (0..batch).flat_map(|_| 0..seq as i64).collect();
    let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [batch, seq]), &device);
    let mut step = |i: usize| {
        let tokens = random_tokens(batch, seq + 1, config.vocab_size, i);
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

fn generate_cached(gpt: &Gpt, batch: usize, new_tokens: usize) {
    let sampling = SamplingConfig { max_new_tokens: new_tokens, temperature: 1.0, ..Default::default() };
    // No EOS id inside the vocabulary: every row runs the full length.
    let out =
        pollster::block_on(generate(gpt, &prompts(batch, gpt.vocab_size()), u32::MAX, 0, &sampling)).expect("benchmark prompts are valid");
    debug_assert!(out.tokens.iter().all(|t| t.len() == new_tokens));
}

/// The same sampling without a cache: each new token re-runs the whole sequence.
fn generate_uncached(gpt: &Gpt, device: &Device, batch: usize, new_tokens: usize) {
    let mut rows: Vec<Vec<i64>> = prompts(batch, gpt.vocab_size()).into_iter().map(|p| p.into_iter().map(i64::from).collect()).collect();
    let sampling = SamplingConfig::default();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    for _ in 0..new_tokens {
        let len = rows[0].len();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(rows.concat(), [batch, len]), device);
        let positions: Vec<i64> = (0..batch).flat_map(|_| 0..len as i64).collect();
        let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [batch, len]), device);
        let logits = gpt.logits(gpt.forward(ids, positions, None).narrow(1, len - 1, 1));
        let logits: Vec<f32> = logits.into_data().try_to_vec().expect("f32 logits");
        for (row, row_logits) in rows.iter_mut().zip(logits.chunks_exact(gpt.vocab_size())) {
            row.push(i64::from(tinyrlhf_model::choose_token(row_logits, &sampling, &mut rng).0));
        }
    }
}

const PPO_BATCH: usize = 16;
const PPO_TOKENS: usize = 48;

/// Median seconds of one PPO iteration's phases with default settings, batch 16, every response
/// the full 48 tokens (the EOS id is outside the vocabulary, so no row stops early).
fn ppo_iteration_times(config: &GptConfig, device: &Device, runs: usize) -> Result<[f64; 3], String> {
    use tinyrlhf_rlhf::{PpoConfig, PpoModels, PpoTrainer};
    let models = PpoModels {
        sft: config.init(device),
        config: config.clone(),
        reward: tinyrlhf_model::ScalarModel::new(config.init(device)),
        value: None,
        policy: None,
    };
    let settings = PpoConfig { batch_size: PPO_BATCH, max_new_tokens: PPO_TOKENS, iterations: runs + 1, ..PpoConfig::default() };
    let eos = config.vocab_size as u32;
    let mut trainer = PpoTrainer::new(models, prompts(64, config.vocab_size), vec![], eos, 0, settings).map_err(|e| e.to_string())?;
    pollster::block_on(trainer.step()).map_err(|e| e.to_string())?;
    let mut phases: [Vec<f64>; 3] = Default::default();
    for _ in 0..runs.max(1) {
        let stats = pollster::block_on(trainer.step()).map_err(|e| e.to_string())?;
        for (list, secs) in phases.iter_mut().zip([stats.rollout_secs, stats.scoring_secs, stats.update_secs]) {
            list.push(secs);
        }
    }
    Ok(phases.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }))
}

/// Median seconds of one GRPO / RLOO iteration with the default settings (8 prompts x K = 4), every
/// answer the full 48 tokens; and the answers per iteration.
fn group_iteration_time(
    config: &GptConfig,
    device: &Device,
    runs: usize,
    method: tinyrlhf_rlhf::GroupMethod,
) -> Result<(f64, usize), String> {
    use tinyrlhf_rlhf::{GroupConfig, GroupTrainer};
    let settings = GroupConfig { method, max_new_tokens: PPO_TOKENS, iterations: runs + 1, ..GroupConfig::default() };
    let rows = settings.prompts_per_iteration * settings.samples_per_prompt;
    let eos = config.vocab_size as u32;
    let reward = tinyrlhf_model::ScalarModel::new(config.init(device));
    let mut trainer =
        GroupTrainer::new(config.init(device), None, config.clone(), reward, prompts(64, config.vocab_size), eos, 0, settings)
            .map_err(|e| e.to_string())?;
    pollster::block_on(trainer.step()).map_err(|e| e.to_string())?;
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| pollster::block_on(trainer.step()).map(|s| s.rollout_secs + s.scoring_secs + s.update_secs).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], rows))
}

/// Median seconds of one DPO step with the default settings (8 rankings of K = 4 answers, each a
/// 16-token prompt and a 48-token answer), and the answers per step.
fn dpo_step_time(config: &GptConfig, device: &Device, runs: usize) -> Result<(f64, usize), String> {
    use tinyrlhf_rlhf::{DpoConfig, DpoTrainer, TokenRanking};
    let settings = DpoConfig::default();
    let sequences = random_tokens(4 * settings.batch_size, 16 + PPO_TOKENS, config.vocab_size, 7);
    let rankings: Vec<TokenRanking> = sequences
        .chunks(4 * (16 + PPO_TOKENS))
        .map(|r| TokenRanking {
            sequences: r.chunks(16 + PPO_TOKENS).map(|s| s.iter().map(|&t| t as u32).collect()).collect(),
            order: vec![0, 1, 2, 3],
            prompt_len: 16,
        })
        .collect();
    let answers = 4 * rankings.len();
    let settings = DpoConfig { epochs: runs + 1, ..settings };
    let mut trainer = pollster::block_on(DpoTrainer::new(config.init(device), config.clone(), rankings, vec![], 0, settings))
        .map_err(|e| e.to_string())?;
    pollster::block_on(trainer.step()).map_err(|e| e.to_string())?;
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = std::time::Instant::now();
            pollster::block_on(trainer.step()).map(|_| start.elapsed().as_secs_f64()).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], answers))
}
