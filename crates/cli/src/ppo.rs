//! `tinyrlhf ppo`: optimise the SFT policy against a reward model with PPO, KL-penalised to the SFT
//! model. One line of metrics per iteration (score, KL, entropy, clip fractions, …) goes to
//! `metrics.jsonl`; every `--save-every` iterations and at the end the policy is written as a model
//! directory, the value model in `value/`, and a resumable checkpoint in `checkpoint/` (policy,
//! value, both optimizers, iteration and β): `--resume` continues exactly where the run stopped.

use std::path::PathBuf;

use clap::Args;
use tinyrlhf_data::Demonstration;
use tinyrlhf_rlhf::{KlEstimator, PpoCheckpoint, PpoConfig, PpoModels, PpoTrainer, chat_example, check_compatible};

use crate::backend::Backend;
use crate::files::{self, Result};
use crate::progress::Progress;
use crate::sample::prompt_ids;
use crate::train::files_digest;

#[derive(Debug, Args)]
pub struct PpoArgs {
    /// The SFT model directory: the policy starts here and the frozen reference stays here.
    #[arg(long)]
    policy: PathBuf,
    /// The reward model directory (from `tinyrlhf reward`); the value model starts as a copy.
    #[arg(long)]
    reward: PathBuf,
    /// Training prompts: JSONL of {"prompt"}, or one per line.
    #[arg(long)]
    prompts: PathBuf,
    /// Directory to write the tuned policy to.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = PpoConfig::default().iterations)]
    iterations: usize,
    /// Rollouts per iteration.
    #[arg(long, default_value_t = PpoConfig::default().batch_size)]
    batch: usize,
    #[arg(long, default_value_t = PpoConfig::default().minibatch_size)]
    minibatch: usize,
    /// PPO epochs over each batch of rollouts.
    #[arg(long, default_value_t = PpoConfig::default().ppo_epochs)]
    ppo_epochs: usize,
    #[arg(long, default_value_t = PpoConfig::default().lr)]
    lr: f64,
    /// beta: weight of the per-token KL penalty (the starting value with --kl-target).
    #[arg(long, default_value_t = PpoConfig::default().kl_coef)]
    kl_coef: f64,
    /// Adapt beta toward this KL per sequence (nats); fixed beta without it.
    #[arg(long)]
    kl_target: Option<f64>,
    /// k1 (log ratio) or k3 ((r - 1) - log r).
    #[arg(long, default_value = "k1")]
    kl_estimator: KlEstimator,
    /// Rollout temperature.
    #[arg(long, default_value_t = PpoConfig::default().temperature)]
    temperature: f32,
    #[arg(long, default_value_t = PpoConfig::default().max_new_tokens)]
    max_new_tokens: usize,
    /// Whiten the shaped rewards before GAE.
    #[arg(long)]
    whiten_rewards: bool,
    /// Score lost by a response that never ends.
    #[arg(long, default_value_t = PpoConfig::default().missing_eos_penalty)]
    missing_eos_penalty: f64,
    /// PPO-ptx: weight of the language-model loss on --demos mixed into every update.
    #[arg(long, default_value_t = 0.0)]
    ptx_coef: f64,
    /// Demonstrations for PPO-ptx, JSONL of {"prompt", "response"}.
    #[arg(long)]
    demos: Option<PathBuf>,
    /// Stop an iteration and restore the last good policy when the KL to the reference passes this.
    #[arg(long, default_value_t = PpoConfig::default().kl_limit)]
    kl_limit: f64,
    /// Iterations between checkpoints (`OUT/checkpoint/`) and policy saves.
    #[arg(long, value_parser = crate::at_least_one, default_value_t = 10)]
    save_every: usize,
    /// Continue from `OUT/checkpoint/` (its settings; --iterations may extend the run).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[command(flatten)]
    lora: crate::lora::LoraArgs,
}

impl PpoArgs {
    fn settings(&self) -> PpoConfig {
        PpoConfig {
            iterations: self.iterations,
            batch_size: self.batch,
            minibatch_size: self.minibatch,
            ppo_epochs: self.ppo_epochs,
            lr: self.lr,
            temperature: self.temperature,
            max_new_tokens: self.max_new_tokens,
            kl_coef: self.kl_coef,
            kl_estimator: self.kl_estimator,
            kl_target: self.kl_target,
            whiten_rewards: self.whiten_rewards,
            missing_eos_penalty: self.missing_eos_penalty,
            ptx_coef: self.ptx_coef,
            kl_limit: self.kl_limit,
            seed: self.seed,
            lora: self.lora.config(),
            ..PpoConfig::default()
        }
    }
}

/// The files of `OUT/checkpoint/`; `trainer.json` last marks it complete.
const CHECKPOINT: [&str; 5] = ["policy.safetensors", "value.safetensors", "policy_optimizer.bpk", "value_optimizer.bpk", "trainer.json"];

