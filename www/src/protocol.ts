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

export interface Ready {
  backend: 'webgpu' | 'cpu';
  /** Adapter name, or "CPU (wasm)". */
  device: string;
  /** Why this backend (e.g. "only a software WebGPU adapter (SwiftShader)"). */
  reason: string;
  model: ModelInfo;
  prompts: string[];
  rankings: Ranking[];
}

export interface Sampled {
  completions: string[];
  finished: boolean[];
  truncated: boolean;
  tokens: number;
  seconds: number;
}

export type Request =
  | { type: 'init'; force: string | null; models: string }
  | { type: 'sample'; prompt: string; k: number; temperature: number; maxNewTokens: number; seed: number }
  | { type: 'rankForMe'; labeler: string; prompt: string; completions: string[] }
  | { type: 'addRanking'; ranking: Ranking }
  | { type: 'export'; format: 'rankings' | 'pairs' }
  | { type: 'import'; file: string; text: string }
  | { type: 'reset' };

export interface Responses {
  init: Ready;
  sample: Sampled;
  rankForMe: number[];
  addRanking: Ranking[];
  export: string;
  import: Ranking[];
  reset: Ranking[];
}

export type Envelope = { id: number } & Request;

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string }
  | { id: null; event: 'progress'; what: string; loaded: number; total: number }
  | { id: null; event: 'notice'; message: string };
