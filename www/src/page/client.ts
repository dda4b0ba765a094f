// The page's side of the worker protocol: typed calls, progress events, and a fresh worker when
// the old one's module dies (a trap in any request, on either backend, or the GPU device lost).
import type { Envelope, Reply, Request, Responses } from '../protocol';

type Waiter = { resolve: (v: unknown) => void; reject: (e: Error) => void };
const pending = new Map<number, Waiter>();
let nextId = 1;
let worker = startWorker();
const listeners: ((reply: Extract<Reply, { id: null; event: 'progress' | 'notice' }>) => void)[] = [];
let fatalHandler: (why: Error) => void = () => {};
/** The name of a call's error when the module ran out of memory (its message says how much). */
export const OUT_OF_MEMORY = 'OutOfMemory';

function startWorker(): Worker {
  const w = new Worker(new URL('../worker/worker.ts', import.meta.url), { type: 'module' });
  w.onmessage = (event: MessageEvent<Reply>) => {
    const reply = event.data;
    if (reply.id === null) {
      if (reply.event === 'died') fatalHandler(failure(reply.error, reply.outOfMemory));
      else listeners.forEach((l) => l(reply));
      return;
    }
    const waiter = pending.get(reply.id);
    pending.delete(reply.id);
    if (reply.ok) waiter?.resolve(reply.result);
    else {
      const error = failure(reply.error, reply.outOfMemory);
      waiter?.reject(error);
      // After the caller's own error message, so that the restart is what the person reads last.
      if (reply.fatal) setTimeout(() => fatalHandler(error), 0);
    }
  };
  // A worker that cannot even start (its script or module failed to load) is dead as well.
  w.onerror = (event) => fatalHandler(new Error(event.message || 'the worker failed'));
  return w;
}

function failure(message: string, outOfMemory = false): Error {
  const error = new Error(message);
  if (outOfMemory) error.name = OUT_OF_MEMORY;
  return error;
}

export function call<T extends Request['type']>(request: Extract<Request, { type: T }>): Promise<Responses[T]> {
  const id = nextId++;
  worker.postMessage({ id, ...request } as Envelope);
  return new Promise((resolve, reject) => pending.set(id, { resolve: resolve as (v: unknown) => void, reject }));
}

export function onEvent(listener: (reply: Extract<Reply, { id: null; event: 'progress' | 'notice' }>) => void) {
  listeners.push(listener);
}

/** Called once per dead worker, with the error that killed it; the handler restarts it. */
export function onFatal(handler: (why: Error) => void) {
  fatalHandler = handler;
}

/** Replaces the worker with a fresh one; pending calls fail with `why`. */
export function restartWorker(why: Error) {
  worker.terminate();
  for (const [, waiter] of pending) waiter.reject(why);
  pending.clear();
  worker = startWorker();
}
