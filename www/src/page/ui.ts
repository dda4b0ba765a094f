// Small page helpers shared by the views, and what the page knows of the session.
import type { Footprint, Limits, Ranking } from '../protocol';

export const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

export function show(element: HTMLElement, message: string, kind: 'info' | 'error' = 'info') {
  element.textContent = message;
  element.dataset.kind = kind;
  element.hidden = !message;
}

export const app = {
  rankings: [] as Ranking[],
  prompts: [] as string[],
  hasReward: false,
  /** Names of the tuned policies this session has ('ppo', 'dpo', ..., 'imported'). */
  policies: [] as string[],
  /** Sent by the worker when it is ready (decided in Rust). */
  limits: null as Limits | null,
  /** The loaded model's costs in the tab, and how many prompts judge a run (decided in Rust). */
  footprint: null as Footprint | null,
  /** A training loop is running: other training buttons wait. */
  busy: false,
  /** When set (by a test, or from the console), memory is recorded after each PPO iteration. */
  memoryLog: null as { wasm: number; heap: number | null }[] | null,
  listeners: [] as (() => void)[],
  /** Tells every view to refresh its buttons. */
  changed() {
    this.listeners.forEach((l) => l());
  },
};

export function pairsOf(rankings: Ranking[]): number {
  return rankings.reduce((n, r) => n + (r.completions.length * (r.completions.length - 1)) / 2, 0);
}

export function download(name: string, data: BlobPart, type = 'application/octet-stream') {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Lets the browser paint between steps of a long loop. */
export const nextFrame = () => new Promise((r) => setTimeout(r, 0));
