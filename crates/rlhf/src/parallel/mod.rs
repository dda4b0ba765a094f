//! Work shared between copies of a trainer (the page's workers) and between threads.

pub mod peers;
pub(crate) mod threads;
