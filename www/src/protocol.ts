// The typed messages between the page (renders) and the worker (owns the wasm and the data).

export interface Ranking {
  prompt: string;
  completions: string[];
  /** Indices into completions, best first. */
  ranking: number[];
}

export interface ModelInfo {
  parameters: number;
  layers: number;
  width: number;
  heads: number;
  context: number;
  vocab: number;
}

/** One point of a training curve: whatever numbers the trainer reported. */
export type Point = Record<string, number | null>;

export interface Ready {
  backend: 'webgpu' | 'cpu';
  /** Adapter name, or "CPU (wasm)". */
  device: string;
  /** Why this backend (e.g. "only a software WebGPU adapter (SwiftShader)"). */
  reason: string;
  model: ModelInfo;
  prompts: string[];
  rankings: Ranking[];
  hasReward: boolean;
  hasPolicy: boolean;
  rewardCurve: Point[];
  ppoCurve: Point[];
  limits: Limits;
}

/** Decided in Rust (`limits()` of the wasm crate); the page checks them before sending work. */
export interface Limits {
  max_completions: number;
  max_file_bytes: number;
}

export interface Sampled {
  completions: string[];
  finished: boolean[];
  truncated: boolean;
  tokens: number;
  seconds: number;
}

export type Which = 'base' | 'sft' | 'policy';

export interface RewardStart {
  train: number;
  held_out: number;
  pairs: number;
  steps: number;
  /** "2 rankings skipped (ranking 3: …)", or null. */
  skipped: string | null;
  /** Rankings whose prompt lost its beginning to fit the context. */
  prompts_cut: number;
}

export interface RewardStepResult {
  stats: { step: number; epoch: number; loss: number; accuracy: number; held_out: { accuracy: number; loss: number; pairs: number } | null; skipped: string | null };
  done: boolean;
}

export interface PpoStepResult {
  iteration: number;
  score: number;
  reward: number;
  kl: number;
  kl_k3: number;
  entropy: number;
  pg_clipfrac: number;
  vf_clipfrac: number;
  approx_kl: number;
  vf_loss: number;
  mean_length: number;
  eos_rate: number;
  beta: number;
  rollout_secs: number;
  scoring_secs: number;
  update_secs: number;
  restored: string | null;
  sample: { prompt: string; response: string };
}

export interface Explained {
  tokens: string[];
  log_ratio: number[];
  advantage: number[];
  score: number;
}

export interface Evaluation {
  win_rate: number;
  wins: number;
  ties: number;
  losses: number;
  kl: number;
  eos_rate: number;
}

export interface PpoSettings {
  iterations: number;
  kl_coef: number;
  kl_target: number | null;
  lr: number;
  ppo_epochs: number;
  samples_per_prompt: number;
  max_new_tokens: number;
  batch_size: number;
  minibatch_size: number;
}

export type Request =
  | { type: 'init'; force: string | null; models: string }
  | { type: 'sample'; which: Which; prompt: string; k: number; temperature: number; maxNewTokens: number; seed: number }
  | { type: 'rankForMe'; labeler: string; prompt: string; completions: string[] }
  | { type: 'strictRanking'; labeler: string; prompt: string; completions: string[] }
  | { type: 'addRanking'; ranking: Ranking }
  | { type: 'export'; format: 'rankings' | 'pairs' }
  | { type: 'import'; file: string; bytes: Uint8Array }
  | { type: 'reset' }
  | { type: 'trainingPrompts'; n: number }
  | { type: 'startReward'; epochs: number; lr: number }
  | { type: 'rewardStep' }
  | { type: 'scores'; prompt: string; completions: string[] }
  | { type: 'startPpo'; settings: PpoSettings }
  | { type: 'ppoStep' }
  | { type: 'explain'; prompt: string; response: string; temperature: number }
  | { type: 'evaluate'; labeler: string; prompts: number; temperature: number }
  | { type: 'exportModel'; which: 'policy' | 'reward' }
  | { type: 'importPolicy'; config: string; weights: Uint8Array }
  | { type: 'forgetTraining' }
  | { type: 'memory' }
  /** For the browser tests only: traps the wasm module, as a panic would. */
  | { type: 'trap' };

export interface Responses {
  init: Ready;
  sample: Sampled;
  rankForMe: number[];
  strictRanking: Ranking | null;
  addRanking: Ranking[];
  export: string;
  import: Ranking[];
  reset: Ranking[];
  trainingPrompts: string[];
  startReward: RewardStart;
  rewardStep: RewardStepResult;
  scores: number[];
  startPpo: null;
  ppoStep: PpoStepResult;
  explain: Explained;
  evaluate: Evaluation;
  exportModel: { config: string; weights: Uint8Array; tokenizer: string };
  importPolicy: null;
  forgetTraining: null;
  memory: { wasm: number; heap: number | null };
  trap: null;
}

export type Envelope = { id: number } & Request;

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string; fatal: boolean }
  | { id: null; event: 'progress'; what: string; loaded: number; total: number }
  | { id: null; event: 'notice'; message: string };
