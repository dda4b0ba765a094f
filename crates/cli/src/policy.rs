//! The one loop that drives a policy run of any method (`ppo`, `grpo`, `rloo`, `dpo`): a progress
//! bar, every step's stats in `OUT/metrics.jsonl`, and every `--save-every` steps (and at the end)
//! the checkpoint and the tuned model (a run that trains every weight writes PPO's value model in
//! `OUT/value/` too; with LoRA it stays in the checkpoint, adapters and head).

use std::path::Path;

use tinyrlhf_rlhf::{PolicyStats, PolicyTrainer};
use tinyrlhf_tokenizer::Tokenizer;

use crate::files::{self, Result};
use crate::lora::{Tuned, TunedModel, save_tuned};
use crate::progress::Progress;
use crate::resume::{self, RunRecord};

/// Where a run writes and what its manifest says besides the settings and the progress.
#[derive(Debug)]
pub struct RunOutput<'a> {
    pub out: &'a Path,
    /// The model the run started from (`--policy`).
    pub base: &'a Path,
    /// Write the merged model as well (`--merge`, LoRA runs).
    pub merge: bool,
    pub tokenizer: &'a Tokenizer,
    pub save_every: usize,
    /// The stage's own manifest fields (its inputs and their digests).
    pub manifest: serde_json::Value,
    /// Its inputs and settings, kept with each checkpoint.
    pub record: &'a RunRecord,
}

impl<'a> RunOutput<'a> {
    /// A run from the model at `base` into `out`, with `lora`'s `--merge`.
    pub fn new(
        out: &'a Path,
        base: &'a Path,
        lora: &crate::lora::LoraArgs,
        tokenizer: &'a Tokenizer,
        save_every: usize,
        manifest: serde_json::Value,
        record: &'a RunRecord,
    ) -> Self {
        Self { out, base, merge: lora.merge(), tokenizer, save_every, manifest, record }
    }
}

/// Settings a policy command applies to a resumed run rather than refusing a change of them.
pub const APPLIED_ON_RESUME: [&str; 1] = ["iterations"];

/// The trainer resumed from `OUT/checkpoint/` (said so; refused if the checkpoint's run had other
/// inputs or settings than `record`), or a fresh one when there is none or `--resume` was not given
/// (refused if `OUT` holds a run: `stage` names it).
pub fn resumed_or_fresh(
    out: &Path,
    resume: bool,
    stage: &str,
    record: &RunRecord,
    resumed: impl FnOnce() -> Result<Option<PolicyTrainer>>,
    fresh: impl FnOnce() -> Result<PolicyTrainer>,
) -> Result<PolicyTrainer> {
    if resume {
        resume::check(out, record, &APPLIED_ON_RESUME)?;
    }
    if resume && let Some(trainer) = resumed()? {
        let unit = if trainer.method().samples_answers() { "iteration" } else { "step" };
        eprintln!("resuming {} at {unit} {} (with the checkpoint's settings)", out.display(), trainer.steps_done());
        return Ok(trainer);
    }
    files::start_fresh(out, resume, stage)?;
    fresh()
}

/// Steps `trainer` until it is done.
pub fn drive(mut trainer: PolicyTrainer, run: RunOutput) -> Result<()> {
    let out = run.out;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let method = trainer.method();
    let (name, unit) = (method.name().to_uppercase(), if method.samples_answers() { "iteration" } else { "step" });
    let progress =
        Progress::new(trainer.total_steps(), trainer.steps_done(), if method.samples_answers() { "iterations" } else { "steps" });
    let metrics = out.join("metrics.jsonl");
    let started = web_time::Instant::now();
    let mut last_held_out = None;
    while !trainer.is_done() {
        let stats = pollster::block_on(trainer.step()).map_err(|e| format!("{name} {unit} {}: {e}", trainer.steps_done() + 1))?;
        let step = stats.step();
        progress.update(step, &format!("{name} · {}", stats.summary()));
        if let Some(why) = stats.setback() {
            progress.println(format!("{unit} {step}: {why}"));
        }
        if let PolicyStats::Dpo(s) = &stats
            && let Some(h) = &s.held_out
        {
            progress.println(format!(
                "epoch {}: held-out implicit-reward accuracy {:.1}% ({} pairs), margin {:+.3}, loss {:.3}",
                s.epoch,
                100.0 * h.accuracy,
                h.pairs,
                h.margin,
                h.loss
            ));
            last_held_out = Some(*h);
        }
        let line = serde_json::to_value(&stats).expect("stats serialise");
        let line = if stats.sample().is_some() { files::with_sample_text(line, run.tokenizer) } else { line };
        files::append_metrics(&metrics, &line)?;
        if step % run.save_every == 0 || trainer.is_done() {
            let checkpoint = pollster::block_on(trainer.checkpoint()).map_err(|e| e.to_string())?;
            files::save_checkpoint(out, &checkpoint, run.record)?;
            let mut manifest = run.manifest.clone();
            manifest["stage"] = method.name().into();
            manifest[format!("{unit}s")] = step.into();
            manifest["settings"] = trainer.settings_json();
            manifest["held_out"] = serde_json::to_value(last_held_out).expect("json");
            manifest["seconds"] = started.elapsed().as_secs_f64().into();
            manifest["command"] = std::env::args().collect::<Vec<_>>().join(" ").into();
            let tuned = Tuned {
                model: TunedModel::Language(&trainer.policy()),
                config_json: &checkpoint.config_json,
                weights: checkpoint.weights.as_deref(),
                lora: trainer.lora(),
                base: Some(run.base),
                merge: run.merge,
                tokenizer: run.tokenizer,
            };
            save_tuned(out, &tuned, &manifest)?;
            if let Some(value) = checkpoint.value.as_ref().filter(|_| trainer.lora().is_none()) {
                let value_manifest = serde_json::json!({"stage": format!("{} value model", method.name()), "iterations": step});
                files::save_weights_dir(&out.join("value"), &checkpoint.config_json, &value.weights, run.tokenizer, &value_manifest)?;
            }
        }
    }
    eprintln!("done in {:.0} s: policy in {}", progress.finish(), out.display());
    Ok(())
}
