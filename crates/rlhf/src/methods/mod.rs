//! The ways to tune a policy: PPO, GRPO and RLOO (which sample answers and score them with the
//! reward model) and DPO (which reads the rankings); each method's arithmetic as free functions
//! checked against TRL, and the rollout they share.

/// A setting's choice written as its settings file and flags spell it (serde's name): a flag's
/// default is the setting's own, never a string written again at the edge.
macro_rules! display_by_serde_name {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let name = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
                f.write_str(name.as_str().ok_or(std::fmt::Error)?)
            }
        }
    )*};
}
display_by_serde_name!(dpo_math::DpoLoss, group_math::RewardScaling, group_math::LossAggregation, ppo_math::KlEstimator);

pub mod dpo;
pub mod dpo_math;
pub mod group;
pub mod group_math;
pub(crate) mod iteration;
pub mod method;
pub mod ppo;
pub mod ppo_config;
pub mod ppo_math;
pub(crate) mod ppo_minibatch;
pub mod rollout;
