//! `tinyrlhf dpo`: tune the SFT policy directly on rankings (or TRL pairs) with DPO, IPO or the
//! hinge loss — no reward model, no value model. Held-out implicit-reward accuracy after every epoch;
//! metrics (TRL's names) in `metrics.jsonl`; a resumable checkpoint in `OUT/checkpoint/` every
//! `--save-every` steps and at the end, when the policy is written as a model directory.

use std::path::PathBuf;

use clap::Args;
use tinyrlhf_rlhf::{DpoConfig, DpoLoss, DpoTrainer, RankingSet};

use crate::backend::Backend;
use crate::files::{self, Result};
use crate::progress::Progress;
use crate::train::files_digest;

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
    #[arg(long, default_value_t = DpoConfig::default().lr)]
    lr: f64,
    /// The implicit reward's scale: smaller lets the policy move further from the reference.
    #[arg(long, default_value_t = DpoConfig::default().beta)]
    beta: f64,
    /// sigmoid (DPO), ipo (IPO, length-normalised) or hinge.
    #[arg(long, default_value = "sigmoid")]
    loss: DpoLoss,
    /// Steps between checkpoints (`OUT/checkpoint/`).
    #[arg(long, value_parser = crate::at_least_one, default_value_t = 20)]
    save_every: usize,
    /// Continue from `OUT/checkpoint/` (its settings).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[command(flatten)]
    lora: crate::lora::LoraArgs,
}

impl DpoArgs {
    fn settings(&self) -> DpoConfig {
        DpoConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            lr: self.lr,
            beta: self.beta,
            loss: self.loss,
            seed: self.seed,
            lora: self.lora.config(),
            ..DpoConfig::default()
        }
    }
}

pub fn dpo(args: &DpoArgs) -> Result<()> {
    // Settings first: a bad flag is reported before anything is loaded.
    let settings = args.settings();
    settings.validate().map_err(|e| e.to_string())?;
    let device = args.backend.device()?;
    let (config, sft, tokenizer) = files::load_model_dir(&args.policy, &device)?;
    let set = crate::rankings::load(&args.rankings, args.held_out.as_deref(), &tokenizer, config.context_length())?;
    let pairs = set.train_pairs();
    eprintln!("training on {} rankings ({pairs} pairs), {} held out", set.train.len(), set.held_out.len());
    let RankingSet { train, held_out, .. } = set;
    let pad = tokenizer.special_ids().pad;
    device.seed(args.seed);

    let metrics = args.out.join("metrics.jsonl");
    let mut trainer = match (args.resume, files::load_checkpoint(&args.out)?) {
        (true, Some(checkpoint)) => {
            let trainer = pollster::block_on(DpoTrainer::resume(&checkpoint, &sft, train, held_out, pad)).map_err(|e| e.to_string())?;
            eprintln!("resuming {} at step {} (with the checkpoint's settings)", args.out.display(), trainer.steps_done());
            trainer
        }
        (resume, _) => {
            files::start_fresh(&args.out, resume, "DPO")?;
            pollster::block_on(DpoTrainer::new(sft, config.clone(), train, held_out, pad, settings)).map_err(|e| e.to_string())?
        }
    };

    std::fs::create_dir_all(&args.out).map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let total = trainer.total_steps();
    let progress = Progress::new(total, trainer.steps_done(), "steps");
    let started = web_time::Instant::now();
    let mut last_held_out = None;
    while !trainer.is_done() {
        let stats = pollster::block_on(trainer.step()).map_err(|e| e.to_string())?;
        let m = &stats.metrics;
        progress.update(
            stats.step,
            &format!(
                "epoch {} · loss {:.3} · margin {:+.2} · accuracy {:.0}%",
                stats.epoch,
                stats.loss,
                m.rewards_margins,
                100.0 * m.rewards_accuracies
            ),
        );
        if let Some(reason) = &stats.skipped {
            progress.println(format!("step {}: {reason}", stats.step));
        }
        if let Some(h) = &stats.held_out {
            progress.println(format!(
                "epoch {}: held-out implicit-reward accuracy {:.1}% ({} pairs), margin {:+.3}, loss {:.3}",
                stats.epoch,
                100.0 * h.accuracy,
                h.pairs,
                h.margin,
                h.loss
            ));
            last_held_out = Some(*h);
        }
        files::append_metrics(&metrics, &serde_json::to_value(&stats).expect("stats serialise"))?;
        let last = trainer.is_done();
        if stats.step % args.save_every == 0 || last {
            let checkpoint = pollster::block_on(trainer.checkpoint()).map_err(|e| e.to_string())?;
            files::save_checkpoint(&args.out, &checkpoint)?;
            if last {
                let manifest = serde_json::json!({
                    "stage": "dpo", "sft": args.policy, "steps": stats.step, "settings": trainer.settings(),
                    "data": {"rankings": files_digest(&[&args.rankings])?, "pairs": pairs},
                    "held_out": last_held_out, "seconds": started.elapsed().as_secs_f64(),
                    "command": std::env::args().collect::<Vec<_>>().join(" "),
                });
                files::save_model_dir(&args.out, &checkpoint, &tokenizer, &manifest)?;
                crate::lora::save_adapter(&args.out, &trainer.policy(), trainer.settings().lora.as_ref())?;
            }
        }
    }
    eprintln!("done in {:.0} s: policy in {}", progress.finish(), args.out.display());
    Ok(())
}
