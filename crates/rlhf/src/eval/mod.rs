//! Measurements of a run: the blind head-to-head that says whether tuning worked, and whether a
//! device computes what the CPU computes.

pub mod agreement;
pub mod gpu_check;
pub mod head_to_head;
