//! The one loop that drives every stage's trainer (`pretrain`, `sft`, `reward`, `ppo`, `grpo`,
//! `rloo`, `dpo`) to its end: a progress bar with the step's summary, setbacks and held-out figures
//! printed above it, each step's stats as a line of `OUT/metrics.jsonl`, and the stage's own
//! saving after every `save_every`-th step and the last.

use std::path::Path;

use tinyrlhf_rlhf::{StepReport, Trainer};

use crate::files::{self, Result};
use crate::progress::Progress;

/// How a stage names its steps and when it saves.
#[derive(Debug, Clone, Copy)]
pub struct Loop<'a> {
    /// Where `metrics.jsonl` goes.
    pub out: &'a Path,
    /// Put before each step's summary on the progress bar ("PPO"), or nothing.
    pub label: &'a str,
    /// Put before a step number in messages: "step", "PPO iteration".
    pub step_name: &'a str,
    /// The progress bar's unit: "steps", "iterations".
    pub unit: &'static str,
    pub save_every: usize,
}

/// What a stage does after each step: `(trainer, stats, metrics line to add to, whether this step
/// saves — every `save_every`-th and the last —, the progress bar to print above)`.
pub type AfterStep<'a, T> = dyn FnMut(&T, &<T as Trainer>::Stats, &mut StepLine, bool, &Progress) -> Result<()> + 'a;

/// A step's line of `metrics.jsonl`, written once: by the stage just before it saves a checkpoint
/// ([`StepLine::write`]), so no checkpoint reaches a step whose line is not in the file, else by
/// the loop after the stage's work. A resumed run first cuts the file back to its checkpoint's
/// step ([`files::keep_metrics_through`]): after any kills, each step is in it once, in order.
#[derive(Debug)]
pub struct StepLine<'a> {
    line: serde_json::Value,
    path: &'a Path,
    written: bool,
}

impl StepLine<'_> {
    pub fn write(&mut self) -> Result<()> {
        if !self.written {
            files::append_metrics(self.path, &self.line)?;
            self.written = true;
        }
        Ok(())
    }
}

impl std::ops::Deref for StepLine<'_> {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        &self.line
    }
}

impl std::ops::DerefMut for StepLine<'_> {
    fn deref_mut(&mut self) -> &mut serde_json::Value {
        &mut self.line
    }
}

/// Steps `trainer` until it is done; returns the seconds it took.
pub fn drive<T: Trainer>(trainer: &mut T, run: Loop, after: &mut AfterStep<T>) -> Result<f64> {
    std::fs::create_dir_all(run.out).map_err(|e| format!("cannot create {}: {e}", run.out.display()))?;
    let metrics = run.out.join("metrics.jsonl");
    if trainer.steps_done() == 0 {
        // A fresh run's metrics start empty.
        files::remove_file(&metrics)?;
    } else {
        files::keep_metrics_through(&metrics, trainer.steps_done())?;
    }
    let progress = Progress::new(trainer.total_steps(), trainer.steps_done(), run.unit);
    while !trainer.is_done() {
        let stats = pollster::block_on(trainer.step()).map_err(|e| format!("{} {}: {e}", run.step_name, trainer.steps_done() + 1))?;
        let step = stats.step();
        let summary = stats.summary();
        progress.update(step, &if run.label.is_empty() { summary } else { format!("{} · {summary}", run.label) });
        if let Some(why) = stats.setback() {
            progress.println(format!("{} {step}: {why}", run.step_name));
        }
        if let Some(line) = stats.held_out() {
            progress.println(line);
        }
        let line = serde_json::to_value(&stats).expect("stats serialise");
        let mut line = StepLine { line, path: &metrics, written: false };
        let save = step.is_multiple_of(run.save_every) || trainer.is_done();
        after(trainer, &stats, &mut line, save, &progress)?;
        line.write()?;
    }
    Ok(progress.finish())
}
