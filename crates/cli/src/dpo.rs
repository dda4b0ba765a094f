//! `tinyrlhf dpo`: tune the SFT policy directly on rankings (or TRL pairs) with DPO, IPO or the
//! hinge loss — no reward model, no value model. Held-out implicit-reward accuracy after every epoch;
//! metrics (TRL's names) in `metrics.jsonl`; a resumable checkpoint in `OUT/checkpoint/` every
//! `--save-every` steps and at the end, when the policy is written as a model directory.

use std::path::PathBuf;

use clap::Args;
use tinyrlhf_rlhf::{DpoConfig, DpoLoss, LanguageModel, MethodSettings, PolicyInputs, TrainSettings};

use crate::backend::Backend;
use crate::files::Result;
use crate::lora::Base;
use crate::model_dirs;
use crate::outputs::{Out, Plan};
use crate::policy;
use crate::resume::RunRecord;

#[derive(Debug, Args)]
pub struct DpoArgs {
    /// The SFT model directory: the policy starts here and the frozen reference stays here.
    #[arg(long)]
    policy: PathBuf,
    /// Rankings (from `tinyrlhf rank`) or TRL pairwise JSONL ({"prompt", "chosen", "rejected"}).
    #[arg(long)]
    rankings: PathBuf,
    /// Held-out rankings for the per-epoch accuracy; without it every fifth ranking is held out.
    #[arg(long)]
    held_out: Option<PathBuf>,
    /// Directory to write the tuned policy to.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = DpoConfig::default().epochs)]
    epochs: usize,
    /// Rankings per step.
    #[arg(long, default_value_t = DpoConfig::default().batch_size)]
    batch: usize,
    #[arg(long, default_value_t = DpoConfig::default().train.lr)]
    lr: f64,
    /// The implicit reward's scale: smaller lets the policy move further from the reference.
    #[arg(long, default_value_t = DpoConfig::default().beta)]
    beta: f64,
    /// sigmoid (DPO), ipo (IPO, length-normalised) or hinge.
    #[arg(long, default_value_t = DpoConfig::default().loss)]
    loss: DpoLoss,
    /// Steps between checkpoints (`OUT/checkpoint/`).
    #[arg(long, value_parser = crate::at_least_one, default_value_t = 20)]
    save_every: usize,
    /// Continue from `OUT/checkpoint/` (its settings).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = DpoConfig::default().train.seed)]
    seed: u64,
    /// Activations one backward pass may hold (MiB): a step goes through the policy in groups this
    /// size. More memory, fewer passes.
    #[arg(long, default_value_t = DpoConfig::default().train.activation_budget_mib)]
    activation_budget_mib: u64,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[command(flatten)]
    lora: crate::lora::LoraArgs,
}

impl DpoArgs {
    pub fn plan(&self) -> Plan<'_> {
        let inputs =
            [Some(&self.policy), Some(&self.rankings), self.held_out.as_ref()].into_iter().flatten().map(|p| p.as_path()).collect();
        Plan { out: &self.out, kind: Out::ModelDir, inputs, resume: self.resume }
    }
}

impl DpoArgs {
    fn settings(&self) -> DpoConfig {
        DpoConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            beta: self.beta,
            loss: self.loss,
            train: TrainSettings {
                lr: self.lr,
                seed: self.seed,
                lora: self.lora.config(),
                activation_budget_mib: self.activation_budget_mib,
                ..DpoConfig::default().train
            },
        }
    }
}

pub fn dpo(args: &DpoArgs) -> Result<()> {
    // Settings first: a bad flag is reported before anything is loaded.
    let settings = args.settings();
    settings.validate().map_err(|e| e.to_string())?;
    let device = args.backend.device()?;
    let LanguageModel { config, model: sft, tokenizer, identity } = model_dirs::load_model_dir(&args.policy, &device)?;
    let set = crate::rankings::load(&args.rankings, args.held_out.as_deref(), &tokenizer, config.context_length())?;
    let pairs = set.train_pairs();
    eprintln!("training on {} rankings ({pairs} pairs), {} held out", set.train.len(), set.held_out.len());
    device.seed(args.seed);
    let mut inputs = vec![("policy", args.policy.as_path()), ("rankings", args.rankings.as_path())];
    inputs.extend(args.held_out.as_deref().map(|h| ("held-out rankings", h)));
    let record = RunRecord::new(&inputs, &settings)?;
    let inputs = PolicyInputs { rankings: set.train, held_out: set.held_out, ..PolicyInputs::new(sft, config, tokenizer.special_ids()) };
    let trainer = policy::resumed_or_fresh(&args.out, args.resume, &record, MethodSettings::Dpo(settings), inputs)?;
    let manifest = serde_json::json!({
        "sft": args.policy, "data": {"rankings": record.digest("rankings"), "pairs": pairs},
    });
    let base = Base { path: &args.policy, identity: &identity };
    policy::run(trainer, policy::RunOutput::new(&args.out, base, &args.lora, &tokenizer, args.save_every, manifest, &record))
}
