// The typed messages between the page (renders) and the worker (owns the wasm and the data).

export interface Ranking {
  prompt: string;
  completions: string[];
  /** Indices into completions, best first. */
  ranking: number[];
  /** Per completion: it ended with EOS (false: cut at the token limit, learnt from without one). */
  finished?: boolean[];
}

/** What a model costs to train in the tab (decided in Rust from its config.json). */
export interface Footprint {
  parameters: number;
  /** Above 30 M parameters the tab trains LoRA adapters unless the person turns it off. */
  lora_by_default: boolean;
  training_bytes: number;
  limit_bytes: number;
  /** Held-out prompts a finished run is judged on (fewer for a large model, so judging takes about as long). */
  judged_prompts: number;
  /** Held-out prompts demo mode judges each method on. */
  demo_judged_prompts: number;
}

export interface ModelInfo {
  /** gpt2, llama, qwen2, qwen3 or gemma3_text. */
  architecture: string;
  parameters: number;
  layers: number;
  width: number;
  heads: number;
  context: number;
  vocab: number;
  /** The chat template's Jinja source. */
  chat_template: string;
  /** Said once when the model has no chat template: it continues prompts as written. */
  template_note: string | null;
  /** The tokenizer has no pad token: padding uses EOS. */
  pad_is_eos: boolean;
  footprint: Footprint;
}

/** A model folder's files: the person's own model, as picked. */
export interface ModelFolder {
  config: Uint8Array;
  /** `model.safetensors`: the person's `File` itself (never read whole), or bytes as a Blob; or their `.gguf` when `gguf`. */
  weights: Blob;
  /** `weights` is one GGUF file holding the whole model (config, tokenizer and template are what it describes, filled in once loaded). */
  gguf?: boolean;
  tokenizer: Uint8Array;
  tokenizerConfig?: Uint8Array;
  template?: Uint8Array;
  generationConfig?: Uint8Array;
}

/** A LoRA policy's adapter as `tinyrlhf` writes it: `adapter/adapter_config.json`, `adapter/adapter_model.safetensors`, and `adapter.gguf` (Llama family). */
export interface Adapter {
  config: string;
  safetensors: Uint8Array;
  gguf: Uint8Array | null;
}

/** One point of a training curve: whatever numbers the trainer reported. */
export type Point = Record<string, number | null>;

/** One answer of a sampling method's rollout, shown under its charts (`index`: the iteration). */
export interface Sample {
  index: number;
  prompt: string;
  response: string;
}

/** A finished run against SFT on held-out prompts, judged blind by a labeler: a row of the results table. */
export interface RunResult extends Evaluation {
  method: Method;
  labeler: string;
  seconds: number;
  /** Iterations (PPO, GRPO, RLOO) or steps (DPO) the run took. */
  steps: number;
}

/** What the page shows beyond models and curves, kept in IndexedDB so that a reload brings it back. */
export interface PageView {
  results?: RunResult[];
  demoStatus?: string;
  gold?: { every: string; labeler: string };
}

export interface Ready {
  backend: 'webgpu' | 'cpu';
  /** Adapter name, or "CPU (wasm)". */
  device: string;
  /** Why this backend (e.g. "only a software WebGPU adapter (SwiftShader)"). */
  reason: string;
  /** Whether the backend was chosen by timing both (the reason then gives the figures). */
  measure?: boolean;
  /** On WebGPU: "fused kernels", or "unfused kernels (why)". */
  kernels?: string;
  /** Workers (wasm instances, one per core) training together on the CPU backend; 1 on WebGPU. */
  workers: number;
  model: ModelInfo;
  /** The person's own model's name, or null for the shipped one. */
  modelName: string | null;
  /** Whether the SFT model is one trained in this tab (on the person's demonstrations). */
  tunedHere: boolean;
  prompts: string[];
  /** The person's prompts file's name, or null for the built-in prompts. */
  promptsName: string | null;
  /** How many demonstrations are saved for SFT. */
  demos: number;
  sftCurve: Point[];
  rankings: Ranking[];
  hasReward: boolean;
  /** Names of the tuned policies saved in this browser (methods' names, or "imported"). */
  policies: string[];
  rewardCurve: Point[];
  /** Each saved policy's training curve, by name. */
  curves: Record<string, Point[]>;
  /** The methods whose last run was interrupted: Run goes on with it. */
  interrupted: string[];
  /** Each sampling method's rollout answers so far, by name. */
  samples: Record<string, Sample[]>;
  view: PageView;
  limits: Limits;
  defaults: Defaults;
}

