// A helper worker: one more wasm instance (on one more core) holding an identical copy of the
// session's models, driven by the main worker (`team.ts`). It loads what it is sent, runs the same
// training calls as the main worker, and passes its part of each exchange through it. It keeps no
// data of its own: a run starts by sending it the models to start from (the SFT model only when it
// changed).
import init, { Session, trapForTests } from '../wasm/tinyrlhf_web.js';
import { outOfMemory } from './memory';
import type { HelperReply, HelperRequest } from './team';
import { loadFolder } from './weights';

declare const self: DedicatedWorkerGlobalScope;

let session: Session | null = null;
/** The config.json of the SFT model this helper holds. */
let config: Uint8Array = new Uint8Array();
/** The exchange this worker is waiting on. */
let waiting: { resolve: (parts: Uint8Array[]) => void; reject: (e: Error) => void } | null = null;
let exchanges = 0;
/** For the browser tests: trap during this exchange (as a panic mid-update would). */
let trapAt = 0;

function post(reply: HelperReply, transfer: Transferable[] = []) {
  self.postMessage(reply, transfer);
}

function exchange(part: Uint8Array): Promise<Uint8Array[]> {
  if (++exchanges === trapAt) {
    // Outside this call, so that the trap is the worker's uncaught error, as a panic's would be.
    setTimeout(() => trapForTests(), 0);
    return new Promise(() => {});
  }
  post({ type: 'part', part }, [part.buffer]);
  return new Promise((resolve, reject) => (waiting = { resolve, reject }));
}

/** The module's memory, for the message of an out-of-memory trap. */
let wasmMemory: WebAssembly.Memory | null = null;

async function handle(request: HelperRequest): Promise<unknown> {
  switch (request.type) {
    case 'init':
      wasmMemory = (await init()).memory;
      session = await Session.create('cpu');
      return null;
    case 'replicate': {
      const s = session!;
      const f = request.folder;
      if (f) {
        await loadFolder(s, f);
        config = f.config;
      } else {
        s.forgetTraining();
      }
      if (request.reward) s.loadReward(config, request.reward.weights, request.reward.adapter);
      if (request.policy) s.loadPolicy(request.policy.name, config, request.policy.weights, request.policy.adapter);
      s.setPeers(request.rank, request.count, exchange);
      return null;
    }
    case 'call': {
      const s = session as unknown as Record<string, (...args: unknown[]) => unknown>;
      return await s[request.method].apply(session, request.args);
    }
    case 'weights':
      return request.which === 'reward' ? session!.rewardWeights() : session!.policyWeights(request.which);
    case 'trapAt':
      trapAt = exchanges + request.exchange;
      return null;
    case 'gathered':
      return null;
  }
}

let queue: Promise<unknown> = Promise.resolve();

self.onmessage = (message: MessageEvent<HelperRequest & { id?: number }>) => {
  const request = message.data;
  if (request.type === 'gathered') {
    const w = waiting;
    waiting = null;
    if (request.error !== undefined) w?.reject(new Error(request.error));
    else w?.resolve(request.parts ?? []);
    return;
  }
  const id = request.id ?? 0;
  queue = queue.then(async () => {
    try {
      post({ type: 'reply', id, ok: true, result: await handle(request) });
    } catch (e) {
      const fatal = e instanceof WebAssembly.RuntimeError;
      const error = (fatal ? outOfMemory(wasmMemory) : null) ?? (e instanceof Error ? e.message : String(e));
      post({ type: 'reply', id, ok: false, error, fatal });
    }
  });
};
