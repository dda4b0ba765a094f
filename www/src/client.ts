// The page's side of the worker protocol: typed calls, progress events, and a restart on the CPU
// backend when the worker's module dies (a wasm panic, or the GPU device lost).
import type { Envelope, Reply, Request, Responses } from './protocol';

type Waiter = { resolve: (v: unknown) => void; reject: (e: Error) => void };
const pending = new Map<number, Waiter>();
let nextId = 1;
let worker = startWorker();
const listeners: ((reply: Extract<Reply, { id: null }>) => void)[] = [];

function startWorker(): Worker {
  const w = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  w.onmessage = (event: MessageEvent<Reply>) => {
    const reply = event.data;
    if (reply.id === null) {
      listeners.forEach((l) => l(reply));
      return;
    }
    const waiter = pending.get(reply.id);
    pending.delete(reply.id);
    if (!waiter) return;
    if (reply.ok) waiter.resolve(reply.result);
    else waiter.reject(new Error(reply.error));
  };
  return w;
}

export function call<T extends Request['type']>(request: Extract<Request, { type: T }>): Promise<Responses[T]> {
  const id = nextId++;
  worker.postMessage({ id, ...request } as Envelope);
  return new Promise((resolve, reject) => pending.set(id, { resolve: resolve as (v: unknown) => void, reject }));
}

export function onEvent(listener: (reply: Extract<Reply, { id: null }>) => void) {
  listeners.push(listener);
}

/** A panic in the wasm (RuntimeError: unreachable) or a lost WebGPU device leaves the module unusable. */
export function isFatal(message: string): boolean {
  return /unreachable|device (was )?lost|DeviceLost|RuntimeError/i.test(message);
}

/** Replaces the worker with a fresh one; pending calls fail with `why`. */
export function restartWorker(why: string) {
  worker.terminate();
  for (const [, waiter] of pending) waiter.reject(new Error(why));
  pending.clear();
  worker = startWorker();
}