/** Decided in Rust (`defaults()` of the wasm crate): every setting's default, and the methods. */
export interface Defaults {
  settings: Record<string, Record<string, unknown>>;
  methods: { name: Method; needs_reward_model: boolean; samples_answers: boolean }[];
}

export type Method = 'ppo' | 'grpo' | 'rloo' | 'dpo';

/** Settings a person changed from the defaults, by field name. */
export type Changes = Record<string, number | string | null | { rank: number }>;

/** Decided in Rust (`limits()` of the wasm crate); the page checks them before sending work. */
export interface Limits {
  max_completions: number;
  /** The fewest rankings a reward model or DPO trains on (the CLI's too). */
  min_rankings: number;
  max_file_bytes: number;
  /** How long an answer sampled to read or rank may be, in tokens. */
  answer_tokens: number;
  /** The temperature answers are judged, compared and explained at. */
  judge_temperature: number;
}

export interface Sampled {
  completions: string[];
  finished: boolean[];
  truncated: boolean;
  /** The prompt's tokens as the model reads it (its chat template applied). */
  prompt_tokens: number;
  tokens: number;
  seconds: number;
  /** On WebGPU, GPU kernels launched a decoded token (the prompt's pass included); null on the CPU. */
  kernels_per_token: number | null;
}

/** A model of the session: 'base', 'sft', or a tuned policy's name. */
export type Which = string;

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

export interface SftStart {
  train: number;
  validation: number;
  /** Demonstrations longer than the context, left out. */
  left_out: number;
  steps: number;
}

export interface SftStepResult {
  stats: { step: number; loss: number; lr: number; grad_norm: number; tokens: number; tokens_per_sec: number; skipped: string | null };
  done: boolean;
  val_loss?: number;
}

export interface RewardStepResult {
  stats: { step: number; epoch: number; loss: number; accuracy: number; held_out: { accuracy: number; loss: number; pairs: number } | null; skipped: string | null; tokens_per_sec: number };
  done: boolean;
  /** Policies tuned against the old reward model, dropped with it. */
  dropped: string[];
}

/** What a new run will do (Rust's `RunPlan`). */
export interface RunPlan {
  method: Method;
  total: number;
  continues: boolean;
  /** Steps an interrupted run had done, when it goes on from its saved checkpoint. */
  resumed_at: number | null;
  train: number | null;
  held_out: number | null;
  pairs: number | null;
  skipped: string | null;
}

/**
 * One training step's stats, named as the method names them (PPO: score, kl, pg_clipfrac...;
 * GRPO/RLOO: score, kl, clip_ratio/region_mean...; DPO: loss, rewards/margins...), plus:
 */
export type StepResult = Record<string, unknown> & {
  done: boolean;
  /** Why the step kept the last good policy instead of updating (sampling methods). */
  restored?: string | null;
  /** Why the update was skipped (DPO). */
  skipped?: string | null;
  /** The GPU kernels the step launched (WebGPU only). */
  gpu_kernels?: number;
  /** The first answer of the rollout (sampling methods). */
  sample?: { prompt: string; response: string };
  held_out?: { loss: number; accuracy: number; margin: number; pairs: number } | null;
};

/** A step's numbers as a curve point: what charts plot (held-out numbers flattened). */
export function pointOf(stats: StepResult, index: number): Point {
  const point: Point = { index };
  for (const [key, value] of Object.entries(stats)) if (typeof value === 'number') point[key] = value;
  if (stats.held_out) {
    point.held_out_loss = stats.held_out.loss;
    point.held_out_accuracy = stats.held_out.accuracy;
  }
  return point;
}

export interface Explained {
  /** The answer's tokens as text, the model's EOS shown as ⏎. */
  tokens: string[];
  explained: {
    log_ratio: number[];
    advantage: number[];
    score: number;
    /** The reward model's score of the prompt alone, then after each token of the answer. */
    prompt_score: number;
    prefix_scores: number[];
  };
}

export interface Evaluation {
  win_rate: number;
  wins: number;
  ties: number;
  losses: number;
  kl: number;
  eos_rate: number;
}

