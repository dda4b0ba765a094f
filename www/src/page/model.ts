// The Model and data view: the person's own model folder in place of the shipped model, their own
// prompts to rank, and their demonstrations for SFT in the tab (live loss; the tuned model then
// becomes the SFT model the rest of the recipe starts from). Everything stays in this browser.
import { LiveChart } from './charts';
import { call, onEvent } from './client';
import { changes, fillDefaults, type Knob } from './methods';
import type { Defaults, ModelFolder, Ready } from '../protocol';
import { exclusive, restore } from './train';
import { $, app, show } from './ui';
import { drive } from './drive';

const SFT_KNOBS: Knob[] = [
  { setting: 'steps', label: 'steps', id: 'steps' },
  { setting: 'lr', label: 'learning rate', id: 'lr' },
];

const view = {
  current: $('model-current'),
  files: $<HTMLInputElement>('model-files'),
  shipped: $<HTMLButtonElement>('model-shipped'),
  template: $('model-template-text'),
  message: $('model-message'),
  promptsFile: $<HTMLInputElement>('prompts-file'),
  builtIn: $<HTMLButtonElement>('prompts-builtin'),
  promptsStatus: $('prompts-status'),
  demosFile: $<HTMLInputElement>('demos-file'),
  run: $<HTMLButtonElement>('run-sft'),
  status: $('sft-status'),
  loss: new LiveChart($<HTMLCanvasElement>('chart-sft-loss'), 'step', {
    series: [{ key: 'loss', label: 'train' }, { key: 'val_loss', label: 'validation' }],
    title: 'SFT loss',
    y: 'cross-entropy (nats per token)',
    watch: 'Both should fall. Validation turning up while train still falls is overfitting: stop there.',
  }),
};

// The person's-own-model panel starts folded, so the first task (ranking) is in view; the intro's
// link, the URL's #model, or a model, prompts or demonstrations of the person's own open it.
const panel = $<HTMLDetailsElement>('model-panel');
const openIfAsked = () => {
  if (location.hash === '#model') panel.open = true;
};
window.addEventListener('hashchange', openIfAsked);
openIfAsked();
document.querySelectorAll('a[href="#model"]').forEach((a) => a.addEventListener('click', () => (panel.open = true)));

let defaults: Defaults | null = null;
let demos = 0;
let onPrompts: (prompts: string[]) => void = () => {};

/** Shows what the worker started with; `prompts` is called whenever the prompts to rank change. */
export function showModel(ready: Ready, prompts: (prompts: string[]) => void) {
  onPrompts = prompts;
  defaults = ready.defaults;
  const m = ready.model;
  const name = ready.modelName ? `your model ${ready.modelName}` : 'the shipped model';
  const tuned = ready.tunedHere ? ', tuned here on your demonstrations' : '';
  const pad = m.pad_is_eos ? ' · no pad token: padding uses EOS' : '';
  const f = m.footprint;
  const memory = `about ${megabytes(f.training_bytes)} MB to train here${f.lora_by_default ? ' with LoRA' : ''}`;
  view.current.textContent = `Working from ${name}${tuned}: ${m.architecture}, ${(m.parameters / 1e6).toFixed(2)} M parameters · ${m.layers} layers · d ${m.width} · context ${m.context} · vocabulary ${m.vocab}${pad} · ${memory}.${m.template_note ? ` Note: ${m.template_note}.` : ''}`;
  view.shipped.hidden = !ready.modelName && !ready.tunedHere;
  view.template.textContent = m.chat_template;
  view.builtIn.hidden = !ready.promptsName;
  view.promptsStatus.textContent = ready.promptsName ? `${ready.prompts.length} prompts from ${ready.promptsName}` : `${ready.prompts.length} built-in prompts`;
  demos = ready.demos;
  if (ready.modelName || ready.tunedHere || ready.promptsName || demos) panel.open = true;
  fillDefaults(ready.defaults, 'sft', 'sft', SFT_KNOBS);
  $<HTMLInputElement>('lora-rank').value = String(ready.defaults.settings.lora?.rank ?? '');
  // A model over 30 M parameters trains adapters unless the person turns LoRA off (decided in Rust).
  if (f.lora_by_default) $<HTMLInputElement>('lora').checked = true;
  view.loss.reset(ready.sftCurve);
  view.status.textContent = demos ? `${demos} demonstrations saved` : 'load demonstrations to run SFT';
  app.changed();
}

