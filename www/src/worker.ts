// The worker owns the wasm module, the model and the saved data; the page only renders. It picks
// the backend: WebGPU on a hardware adapter, else burn's CPU backend in wasm; `?backend=` forces.
import init, { Session, parseRankings, rankWithLabeler, rankingsToJsonl, rankingsToPairsJsonl } from './wasm/tinyrlhf_web.js';
import type { Envelope, Ranking, Ready, Reply, Request, Responses, Sampled } from './protocol';
import { addRankings, allRankings, clearRankings } from './store';

declare const self: DedicatedWorkerGlobalScope;

let session: Session | null = null;
let modelDir = '';

function post(reply: Reply) {
  self.postMessage(reply);
}

/** A file of the shipped model, reporting progress as it arrives. */
async function fetchBytes(path: string): Promise<Uint8Array> {
  const response = await fetch(new URL(path, modelDir));
  if (!response.ok || !response.body) throw new Error(`could not load ${path}: HTTP ${response.status}`);
  const total = Number(response.headers.get('content-length') ?? 0);
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    loaded += value.length;
    post({ id: null, event: 'progress', what: path, loaded, total });
  }
  const out = new Uint8Array(loaded);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

interface Choice {
  backend: 'webgpu' | 'cpu';
  device: string;
  reason: string;
}

async function chooseBackend(force: string | null): Promise<Choice> {
  const cpu = (reason: string): Choice => ({ backend: 'cpu', device: 'CPU (wasm)', reason });
  if (force === 'cpu') return cpu('forced by ?backend=cpu');
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return cpu('this browser has no WebGPU');
  const adapter = await gpu.requestAdapter();
  if (!adapter) return cpu('no WebGPU adapter');
  const info = adapter.info;
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  const software = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter || /swiftshader/i.test(name);
  if (software && force !== 'webgpu') return cpu(`only a software WebGPU adapter (${name}), slower than the CPU backend`);
  return { backend: 'webgpu', device: name, reason: force === 'webgpu' ? 'forced by ?backend=webgpu' : 'hardware WebGPU adapter' };
}

async function start(force: string | null, models: string): Promise<Ready> {
  modelDir = models;
  await init();
  let choice = await chooseBackend(force);
  try {
    session = await Session.create(choice.backend);
  } catch (e) {
    if (choice.backend === 'cpu') throw e;
    post({ id: null, event: 'notice', message: `WebGPU failed (${e}); using the CPU backend instead` });
    choice = { backend: 'cpu', device: 'CPU (wasm)', reason: `WebGPU failed: ${e}` };
    session = await Session.create('cpu');
  }
  const [config, weights, tokenizer, heldout] = await Promise.all([
    fetchBytes('sft/config.json'),
    fetchBytes('sft/model.safetensors'),
    fetchBytes('sft/tokenizer.json'),
    fetchBytes('heldout.jsonl'),
  ]);
  const model = JSON.parse(session.load(config, weights, tokenizer));
  const prompts = promptsOf(new TextDecoder().decode(heldout));
  return { ...choice, model, prompts, rankings: await allRankings() };
}

function promptsOf(jsonl: string): string[] {
  return jsonl.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).prompt as string);
}

async function handle(request: Request): Promise<Responses[keyof Responses]> {
  switch (request.type) {
    case 'init':
      return start(request.force, request.models);
    case 'sample': {
      if (!session) throw new Error('the model is still loading');
      const started = performance.now();
      const out = JSON.parse(await session.sample(request.prompt, request.k, request.temperature, request.maxNewTokens, BigInt(request.seed)));
      return { ...out, seconds: (performance.now() - started) / 1000 } as Sampled;
    }
    case 'rankForMe':
      return JSON.parse(rankWithLabeler(request.labeler, request.prompt, JSON.stringify(request.completions)));
    case 'addRanking':
      return addRankings([request.ranking]);
    case 'export': {
      const rankings = JSON.stringify(await allRankings());
      return request.format === 'pairs' ? rankingsToPairsJsonl(rankings) : rankingsToJsonl(rankings);
    }
    case 'import': {
      // Parsed in full before anything is written: a bad line leaves the saved rankings untouched.
      const rankings: Ranking[] = JSON.parse(parseRankings(request.file, request.text));
      return addRankings(rankings);
    }
    case 'reset':
      await clearRankings();
      return [];
  }
}

self.onmessage = async (message: MessageEvent<Envelope>) => {
  const { id, ...request } = message.data;
  try {
    post({ id, ok: true, result: await handle(request as Request) });
  } catch (e) {
    post({ id, ok: false, error: e instanceof Error ? e.message : String(e) });
  }
};
