//! `tinyrlhf ppo`: optimise the SFT policy against a reward model with PPO, KL-penalised to the SFT
//! model. One line of metrics per iteration (score, KL, entropy, clip fractions, …) goes to
//! `metrics.jsonl`; every `--save-every` iterations and at the end the policy is written as a model
//! directory, the value model in `value/`, and a resumable checkpoint in `checkpoint/` (policy,
//! value, both optimizers, iteration and β): `--resume` continues exactly where the run stopped.

use std::path::PathBuf;

use clap::Args;
use tinyrlhf_data::Demonstration;
use tinyrlhf_rlhf::{
    KlEstimator, LanguageModel, MethodSettings, PolicyInputs, PpoConfig, TrainSettings, chat_example, check_compatible, training_prompt_ids,
};

use crate::backend::Backend;
use crate::files::{self, Result};
use crate::lora::Base;
use crate::model_dirs;
use crate::outputs::{Out, Plan};
use crate::policy;
use crate::resume::RunRecord;

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
    #[arg(long, default_value_t = PpoConfig::default().train.lr)]
    lr: f64,
    /// beta: weight of the per-token KL penalty (the starting value with --kl-target).
    #[arg(long, default_value_t = PpoConfig::default().kl_coef)]
    kl_coef: f64,
    /// Adapt beta toward this KL per sequence (nats); fixed beta without it.
    #[arg(long)]
    kl_target: Option<f64>,
    /// k1 (log ratio) or k3 ((r - 1) - log r).
    #[arg(long, default_value_t = PpoConfig::default().kl_estimator)]
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
    #[arg(long, default_value_t = PpoConfig::default().ptx_coef)]
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
    #[arg(long, default_value_t = PpoConfig::default().train.seed)]
    seed: u64,
    /// Activations one backward pass may hold (MiB), the policy's and the value model's together:
    /// each minibatch goes through them in groups this size. More memory, fewer passes.
    #[arg(long, default_value_t = PpoConfig::default().train.activation_budget_mib)]
    activation_budget_mib: u64,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[command(flatten)]
    lora: crate::lora::LoraArgs,
}

impl PpoArgs {
    pub fn plan(&self) -> Plan<'_> {
        let inputs = [Some(&self.policy), Some(&self.reward), Some(&self.prompts), self.demos.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| p.as_path())
            .collect();
        Plan { out: &self.out, kind: Out::ModelDir, inputs, resume: self.resume }
    }
}

impl PpoArgs {
    fn settings(&self) -> PpoConfig {
        PpoConfig {
            iterations: self.iterations,
            batch_size: self.batch,
            minibatch_size: self.minibatch,
            ppo_epochs: self.ppo_epochs,
            temperature: self.temperature,
            max_new_tokens: self.max_new_tokens,
            kl_coef: self.kl_coef,
            kl_estimator: self.kl_estimator,
            kl_target: self.kl_target,
            whiten_rewards: self.whiten_rewards,
            missing_eos_penalty: self.missing_eos_penalty,
            ptx_coef: self.ptx_coef,
            kl_limit: self.kl_limit,
            train: TrainSettings {
                lr: self.lr,
                seed: self.seed,
                lora: self.lora.config(),
                activation_budget_mib: self.activation_budget_mib,
                ..PpoConfig::default().train
            },
            ..PpoConfig::default()
        }
    }
}

pub fn ppo(args: &PpoArgs) -> Result<()> {
    // Settings first: a bad flag is reported before minutes of loading.
    args.settings().validate().map_err(|e| e.to_string())?;
    let device = args.backend.device()?;
    let loaded = model_dirs::load_model_dir(&args.policy, &device)?;
    let LanguageModel { config, model: sft, tokenizer, identity } = loaded.clone();
    let (reward_config, reward, reward_tokenizer) = model_dirs::load_scalar_dir(&args.reward, &device, Some((&args.policy, &loaded)))?;
    let role = format!("the reward model in {}", args.reward.display());
    check_compatible(&role, (&config, &tokenizer), (&reward_config, &reward_tokenizer)).map_err(|e| e.to_string())?;
    let prompts = files::read_prompts(&args.prompts)?;
    let prompt_ids = training_prompt_ids(&tokenizer, config.context_length(), &prompts, args.max_new_tokens).map_err(|e| e.to_string())?;
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
    device.seed(args.seed);
    let settings = args.settings();
    let mut inputs = vec![("policy", args.policy.as_path()), ("reward model", args.reward.as_path()), ("prompts", args.prompts.as_path())];
    inputs.extend(args.demos.as_deref().map(|d| ("demonstrations", d)));
    let record = RunRecord::new(&inputs, &settings)?;
    let inputs = PolicyInputs {
        reward: Some(reward),
        prompts: prompt_ids,
        demonstrations: ptx,
        ..PolicyInputs::new(sft, config, tokenizer.special_ids())
    };
    let trainer = policy::resumed_or_fresh(&args.out, args.resume, &record, MethodSettings::Ppo(settings), inputs)?;
    let manifest = serde_json::json!({
        "sft": args.policy, "reward": args.reward, "data": {"prompts": record.digest("prompts")},
    });
    let base = Base { path: &args.policy, identity: &identity };
    policy::run(trainer, policy::RunOutput::new(&args.out, base, &args.lora, &tokenizer, args.save_every, manifest, &record))
}