export type Request =
  /** `workers`: the page's `?workers=N` (else one per core but one, decided in Rust). */
  | { type: 'init'; force: string | null; models: string; workers: number | null }
  | { type: 'sample'; which: Which; prompt: string; k: number; temperature: number; maxNewTokens: number; seed: number }
  | { type: 'rankForMe'; labeler: string; prompt: string; completions: string[] }
  | { type: 'strictRanking'; labeler: string; prompt: string; completions: string[]; finished: boolean[] }
  | { type: 'addRanking'; ranking: Ranking }
  | { type: 'export'; format: 'rankings' | 'pairs' }
  | { type: 'import'; file: string; bytes: Uint8Array }
  | { type: 'reset' }
  | { type: 'trainingPrompts'; n: number }
  | { type: 'startReward'; changes: Changes }
  | { type: 'rewardStep' }
  | { type: 'scores'; prompt: string; completions: string[]; finished?: boolean[] }
  | { type: 'startTraining'; method: Method; changes: Changes }
  /** `beta` moves the KL leash first; `gold` (a labeler) measures gold and proxy after the step. */
  | { type: 'trainStep'; method: Method; beta?: number; gold?: string }
  | { type: 'explain'; which: Which; prompt: string; response: string; temperature: number }
  | { type: 'evaluate'; a: Which; b: Which; labeler: string; prompts: number }
  /** 'reward', or a policy's name. */
  /** `merged`: with a LoRA model, its adapters merged into a copy of the base too. */
  | { type: 'exportModel'; which: string; merged: boolean }
  | { type: 'importPolicy'; config: string | null; adapter: string | null; weights: Uint8Array }
  | { type: 'forgetTraining' }
  /** The person's model folder replaces the shipped model (and what was trained from it). */
  | { type: 'checkModel'; config: Uint8Array }
  /** Whether a picked file is a GGUF model, by its first bytes (any name). */
  | { type: 'isGguf'; head: Uint8Array }
  | { type: 'useModel'; name: string; files: ModelFolder }
  | { type: 'shippedModel' }
  | { type: 'usePrompts'; file: string; bytes: Uint8Array }
  | { type: 'builtInPrompts' }
  | { type: 'loadDemos'; file: string; bytes: Uint8Array }
  | { type: 'startSft'; changes: Changes }
  | { type: 'sftStep' }
  | { type: 'memory' }
  | { type: 'saveView'; view: PageView }
  | { type: 'coverage'; prompt: string }
  | { type: 'setRankingsAside' }
  | { type: 'bringRankingsBack' }
  /** For the browser tests only: traps the wasm module, as a panic would. */
  | { type: 'trap' }
  /** For the browser tests only: grows the module's memory to the browser's limit, so its next allocation fails. */
  | { type: 'fillMemory' }
  /** For the browser tests only: destroys the worker's GPU device, as a lost or reset GPU would. */
  | { type: 'loseDevice' }
  /** For the browser tests only: whether every worker holds the same bytes of a model ('reward' or a policy). */
  | { type: 'workerCopies'; which: string }
  /** For the browser tests only: helper worker 2 traps during its `exchange`-th exchange from now. */
  | { type: 'trapHelper'; exchange: number };

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
  startTraining: RunPlan;
  trainStep: StepResult;
  explain: Explained;
  evaluate: Evaluation;
  /** `adapter`: a policy trained with LoRA also as its adapter (PEFT's files; llama.cpp's for the Llama family). */
  exportModel: { config: string; weights: Uint8Array | null; tokenizer: string; tokenizerConfig: string; adapter: Adapter | null };
  importPolicy: null;
  forgetTraining: null;
  checkModel: Footprint;
  isGguf: boolean;
  useModel: null;
  shippedModel: null;
  usePrompts: string[];
  builtInPrompts: string[];
  loadDemos: number;
  startSft: SftStart;
  sftStep: SftStepResult;
  memory: { wasm: number; heap: number | null };
  saveView: null;
  coverage: { unknown: string[]; example: string; world: string };
  setRankingsAside: number;
  bringRankingsBack: Ranking[];
  trap: null;
  /** The module's memory after filling it, in bytes. */
  fillMemory: number;
  loseDevice: null;
  workerCopies: { workers: number; identical: boolean };
  trapHelper: null;
}

export type Envelope = { id: number } & Request;

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string; fatal: boolean; outOfMemory?: boolean }
  | { id: null; event: 'progress'; what: string; loaded: number; total: number }
  | { id: null; event: 'notice'; message: string }
  /** The module trapped outside a request (in an async step): why, and whether it was out of memory. */
  | { id: null; event: 'died'; error: string; outOfMemory: boolean };
