// The page: renders and forwards; the worker does the work and keeps the data.
import './style.css';
import type { Envelope, Ranking, Ready, Reply, Request, Responses } from './protocol';

const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
let nextId = 1;
let worker = startWorker();

function startWorker(): Worker {
  const w = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  w.onmessage = onReply;
  return w;
}

function call<T extends Request['type']>(request: Extract<Request, { type: T }>): Promise<Responses[T]> {
  const id = nextId++;
  worker.postMessage({ id, ...request } as Envelope);
  return new Promise((resolve, reject) => pending.set(id, { resolve: resolve as (v: unknown) => void, reject }));
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  backend: $('backend'),
  modelInfo: $('model-info'),
  progress: $<HTMLProgressElement>('load-progress'),
  promptSelect: $<HTMLSelectElement>('prompt-select'),
  promptInput: $<HTMLInputElement>('prompt-input'),
  k: $<HTMLInputElement>('k'),
  temperature: $<HTMLInputElement>('temperature'),
  temperatureValue: $<HTMLOutputElement>('temperature-value'),
  sample: $<HTMLButtonElement>('sample'),
  labeler: $<HTMLSelectElement>('labeler'),
  rankForMe: $<HTMLButtonElement>('rank-for-me'),
  notice: $('notice'),
  answers: $<HTMLOListElement>('answers'),
  submit: $<HTMLButtonElement>('submit'),
  speed: $('sample-speed'),
  rankingCount: $('ranking-count'),
  pairCount: $('pair-count'),
  dataMessage: $('data-message'),
};

/** The answers on screen and their current order (indices into completions, best first). */
let current: { prompt: string; completions: string[]; order: number[]; typed: number[] } | null = null;
const loaded = new Map<string, [number, number]>();

function onReply(event: MessageEvent<Reply>) {
  const reply = event.data;
  if (reply.id === null) {
    if (reply.event === 'progress') {
      loaded.set(reply.what, [reply.loaded, reply.total]);
      const [done, total] = [...loaded.values()].reduce(([a, b], [c, d]) => [a + c, b + d], [0, 0]);
      ui.progress.value = total ? done / total : 0;
    } else {
      show(ui.notice, reply.message);
    }
    return;
  }
  const waiter = pending.get(reply.id);
  pending.delete(reply.id);
  if (!waiter) return;
  if (reply.ok) waiter.resolve(reply.result);
  else waiter.reject(new Error(reply.error));
}

/** A panic in the wasm (RuntimeError: unreachable) or a lost WebGPU device leaves the worker's
 * module unusable. Start a fresh worker on the CPU backend; the data lives in IndexedDB, so nothing
 * is lost. */
function isFatal(message: string): boolean {
  return /unreachable|device (was )?lost|DeviceLost|RuntimeError/i.test(message);
}

async function fallBackToCpu(why: string) {
  worker.terminate();
  for (const [, waiter] of pending) waiter.reject(new Error(why));
  pending.clear();
  worker = startWorker();
  show(ui.notice, `The GPU stopped working (${why}). Continuing on the CPU; your rankings are safe.`, 'error');
  ui.sample.disabled = true;
  await main('cpu');
}

function show(element: HTMLElement, message: string, kind: 'info' | 'error' = 'info') {
  element.textContent = message;
  element.dataset.kind = kind;
  element.hidden = !message;
}

function setCounts(rankings: Ranking[]) {
  ui.rankingCount.textContent = String(rankings.length);
  ui.pairCount.textContent = String(rankings.reduce((n, r) => n + (r.completions.length * (r.completions.length - 1)) / 2, 0));
}

function renderAnswers() {
  ui.answers.replaceChildren();
  if (!current) return;
  const { completions, order } = current;
  order.forEach((answer, position) => {
    const li = document.createElement('li');
    li.className = 'answer';
    li.draggable = true;
    li.tabIndex = 0;
    li.dataset.answer = String(answer);
    li.innerHTML = `<span class="label">${answer + 1}</span><span class="text"></span><span class="rank">#${position + 1}</span>`;
    (li.querySelector('.text') as HTMLElement).textContent = completions[answer];
    li.addEventListener('dragstart', (e) => e.dataTransfer?.setData('text/plain', String(position)));
    li.addEventListener('dragover', (e) => e.preventDefault());
    li.addEventListener('drop', (e) => {
      e.preventDefault();
      const from = Number(e.dataTransfer?.getData('text/plain'));
      move(from, position);
    });
    li.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowUp' && position > 0) move(position, position - 1, true);
      if (e.key === 'ArrowDown' && position < order.length - 1) move(position, position + 1, true);
    });
    ui.answers.append(li);
  });
  ui.submit.disabled = false;
  ui.rankForMe.disabled = false;
}

function move(from: number, to: number, keepFocus = false) {
  if (!current || from === to) return;
  const [answer] = current.order.splice(from, 1);
  current.order.splice(to, 0, answer);
  renderAnswers();
  if (keepFocus) (ui.answers.children[to] as HTMLElement).focus();
}

