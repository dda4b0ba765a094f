//! GPT-2 for tinyrlhf, in burn: the model, reward/value heads, KV cache, sampler, checkpoints and
//! LoRA adapters (PEFT's layout).
//!
//! Boundary: token ids in, logits, scalars and sampled ids out; checkpoints as bytes
//! (HF `config.json` + `model.safetensors`). No text (see `tinyrlhf-tokenizer`), no files, and no
//! backend named: callers pass a burn `Device` (flex on CPU, wgpu/WebGPU on a GPU).
//!
//! Reads from the device (`generate`, `save_*`) are async because WebGPU permits no blocking read;
//! on the CPU backend their futures are ready at once, so native callers can block on them.

mod checkpoint;
mod choose;
mod config;
mod device_read;
mod gpt;
mod lora;
mod sample;

pub use checkpoint::{
    CheckpointError, Weights, WeightsWriter, gpt_from_config, load_gpt, load_scalar_model, save_gpt, save_scalar_model,
    with_stable_param_ids,
};
pub use choose::choose_tokens;
pub use config::{ConfigError, GptConfig};
pub use device_read::{device_reads, read_f32};
pub use gpt::{Gpt, KvCache, LeftPadded, ScalarModel, gather_positions, left_pad};
pub use lora::{LORA_TARGETS, LoraConfig, has_adapters, load_peft_adapter, save_peft_adapter, scalar_with_lora, with_lora};
pub use sample::{Generation, READ_EVERY, SampleError, SamplingConfig, generate};
