//! `tinyrlhf reward`: train a reward model on rankings (or TRL prompt/chosen/rejected pairs),
//! starting from the SFT model. Reports pair accuracy on held-out rankings after every epoch, then
//! calibrates the head so the SFT answers in the rankings score mean 0, std 1.

use std::path::PathBuf;

use clap::Args;
use tinyrlhf_rlhf::{LanguageModel, RewardConfig, RewardTrainer, TrainSettings};

use crate::backend::Backend;
use crate::drive::{Loop, drive};
use crate::files::Result;
use crate::lora::{Base, Tuned, TunedModel, save_tuned};
use crate::model_dirs;
use crate::outputs::{Out, Plan};
use crate::train::files_digest;

#[derive(Debug, Args)]
pub struct RewardArgs {
    /// The SFT model directory the reward model starts from.
    #[arg(long)]
    model: PathBuf,
    /// Rankings (from `tinyrlhf rank`) or TRL pairwise JSONL ({"prompt", "chosen", "rejected"}).
    #[arg(long)]
    rankings: PathBuf,
    /// Held-out rankings for the per-epoch accuracy; without it every fifth ranking is held out.
    #[arg(long)]
    held_out: Option<PathBuf>,
    /// Reward model directory to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = RewardConfig::default().epochs)]
    epochs: usize,
    /// Rankings per step.
    #[arg(long, default_value_t = RewardConfig::default().batch_size)]
    batch: usize,
    #[arg(long, default_value_t = RewardConfig::default().train.lr)]
    lr: f64,
    /// Pull rewards toward 0 with this weight (TRL's center_rewards_coefficient).
    #[arg(long, default_value_t = RewardConfig::default().center_coef)]
    center_coef: f64,
    /// Only shift the head to mean 0; do not scale it to std 1.
    #[arg(long)]
    no_unit_std: bool,
    #[arg(long, default_value_t = RewardConfig::default().train.seed)]
    seed: u64,
    /// Activations one backward pass may hold (MiB): a step goes through the model in groups this
    /// size. More memory, fewer passes.
    #[arg(long, default_value_t = RewardConfig::default().train.activation_budget_mib)]
    activation_budget_mib: u64,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[command(flatten)]
    lora: crate::lora::LoraArgs,
}

impl RewardArgs {
    pub fn plan(&self) -> Plan<'_> {
        let inputs = [Some(&self.model), Some(&self.rankings), self.held_out.as_ref()].into_iter().flatten().map(|p| p.as_path()).collect();
        Plan { out: &self.out, kind: Out::ModelDir, inputs, resume: false }
    }
}

pub fn reward(args: &RewardArgs) -> Result<()> {
    let device = args.backend.device()?;
    let LanguageModel { config, model: sft, tokenizer, identity } = model_dirs::load_model_dir(&args.model, &device)?;
    let set = crate::rankings::load(&args.rankings, args.held_out.as_deref(), &tokenizer, config.context_length())?;
    let pairs = set.train_pairs();
    eprintln!("training on {} rankings ({pairs} pairs), {} held out", set.train.len(), set.held_out.len());

    device.seed(args.seed);
    let settings = RewardConfig {
        epochs: args.epochs,
        batch_size: args.batch,
        center_coef: args.center_coef,
        unit_std: !args.no_unit_std,
        train: TrainSettings {
            lr: args.lr,
            seed: args.seed,
            lora: args.lora.config(),
            activation_budget_mib: args.activation_budget_mib,
            ..RewardConfig::default().train
        },
    };
    let settings_lora = settings.train.lora.clone();
    let pad = tokenizer.special_ids().pad;
    let mut trainer = RewardTrainer::on_rankings(sft, config.clone(), set, pad, settings).map_err(|e| e.to_string())?;
    let mut last_held_out = None;
    let run = Loop { out: &args.out, label: "", step_name: "step", unit: "steps", save_every: usize::MAX };
    let seconds = drive(&mut trainer, run, &mut |_, stats, _, _, _| {
        last_held_out = stats.held_out.or(last_held_out);
        Ok(())
    })?;

    let calibrated = pollster::block_on(trainer.calibrated()).map_err(|e| e.to_string())?;
    eprintln!("{}", calibrated.summary());
    let manifest = serde_json::json!({
        "stage": "reward", "sft": args.model, "seed": args.seed, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
        "data": {"rankings": files_digest(&[&args.rankings])?, "pairs": pairs},
        "held_out": last_held_out,
        "calibration": {
            "answers": calibrated.answers, "mean_before": calibrated.mean_before, "std_before": calibrated.std_before,
            "unit_std": calibrated.unit_std,
        },
        "seconds": seconds,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    let tuned = Tuned {
        model: TunedModel::Scalar(&calibrated.model),
        config_json: &config.to_json(),
        weights: None,
        lora: settings_lora.as_ref(),
        base: Some(Base { path: &args.model, identity: &identity }),
        merge: args.lora.merge(),
        tokenizer: &tokenizer,
    };
    save_tuned(&args.out, &tuned, &manifest)?;
    eprintln!("reward model written to {}", args.out.display());
    Ok(())
}
