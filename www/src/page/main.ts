// The page: renders and forwards; the worker does the work and keeps the data. This file starts
// the session and owns the Rank and Data views; train.ts, compare.ts and demo.ts the others.
import './style.css';
import { call, onEvent, onFatal, restartWorker } from './client';
import { setPrompts } from './compare';
import './blind';
import { demo } from './demo';
import { applyLink, linkHere } from './link';
import { tourOnFirstVisit } from './tour';
import { policyLabel } from './methods';
import { showModel } from './model';
import type { Ranking, Ready } from '../protocol';
import { resetTraining, restore } from './train';
import { $, app, download, pairsOf, show } from './ui';

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
  demo: $<HTMLButtonElement>('demo'),
};

/** The answers on screen and their current order (indices into completions, best first). */
let current: { prompt: string; completions: string[]; finished: boolean[]; order: number[]; typed: number[]; rewards: number[] | null } | null = null;
const loaded = new Map<string, [number, number]>();

onEvent((event) => {
  if (event.event === 'progress') {
    loaded.set(event.what, [event.loaded, event.total]);
    const [done, total] = [...loaded.values()].reduce(([a, b], [c, d]) => [a + c, b + d], [0, 0]);
    ui.progress.value = total ? done / total : 0;
  } else {
    show(ui.notice, event.message);
  }
});

function setRankings(rankings: Ranking[]) {
  app.rankings = rankings;
  ui.rankingCount.textContent = String(rankings.length);
  ui.pairCount.textContent = String(pairsOf(rankings));
  app.changed();
}

function renderAnswers() {
  // Redrawing keeps the keyboard where it was: on the same place in the list.
  const focused = [...ui.answers.children].indexOf(document.activeElement as Element);
  ui.answers.replaceChildren();
  ui.submit.disabled = !current || current.completions.length < 2;
  ui.rankForMe.disabled = !current;
  if (!current) return;
  const { completions, order, rewards } = current;
  order.forEach((answer, position) => {
    const li = document.createElement('li');
    li.className = rewards ? 'answer with-reward' : 'answer';
    li.draggable = true;
    li.tabIndex = 0;
    li.dataset.answer = String(answer);
    li.innerHTML = `<span class="label">${answer + 1}</span><span class="text"></span>${rewards ? `<span class="reward">reward ${rewards[answer].toFixed(2)}</span>` : ''}<span class="rank">#${position + 1}</span>`;
    (li.querySelector('.text') as HTMLElement).textContent = completions[answer];
    li.addEventListener('dragstart', (e) => e.dataTransfer?.setData('text/plain', String(position)));
    li.addEventListener('dragover', (e) => e.preventDefault());
    li.addEventListener('drop', (e) => {
      e.preventDefault();
      move(Number(e.dataTransfer?.getData('text/plain')), position);
    });
    li.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowUp' && position > 0) move(position, position - 1, true);
      if (e.key === 'ArrowDown' && position < order.length - 1) move(position, position + 1, true);
    });
    ui.answers.append(li);
  });
  if (focused >= 0) (ui.answers.children[focused] as HTMLElement | undefined)?.focus();
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
  const typed = current.typed;
  current.order = [...typed, ...current.order.filter((a) => !typed.includes(a))];
  renderAnswers();
}

/** The shipped model as it came (not a person's own, not tuned here): the one whose world is small. */
let shippedWorld = false;

/** A typed prompt outside the shipped model's world gets a line saying what it knows and a prompt to try. */
async function hintForTyped(prompt: string) {
  const hint = $('prompt-hint');
  hint.hidden = true;
  if (!shippedWorld || !ui.promptInput.value.trim()) return;
  const { unknown, example, world } = await call({ type: 'coverage', prompt });
  if (!unknown.length) return;
  hint.replaceChildren(
    `The shipped model only knows ${world}; ${unknown.map((w) => `“${w}”`).join(', ')} ${unknown.length === 1 ? 'is' : 'are'} new to it, so expect nonsense. Try `,
    Object.assign(document.createElement('button'), { type: 'button', className: 'link', id: 'prompt-example', textContent: example }),
    '.',
  );
  hint.querySelector('button')!.addEventListener('click', () => {
    ui.promptInput.value = example;
    ui.promptInput.dispatchEvent(new Event('input'));
    hint.hidden = true;
  });
  hint.hidden = false;
}

// A typed prompt is the one used: the menu says so rather than showing another.
ui.promptInput.addEventListener('input', () => {
  const typed = ui.promptInput.value.trim() !== '';
  ui.promptSelect.disabled = typed;
  ui.promptSelect.title = typed ? 'The typed prompt is used; clear it to pick one here.' : '';
});

