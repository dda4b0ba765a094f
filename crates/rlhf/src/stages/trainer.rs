//! The one interface every stage's trainer has — SFT (and pretraining), the reward model, and a
//! policy by any method — so each edge drives them all with one loop: `step` until `is_done`, each
//! step's stats reported the same way (a summary line, a setback, a held-out figure).

use std::future::Future;

use serde::Serialize;

use crate::checkpoint::TrainError;

/// A training run taken one step at a time.
pub trait Trainer {
    type Stats: StepReport + Serialize;

    /// One step: a batch (SFT, reward model, DPO) or a rollout iteration (PPO, GRPO, RLOO).
    fn step(&mut self) -> impl Future<Output = Result<Self::Stats, TrainError>>;

    fn steps_done(&self) -> usize;

    /// Steps in the whole run.
    fn total_steps(&self) -> usize;

    fn is_done(&self) -> bool {
        self.steps_done() >= self.total_steps()
    }
}

/// What an edge shows of a step, whatever trained it.
pub trait StepReport {
    /// The step this was, counted from 1.
    fn step(&self) -> usize;

    /// Why the step kept the last good state instead of updating, if it did.
    fn setback(&self) -> Option<&str>;

    /// A one-line summary for a progress bar.
    fn summary(&self) -> String;

    /// The held-out evaluation this step ended with (the last step of an epoch), as a line.
    fn held_out(&self) -> Option<String> {
        None
    }
}
