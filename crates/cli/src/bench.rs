//! `tinyrlhf bench`: speed of the model on this machine, in the shape `bench/gpt2_step.py` measures
//! in PyTorch so the two can be compared line by line.
//!
//! Medians over repeated runs, after warm-up (the first runs include kernel compilation on GPU).

use std::time::{Duration, Instant};

use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Args;
use tinyrlhf_model::{AdamWSettings, CausalLm, GgmlType, ModelConfig, SamplingConfig, chosen_token_logprobs, generate, step_in_place};

use crate::backend::Backend;
use crate::bench_inputs::{PROMPT_LEN, prompts, random_tokens};
use crate::bench_methods::{
    Iteration, LoraDpoStep, PPO_TOKENS, PpoIteration, dpo_step, group_iteration, lora_dpo_step, ppo_iteration, reward_step,
};
use crate::bench_products::{Products, train_step_products};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Backends to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    backend: Vec<Backend>,
    /// Presets to measure, comma-separated (tiny, small, gpt2-124m, llama-tiny, smollm2-135m,
    /// qwen2.5-0.5b).
    #[arg(long, value_delimiter = ',', default_value = "tiny,small")]
    preset: Vec<String>,
    /// Vocabulary size of the benchmarked models; default 2048, the shapes of real models their own
    /// (smollm2-135m 49152, qwen2.5-0.5b 151936).
    #[arg(long, value_parser = crate::at_least_one)]
    vocab: Option<usize>,
    /// Training batch size; default 16, 4 for the presets above 30 M parameters.
    #[arg(long, value_parser = crate::at_least_one)]
    batch: Option<usize>,
    /// Training sequence length; default half the preset's context (tiny 64, small 128), 128 for
    /// the presets above 30 M parameters.
    #[arg(long, value_parser = crate::at_least_one)]
    seq_len: Option<usize>,
    /// Pairs (chosen and rejected) per LoRA DPO step; 0 skips it.
    #[arg(long, default_value_t = 4)]
    dpo_pairs: usize,
    /// The LoRA DPO step's activation budget (MiB), as `dpo --activation-budget-mib`.
    #[arg(long, default_value_t = tinyrlhf_rlhf::DpoConfig::default().train.activation_budget_mib)]
    dpo_activation_budget_mib: u64,
    /// The frozen base of a second LoRA DPO figure, as a GGUF of this type holds it: its projections
    /// packed as q4_0, q8_0, f16 or bf16, the embedding (and tied head) as Q8_0 (at least); `none`
    /// skips the figure.
    #[arg(long, default_value = "q4_0", value_parser = quantized_base)]
    dpo_quantized_base: QuantizedBase,
    /// Timed training steps (after 2 warm-up steps), also LoRA DPO steps; 0 skips both.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Tokens generated per row in the generation benchmark (after a 16-token prompt); 0 skips it.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Timed generation runs per setting (after 1 warm-up run).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Timed PPO iterations per preset (after 1 warm-up iteration), also the runs of the GRPO,
    /// RLOO, reward-model and DPO figures; 0 skips them. Default 3, 0 for the presets above 30 M
    /// parameters (a 135 M PPO iteration takes minutes on a laptop's CPU).
    #[arg(long)]
    ppo_iterations: Option<usize>,
    /// Print every figure as one JSON object instead of the table (what `bench/gpt2_step.py
    /// --compare` reads to print ratios, and what a script tracking speed should read).
    #[arg(long)]
    json: bool,
    /// On a GPU backend, print (on standard error) the N most launched kernels of the train and
    /// LoRA DPO steps' last timed run and of the first generation at each batch, by name: where a
    /// launch-bound step's kernels come from.
    #[arg(long, default_value_t = 0)]
    kernel_names: usize,
    /// Also time the training step's matrix products one by one (each weight's forward and its two
    /// backward products, and the LM head's) and print their share of the step: what
    /// `bench/llama_step.py --products --compare` sets beside PyTorch's same products.
    #[arg(long)]
    products: bool,
    /// Instead of the presets: a real model (a folder or a `.gguf`) on the CPU, its prefill and
    /// the decoding of one answer, of four and of eight, tokens/s (`--new-tokens` each, `--runs`).
    #[arg(long, value_name = "MODEL")]
    decode: Option<std::path::PathBuf>,
    /// With --decode: the threads to use (default: every core).
    #[arg(long, value_parser = crate::at_least_one, requires = "decode")]
    threads: Option<usize>,
    /// With --decode: the prefilled prompt's tokens.
    #[arg(long, default_value_t = 128, value_parser = crate::at_least_one)]
    prompt_tokens: usize,
    /// With --decode: llama.cpp's `llama-batched-bench`, run on the same file and threads for the
    /// same figures (`bench/decode/run.sh` builds it from a registry package's source).
    #[arg(long, value_name = "BIN", requires = "decode")]
    llama_cpp: Option<std::path::PathBuf>,
}

