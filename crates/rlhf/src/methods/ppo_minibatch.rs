//! What one PPO minibatch measured before its update (losses, clip fractions, the largest log
//! ratio, both gradient norms), laid out as the numbers `PpoTrainer::update` keeps on the device
//! until the iteration's one read, and combined from each peer's share when workers split it.

/// What one minibatch measured before its update.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct MinibatchStats {
    pub(crate) loss: f64,
    pub(crate) pg_loss: f64,
    pub(crate) pg_clipfrac: f64,
    pub(crate) approx_kl: f64,
    pub(crate) vf_loss: f64,
    pub(crate) vf_clipfrac: f64,
    /// Largest |log ratio| between the trained forward and the rollout's log-probs.
    pub(crate) max_log_ratio: f64,
    pub(crate) policy_grad_norm: f64,
    pub(crate) value_grad_norm: f64,
}

impl MinibatchStats {
    /// Numbers per minibatch, in the order `PpoTrainer::update` lays them out: the measured
    /// ones, then the two gradient norms.
    pub(crate) const COUNT: usize = 9;
    pub(crate) const MEASURED: usize = 7;

    /// The minibatch's measured numbers from each peer's share: the weighted means add up, the
    /// largest log ratio is the largest of any peer's.
    pub(crate) fn combine(parts: &[Vec<f32>]) -> Vec<f32> {
        let mut out = vec![0.0f32; Self::MEASURED];
        for part in parts {
            for (i, (o, &x)) in out.iter_mut().zip(part).enumerate() {
                *o = if i + 1 < Self::MEASURED {
                    *o + x
                } else if x.is_nan() || x > *o {
                    x
                } else {
                    *o
                };
            }
        }
        out
    }

    pub(crate) fn from_numbers(n: &[f32]) -> Self {
        let n: Vec<f64> = n.iter().map(|&x| f64::from(x)).collect();
        Self {
            loss: n[0],
            pg_loss: n[1],
            pg_clipfrac: n[2],
            approx_kl: n[3],
            vf_loss: n[4],
            vf_clipfrac: n[5],
            max_log_ratio: n[6],
            policy_grad_norm: n[7],
            value_grad_norm: n[8],
        }
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.pg_loss += other.pg_loss;
        self.pg_clipfrac += other.pg_clipfrac;
        self.approx_kl += other.approx_kl;
        self.vf_loss += other.vf_loss;
        self.vf_clipfrac += other.vf_clipfrac;
        self.max_log_ratio = self.max_log_ratio.max(other.max_log_ratio);
    }

    pub(crate) fn is_finite(&self) -> bool {
        [
            self.loss,
            self.pg_loss,
            self.pg_clipfrac,
            self.approx_kl,
            self.vf_loss,
            self.vf_clipfrac,
            self.max_log_ratio,
            self.policy_grad_norm,
            self.value_grad_norm,
        ]
        .iter()
        .all(|x| x.is_finite())
    }
}