async function sample() {
  const prompt = ui.promptInput.value.trim() || ui.promptSelect.value;
  if (!prompt) return;
  void hintForTyped(prompt);
  ui.sample.disabled = true;
  ui.submit.disabled = true;
  show(ui.notice, '');
  ui.speed.textContent = 'sampling…';
  try {
    const max = app.limits?.max_completions ?? 2;
    const asked = Number(ui.k.value) || 4;
    const k = Math.min(max, Math.max(2, asked));
    const out = await call({ type: 'sample', which: 'sft', prompt, k, temperature: Number(ui.temperature.value), maxNewTokens: app.limits!.answer_tokens, seed: Math.floor(Math.random() * 2 ** 31) });
    current = { prompt, completions: out.completions, finished: out.finished, order: out.completions.map((_, i) => i), typed: [], rewards: null };
    renderAnswers();
    // The next thing to do is ranking them: the keyboard goes to the first answer.
    (ui.answers.firstElementChild as HTMLElement | null)?.focus();
    const kernels = out.kernels_per_token === null ? '' : ` · ${out.kernels_per_token.toFixed(1)} GPU kernels a token`;
    ui.speed.textContent = `${out.tokens} tokens in ${out.seconds.toFixed(2)} s (${(out.tokens / out.seconds).toFixed(0)} tok/s)${kernels}`;
    // Every notice is kept: a cut prompt and repeated answers can happen at once.
    const notices: string[] = [];
    if (out.truncated) notices.push("This prompt is longer than the model's context: its beginning was cut off.");
    if (asked > max) notices.push(`A ranking orders at most ${max} answers: sampled ${max}.`);
    else if (out.completions.length < 2) notices.push('Every answer was the same: sample again (a higher temperature helps).');
    else if (out.completions.length < k) notices.push(`${k - out.completions.length} of the ${k} answers repeated another and were dropped: a ranking orders different answers.`);
    if (notices.length > 0) show(ui.notice, notices.join(' '));
    if (app.hasReward) {
      current.rewards = await call({ type: 'scores', prompt, completions: out.completions, finished: out.finished });
      renderAnswers();
    }
  } catch (e) {
    const message = (e as Error).message;
    ui.speed.textContent = '';
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
  const ranking: Ranking = { prompt: current.prompt, completions: current.completions, ranking: current.order, finished: current.finished };
  ui.submit.disabled = true;
  try {
    // Confirmed only after IndexedDB has committed it.
    setRankings(await call({ type: 'addRanking', ranking }));
    current = null;
    renderAnswers();
    show(ui.notice, 'Saved. Sample the next prompt.');
  } catch (e) {
    ui.submit.disabled = false;
    show(ui.notice, `Could not save: ${(e as Error).message}`, 'error');
  }
}

/**
 * The worker's module died (a trap, or the GPU device lost): a fresh worker, on the CPU if it was
 * the GPU. Everything saved is in IndexedDB, so nothing is lost but the request that trapped. A
 * module that keeps dying is not restarted forever.
 */
let restarts = 0;
async function recover(failure: Error) {
  const why = failure.message;
  const onGpu = document.body.dataset.backend === 'webgpu';
  restartWorker(failure);
  resetTraining();
  current = null;
  renderAnswers();
  document.body.dataset.ready = 'false';
  ui.sample.disabled = true;
  ui.demo.disabled = true;
  if (++restarts > 3) {
    show(ui.notice, `The tab's model stopped again (${why}); reload the page. Your rankings are saved in this browser.`, 'error');
    return;
  }
  const where = onGpu ? 'on the CPU' : 'again';
  show(ui.notice, `The tab's model stopped (${why}) and was restarted ${where}; your rankings and saved models are safe.`, 'error');
  await start(onGpu ? 'cpu' : undefined);
}
onFatal((why) => void recover(why));

async function start(force: string | null = new URLSearchParams(location.search).get('backend')) {
  let ready: Ready;
  try {
    const workers = Number(new URLSearchParams(location.search).get('workers')) || null;
    ready = await call({ type: 'init', force, models: new URL('models/', document.baseURI).href, workers });
  } catch (e) {
    ui.backend.textContent = 'failed to start';
    show(ui.notice, `The model could not be loaded: ${(e as Error).message}`, 'error');
    return;
  }
  document.body.dataset.backend = ready.backend;
  const cpu = `CPU (wasm) · ${ready.workers} worker${ready.workers === 1 ? '' : 's'}`;
  const gpu = `WebGPU · ${ready.device}${ready.kernels?.startsWith('unfused') && !ready.measure ? ` · ${ready.kernels}` : ''}`;
  ui.backend.textContent = `${ready.backend === 'webgpu' ? gpu : cpu}${ready.measure ? ` · ${ready.reason}` : ''}`;
  document.body.dataset.workers = String(ready.workers);
  ui.backend.title = ready.reason;
  app.limits = ready.limits;
  app.footprint = ready.model.footprint;
  ui.k.max = String(ready.limits.max_completions);

  const m = ready.model;
  const which = ready.modelName ? `${ready.modelName} (yours)` : 'SFT model';
  shippedWorld = !ready.modelName && !ready.tunedHere;
  ui.modelInfo.textContent = `${which}${ready.tunedHere ? ', tuned here' : ''} · ${(m.parameters / 1e6).toFixed(2)} M parameters · ${m.layers} layers · d ${m.width} · context ${m.context}`;
  ui.progress.hidden = true;
  app.hasReward = ready.hasReward;
  app.policies = ready.policies;
  usePrompts(ready.prompts);
  // The rankings first: every panel's state (restored next) reads their count.
  setRankings(ready.rankings);
  restore(ready);
  showModel(ready, usePrompts);
  ui.sample.disabled = false;
  ui.demo.disabled = false;
  document.body.dataset.ready = 'true';
  if (!linkApplied) {
    // A restarted worker keeps the settings the person has now; the link is read once.
    linkApplied = true;
    const lesson = applyLink(location.search);
    if (lesson.problems.length) show($('link-status'), `Some settings in this link were not used: ${lesson.problems.join('; ')}.`, 'error');
    if (lesson.demo) runDemo(lesson.demo);
    else tourOnFirstVisit();
  }
}
let linkApplied = false;

/** The prompts to rank and compare on: the built-in ones, or the person's. */
function usePrompts(prompts: string[]) {
  ui.promptSelect.replaceChildren(...prompts.map((p) => new Option(p, p)));
  app.prompts = prompts;
  setPrompts(prompts);
}

const runDemo = (choice = $<HTMLSelectElement>('demo-methods').value) => demo($<HTMLSelectElement>('demo-labeler').value, choice, setRankings);

ui.temperature.addEventListener('input', () => (ui.temperatureValue.textContent = Number(ui.temperature.value).toFixed(1)));
ui.sample.addEventListener('click', sample);
ui.rankForMe.addEventListener('click', rankForMe);
ui.submit.addEventListener('click', submit);
ui.demo.addEventListener('click', () => runDemo());
$('copy-link').addEventListener('click', async () => {
  const link = $<HTMLInputElement>('link');
  link.value = linkHere($<HTMLInputElement>('link-demo').checked);
  link.hidden = false;
  link.select();
  try {
    await navigator.clipboard.writeText(link.value);
    show($('link-status'), 'Copied: anyone who opens this link gets these settings.');
  } catch {
    show($('link-status'), 'Select the link and copy it: this browser did not let the page write the clipboard.');
  }
});
document.addEventListener('keydown', (e) => {
  const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement;
  if (typing || !current) return;
  if (/^[1-9]$/.test(e.key)) typeAnswer(Number(e.key));
  if (e.key === 'Enter' && !ui.submit.disabled) submit();
});
$('export-rankings').addEventListener('click', async () => download('rankings.jsonl', await call({ type: 'export', format: 'rankings' }), 'application/jsonl'));
$('export-pairs').addEventListener('click', async () => download('pairs.jsonl', await call({ type: 'export', format: 'pairs' }), 'application/jsonl'));
const exportWhich = $<HTMLSelectElement>('export-which');
app.listeners.push(() => {
  const keep = exportWhich.value;
  exportWhich.replaceChildren(...app.policies.map((n) => new Option(policyLabel(n), n)));
  if (app.policies.includes(keep)) exportWhich.value = keep;
  // Nothing to export, nothing to press: each button says what it waits for.
  const waits: [string, string][] = [
    ['export-rankings', app.rankings.length ? '' : 'No rankings yet: rank some answers first.'],
    ['export-pairs', app.rankings.length ? '' : 'No rankings yet: rank some answers first.'],
    ['export-policy', app.policies.length ? '' : 'No tuned policy yet: run a method first.'],
    ['export-reward', app.hasReward ? '' : 'No reward model yet: train one first.'],
  ];
  for (const [id, why] of waits) Object.assign($<HTMLButtonElement>(id), { disabled: !!why, title: why });
  exportWhich.disabled = !app.policies.length;
});
for (const button of ['policy', 'reward'] as const) {
  $(`export-${button}`).addEventListener('click', async () => {
    const which = button === 'reward' ? 'reward' : exportWhich.value || 'ppo';
    try {
      // A model directory's files; saved as config.json, model.safetensors, tokenizer.json and
      // tokenizer_config.json in one folder, `tinyrlhf` and HF transformers load it.
      const merged = $<HTMLInputElement>('export-merged').checked;
      const { config, weights, tokenizer, tokenizerConfig, adapter } = await call({ type: 'exportModel', which, merged });
      download(`${which}-config.json`, config, 'application/json');
      if (weights) download(`${which}-model.safetensors`, weights as BlobPart);
      download(`${which}-tokenizer.json`, tokenizer, 'application/json');
      download(`${which}-tokenizer_config.json`, tokenizerConfig, 'application/json');
      // Trained with LoRA: the adapter (a merged model only when asked), for PEFT (`adapter/`) and
      // llama.cpp (`--lora adapter.gguf`, language models only).
      if (adapter) {
        download(`${which}-adapter_config.json`, adapter.config, 'application/json');
        download(`${which}-adapter_model.safetensors`, adapter.safetensors as BlobPart);
        if (adapter.gguf) download(`${which}-adapter.gguf`, adapter.gguf as BlobPart);
      }
    } catch (e) {
      show(ui.dataMessage, `Nothing to export: ${(e as Error).message}`, 'error');
    }
  });
}
$<HTMLInputElement>('import').addEventListener('change', async (e) => {
  const input = e.target as HTMLInputElement;
  const file = input.files?.[0];
  if (!file) return;
  try {
    const limit = app.limits?.max_file_bytes ?? 0;
    if (file.size > limit) throw new Error(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; files of at most ${limit / 2 ** 20} MiB are read`);
    setRankings(await call({ type: 'import', file: file.name, bytes: new Uint8Array(await file.arrayBuffer()) }));
    show(ui.dataMessage, `Imported ${file.name}.`);
  } catch (err) {
    show(ui.dataMessage, `Nothing imported: ${(err as Error).message}`, 'error');
  } finally {
    input.value = '';
  }
});
$<HTMLInputElement>('import-policy').addEventListener('change', async (e) => {
  const input = e.target as HTMLInputElement;
  const files = [...(input.files ?? [])];
  const adapter = files.find((f) => f.name === 'adapter_config.json');
  const config = files.find((f) => f.name.endsWith('.json') && f !== adapter);
  const weights = files.find((f) => f.name.endsWith('.safetensors'));
  try {
    if (!(config || adapter) || !weights) {
      throw new Error('choose config.json and model.safetensors (a whole model), or adapter_config.json and adapter_model.safetensors (an adapter for this model, as tinyrlhf or TRL write it)');
    }
    const text = async (f: File | undefined) => (f ? await f.text() : null);
    await call({ type: 'importPolicy', config: await text(config), adapter: await text(adapter), weights: new Uint8Array(await weights.arrayBuffer()) });
    if (!app.policies.includes('imported')) app.policies = [...app.policies, 'imported'];
    app.changed();
    show(ui.dataMessage, `Loaded the policy from ${weights.name} as “Imported policy”; the compare view shows it now.`);
  } catch (err) {
    show(ui.dataMessage, `The policy was not loaded (the current one stays): ${(err as Error).message}`, 'error');
  } finally {
    input.value = '';
  }
});
$('reset').addEventListener('click', async () => {
  if (!confirm('Delete every saved ranking in this browser?')) return;
  setRankings(await call({ type: 'reset' }));
});
$('forget-training').addEventListener('click', async () => {
  if (!confirm('Delete the reward model and every tuned policy saved in this browser?')) return;
  await call({ type: 'forgetTraining' });
  location.reload();
});
// For the console and the browser tests: `tinyrlhf.memoryLog = []` records memory per PPO iteration;
// `tinyrlhf.trap()` kills the worker's module as a panic would, and `tinyrlhf.loseDevice()` destroys
// its GPU device as a lost GPU would, `tinyrlhf.fillMemory()` grows its memory to the browser's limit
// so that the next allocation fails, to watch the page recover; `tinyrlhf.sample(prompt, k, seed,
// maxNewTokens?)` samples the SFT model with a chosen seed; `tinyrlhf.memory()` reads the worker's wasm memory.
const forTests = {
  trap: () => call({ type: 'trap' }).catch((e: Error) => e.message),
  fillMemory: () => call({ type: 'fillMemory' }),
  loseDevice: () => call({ type: 'loseDevice' }).catch((e: Error) => e.message),
  workerCopies: (which: string) => call({ type: 'workerCopies', which }),
  trapHelper: (exchange: number) => call({ type: 'trapHelper', exchange }),
  sample: (prompt: string, k: number, seed: number, maxNewTokens = 8) => call({ type: 'sample', which: 'sft', prompt, k, temperature: 1, maxNewTokens, seed }),
  memory: () => call({ type: 'memory' }),
};
(window as unknown as { tinyrlhf: typeof app & typeof forTests }).tinyrlhf = Object.assign(app, forTests);
start();

// Offline: the service worker keeps this build and the models (production builds only: the dev
// server's files change under it). `data-offline` tells the tests the cache is complete.
if ('serviceWorker' in navigator && import.meta.env.PROD) {
  navigator.serviceWorker.register('./sw.js').catch((e) => console.warn(`no offline copy: ${e}`));
  navigator.serviceWorker.ready.then(() => (document.body.dataset.offline = 'ready'));
}
