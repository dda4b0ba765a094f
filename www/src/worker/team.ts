// The CPU backend on every core: the main worker (rank 0) and helper workers (`helper.ts`), each
// its own wasm instance with an identical copy of the models, train each run together. The split
// of the work and the sums are the library's (`crates/rlhf/src/parallel/peers.rs`); this file only carries
// the bytes: each exchange collects every worker's part and hands all of them, in rank order, to
// every worker. A helper that dies fails the exchange it was part of, and the team goes on without
// it from the next run.
import type { ModelFolder } from '../protocol';

export type HelperRequest =
  | { type: 'init' }
  /** `folder` null: the SFT model the helper already holds (it forgets what was trained from it). */
  | { type: 'replicate'; folder: ModelFolder | null; reward: Saved | null; policy: (Saved & { name: string }) | null; rank: number; count: number }
  | { type: 'call'; method: 'startReward' | 'rewardStep' | 'startTraining' | 'trainStep'; args: unknown[] }
  | { type: 'weights'; which: string }
  | { type: 'trapAt'; exchange: number }
  | { type: 'gathered'; parts?: Uint8Array[]; error?: string };

export type HelperReply =
  | { type: 'reply'; id: number; ok: true; result: unknown }
  | { type: 'reply'; id: number; ok: false; error: string; fatal: boolean }
  | { type: 'part'; part: Uint8Array };

/** Where a run starts: the SFT model's folder, and the reward model and policy it continues from. */
export interface Start {
  folder: ModelFolder;
  reward: Saved | null;
  policy: (Saved & { name: string }) | null;
}

/** A trained model as the tab keeps it: its weights, or with `adapter` (PEFT's `adapter_config.json`) its adapters on the SFT model. */
export interface Saved {
  weights: Uint8Array;
  adapter?: string;
}

class Helper {
  readonly worker = new Worker(new URL('./helper.ts', import.meta.url), { type: 'module' });
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  /** Why it stopped, once it has. */
  dead: string | null = null;
  /** The SFT model's files it holds, so a run on the same model does not load them again. */
  holds: ModelFolder | null = null;

  constructor(onPart: (helper: Helper, part: Uint8Array) => void, onDeath: (helper: Helper, why: string) => void) {
    this.worker.onmessage = (event: MessageEvent<HelperReply>) => {
      const reply = event.data;
      if (reply.type === 'part') return onPart(this, reply.part);
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.result);
      else {
        waiter?.reject(new Error(reply.error));
        if (reply.fatal) onDeath(this, reply.error);
      }
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      onDeath(this, event.message || 'the worker failed');
    };
  }

  call(request: HelperRequest): Promise<unknown> {
    if (this.dead) return Promise.reject(new Error(this.dead));
    const id = this.nextId++;
    this.worker.postMessage({ ...request, id });
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  stop(why: string) {
    this.dead = why;
    this.worker.terminate();
    for (const waiter of this.pending.values()) waiter.reject(new Error(why));
    this.pending.clear();
  }
}

export class Team {
  private helpers: Helper[] = [];
  /** The helpers of the current run, in rank order (rank = index + 1). */
  private members: Helper[] = [];
  private parts: (Uint8Array | undefined)[] = [];
  private own: { resolve: (parts: Uint8Array[]) => void; reject: (e: Error) => void } | null = null;
  /** Why the current run's exchanges fail (a member stopped), once one has. */
  failure: string | null = null;

  /** `size` workers in all, this one included. */
  constructor(private size: number) {}

  /** Workers training together now: this one and the live helpers. */
  get workers(): number {
    return this.size;
  }

  /**
   * Starts a run on every worker: the helpers (started the first time) load `start` and train
   * alongside; `setPeers` is this worker's own session's.
   */
  async begin(start: Start, setPeers: (rank: number, count: number, exchange: (part: Uint8Array) => Promise<Uint8Array[]>) => void) {
    while (this.helpers.length < this.size - 1) {
      const helper = new Helper(
        (h, part) => this.members.includes(h) && this.receive(this.members.indexOf(h) + 1, part),
        (h, why) => this.lost(h, why),
      );
      this.helpers.push(helper);
      await helper.call({ type: 'init' });
    }
    this.members = this.helpers.filter((h) => !h.dead);
    this.failure = null;
    this.parts = [];
    const count = this.members.length + 1;
    await Promise.all(
      this.members.map(async (h, i) => {
        await h.call({ type: 'replicate', ...start, folder: h.holds === start.folder ? null : start.folder, rank: i + 1, count });
        h.holds = start.folder;
      }),
    );
    setPeers(0, count, (part) => this.receive(0, part) as Promise<Uint8Array[]>);
  }

  /** Runs `own` here and the same call on every helper; resolves to this worker's result. */
  async together<T>(own: () => Promise<T>, method: Extract<HelperRequest, { type: 'call' }>['method'], args: unknown[]): Promise<T> {
    const count = this.members.length + 1;
    const helpers = this.members.map((h, i) =>
      h.call({ type: 'call', method, args }).catch((e: Error) => {
        this.fail(`worker ${i + 2} of ${count} failed: ${e.message}`);
        throw e;
      }),
    );
    try {
      const result = await own();
      await Promise.all(helpers);
      return result;
    } catch (e) {
      // This worker failed: the helpers must not wait for its part.
      this.fail(this.failure ?? `the main worker's step failed: ${e instanceof Error ? e.message : e}`);
      await Promise.allSettled(helpers);
      throw e;
    }
  }

  /** Every worker's copy of a model (`'reward'` or a policy's name), for the browser tests. */
  async copies(which: string, own: Uint8Array): Promise<Uint8Array[]> {
    return [own, ...((await Promise.all(this.members.map((h) => h.call({ type: 'weights', which })))) as Uint8Array[])];
  }

  /** For the browser tests: helper 1 traps during its `exchange`-th exchange from now. */
  trapHelper(exchange: number): Promise<unknown> {
    if (!this.members.length) return Promise.reject(new Error('there is no helper worker'));
    return this.members[0].call({ type: 'trapAt', exchange });
  }

  private receive(rank: number, part: Uint8Array): Promise<Uint8Array[]> | undefined {
    if (this.failure) {
      return rank === 0 ? Promise.reject(new Error(this.failure)) : undefined;
    }
    this.parts[rank] = part;
    const result = rank === 0 ? new Promise<Uint8Array[]>((resolve, reject) => (this.own = { resolve, reject })) : undefined;
    const count = this.members.length + 1;
    if (this.parts.filter(Boolean).length === count) {
      const parts = this.parts as Uint8Array[];
      this.parts = [];
      this.members.forEach((h) => h.worker.postMessage({ type: 'gathered', parts } satisfies HelperRequest));
      const own = this.own;
      this.own = null;
      own?.resolve(parts);
    }
    return result;
  }

  private fail(why: string) {
    this.failure ??= why;
    this.parts = [];
    this.members.forEach((h) => h.dead || h.worker.postMessage({ type: 'gathered', error: this.failure! } satisfies HelperRequest));
    const own = this.own;
    this.own = null;
    own?.reject(new Error(this.failure));
  }

  private lost(helper: Helper, why: string) {
    if (helper.dead) return;
    const which = this.members.includes(helper) ? `worker ${this.members.indexOf(helper) + 2} of ${this.members.length + 1}` : 'a helper worker';
    helper.stop(`${which} stopped (${why})`);
    this.size -= 1;
    this.fail(helper.dead!);
  }
}