/// `--dpo-quantized-base`: a type, or none.
#[derive(Debug, Clone, Copy)]
struct QuantizedBase(Option<GgmlType>);

fn quantized_base(name: &str) -> Result<QuantizedBase, String> {
    let written = [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16, GgmlType::Bf16];
    match written.into_iter().find(|t| t.name().eq_ignore_ascii_case(name)) {
        Some(t) => Ok(QuantizedBase(Some(t))),
        None if name == "none" => Ok(QuantizedBase(None)),
        None => Err(format!("{name:?} is not one of q4_0, q8_0, f16, bf16, none")),
    }
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    if let Some(model) = &args.decode {
        let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let bench = crate::bench_decode::DecodeBench {
            model,
            threads,
            prompt_tokens: args.prompt_tokens,
            new_tokens: args.new_tokens.max(2),
            runs: args.runs,
            llama_cpp: args.llama_cpp.as_deref(),
            json: args.json,
        };
        return crate::bench_decode::run(&bench);
    }
    // Every preset is checked before anything is measured: a typo in the last one is not found
    // after minutes of the first.
    let configs = args
        .preset
        .iter()
        .map(|preset| {
            let vocab = args.vocab.or(ModelConfig::preset_vocab(preset)).unwrap_or(2048);
            let config = ModelConfig::preset(preset, vocab)
                .ok_or_else(|| format!("--preset {preset:?} is not one of {}", ModelConfig::preset_names()))?;
            // The training step holds the weights, their gradients and AdamW's two moments.
            let bytes = 16 * config.num_params() as u64;
            tinyrlhf_rlhf::memory::sizes::check_memory(&format!("--preset {preset} with --vocab {vocab}"), bytes)
                .map_err(|e| e.to_string())?;
            Ok((preset, config))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut runs = vec![];
    let bandwidth = memory_bandwidth_gb_s();
    let machine = crate::machine::Machine::here();
    if !args.json {
        println!("{machine}; memory bandwidth by a copy: {bandwidth:.1} GB/s");
    }
    for &backend in &args.backend {
        let device = backend.device()?;
        crate::kernels::count(backend != Backend::Cpu);
        crate::kernels::keep_names(args.kernel_names);
        for (preset, config) in &configs {
            let figures = measure(args, config, &device)?;
            if !args.json {
                print_table(backend, preset, config, &figures, bandwidth);
            }
            runs.push(serde_json::json!({"backend": backend.name(), "preset": preset, "figures": figures}));
        }
    }
    if args.json {
        println!("{}", serde_json::json!({"impl": "tinyrlhf", "machine": machine, "memory_bandwidth_gb_s": bandwidth, "runs": runs}));
    }
    Ok(())
}

/// Every figure of one preset on one backend.
#[derive(Debug, serde::Serialize)]
struct Figures {
    params: usize,
    /// Absent with `--steps 0`.
    train_step: Option<TrainStep>,
    /// Absent with `--dpo-pairs 0`.
    lora_dpo_step: Option<LoraDpoStep>,
    /// The same step on the base packed as `--dpo-quantized-base`; absent with `none`.
    quantized_lora_dpo_step: Option<LoraDpoStep>,
    generate: Vec<Generate>,
    /// The training step's matrix products one by one; only with `--products`.
    products: Option<Products>,
    /// Absent with `--ppo-iterations 0`, as everything below.
    ppo_iteration: Option<PpoIteration>,
    /// Reads back from the device in one PPO iteration (rollout, scoring and update together).
    device_reads_per_ppo_iteration: Option<u64>,
    /// Kernels launched in one PPO iteration, on a GPU backend.
    kernels_per_ppo_iteration: Option<u64>,
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
    /// Kernels launched by one step, on a GPU backend.
    kernels: Option<f64>,
}

#[derive(Debug, serde::Serialize)]
struct Generate {
    batch: usize,
    new_tokens: usize,
    kv_cache_tok_s: f64,
    /// Not measured above 30 M parameters (minutes of recomputation).
    no_cache_tok_s: Option<f64>,
    /// Reads back from the device per generated position (all rows together).
    device_reads_per_token: f64,
    /// Kernels launched per generated position, on a GPU backend.
    kernels_per_token: Option<f64>,
}

/// Above this many parameters a preset is "large": smaller default batches, and the figures that
/// take minutes there (generation without a cache, the method iterations) are left out unless asked.
const LARGE_PARAMS: usize = 30_000_000;

fn measure(args: &BenchArgs, config: &ModelConfig, device: &Device) -> Result<Figures, String> {
    let large = config.num_params() > LARGE_PARAMS;
    let batch = args.batch.unwrap_or(if large { 4 } else { 16 });
    let seq = args.seq_len.unwrap_or(if large { 128 } else { config.context_length() / 2 }).min(config.context_length());
    let train_step = (args.steps > 0).then(|| {
        let (step, kernels) = train_step_time(config, device, batch, seq, args.steps);
        TrainStep { batch, seq, ms: ms(step), tok_s: (batch * seq) as f64 / step.as_secs_f64(), kernels }
    });
    let dpo = |base| lora_dpo_step(config, device, base, args.dpo_pairs, args.dpo_activation_budget_mib, args.steps);
    let dpo_runs = args.dpo_pairs > 0 && args.steps > 0;
    let lora_dpo_step = dpo_runs.then(|| dpo(None)).transpose()?;
    let quantized_lora_dpo_step = args.dpo_quantized_base.0.filter(|_| dpo_runs).map(|t| dpo(Some(t))).transpose()?;
    let mut generate = vec![];
    for batch in [1, 8].into_iter().filter(|_| args.new_tokens > 0) {
        let model = config.init(device);
        let (before, kernels) = (tinyrlhf_model::device_reads(), crate::kernels::launched());
        crate::kernels::forget_names();
        generate_cached(&model, batch, args.new_tokens);
        let reads = tinyrlhf_model::device_reads() - before;
        let kernels = crate::kernels::since(kernels);
        crate::kernels::print_names(&format!("generation at batch {batch} ({} tokens, prefill included)", args.new_tokens));
        let cached = median(args.runs, || generate_cached(&model, batch, args.new_tokens));
        let uncached = (!large).then(|| median(args.runs, || generate_uncached(&model, device, batch, args.new_tokens)));
        let generated = (batch * args.new_tokens) as f64;
        generate.push(Generate {
            batch,
            new_tokens: args.new_tokens,
            kv_cache_tok_s: generated / cached.as_secs_f64(),
            no_cache_tok_s: uncached.map(|u| generated / u.as_secs_f64()),
            device_reads_per_token: reads as f64 / args.new_tokens as f64,
            kernels_per_token: kernels.map(|k| k as f64 / args.new_tokens as f64),
        });
    }
    let products = args.products.then(|| train_step_products(config, device, batch * seq, args.steps.max(3)));
    let mut figures = Figures {
        params: config.num_params(),
        train_step,
        lora_dpo_step,
        quantized_lora_dpo_step,
        generate,
        products,
        ppo_iteration: None,
        device_reads_per_ppo_iteration: None,
        kernels_per_ppo_iteration: None,
        grpo_iteration: None,
        rloo_iteration: None,
        dpo_step: None,
        reward_step: None,
        device_reads_per_reward_step: None,
    };
    let runs = args.ppo_iterations.unwrap_or(if large { 0 } else { 3 });
    if runs > 0 {
        let (ppo, counts) = ppo_iteration(config, device, runs)?;
        (figures.ppo_iteration, figures.device_reads_per_ppo_iteration) = (Some(ppo), Some(counts.device_reads));
        figures.kernels_per_ppo_iteration = counts.kernels;
        let reward = reward_step(config, device, runs)?;
        figures.device_reads_per_reward_step = Some(reward.device_reads);
        figures.reward_step = Some(reward);
        figures.grpo_iteration = Some(group_iteration(config, device, runs, tinyrlhf_rlhf::GroupMethod::Grpo)?);
        figures.rloo_iteration = Some(group_iteration(config, device, runs, tinyrlhf_rlhf::GroupMethod::Rloo)?);
        figures.dpo_step = Some(dpo_step(config, device, runs)?);
    }
    Ok(figures)
}

/// The machine's memory bandwidth, GB/s of bytes read plus written, by a copy of 256 MiB on every
/// core (best of 3): what bounds generation at batch 1, which reads every weight once per token.
fn memory_bandwidth_gb_s() -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let len = (64 << 20) / threads * threads; // f32s: 256 MiB
    let source = vec![1.0f32; len];
    let mut target = vec![0.0f32; len];
    let best = (0..3)
        .map(|_| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for (to, from) in target.chunks_mut(len / threads).zip(source.chunks(len / threads)) {
                    scope.spawn(move || to.copy_from_slice(from));
                }
            });
            start.elapsed()
        })
        .min()
        .unwrap_or_default();
    std::hint::black_box(&target);
    (2 * 4 * len) as f64 / best.as_secs_f64() / 1e9
}

