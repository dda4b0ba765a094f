//! tinyrlhf's trainers. Each exposes `step()` returning stats; the loop lives at the edge (the CLI
//! prints, the web worker posts).
//!
//! Boundary: models, token ids and examples in; stats and checkpoint bytes out. No files, no
//! backend named (callers bring a burn `Device`), no text except through the tokenizer.
//! Device reads are async (WebGPU permits no other); on CPU the futures are ready at once.
//!
//! The folders, by concern: `stages` (the trainer of every stage behind one interface), `methods`
//! (PPO, GRPO/RLOO, DPO and their arithmetic), `data` (examples, prompts, rankings, batch order),
//! `models` (model files, LoRA, compatibility), `memory` (what a run costs), `step` (losses,
//! log-probs, clipping, schedule), `parallel` (peers and threads), `eval` (head-to-head, device
//! agreement); `export` (rankings and settings as TRL's command line takes them).

pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod export;
pub mod memory;
pub mod messages;
pub mod methods;
pub mod models;
pub mod parallel;
pub mod stages;
pub mod step;

pub use checkpoint::{TrainCheckpoint, TrainError, ValueCheckpoint};
pub use data::examples::{Example, LmBatch, chat_example, pack, sft_examples, split_validation};
pub use data::prompts::{ANSWER_TOKENS, MIN_PROMPT_TOKENS, check_answer_room, prompt_budget, prompt_ids, training_prompt_ids};
pub use data::rankings::{RankingSet, TokenRanking};
pub use eval::agreement::{Agreement, agreement};
pub use eval::gpu_check::{GpuCheck, GpuKernels, check_gpu, kernels_by_limits};
pub use eval::head_to_head::{GoldAndProxy, HeadToHead, HeadToHeadConfig, gold_and_proxy, head_to_head};
pub use export::{ExportFile, TrlExport, TrlSettings, trl_files, trl_paths};
pub use memory::footprint::{Footprint, TAB_MEMORY_LIMIT, check_fits_tab, footprint};
pub use methods::dpo::{DpoConfig, DpoEval, DpoStepStats, DpoTrainer};
pub use methods::dpo_math::{DpoLoss, DpoMetrics};
pub use methods::group::{GroupConfig, GroupMethod, GroupStats, GroupTrainer};
pub use methods::group_math::{LossAggregation, RewardScaling};
pub use methods::method::{Method, all_default_settings, with_changes};
pub use methods::ppo::{PpoConfig, PpoModels, PpoStats, PpoTrainer};
pub use methods::ppo_math::{AdaptiveKl, KlEstimator};
pub use methods::rollout::{TokenExplanation, explain_response, response_kl};
pub use models::compat::{check_compatible, check_same_shape, check_same_tokenizer};
pub use models::gguf_files::load_gguf_model;
pub use models::model_files::{
    AdapterFiles, LanguageModel, ModelFiles, ModelFilesError, OtherBase, Safetensors, check_adapter_base, load_language_model,
    scalar_with_adapter, with_adapter,
};
pub use parallel::peers::{Alone, Peers, shard};
pub use stages::policy_trainer::{MethodSettings, PolicyInputs, PolicyStats, PolicyTrainer};
pub use stages::reward::{Calibrated, RewardConfig, RewardStepStats, RewardTrainer};
pub use stages::scoring::{PairEval, calibrate};
pub use stages::supervised::{SftSettings, StepStats, SupervisedConfig, SupervisedTrainer};
pub use stages::trainer::{StepReport, Trainer};
pub use step::losses::{PreferencePairs, clipped_policy_loss, clipped_value_loss, preference_loss, token_logprobs};
pub use step::schedule::{Decay, LrSchedule};
pub use step::settings::TrainSettings;
