//! The trainers of every stage behind one interface: SFT (and pretraining), the reward model, and a
//! policy by any method.

pub mod policy_trainer;
pub mod reward;
pub mod scoring;
pub mod supervised;
pub mod trainer;
