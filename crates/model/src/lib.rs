//! Causal language models for tinyrlhf, in burn: GPT-2, the Llama family (Llama, Qwen2, Qwen3) and
//! Gemma 3 behind one type (each family a file implementing `family.rs`' traits and a line in
//! `causal_lm.rs`' list), reward/value
//! heads, KV cache, sampler, checkpoints and LoRA adapters (PEFT's layout).
//!
//! Boundary: token ids in, logits, scalars and sampled ids out; checkpoints as bytes
//! (HF `config.json` + `model.safetensors`). No text (see `tinyrlhf-tokenizer`), no files, and no
//! backend named: callers pass a burn `Device` (flex on CPU, wgpu/WebGPU on a GPU).
//!
//! Reads from the device (`generate`, `save_*`) are async because WebGPU permits no blocking read;
//! on the CPU backend their futures are ready at once, so native callers can block on them.

mod adamw;
#[cfg(feature = "cube")]
mod adamw_gpu;
mod awake_threads;
mod batch;
#[cfg(target_arch = "x86_64")]
mod block_bytes;
#[cfg(target_arch = "x86_64")]
mod block_dot;
#[cfg(target_arch = "x86_64")]
mod block_dot_avx2;
mod causal_lm;
mod checkpoint;
mod choose;
mod config;
mod decode_attention;
#[cfg(feature = "cube")]
mod decode_attention_gpu;
mod decode_products;
#[cfg(feature = "cube")]
mod decode_products_gpu;
mod decode_sampler;
mod decode_sampler_cpu;
#[cfg(feature = "cube")]
mod decode_sampler_gpu;
mod decoder;
mod device_read;
mod digest;
mod embedding;
mod family;
mod few_rows;
mod gated;
#[cfg(feature = "cube")]
mod gated_gpu;
mod gemma3;
mod gemma3_config;
mod generating;
mod gguf;
mod gguf_config;
mod gguf_lora;
mod gguf_merge;
mod gguf_model;
mod gguf_quants;
mod gpt;
mod int_dot;
mod kv_cache;
pub mod launches;
mod layer_norm;
#[cfg(feature = "cube")]
mod layer_norm_gpu;
mod llama;
mod llama_config;
mod log_softmax;
mod lora;
mod low_rank;
#[cfg(feature = "cube")]
mod low_rank_gpu;
mod mistral;
mod own_kernels;
mod packed;
#[cfg(feature = "cube")]
mod packed_decode_gpu;
#[cfg(feature = "cube")]
mod packed_gpu;
mod projection;
mod quant_dot;
mod recompute;
mod rms_norm;
#[cfg(feature = "cube")]
mod rms_norm_gpu;
mod rope;
#[cfg(feature = "cube")]
mod rope_gpu;
mod row_kernels;
mod row_shards;
mod sample;
mod step_stats;
#[cfg(feature = "cube")]
mod step_stats_gpu;
mod tied_head;
mod train_attention;
#[cfg(feature = "cube")]
mod train_attention_gpu;
mod weights_stream;

pub use adamw::{AdamWSettings, read_moments_back, step_in_place, step_in_place_scaled};
pub use batch::{LeftPadded, gather_positions, left_pad};
pub use causal_lm::{CausalLm, ModelConfig, ScalarModel, architectures};
pub use checkpoint::{
    CheckpointError, Weights, WeightsWriter, drawn, lm_from_config, lm_from_weights, load_lm, load_scalar_model, save_lm,
    save_scalar_model, with_stable_param_ids,
};
pub use choose::choose_tokens;
pub use config::{ConfigError, GptConfig};
pub use device_read::{device_reads, read_f32};
pub use digest::{ContentDigest, adapted_identity, recorded_base, safetensors_identity, short_identity, with_recorded_base};
pub use embedding::TokenEmbedding;
pub use family::{Family, FamilyConfig, HfLayout, Preset};
pub use few_rows::split_few_row_products;
pub use gemma3::Gemma3;
pub use gemma3_config::Gemma3Config;
pub use generating::Generating;
pub use gguf::{GgufError, GgufHeader, GgufTensor, GgufValue, GgufWriter, is_gguf, tensor_f32};
pub use gguf_lora::gguf_lora_adapter;
pub use gguf_merge::{MergedGguf, merged_gguf};
pub use gguf_model::{GgufModel, GgufStream};
pub use gguf_quants::{GgmlType, READ_TYPES, dequantize, quantize};
pub use gpt::Gpt;
pub use kv_cache::KvCache;
pub use llama::Llama;
pub use llama_config::{LLAMA_FAMILY, LlamaConfig};
pub use log_softmax::{chosen_token_logprobs, has_row_kernels, log_sum_exp_rows, softmax_with_stats};
pub use lora::{
    LoraConfig, has_adapters, is_peft_adapter, load_peft_adapter, load_peft_scalar_adapter, load_scalar_adapter, lora_targets,
    save_peft_adapter, save_peft_scalar_adapter, save_scalar_adapter, scalar_with_lora, with_lora,
};
pub use mistral::MistralConfig;
pub use own_kernels::{own_gpu_kernels, own_kernels_fit, use_own_gpu_kernels};
pub use packed::PackedWeight;
pub use projection::LmHead;
pub use rope::RopeParameters;
pub use row_shards::{RowServer, ShardServer, shard};
pub use sample::{Generation, READ_EVERY, SampleError, SamplingConfig, generate};
pub use step_stats::{StatsPart, step_stats};
pub use weights_stream::WeightsStream;