app.listeners.push(() => (view.run.disabled = app.busy || demos === 0));

/** The folder's files by name; exported copies (`ppo-config.json`) count too. */
function pick(files: File[], name: string): File | undefined {
  return files.find((f) => f.name === name) ?? files.find((f) => f.name.endsWith(`-${name}`));
}

const megabytes = (bytes: number) => Math.round(bytes / 2 ** 20).toLocaleString('en');

async function bytes(file: File | undefined): Promise<Uint8Array | undefined> {
  return file ? new Uint8Array(await file.arrayBuffer()) : undefined;
}

/** While a picked model is read: how much of its file, in the message line. */
let reading: { what: string } | null = null;
onEvent((event) => {
  if (event.event !== 'progress' || event.what !== 'your model' || !reading) return;
  show(view.message, `${reading.what}: ${megabytes(event.loaded)} of ${megabytes(event.total)} MB read (${Math.round((100 * event.loaded) / Math.max(event.total, 1))}%)…`);
});

/** One GGUF file (llama.cpp's, Ollama's, LM Studio's): the whole model in one. */
async function ggufFolder(file: File): Promise<[string, ModelFolder]> {
  // Whether the tab can hold it is decided in Rust as soon as the file's header has been read.
  reading = { what: `Reading your GGUF file (${megabytes(file.size)} MB)` };
  show(view.message, `${reading.what}…`);
  return [file.name.replace(/\.gguf$/i, ''), { config: new Uint8Array(), weights: file, tokenizer: new Uint8Array(), gguf: true }];
}

/** A Hugging Face folder's files. */
async function hfFolder(files: File[]): Promise<[string, ModelFolder]> {
  const [config, weights, tokenizer] = ['config.json', 'model.safetensors', 'tokenizer.json'].map((n) => pick(files, n));
  const missing = ['config.json', 'model.safetensors', 'tokenizer.json'].filter((_, i) => ![config, weights, tokenizer][i]);
  if (missing.length) throw new Error(`choose the folder's files, or one GGUF file: ${missing.join(', ')} missing (tokenizer_config.json, chat_template.jinja and generation_config.json too, when it has them)`);
  // The config alone says whether the tab can hold the model: refuse before reading the weights.
  const configBytes = (await bytes(config))!;
  const footprint = await call({ type: 'checkModel', config: configBytes });
  reading = { what: `Loading your model (${megabytes(weights!.size)} MB; about ${megabytes(footprint.training_bytes)} MB to train here)` };
  show(view.message, `${reading.what}…`);
  const folder: ModelFolder = {
    config: configBytes,
    weights: weights!,
    tokenizer: (await bytes(tokenizer))!,
    tokenizerConfig: await bytes(pick(files, 'tokenizer_config.json')),
    template: await bytes(pick(files, 'chat_template.jinja')),
    generationConfig: await bytes(pick(files, 'generation_config.json')),
  };
  const name = weights!.webkitRelativePath.split('/')[0] || weights!.name.replace(/-?model\.safetensors$/, '') || 'folder';
  return [name, folder];
}