fn print_table(backend: Backend, preset: &str, config: &ModelConfig, f: &Figures, bandwidth: f64) {
    println!(
        "\n{backend} · {preset} ({}, d {}, {} layers, {} heads, {:.2} M params)",
        config.architecture(),
        config.width(),
        config.num_layers(),
        config.heads(),
        f.params as f64 / 1e6
    );
    if let Some(t) = &f.train_step {
        println!(
            "  train step  batch {} x {} tokens: {:>9.1} ms   {:>9.0} tok/s   {:.1} GFLOP/s (6·N·tokens)",
            t.batch,
            t.seq,
            t.ms,
            t.tok_s,
            6.0 * f.params as f64 * t.tok_s / 1e9
        );
        print_kernels("train step", t.kernels);
    }
    if let Some(products) = &f.products {
        crate::bench_products::print(products, f.train_step.as_ref().map(|t| t.ms));
    }
    for d in f.lora_dpo_step.iter().chain(&f.quantized_lora_dpo_step) {
        println!(
            "  LoRA DPO step {} pairs x {} tokens (rank {}, {} base): {:>7.1} ms = reference {:.1} + policy {:.1} ms   {:>9.0} tok/s",
            d.pairs,
            d.seq,
            d.rank,
            d.base,
            d.secs * 1e3,
            d.reference_secs * 1e3,
            d.policy_secs * 1e3,
            d.tok_s
        );
        print_kernels("LoRA DPO step", d.kernels.map(|k| k as f64));
    }
    for g in &f.generate {
        let uncached = match g.no_cache_tok_s {
            Some(u) => format!("no cache {u:>8.0} tok/s   ({:.1}x)", g.kv_cache_tok_s / u),
            None => "no cache not measured (a large preset)".into(),
        };
        println!(
            "  generate    batch {} x {} new:  KV cache {:>8.0} tok/s   {uncached}   {:.3} device reads per token",
            g.batch, g.new_tokens, g.kv_cache_tok_s, g.device_reads_per_token
        );
        print_kernels(&format!("generation, batch {}, per token", g.batch), g.kernels_per_token);
        // The bound is the CPU's memory bandwidth: a GPU's is another figure.
        if g.batch == 1 && backend == Backend::Cpu {
            let weights_gb = 4.0 * f.params as f64 / 1e9;
            println!(
                "              batch 1 reads {:.2} GB of f32 weights per token: {:.1} GB/s, {:.0}% of the {:.1} GB/s a copy moves here",
                weights_gb,
                weights_gb * g.kv_cache_tok_s,
                100.0 * weights_gb * g.kv_cache_tok_s / bandwidth,
                bandwidth
            );
        }
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
        print_kernels("PPO iteration", f.kernels_per_ppo_iteration.map(|k| k as f64));
    }
    for (name, it) in [("GRPO", &f.grpo_iteration), ("RLOO", &f.rloo_iteration)] {
        if let Some(it) = it {
            println!(
                "  {name} iteration {} answers x {PPO_TOKENS} new: {:>7.0} ms (K = 4, one update, policy only), {} device reads",
                it.answers,
                it.secs * 1e3,
                it.device_reads
            );
            print_kernels(&format!("{name} iteration"), it.kernels.map(|k| k as f64));
        }
    }
    if let Some(it) = &f.reward_step {
        println!(
            "  reward-model step {} answers (8 rankings of 4): {:>7.0} ms (forward + backward + AdamW), {} device reads",
            it.answers,
            it.secs * 1e3,
            it.device_reads
        );
        print_kernels("reward-model step", it.kernels.map(|k| k as f64));
    }
    if let Some(it) = &f.dpo_step {
        println!(
            "  DPO step {} answers (8 rankings of 4): {:>7.0} ms (policy forward + backward), {} device reads",
            it.answers,
            it.secs * 1e3,
            it.device_reads
        );
        print_kernels("DPO step", it.kernels.map(|k| k as f64));
    }
}

