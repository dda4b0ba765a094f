//! The models a run loads and how they fit together: folders and GGUF files as bytes, which
//! weights train (LoRA or all), and whether a reward model reads the policy's tokens.

pub mod compat;
pub(crate) mod gguf_files;
pub(crate) mod lora;
pub mod model_files;
