//! What one optimisation step is made of: losses, chosen-token log-probs, gradient clipping,
//! the learning-rate schedule, the settings every trainer shares, and reading numbers back from
//! the device.

pub mod grads;
pub(crate) mod groups;
pub mod logprobs;
pub mod losses;
pub(crate) mod read;
pub mod schedule;
pub mod settings;
