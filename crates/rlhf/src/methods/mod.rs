//! The ways to tune a policy: PPO, GRPO and RLOO (which sample answers and score them with the
//! reward model) and DPO (which reads the rankings); each method's arithmetic as free functions
//! checked against TRL, and the rollout they share.

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
