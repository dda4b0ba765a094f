// A row helper (`rows.ts`): one more wasm instance, on one more core, holding a share of the rows of
// a real model's base. It keeps the parts it is sent, then answers the main worker's requests from
// their SharedArrayBuffer until the tab closes, blocked in `Atomics.wait` between them.
import init, { RowHelper } from '../wasm/tinyrlhf_web.js';
import { ANSWERED, ASKED, FAILED } from './rows';

declare const self: DedicatedWorkerGlobalScope;

type Message =
  | { type: 'exchange'; shared: SharedArrayBuffer }
  | { type: 'hold'; id: number; ggmlType: number; rows: number; cols: number; bytes: Uint8Array }
  | { type: 'serve' };

let control: Int32Array<ArrayBufferLike> = new Int32Array(0);
let data: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
/** Why a part could not be kept: every answer says so. */
let broken: string | null = null;

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

// A module that does not start answers every request with why, rather than leave the main worker waiting.
const ready = init()
  .then(() => new RowHelper())
  .catch((e) => {
    broken = `a row helper did not start: ${message(e)}`;
    return null;
  });

function serve(rows: RowHelper | null) {
  for (;;) {
    const state = Atomics.load(control, 0);
    if (state !== ASKED) {
      Atomics.wait(control, 0, state);
      continue;
    }
    const request = data.slice(0, Atomics.load(control, 1));
    let answer: Uint8Array;
    let status = ANSWERED;
    try {
      if (broken || !rows) throw new Error(broken ?? 'no rows are held here');
      answer = rows.answer(request);
      if (answer.length > data.length) throw new Error(`an answer of ${answer.length} bytes does not fit the exchange`);
    } catch (e) {
      answer = new TextEncoder().encode(message(e)).slice(0, data.length);
      status = FAILED;
    }
    data.set(answer);
    Atomics.store(control, 1, answer.length);
    Atomics.store(control, 0, status);
    Atomics.notify(control, 0);
  }
}

let queue: Promise<unknown> = Promise.resolve();

self.onmessage = (event: MessageEvent<Message>) => {
  const m = event.data;
  queue = queue.then(async () => {
    const rows = await ready;
    if (m.type === 'exchange') {
      control = new Int32Array(m.shared, 0, 2);
      data = new Uint8Array(m.shared, 8);
    } else if (m.type === 'hold') {
      try {
        rows?.hold(m.id, m.ggmlType, m.rows, m.cols, m.bytes);
      } catch (e) {
        broken ??= `worker holding part ${m.id}: ${message(e)}`;
      }
    } else {
      serve(rows);
    }
  });
};