/// The kernels a figure launched, on a GPU backend.
fn print_kernels(what: &str, kernels: Option<f64>) {
    if let Some(k) = kernels {
        println!("              {what}: {k:.1} kernels launched");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median wall time of `runs` calls after one warm-up call.
pub(crate) fn median(runs: usize, mut f: impl FnMut()) -> Duration {
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

/// The median time of one language-modelling step (forward, next-token cross-entropy, backward,
/// AdamW), and the kernels one step launched (on a GPU backend).
fn train_step_time(config: &ModelConfig, device: &Device, batch: usize, seq: usize, steps: usize) -> (Duration, Option<f64>) {
    let device = device.clone().autodiff();
    let mut lm = config.init(&device);
    let mut optim = AdamWSettings::with_weight_decay(1e-4).init();
    let positions: Vec<i64> = (0..batch).flat_map(|_| 0..seq as i64).collect();
    let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [batch, seq]), &device);
    let mut step = |i: usize| {
        let tokens = random_tokens(batch, seq + 1, config.vocab_size(), i);
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [batch, seq + 1]), &device);
        let inputs = tokens.clone().narrow(1, 0, seq);
        let targets = tokens.narrow(1, 1, seq).reshape([batch * seq]);
        let logits = lm.logits(lm.forward(inputs, positions.clone(), None)); // [b, t, vocab]
        let loss = chosen_token_logprobs(logits.reshape([batch * seq, config.vocab_size()]), targets).mean().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &lm);
        step_in_place(&mut optim, 3e-4, &mut lm, grads);
        // Reading the loss waits for the device, so the time covers the whole step.
        let _: f32 = loss.into_scalar();
    };
    step(0);
    step(1);
    let mut i = 2;
    let kernels = crate::kernels::launched();
    let time = median(steps, || {
        crate::kernels::forget_names();
        step(i);
        i += 1;
    });
    crate::kernels::print_names("train step");
    (time, crate::kernels::since(kernels).map(|k| k as f64 / (i - 2) as f64))
}

