//! A policy run of any method (`ppo`, `grpo`, `rloo`, `dpo`), resumed or fresh, driven by the one
//! loop (`drive.rs`): every step's stats in `OUT/metrics.jsonl` with the sampled answer as text, and
//! every `--save-every` steps (and at the end) the checkpoint and the tuned model (a run that trains
//! every weight writes PPO's value model in `OUT/value/` too; with LoRA it stays in the checkpoint,
//! adapters and head).

use std::path::Path;

use tinyrlhf_rlhf::{MethodSettings, PolicyInputs, PolicyStats, PolicyTrainer, StepReport, Trainer};
use tinyrlhf_tokenizer::Tokenizer;

use crate::checkpoints;
use crate::drive::{Loop, drive};
use crate::files::{self, Result};
use crate::lora::{Base, Tuned, TunedModel, save_tuned};
use crate::model_dirs;
use crate::resume::{self, RunRecord};

/// Where a run writes and what its manifest says besides the settings and the progress.
#[derive(Debug)]
pub struct RunOutput<'a> {
    pub out: &'a Path,
    /// The model the run started from (`--policy`).
    pub base: Base<'a>,
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
    /// A run from the model `base` into `out`, with `lora`'s `--merge`.
    pub fn new(
        out: &'a Path,
        base: Base<'a>,
        lora: &crate::lora::LoraArgs,
        tokenizer: &'a Tokenizer,
        save_every: usize,
        manifest: serde_json::Value,
        record: &'a RunRecord,
    ) -> Self {
        Self { out, base, merge: lora.merge(), tokenizer, save_every, manifest, record }
    }
}

/// The trainer resumed from `OUT/checkpoint/` (said so; refused if the checkpoint's run had other
/// inputs or settings than `record`), or a fresh one of `settings` when there is none or `--resume`
/// was not given (refused if `OUT` holds a run). A resumed run keeps its checkpoint's settings.
pub fn resumed_or_fresh(
    out: &Path,
    resume: bool,
    record: &RunRecord,
    settings: MethodSettings,
    inputs: PolicyInputs,
) -> Result<PolicyTrainer> {
    let method = settings.method();
    if resume {
        resume::check(out, record, &MethodSettings::APPLIED_ON_RESUME)?;
        if let Some(checkpoint) = checkpoints::load(out)? {
            let trainer = pollster::block_on(PolicyTrainer::resume(&settings, &checkpoint, inputs))
                .map_err(|e| format!("{}: {e}", checkpoints::folder(out).display()))?;
            let unit = if method.samples_answers() { "iteration" } else { "step" };
            eprintln!("resuming {} at {unit} {} (with the checkpoint's settings)", out.display(), trainer.steps_done());
            return Ok(trainer);
        }
    }
    files::start_fresh(out, resume, &method.name().to_uppercase())?;
    pollster::block_on(PolicyTrainer::new(settings, inputs)).map_err(|e| e.to_string())
}

/// Steps `trainer` until it is done.
pub fn run(mut trainer: PolicyTrainer, run: RunOutput) -> Result<()> {
    let out = run.out;
    let method = trainer.method();
    let name = method.name().to_uppercase();
    let (unit, units) = if method.samples_answers() { ("iteration", "iterations") } else { ("step", "steps") };
    let step_name = format!("{name} {unit}");
    let started = web_time::Instant::now();
    let mut last_held_out = None;
    let each_step = Loop { out, label: &name, step_name: &step_name, unit: units, save_every: run.save_every };
    let seconds = drive(&mut trainer, each_step, &mut |trainer, stats, line, save, _| {
        if let PolicyStats::Dpo(s) = stats {
            last_held_out = s.held_out.or(last_held_out);
        }
        if stats.sample().is_some() {
            **line = files::with_sample_text(line.take(), run.tokenizer);
        }
        if !save {
            return Ok(());
        }
        let step = stats.step();
        let checkpoint = pollster::block_on(trainer.checkpoint()).map_err(|e| e.to_string())?;
        line.write()?;
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
            model_dirs::save_weights_dir(&out.join("value"), &checkpoint.config_json, &value.weights, run.tokenizer, &value_manifest)?;
        }
        // The checkpoint last: a run killed before it resumes from the one before and writes this
        // step's model again, so the model and its manifest never lag the checkpoint.
        checkpoints::save(out, &checkpoint, &run.record.to_json())
    })?;
    eprintln!("done in {seconds:.0} s: policy in {}", out.display());
    Ok(())
}