/** Typing answer numbers in order ranks them: the n-th number typed goes to place n. */
function typeAnswer(n: number) {
  if (!current || n < 1 || n > current.completions.length) return;
  const answer = n - 1;
  if (current.typed.includes(answer)) return;
  current.typed.push(answer);
  const rest = current.order.filter((a) => !current!.typed.includes(a));
  current.order = [...current.typed, ...rest];
  renderAnswers();
}

function promptText(): string {
  return ui.promptInput.value.trim() || ui.promptSelect.value;
}

async function sample() {
  const prompt = promptText();
  if (!prompt) return;
  ui.sample.disabled = true;
  ui.submit.disabled = true;
  show(ui.notice, '');
  ui.speed.textContent = 'sampling…';
  try {
    const k = Math.min(9, Math.max(2, Number(ui.k.value) || 4));
    const out = await call({ type: 'sample', prompt, k, temperature: Number(ui.temperature.value), maxNewTokens: 48, seed: Math.floor(Math.random() * 2 ** 31) });
    current = { prompt, completions: out.completions, order: out.completions.map((_, i) => i), typed: [] };
    renderAnswers();
    ui.speed.textContent = `${out.tokens} tokens in ${out.seconds.toFixed(2)} s (${(out.tokens / out.seconds).toFixed(0)} tok/s)`;
    if (out.truncated) show(ui.notice, 'This prompt is longer than the model\'s context: its beginning was cut off.');
  } catch (e) {
    const message = (e as Error).message;
    ui.speed.textContent = '';
    if (document.body.dataset.backend === 'webgpu' && isFatal(message)) return fallBackToCpu(message);
    show(ui.notice, `Sampling failed: ${message}`, 'error');
  } finally {
    ui.sample.disabled = false;
  }
}

async function rankForMe() {
  if (!current) return;
  current.order = await call({ type: 'rankForMe', labeler: ui.labeler.value, prompt: current.prompt, completions: current.completions });
  current.typed = [];
  renderAnswers();
}

async function submit() {
  if (!current) return;
  const ranking: Ranking = { prompt: current.prompt, completions: current.completions, ranking: current.order };
  ui.submit.disabled = true;
  try {
    // Confirmed only after IndexedDB has committed it.
    const all = await call({ type: 'addRanking', ranking });
    setCounts(all);
    current = null;
    renderAnswers();
    show(ui.notice, 'Saved. Sample the next prompt.');
  } catch (e) {
    ui.submit.disabled = false;
    show(ui.notice, `Could not save: ${(e as Error).message}`, 'error');
  }
}

function download(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/jsonl' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function main(force: string | null = new URLSearchParams(location.search).get('backend')) {
  let ready: Ready;
  try {
    ready = await call({ type: 'init', force, models: new URL('models/', document.baseURI).href });
  } catch (e) {
    ui.backend.textContent = 'failed to start';
    show(ui.notice, `The model could not be loaded: ${(e as Error).message}`, 'error');
    return;
  }
  document.body.dataset.backend = ready.backend;
  ui.backend.textContent = ready.backend === 'webgpu' ? `WebGPU · ${ready.device}` : 'CPU (wasm)';
  ui.backend.title = ready.reason;
  const m = ready.model;
  ui.modelInfo.textContent = `SFT model · ${(m.parameters / 1e6).toFixed(2)} M parameters · ${m.layers} layers · d ${m.width} · context ${m.context}`;
  ui.progress.hidden = true;
  ui.promptSelect.replaceChildren(...ready.prompts.map((p) => new Option(p, p)));
  setCounts(ready.rankings);
  ui.sample.disabled = false;
  document.body.dataset.ready = 'true';
}

ui.temperature.addEventListener('input', () => (ui.temperatureValue.textContent = Number(ui.temperature.value).toFixed(1)));
ui.sample.addEventListener('click', sample);
ui.rankForMe.addEventListener('click', rankForMe);
ui.submit.addEventListener('click', submit);
document.addEventListener('keydown', (e) => {
  const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement;
  if (typing || !current) return;
  if (/^[1-9]$/.test(e.key)) typeAnswer(Number(e.key));
  if (e.key === 'Enter' && !ui.submit.disabled) submit();
});
$('export-rankings').addEventListener('click', async () => download('rankings.jsonl', await call({ type: 'export', format: 'rankings' })));
$('export-pairs').addEventListener('click', async () => download('pairs.jsonl', await call({ type: 'export', format: 'pairs' })));
$<HTMLInputElement>('import').addEventListener('change', async (e) => {
  const input = e.target as HTMLInputElement;
  const file = input.files?.[0];
  if (!file) return;
  try {
    const all = await call({ type: 'import', file: file.name, text: await file.text() });
    setCounts(all);
    show(ui.dataMessage, `Imported ${file.name}.`);
  } catch (err) {
    show(ui.dataMessage, `Nothing imported: ${(err as Error).message}`, 'error');
  } finally {
    input.value = '';
  }
});
$('reset').addEventListener('click', async () => {
  if (!confirm('Delete every saved ranking in this browser?')) return;
  setCounts(await call({ type: 'reset' }));
});
main();
