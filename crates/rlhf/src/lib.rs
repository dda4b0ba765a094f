//! tinyrlhf's trainers. Each exposes `step()` returning stats; the loop lives at the edge (the CLI
//! prints, the web worker posts).
//!
//! Boundary: models, token ids and examples in; stats and checkpoint bytes out. No files, no
//! backend named (callers bring a burn `Device`), no text except through the tokenizer.
//! Device reads are async (WebGPU permits no other); on CPU the futures are ready at once.

pub mod agreement;
pub mod checkpoint;
pub mod compat;
pub mod dpo;
pub mod dpo_math;
pub mod examples;
pub mod footprint;
mod gguf_files;
pub mod grads;
pub mod group;
pub mod group_math;
pub mod head_to_head;
mod iteration;
pub mod logprobs;
mod lora;
pub mod losses;
pub mod messages;
pub mod method;
pub mod model_files;
pub mod order;
mod parallel;
pub mod peers;
pub mod policy_trainer;
pub mod ppo;
pub mod ppo_config;
pub mod ppo_math;
mod ppo_minibatch;
pub mod prompts;
pub mod rankings;
mod read;
pub mod reward;
pub mod rollout;
pub mod schedule;
pub mod sizes;
pub mod supervised;
pub mod trainer;

pub use agreement::{Agreement, agreement};
pub use checkpoint::{TrainCheckpoint, TrainError, ValueCheckpoint};
pub use compat::{check_compatible, check_same_shape, check_same_tokenizer};
pub use dpo::{DpoConfig, DpoEval, DpoStepStats, DpoTrainer};
pub use dpo_math::{DpoLoss, DpoMetrics};
pub use examples::{Example, LmBatch, chat_example, pack, sft_examples, split_validation};
pub use footprint::{Footprint, TAB_MEMORY_LIMIT, check_fits_tab, footprint};
pub use gguf_files::load_gguf_model;
pub use group::{GroupConfig, GroupMethod, GroupStats, GroupTrainer};
pub use group_math::{LossAggregation, RewardScaling};
pub use head_to_head::{GoldAndProxy, HeadToHead, HeadToHeadConfig, gold_and_proxy, head_to_head};
pub use losses::{PreferencePairs, clipped_policy_loss, clipped_value_loss, lm_loss, preference_loss, token_logprobs};
pub use method::{Method, all_default_settings, with_changes};
pub use model_files::{
    AdapterFiles, LanguageModel, ModelFiles, ModelFilesError, Safetensors, load_language_model, scalar_with_adapter, with_adapter,
};
pub use peers::{Alone, Peers, shard};
pub use policy_trainer::{MethodSettings, PolicyInputs, PolicyStats, PolicyTrainer};
pub use ppo::{PpoConfig, PpoModels, PpoStats, PpoTrainer};
pub use ppo_math::{AdaptiveKl, KlEstimator};
pub use prompts::{ANSWER_TOKENS, MIN_PROMPT_TOKENS, check_answer_room, prompt_budget, prompt_ids, training_prompt_ids};
pub use rankings::{RankingSet, TokenRanking};
pub use reward::{Calibrated, PairEval, RewardConfig, RewardStepStats, RewardTrainer, calibrate};
pub use rollout::{TokenExplanation, explain_response, response_kl};
pub use schedule::LrSchedule;
pub use supervised::{SftSettings, StepStats, SupervisedConfig, SupervisedTrainer};
pub use trainer::{StepReport, Trainer};
