// A real model's base held once by the tab's workers (`web/src/rows.rs`): this worker keeps the
// first rows of each large matrix, and each row-helper worker (`row-helper.ts`) holds a share of the
// rest and computes its rows of every product while this one computes its own. The products are
// synchronous inside the wasm module, so is the exchange: a request goes into the helper's
// SharedArrayBuffer and this worker blocks in `Atomics.wait` until the answer is there (a few
// microseconds a round trip; `postMessage` could only be answered once this worker's call returned).
// This file defines the `tinyrlhfRows` that the module calls.

/** The most bytes a request or an answer takes; the library cuts larger exchanges by rows. */
const CAPACITY = 8 << 20;
/** Int32 0: the state below; Int32 1: the bytes of the request or answer that follows. */
const HEADER = 8;
export const IDLE = 0;
export const ASKED = 1;
export const ANSWERED = 2;
export const FAILED = 3;
/** An answer that takes longer than this means the helper stopped (it cannot say so itself). */
const PATIENCE_MS = 10 * 60_000;

interface RowHelper {
  worker: Worker;
  control: Int32Array;
  data: Uint8Array;
  serving: boolean;
  /** Why it stopped, once it has. */
  dead: string | null;
}

const helpers: RowHelper[] = [];

/** Whether this tab can share a base between workers: a SharedArrayBuffer needs cross-origin isolation. */
export function canShareRows(): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && self.crossOriginIsolated === true;
}

function helper(k: number): RowHelper {
  while (helpers.length <= k) {
    const worker = new Worker(new URL('./row-helper.ts', import.meta.url), { type: 'module' });
    const shared = new SharedArrayBuffer(HEADER + CAPACITY);
    const h: RowHelper = { worker, control: new Int32Array(shared, 0, 2), data: new Uint8Array(shared, HEADER), serving: false, dead: null };
    worker.onerror = (event) => {
      event.preventDefault();
      h.dead = event.message || 'it failed';
    };
    worker.postMessage({ type: 'exchange', shared });
    helpers.push(h);
  }
  return helpers[k];
}

const rows = {
  capacity: () => CAPACITY,

  /** Helper `k` keeps part `id` of a matrix (`bytes` is a view of this module's memory: copied). */
  hold(k: number, id: number, ggmlType: number, rowCount: number, cols: number, bytes: Uint8Array) {
    const h = helper(k);
    if (h.serving) throw new Error(`part ${id} came after worker ${k + 2} began answering`);
    const copy = bytes.slice();
    h.worker.postMessage({ type: 'hold', id, ggmlType, rows: rowCount, cols, bytes: copy }, [copy.buffer]);
  },

  send(k: number, request: Uint8Array) {
    const h = helper(k);
    if (!h.serving) {
      // Every part has been sent before the first request: from now on the helper only answers.
      h.worker.postMessage({ type: 'serve' });
      h.serving = true;
    }
    h.data.set(request);
    Atomics.store(h.control, 1, request.length);
    Atomics.store(h.control, 0, ASKED);
    Atomics.notify(h.control, 0);
  },

  receive(k: number): Uint8Array {
    const h = helpers[k];
    const started = performance.now();
    while (Atomics.load(h.control, 0) === ASKED) {
      if (h.dead) throw new Error(h.dead);
      if (Atomics.wait(h.control, 0, ASKED, 1000) === 'timed-out' && performance.now() - started > PATIENCE_MS) {
        throw new Error(`it gave no answer in ${PATIENCE_MS / 60_000} minutes`);
      }
    }
    const state = Atomics.load(h.control, 0);
    const bytes = h.data.slice(0, Atomics.load(h.control, 1));
    Atomics.store(h.control, 0, IDLE);
    if (state === FAILED) throw new Error(new TextDecoder().decode(bytes));
    return bytes;
  },
};

(globalThis as unknown as { tinyrlhfRows: typeof rows }).tinyrlhfRows = rows;