pub fn ppo(args: &PpoArgs) -> Result<()> {
    // Settings first: a bad flag is reported before minutes of loading.
    args.settings().validate().map_err(|e| e.to_string())?;
    let device = args.backend.device()?;
    let (config, sft, tokenizer) = files::load_model_dir(&args.policy, &device)?;
    let (reward_config, reward, reward_tokenizer) = files::load_scalar_dir(&args.reward, &device)?;
    let role = format!("the reward model in {}", args.reward.display());
    check_compatible(&role, (&config, &tokenizer), (&reward_config, &reward_tokenizer)).map_err(|e| e.to_string())?;
    let prompts = files::read_prompts(&args.prompts)?;
    let prompt_ids = prompts
        .iter()
        .map(|p| prompt_ids(&tokenizer, &config, p, args.max_new_tokens + 1).map(|(ids, _)| ids))
        .collect::<Result<Vec<_>>>()?;
    let ptx = match &args.demos {
        Some(path) => {
            let demos: Vec<Demonstration> = files::read_records(path)?;
            let mut examples = Vec::new();
            for d in &demos {
                examples.extend(chat_example(&tokenizer, &d.prompt, &d.response, config.context_length()).map_err(|e| e.to_string())?);
            }
            examples
        }
        None => vec![],
    };
    let special = tokenizer.special_ids();
    device.seed(args.seed);
    let settings = args.settings();
    let models = PpoModels { sft, config: config.clone(), reward, value: None, policy: None };
    let metrics = args.out.join("metrics.jsonl");
    let mut trainer = match (args.resume, files::load_checkpoint_files(&args.out, &CHECKPOINT)?) {
        (true, Some(parts)) => {
            let [policy, value, policy_optimizer, value_optimizer, state] = <[Vec<u8>; 5]>::try_from(parts).expect("5 parts");
            let state_json = String::from_utf8(state).map_err(|e| format!("{}: trainer.json is not UTF-8: {e}", args.out.display()))?;
            let checkpoint = PpoCheckpoint { policy, value, policy_optimizer, value_optimizer, state_json };
            let trainer = PpoTrainer::resume(models, &checkpoint, prompt_ids, ptx, special.eos, special.pad).map_err(|e| e.to_string())?;
            eprintln!("resuming {} at iteration {} (with the checkpoint's settings)", args.out.display(), trainer.iterations_done());
            trainer
        }
        (resume, _) => {
            files::start_fresh(&args.out, resume, "PPO")?;
            PpoTrainer::new(models, prompt_ids, ptx, special.eos, special.pad, settings.clone()).map_err(|e| e.to_string())?
        }
    };

    std::fs::create_dir_all(&args.out).map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let progress = Progress::new(args.iterations, trainer.iterations_done(), "iterations");
    let manifest = |iterations: usize, seconds: f64| -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "stage": "ppo", "sft": args.policy, "reward": args.reward, "iterations": iterations, "settings": settings,
            "data": {"prompts": files_digest(&[&args.prompts])?}, "seconds": seconds,
            "command": std::env::args().collect::<Vec<_>>().join(" "),
        }))
    };
    let started = web_time::Instant::now();
    while trainer.iterations_done() < args.iterations {
        let stats = pollster::block_on(trainer.step()).map_err(|e| e.to_string())?;
        progress.update(
            stats.iteration,
            &format!(
                "score {:+.2} · KL {:.2} · EOS {:.0}% · {:.1} tokens",
                stats.score,
                stats.kl,
                100.0 * stats.eos_rate,
                stats.mean_length
            ),
        );
        if let Some(why) = &stats.restored {
            progress.println(format!("iteration {}: {why}", stats.iteration));
        }
        files::append_metrics(&metrics, &files::with_sample_text(serde_json::to_value(&stats).expect("stats serialise"), &tokenizer))?;
        if stats.iteration % args.save_every == 0 || stats.iteration == args.iterations {
            let weights = pollster::block_on(tinyrlhf_model::save_lm(&trainer.policy())).map_err(|e| e.to_string())?;
            files::save_weights_dir(
                &args.out,
                &config.to_json(),
                &weights,
                &tokenizer,
                &manifest(stats.iteration, started.elapsed().as_secs_f64())?,
            )?;
            crate::lora::save_adapter(&args.out, &trainer.policy(), trainer.settings().lora.as_ref())?;
            let checkpoint = pollster::block_on(trainer.checkpoint()).map_err(|e| e.to_string())?;
            files::save_weights_dir(
                &args.out.join("value"),
                &config.to_json(),
                &checkpoint.value,
                &tokenizer,
                &serde_json::json!({"stage": "ppo value model", "iterations": stats.iteration}),
            )?;
            let parts: [&[u8]; 5] = [
                &checkpoint.policy,
                &checkpoint.value,
                &checkpoint.policy_optimizer,
                &checkpoint.value_optimizer,
                checkpoint.state_json.as_bytes(),
            ];
            files::save_checkpoint_files(&args.out, &CHECKPOINT.into_iter().zip(parts).collect::<Vec<_>>())?;
        }
    }
    eprintln!("done in {:.0} s: policy in {}", progress.finish(), args.out.display());
    Ok(())
}