view.files.addEventListener('change', async () => {
  const files = [...(view.files.files ?? [])];
  view.files.value = '';
  // A GGUF file is known by its bytes, whatever its name: Ollama's blobs are `sha256-…`.
  const heads = await Promise.all(files.map(async (f) => call({ type: 'isGguf', head: new Uint8Array(await f.slice(0, 4).arrayBuffer()) })));
  const gguf = files.find((_, i) => heads[i]);
  try {
    const [name, folder] = gguf ? await ggufFolder(gguf) : await hfFolder(files);
    await call({ type: 'useModel', name, files: folder });
    // Everything trained from the old model is gone; the page starts over from the new one.
    location.reload();
  } catch (e) {
    show(view.message, `Your model was not loaded (the current one stays): ${(e as Error).message}`, 'error');
  } finally {
    reading = null;
  }
});

view.shipped.addEventListener('click', async () => {
  if (!confirm('Go back to the shipped model? The reward model and policies trained from this one are deleted; your rankings stay.')) return;
  await call({ type: 'shippedModel' });
  location.reload();
});

view.promptsFile.addEventListener('change', async () => {
  const file = view.promptsFile.files?.[0];
  view.promptsFile.value = '';
  if (!file) return;
  try {
    const prompts = await call({ type: 'usePrompts', file: file.name, bytes: new Uint8Array(await file.arrayBuffer()) });
    view.promptsStatus.textContent = `${prompts.length} prompts from ${file.name}`;
    view.builtIn.hidden = false;
    show(view.message, '');
    onPrompts(prompts);
  } catch (e) {
    show(view.message, `Your prompts were not loaded: ${(e as Error).message}`, 'error');
  }
});

view.builtIn.addEventListener('click', async () => {
  const prompts = await call({ type: 'builtInPrompts' });
  view.promptsStatus.textContent = `${prompts.length} built-in prompts`;
  view.builtIn.hidden = true;
  onPrompts(prompts);
});

view.demosFile.addEventListener('change', async () => {
  const file = view.demosFile.files?.[0];
  view.demosFile.value = '';
  if (!file) return;
  try {
    demos = await call({ type: 'loadDemos', file: file.name, bytes: new Uint8Array(await file.arrayBuffer()) });
    view.status.textContent = `${demos} demonstrations from ${file.name}`;
    show(view.message, '');
  } catch (e) {
    show(view.message, `Your demonstrations were not loaded: ${(e as Error).message}`, 'error');
  }
  app.changed();
});

/** SFT of the base model on the saved demonstrations, step by step, charting the loss. */
async function runSft() {
  app.busy = true;
  app.changed();
  try {
    const info = await call({ type: 'startSft', changes: changes('sft', SFT_KNOBS) });
    const left = info.left_out ? ` · ${info.left_out} longer than the context left out` : '';
    view.status.textContent = `${info.train} demonstrations to train on, ${info.validation} held back${left}…`;
    view.loss.reset();
    const started = performance.now();
    await drive(
      () => call({ type: 'sftStep' }),
      ({ stats, done, val_loss }) => {
        view.loss.push({ step: stats.step, loss: stats.loss, val_loss: val_loss ?? null });
        document.body.dataset.sftPoints = String(view.loss.length);
        view.status.textContent = `step ${stats.step}/${info.steps} · loss ${stats.loss.toFixed(3)} · ${stats.tokens_per_sec.toFixed(0)} tokens/s${stats.skipped ? ` · ${stats.skipped}` : ''}`;
        if (!done) return;
        const seconds = ((performance.now() - started) / 1000).toFixed(1);
        view.status.textContent = `done in ${seconds} s · validation loss ${val_loss?.toFixed(3) ?? '–'} · the tuned model is now the SFT model (the compare view shows base and SFT); the reward model and policies of the old one are gone`;
        view.shipped.hidden = false;
      },
    );
    app.hasReward = false;
    app.policies = [];
    if (defaults) restore({ defaults, rewardCurve: [], curves: {}, interrupted: [], samples: {}, view: {} });
  } catch (e) {
    show(view.status, `SFT failed: ${(e as Error).message}`, 'error');
  } finally {
    app.busy = false;
    app.changed();
  }
}

view.run.addEventListener('click', () => exclusive(runSft, () => show(view.status, 'Another tab is training: wait for it to finish, then run here.', 'error')));