fn generate_cached(lm: &CausalLm, batch: usize, new_tokens: usize) {
    let sampling = SamplingConfig { max_new_tokens: new_tokens, temperature: 1.0, ..Default::default() };
    // No EOS id inside the vocabulary: every row runs the full length.
    let out =
        pollster::block_on(generate(lm, &prompts(batch, lm.vocab_size()), u32::MAX, 0, &sampling)).expect("benchmark prompts are valid");
    debug_assert!(out.tokens.iter().all(|t| t.len() == new_tokens));
}

/// The same sampling without a cache: each new token re-runs the whole sequence.
fn generate_uncached(lm: &CausalLm, device: &Device, batch: usize, new_tokens: usize) {
    let prompts: Vec<i64> = prompts(batch, lm.vocab_size()).concat().into_iter().map(i64::from).collect();
    let mut ids = Tensor::<2, Int>::from_data(TensorData::new(prompts, [batch, PROMPT_LEN]), device);
    let sampling = SamplingConfig::default();
    for step in 0..new_tokens {
        let len = PROMPT_LEN + step;
        let positions: Vec<i64> = (0..batch).flat_map(|_| 0..len as i64).collect();
        let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [batch, len]), device);
        let logits = lm.logits(lm.forward(ids.clone(), positions, None).narrow(1, len - 1, 1)).reshape([batch, lm.vocab_size()]);
        let (token, _) = tinyrlhf_model::choose_tokens(logits, Tensor::<2>::full([batch, 1], 0.5, device), &sampling);
        ids = Tensor::cat(vec![ids, token], 1);
    }
    pollster::block_on(tinyrlhf_model::read_f32(ids.float())).expect("the generated ids can be read");
}
