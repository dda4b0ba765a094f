//! `tinyrlhf grpo` and `tinyrlhf rloo`: tune the SFT policy against a reward model with K answers
//! per prompt and the group as its own baseline — no value model. One line of metrics per
//! iteration goes to `metrics.jsonl`; every `--save-every` iterations and at the end the policy is
//! written as a model directory with a resumable checkpoint in `OUT/checkpoint/`.

use std::path::PathBuf;

use clap::Args;
use tinyrlhf_rlhf::{
    GroupConfig, GroupMethod, LanguageModel, LossAggregation, MethodSettings, PolicyInputs, RewardScaling, TrainSettings, check_compatible,
    training_prompt_ids,
};

use crate::backend::Backend;
use crate::files::{self, Result};
use crate::lora::Base;
use crate::model_dirs;
use crate::outputs::{Out, Plan};
use crate::policy;
use crate::resume::RunRecord;

#[derive(Debug, Args)]
pub struct GroupArgs {
    /// The SFT model directory: the policy starts here and the frozen reference stays here.
    #[arg(long)]
    policy: PathBuf,
    /// The reward model directory (from `tinyrlhf reward`).
    #[arg(long)]
    reward: PathBuf,
    /// Training prompts: JSONL of {"prompt"}, or one per line.
    #[arg(long)]
    prompts: PathBuf,
    /// Directory to write the tuned policy to.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = GroupConfig::default().iterations)]
    iterations: usize,
    /// Distinct prompts per iteration.
    #[arg(long, default_value_t = GroupConfig::default().prompts_per_iteration)]
    prompts_per_iteration: usize,
    /// Answers sampled per prompt: the group (at least 2).
    #[arg(short, long, default_value_t = GroupConfig::default().samples_per_prompt)]
    k: usize,
    #[arg(long, default_value_t = GroupConfig::default().train.lr)]
    lr: f64,
    /// KL coefficient to the reference (GRPO: k3 in the loss, default 0.04; RLOO: k1 in the reward,
    /// default 0.05).
    #[arg(long)]
    beta: Option<f64>,
    /// Clip range of the importance ratio.
    #[arg(long, default_value_t = GroupConfig::default().epsilon)]
    epsilon: f64,
    /// Upper clip range (DAPO's clip-higher); defaults to --epsilon.
    #[arg(long)]
    epsilon_high: Option<f64>,
    /// GRPO: scale centred rewards by the group's std, the batch's, or not at all (group, batch, none).
    #[arg(long, default_value_t = GroupConfig::default().scale_rewards)]
    scale_rewards: RewardScaling,
    /// GRPO: loss aggregation (grpo, dr_grpo, dapo, bnpo).
    #[arg(long, default_value_t = GroupConfig::default().loss_type)]
    loss_type: LossAggregation,
    /// RLOO: normalise advantages over the batch.
    #[arg(long)]
    normalize_advantages: bool,
    /// Rollout temperature.
    #[arg(long, default_value_t = GroupConfig::default().temperature)]
    temperature: f32,
    #[arg(long, default_value_t = GroupConfig::default().max_new_tokens)]
    max_new_tokens: usize,
    /// Restore the last good policy when the KL to the reference passes this.
    #[arg(long, default_value_t = GroupConfig::default().kl_limit)]
    kl_limit: f64,
    /// Iterations between checkpoints (`OUT/checkpoint/`) and policy saves.
    #[arg(long, value_parser = crate::at_least_one, default_value_t = 10)]
    save_every: usize,
    /// Continue from `OUT/checkpoint/` (its settings; --iterations may extend the run).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = GroupConfig::default().train.seed)]
    seed: u64,
    /// Activations one backward pass of the update may hold (MiB): the batch goes through the
    /// policy in groups this size. More memory, fewer passes.
    #[arg(long, default_value_t = GroupConfig::default().train.activation_budget_mib)]
    activation_budget_mib: u64,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[command(flatten)]
    lora: crate::lora::LoraArgs,
}

impl GroupArgs {
    pub fn plan(&self) -> Plan<'_> {
        Plan { out: &self.out, kind: Out::ModelDir, inputs: vec![&self.policy, &self.reward, &self.prompts], resume: self.resume }
    }
}

impl GroupArgs {
    fn settings(&self, method: GroupMethod) -> GroupConfig {
        GroupConfig {
            method,
            iterations: self.iterations,
            prompts_per_iteration: self.prompts_per_iteration,
            samples_per_prompt: self.k,
            temperature: self.temperature,
            max_new_tokens: self.max_new_tokens,
            beta: self.beta,
            epsilon: self.epsilon,
            epsilon_high: self.epsilon_high,
            scale_rewards: self.scale_rewards,
            loss_type: self.loss_type,
            normalize_advantages: self.normalize_advantages,
            kl_limit: self.kl_limit,
            train: TrainSettings {
                lr: self.lr,
                seed: self.seed,
                lora: self.lora.config(),
                activation_budget_mib: self.activation_budget_mib,
                ..GroupConfig::default().train
            },
            ..GroupConfig::default()
        }
    }
}

pub fn run(args: &GroupArgs, method: GroupMethod) -> Result<()> {
    // Settings first: a bad flag is reported before anything is loaded.
    let settings = args.settings(method);
    settings.validate().map_err(|e| e.to_string())?;
    let device = args.backend.device()?;
    let loaded = model_dirs::load_model_dir(&args.policy, &device)?;
    let LanguageModel { config, model: sft, tokenizer, identity } = loaded.clone();
    let (reward_config, reward, reward_tokenizer) = model_dirs::load_scalar_dir(&args.reward, &device, Some((&args.policy, &loaded)))?;
    let role = format!("the reward model in {}", args.reward.display());
    check_compatible(&role, (&config, &tokenizer), (&reward_config, &reward_tokenizer)).map_err(|e| e.to_string())?;
    let prompts = files::read_prompts(&args.prompts)?;
    let prompt_ids = training_prompt_ids(&tokenizer, config.context_length(), &prompts, args.max_new_tokens).map_err(|e| e.to_string())?;
    device.seed(args.seed);
    let inputs = [("policy", args.policy.as_path()), ("reward model", args.reward.as_path()), ("prompts", args.prompts.as_path())];
    let record = RunRecord::new(&inputs, &settings)?;
    let inputs = PolicyInputs { reward: Some(reward), prompts: prompt_ids, ..PolicyInputs::new(sft, config, tokenizer.special_ids()) };
    let trainer = policy::resumed_or_fresh(&args.out, args.resume, &record, MethodSettings::Group(settings), inputs)?;
    let manifest = serde_json::json!({
        "sft": args.policy, "reward": args.reward, "data": {"prompts": record.digest("prompts")},
    });
    let base = Base { path: &args.policy, identity: &identity };
    policy::run(trainer, policy::RunOutput::new(&args.out, base, &args.lora, &tokenizer, args.save_every, manifest, &record))
}
