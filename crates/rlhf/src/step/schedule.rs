//! The learning-rate schedule of every trainer: linear warm-up, then decay to a floor.

use serde::{Deserialize, Serialize};

/// How the learning rate falls after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Half a cosine (pretraining and SFT).
    #[default]
    Cosine,
    /// A straight line (the reward model and every policy method, as TRL's `linear`).
    Linear,
}

/// Linear warm-up from 0 to `peak` over `warmup` steps, then `decay` to `peak * floor` at `total`
/// steps, flat after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    /// The final learning rate as a fraction of the peak.
    pub floor: f64,
    #[serde(default)]
    pub decay: Decay,
}

impl LrSchedule {
    /// No warm-up, a straight line from `peak` to `peak * floor` over `total` steps.
    pub fn linear(peak: f64, total: usize, floor: f64) -> Self {
        Self { peak, warmup: 0, total, floor, decay: Decay::Linear }
    }

    /// The learning rate for step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let decay_steps = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / decay_steps as f64).min(1.0);
        match self.decay {
            Decay::Cosine => {
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.peak * (self.floor + (1.0 - self.floor) * cosine)
            }
            Decay::Linear => self.peak * (1.0 - (1.0 - self.floor) * progress),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_the_floor() {
        let s = LrSchedule { peak: 1e-3, warmup: 10, total: 110, floor: 0.1, decay: Decay::Cosine };
        assert!((s.at(0) - 1e-4).abs() < 1e-12);
        assert!((s.at(9) - 1e-3).abs() < 1e-12);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        assert!((s.at(60) - 0.55e-3).abs() < 1e-9, "{}", s.at(60));
        assert!((s.at(110) - 1e-4).abs() < 1e-12);
        assert!((s.at(500) - 1e-4).abs() < 1e-12);
        assert!((1..200).all(|i| i <= 10 || s.at(i) <= s.at(i - 1)));
    }

    #[test]
    fn a_linear_schedule_falls_straight_to_its_floor_and_stays() {
        let s = LrSchedule::linear(1e-3, 4, 0.0);
        assert_eq!([s.at(0), s.at(2), s.at(4), s.at(6)], [1e-3, 5e-4, 0.0, 0.0], "a run cut short does not go negative");
        let floored = LrSchedule::linear(1e-4, 10, 0.1);
        assert_eq!(floored.at(5), 1e-4 * (1.0 - 0.9 * 0.5));
        assert!((floored.at(10) - 1e-5).abs() < 1e-18);
    }
}
