// The worker owns the wasm module, the models and the saved data; the page only renders. Its
// session's backend is chosen in `backend.ts`; where each thing is saved, in `keys.ts`. Requests run one at a time, in order. A trap kills the module: every later request then fails as
// fatal, and the page starts a fresh worker (the data is in IndexedDB). On the CPU backend it
// trains each run together with helper workers, one per spare core (`team.ts`); a real model's
// base, too large for a copy per worker, is held between it and row helpers, one per spare core
// (`rows.ts`).
import init, { Session, checkRanking, defaults, isGguf, limits, modelFootprint, parseDemonstrations, parsePrompts, parseRankings, promptCoverage, rankWithLabeler, rankingsToJsonl, rankingsToPairsJsonl, strictRanking, trainingPrompts, trapForTests, fillHeapForTests, workerCount } from '../wasm/tinyrlhf_web.js';
import { pointOf, type Adapter, type Defaults, type Envelope, type Method, type ModelFolder, type ModelInfo, type Point, type PageView, type Ranking, type Ready, type Sample, type Reply, type Request, type Responses, type RewardStepResult, type Sampled, type SftStepResult, type StepResult } from '../protocol';
import { addRankings, allRankings, bringRankingsBack, clearRankings, forget, has, load, onStoreNotice, save, setRankingsAside, StorageFull, update } from './store';
import { chooseBackend, devices, measured, reportedErrors } from './backend';
import { adapterKey, curveKey, DEMOS, fromOlderVersion, OWN_MODEL, policyKey, policyKeys, PROMPTS, REWARD, REWARD_ADAPTER, REWARD_CURVE, runKey, samplesKey, savedWhat, SFT_CURVE, SFT_WEIGHTS, trainedKeys, tunedKeys, VIEW } from './keys';
import { fillMemory, outOfMemory } from './memory';
import { Team, type Saved } from './team';
import { asBlob, loadFolder, upload, type Sharing } from './weights';
import { canShareRows } from './rows';

declare const self: DedicatedWorkerGlobalScope;

let session: Session | null = null;
let wasmMemory: WebAssembly.Memory | null = null;
let modelDir = '';
/** The prompts to rank and to measure on: the person's, else the shipped held-out ones. */
let heldOut: string[] = [];
/** The person's prompts, which PPO, GRPO and RLOO then also train on. */
let ownPrompts: string[] | null = null;
let tokenizerJson = '';
/** The SFT model's files as the session holds them (with the weights SFT here gave it): what helper workers load. */
let folderNow: ModelFolder | null = null;
/** On the CPU backend, the helper workers training alongside this one (null: this one alone). */
let team: Team | null = null;

function post(reply: Reply) {
  self.postMessage(reply);
}

const notice = (message: string) => post({ id: null, event: 'notice', message });
onStoreNotice(notice);

/** Set once the module has trapped (a panic, or a lost GPU device): nothing in it can run again. */
let dead: string | null = null;

/** A helper worker stopped: this one is fine, though the message may quote the helper's trap. */
class HelperStopped extends Error {}

function isFatal(e: unknown): boolean {
  if (e instanceof HelperStopped) return false;
  // A destroyed or lost GPU device does not trap: burn reports it as a poisoned device.
  return e instanceof WebAssembly.RuntimeError || /unreachable|device (was )?lost|DeviceLost|device is poisoned|device was destroyed|WebGPU reported/i.test(String(e));
}

function need(): Session {
  if (!session) throw new Error('the model is still loading');
  return session;
}

/** A file of the shipped models, reporting progress as it arrives. */
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

/** The config.json of the model the session will load: the person's, else the shipped SFT model's. */
async function modelConfig(): Promise<Uint8Array> {
  return (await load<{ files: ModelFolder }>(OWN_MODEL))?.files.config ?? fetchBytes('sft/config.json');
}

async function start(force: string | null, models: string, workers: number | null): Promise<Ready> {
  modelDir = models;
  wasmMemory = (await init()).memory;
  Object.assign(settings, JSON.parse(defaults()));
  let choice = await chooseBackend(force);
  try {
    session = await Session.create(choice.backend);
    if (choice.measure) [session, choice] = await measured(session, choice, await modelConfig());
    if (choice.backend === 'webgpu') choice = { ...choice, kernels: session.kernels() ?? undefined };
  } catch (e) {
    if (choice.backend === 'cpu' || isFatal(e)) throw e;
    notice(`WebGPU failed (${e}); using the CPU backend instead`);
    choice = { backend: 'cpu', device: 'CPU (wasm)', reason: `WebGPU failed: ${e}` };
    session = await Session.create('cpu');
  }
  const s = session;
  const dropped: string[] = [];
  const cores = navigator.hardwareConcurrency || 1;
  const sharing = choice.backend === 'cpu' && canShareRows() ? { cores, requested: workers } : undefined;
  const { folder, base, modelName, model, tunedHere } = await loadModel(s, dropped, sharing);
  goldPrompts = model.footprint.judged_prompts;
  folderNow = folder;
  const config = folder.config;
  const count = choice.backend === 'cpu' ? workerCount(cores, workers ?? undefined, model.parameters) : 1;
  team = count > 1 ? new Team(count) : null;
  // The model as loaded is its own base (sharing its tensors) unless another base was kept.
  if (base !== folder.weights) s.loadBase(config, await upload(base));
  const saved = await load<{ name: string; prompts: string[] }>(PROMPTS);
  ownPrompts = saved?.prompts ?? null;
  heldOut = ownPrompts ?? (await shippedPrompts());
  tokenizerJson = new TextDecoder().decode(folder.tokenizer);
  // What an earlier visit trained comes back; what no longer loads is dropped, the rest is kept.
  await fromOlderVersion();
  const rewardAdapter = (await load<Adapter | null>(REWARD_ADAPTER))?.config;
  const hasReward = await restore(REWARD, [REWARD, REWARD_CURVE, REWARD_ADAPTER], 'The saved reward model', (bytes) => s.loadReward(config, bytes, rewardAdapter), dropped);
  const policies: string[] = [];
  const curves: Record<string, Point[]> = {};
  const interrupted: string[] = [];
  for (const name of [...settings.methods.map((m) => m.name), 'imported']) {
    const adapter = (await load<Adapter | null>(adapterKey(name)))?.config;
    if (await restore(policyKey(name), policyKeys(name), `The saved ${name.toUpperCase()} policy`, (bytes) => s.loadPolicy(name, config, bytes, adapter), dropped)) {
      policies.push(name);
      curves[name] = await curve(curveKey(name));
      if (await has(runKey(name))) interrupted.push(name);
    }
  }
  if (dropped.length) notice(`${dropped.join(' ')} Your rankings are kept.`);
  const samples: Record<string, Sample[]> = {};
  for (const name of policies) samples[name] = (await load<Sample[]>(samplesKey(name))) ?? [];
  const demos = await load<unknown[]>(DEMOS);
  return {
    ...choice,
    // A team's workers each hold a copy; a real model's share one base by rows.
    workers: Math.max(count, s.rowWorkers()),
    model,
    modelName,
    tunedHere,
    prompts: heldOut,
    promptsName: saved?.name ?? null,
    demos: Array.isArray(demos) ? demos.length : 0,
    sftCurve: await curve(SFT_CURVE),
    // A demo the tab closed in the middle of: the person's rankings come back.
    rankings: await bringRankingsBack(),
    hasReward,
    policies,
    rewardCurve: await curve(REWARD_CURVE),
    curves,
    interrupted,
    samples,
    view: (await load<PageView>(VIEW)) ?? {},
    limits: JSON.parse(limits()),
    defaults: settings,
  };
}

/** The shipped held-out prompts. */
async function shippedPrompts(): Promise<string[]> {
  return promptsOf(new TextDecoder().decode(await fetchBytes('heldout.jsonl')));
}

/** Loading a person's model reports how much of its file has been read (the page shows it). */
const reading = (what: string) => (loaded: number, total: number) => post({ id: null, event: 'progress', what, loaded, total });

interface Loaded {
  /** The files the session loaded (the weights SFT here gave the model, when it has). */
  folder: ModelFolder;
  /** The model the compare view contrasts: the person's model before SFT here; the shipped base. */
  base: Blob;
  modelName: string | null;
  model: ModelInfo;
  tunedHere: boolean;
}

/**
 * Loads the model to work from: the person's own folder (saved in IndexedDB) else the shipped one,
 * with the weights SFT in this tab gave it when there are some. What no longer loads is dropped
 * (and why goes to `dropped`), falling back to the shipped model.
 */
async function loadModel(s: Session, dropped: string[], sharing?: Sharing): Promise<Loaded> {
  const own = await load<{ name: string; files: ModelFolder }>(OWN_MODEL);
  if (own) {
    try {
      // Saved by older versions as bytes.
      const files = { ...own.files, weights: asBlob(own.files.weights) };
      return { base: files.weights, modelName: own.name, ...(await loadTuned(s, files, dropped, sharing)) };
    } catch (e) {
      if (isFatal(e)) throw e;
      await forget([OWN_MODEL, ...tunedKeys(methodNames())]);
      dropped.push(`Your model ${own.name} no longer loads (${e instanceof Error ? e.message : e}), so the shipped model is back.`);
    }
  }
  const [config, weights, tokenizer, base] = await Promise.all([
    fetchBytes('sft/config.json'),
    fetchBytes('sft/model.safetensors'),
    fetchBytes('sft/tokenizer.json'),
    fetchBytes('base/model.safetensors'),
  ]);
  const folder = { config, weights: asBlob(weights), tokenizer };
  return { base: asBlob(base), modelName: null, ...(await loadTuned(s, folder, dropped)) };
}

/** `folder` with the weights tuned here on the person's demonstrations, else its own. */
async function loadTuned(s: Session, folder: ModelFolder, dropped: string[], sharing?: Sharing): Promise<{ folder: ModelFolder; model: ModelInfo; tunedHere: boolean }> {
  const tuned = await load<unknown>(SFT_WEIGHTS);
  if (tuned instanceof Uint8Array) {
    try {
      const withTuned = { ...folder, weights: asBlob(tuned), gguf: false };
      return { folder: withTuned, model: await loadFolder(s, withTuned, reading('your model')), tunedHere: true };
    } catch (e) {
      if (isFatal(e)) throw e;
      await forget(tunedKeys(methodNames()));
      dropped.push(`The model tuned here on your demonstrations no longer loads (${e instanceof Error ? e.message : e}), so it was removed.`);
    }
  }
  return { folder, model: await loadFolder(s, folder, reading('your model'), sharing), tunedHere: false };
}

const settings: Defaults = { settings: {}, methods: [] };
const methodNames = () => settings.methods.map((m) => m.name);
/**
 * Loads the model saved under `key` into the session. One that does not load (corrupt bytes, NaN
 * weights, a policy of an older shipped SFT) is deleted with its curve, and why goes to `dropped`;
 * a trap while loading is not caught here: the module is dead and the page restarts it.
 */
async function restore(key: string, keys: string[], what: string, into: (bytes: Uint8Array) => void, dropped: string[]): Promise<boolean> {
  try {
    const bytes = await load<unknown>(key);
    if (bytes === undefined) return false;
    if (!(bytes instanceof Uint8Array)) throw new Error('not a model file');
    into(bytes);
    return true;
  } catch (e) {
    if (isFatal(e)) throw e;
    await forget(keys);
    dropped.push(`${what} no longer loads (${e instanceof Error ? e.message : e}), so it was removed.`);
    return false;
  }
}

async function curve(key: string): Promise<Point[]> {
  const points = await load<unknown>(key);
  return Array.isArray(points) ? (points as Point[]) : [];
}

function promptsOf(jsonl: string): string[] {
  return jsonl.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).prompt as string);
}

let rewardCurve: Point[] = [];

/**
 * Starts a run on every worker of the team (each loads the SFT model, `reward` and `policy`), or
 * on this one alone.
 */
async function beginRun(reward: Saved | null, policy: (Saved & { name: string }) | null) {
  if (team) await team.begin({ folder: folderNow!, reward, policy }, (rank, count, exchange) => need().setPeers(rank, count, exchange));
}

/**
 * `own()` here and the same session call on the team's helpers. When a worker stopped, the run is
 * over: `recover()` puts back what the failed step may have touched, and the error says so.
 */
async function together<T>(own: () => Promise<T>, method: 'startReward' | 'rewardStep' | 'startTraining' | 'trainStep', args: unknown[], recover: () => Promise<string>): Promise<T> {
  if (!team) return own();
  try {
    return await team.together(own, method, args);
  } catch (e) {
    const why = team.failure;
    if (!why) throw e;
    const kept = await recover();
    const workers = team.workers;
    throw new HelperStopped(`${why}. ${kept} Training goes on with ${workers} worker${workers === 1 ? '' : 's'}: start it again.`);
  }
}

async function rewardStep(): Promise<RewardStepResult> {
  const result: RewardStepResult = JSON.parse(
    await together(() => need().rewardStep(), 'rewardStep', [], async () => 'The reward model is the one saved before this run.'),
  );
  const s = result.stats;
  rewardCurve.push({ step: s.step, epoch: s.epoch, loss: s.loss, accuracy: s.accuracy, held_out_accuracy: s.held_out?.accuracy ?? null, held_out_loss: s.held_out?.loss ?? null });
  if (result.done) {
    // One transaction: the reward model and its curve in, the policies tuned for the old reward
    // model and their curves out (the session has dropped them too: they start over from SFT).
    const gone = result.dropped.flatMap(policyKeys);
    const { weights, adapter } = await savedReward();
    await update({ [REWARD]: weights, [REWARD_ADAPTER]: adapter, [REWARD_CURVE]: rewardCurve }, gone);
  }
  return result;
}

let sftCurve: Point[] = [];

async function sftStep(): Promise<SftStepResult> {
  const result: SftStepResult = JSON.parse(await need().sftStep());
  sftCurve.push({ step: result.stats.step, loss: result.stats.loss, val_loss: result.val_loss ?? null });
  if (result.done) {
    // The tuned model replaces the SFT model: what was trained from the old one goes, in one transaction.
    const weights: Uint8Array = await need().sftWeights();
    await update({ [SFT_WEIGHTS]: weights, [SFT_CURVE]: sftCurve }, trainedKeys(methodNames()));
    folderNow = { ...folderNow!, weights: asBlob(weights) };
  }
  return result;
}

/**
 * Held-out prompts on which gold and proxy are measured during a run (the same ones each time):
 * as many as judge a finished run, decided in Rust from the model's size.
 */
let goldPrompts = 32;

async function trainStep(method: Method, beta: number | undefined, gold: string | undefined): Promise<StepResult> {
  const stats: StepResult = JSON.parse(await together(() => need().trainStep(beta), 'trainStep', [beta], () => restorePolicy(method)));
  if (gold) {
    // Kept in the step's point, so the chart comes back with the curve after a reload.
    const measured = JSON.parse(await need().goldAndProxy(method, JSON.stringify(heldOut.slice(0, goldPrompts)), gold, 11n));
    Object.assign(stats, { gold: measured.gold, proxy: measured.proxy, gold_kl: measured.kl });
  }
  const points = await curve(curveKey(method));
  points.push(pointOf(stats, points.length + 1));
  const samples = (await load<Sample[]>(samplesKey(method))) ?? [];
  if (stats.sample) samples.push({ index: points.length, ...stats.sample });
  // The policy after this step, its curve and answers, and what the run needs to go on after a
  // reload until it is done, in one transaction.
  const { weights, adapter } = await savedPolicy(method);
  const policy = { [policyKey(method)]: weights, [adapterKey(method)]: adapter, [curveKey(method)]: points, [samplesKey(method)]: samples };
  if (stats.done) await update(policy, [runKey(method)]);
  else await save({ ...policy, [runKey(method)]: await need().runCheckpoint() });
  return stats;
}

/**
 * What is kept of a policy: a LoRA policy's adapter (its safetensors stand for the policy, put back
 * on the SFT model when loaded), or the whole model's weights.
 */
async function savedPolicy(name: string): Promise<{ weights: Uint8Array; adapter: Adapter | null }> {
  const adapter: Adapter | null = await need().policyAdapter(name);
  return { weights: adapter ? adapter.safetensors : await need().policyWeights(name), adapter };
}

/** What is kept of the reward model, the same way: its adapters and head when trained with LoRA. */
async function savedReward(): Promise<{ weights: Uint8Array; adapter: Adapter | null }> {
  const adapter: Adapter | null = await need().rewardAdapter();
  return { weights: adapter ? adapter.safetensors : await need().rewardWeights(), adapter };
}

/** The method's policy as saved after its last completed step, back in the session. */
async function restorePolicy(method: Method): Promise<string> {
  const saved = await load<unknown>(policyKey(method));
  if (!(saved instanceof Uint8Array)) return `The ${method.toUpperCase()} policy had no completed step yet; it starts over.`;
  need().loadPolicy(method, folderNow!.config, saved, (await load<Adapter | null>(adapterKey(method)))?.config);
  return `The ${method.toUpperCase()} policy of the last completed step was restored from this browser's storage.`;
}

async function handle(request: Request): Promise<Responses[keyof Responses]> {
  switch (request.type) {
    case 'init':
      return start(request.force, request.models, request.workers);
    case 'sample': {
      const started = performance.now();
      const out = JSON.parse(await need().sample(request.which, request.prompt, request.k, request.temperature, request.maxNewTokens, BigInt(request.seed)));
      return { ...out, seconds: (performance.now() - started) / 1000 } as Sampled;
    }
    case 'rankForMe':
      return JSON.parse(rankWithLabeler(request.labeler, request.prompt, JSON.stringify(request.completions)));
    case 'strictRanking':
      return JSON.parse(strictRanking(request.labeler, request.prompt, JSON.stringify(request.completions), JSON.stringify(request.finished)));
    case 'addRanking':
      checkRanking(JSON.stringify(request.ranking));
      return addRankings([request.ranking]);
    case 'export': {
      const rankings = JSON.stringify(await allRankings());
      return request.format === 'pairs' ? rankingsToPairsJsonl(rankings) : rankingsToJsonl(rankings);
    }
    case 'import': {
      // Parsed in full before anything is written: a bad line leaves the saved rankings untouched.
      const rankings: Ranking[] = JSON.parse(parseRankings(request.file, request.bytes));
      return addRankings(rankings);
    }
    case 'reset':
      await clearRankings();
      return [];
    case 'trainingPrompts':
      return JSON.parse(trainingPrompts(request.n, 0n));
    case 'startReward': {
      rewardCurve = [];
      const args = [JSON.stringify(await allRankings()), JSON.stringify(request.changes)] as const;
      await beginRun(null, null);
      const plan = await together(async () => need().startReward(...args), 'startReward', [...args], async () => 'Nothing was trained.');
      return JSON.parse(plan);
    }
    case 'rewardStep':
      return rewardStep();
    case 'scores':
      return JSON.parse(await need().scores(request.prompt, JSON.stringify(request.completions), JSON.stringify(request.finished ?? [])));
    case 'startTraining': {
      const samples = settings.methods.find((m) => m.name === request.method)?.samples_answers;
      const prompts = !samples ? '[]' : ownPrompts ? JSON.stringify(ownPrompts) : trainingPrompts(2000, 0n);
      const rankings = samples ? '[]' : JSON.stringify(await allRankings());
      const args = [request.method, prompts, rankings, JSON.stringify(request.changes)] as const;
      if (team) {
        const policy = await savedPolicy(request.method).catch(() => null);
        const reward = await savedReward().catch(() => null);
        await beginRun(reward && { weights: reward.weights, adapter: reward.adapter?.config }, policy && { name: request.method, weights: policy.weights, adapter: policy.adapter?.config });
      }
      const begin = (checkpoint: object | undefined) =>
        together(() => need().startTraining(...args, checkpoint), 'startTraining', [...args, checkpoint], async () => 'Nothing was trained.');
      // An interrupted run that cannot go on (saved by an older version, or its record unreadable):
      // a new one from its policy.
      const startOver = async (why: unknown) => {
        await forget([runKey(request.method)]);
        notice(`${why instanceof Error ? why.message : why}; a new run starts from the saved ${request.method.toUpperCase()} policy.`);
        return JSON.parse(await begin(undefined));
      };
      let interrupted: object | undefined;
      try {
        interrupted = await load<object>(runKey(request.method));
      } catch (e) {
        return startOver(e);
      }
      try {
        return JSON.parse(await begin(interrupted));
      } catch (e) {
        if (!interrupted || isFatal(e) || e instanceof HelperStopped) throw e;
        return startOver(e);
      }
    }
    case 'trainStep':
      return trainStep(request.method, request.beta, request.gold);
    case 'explain':
      return JSON.parse(await need().explain(request.which, request.prompt, request.response, request.temperature));
    case 'evaluate': {
      const prompts = JSON.stringify(heldOut.slice(0, request.prompts));
      return JSON.parse(await need().evaluate(request.a, request.b, prompts, request.labeler, 7n));
    }
    case 'exportModel': {
      const reward = request.which === 'reward';
      const adapter: Adapter | null = reward ? await need().rewardAdapter() : await need().policyAdapter(request.which);
      // A LoRA model's merged copy widens the whole base to f32: only when asked.
      const merged = !adapter || request.merged;
      const weights: Uint8Array | null = !merged ? null : reward ? await need().rewardWeights() : await need().policyWeights(request.which);
      return { config: need().configJson(), weights, tokenizer: tokenizerJson, tokenizerConfig: need().tokenizerConfigJson(), adapter };
    }
    case 'importPolicy': {
      // A whole model brings its config; an adapter (PEFT's, as TRL or tinyrlhf write it) goes on
      // the model loaded here, whose config it shares.
      const config = request.adapter ? folderNow!.config : new TextEncoder().encode(request.config ?? '');
      need().loadPolicy('imported', config, request.weights, request.adapter);
      const adapter: Adapter | null = request.adapter ? { config: request.adapter, safetensors: request.weights, gguf: null } : null;
      // A curve belongs to the policy it tuned: the imported one has none.
      await update({ [policyKey('imported')]: request.weights, [adapterKey('imported')]: adapter }, [curveKey('imported')]);
      return null;
    }
    case 'forgetTraining':
      await forget(trainedKeys(methodNames()));
      need().forgetTraining();
      return null;
    case 'checkModel':
      return JSON.parse(modelFootprint(request.config));
    case 'isGguf':
      return isGguf(request.head);
    case 'useModel': {
      // Checked by loading it first: a folder that does not load changes nothing. The page reloads.
      const s = need();
      const files = request.files;
      await loadFolder(s, files, reading('your model'));
      // A GGUF file describes its own config and tokenizer: kept as files for what needs them
      // (sizing the backend, the tokenizer for rankings, SFT's tuned weights, helper workers).
      if (files.gguf) {
        const text = (t: string) => new TextEncoder().encode(t);
        Object.assign(files, { config: text(s.configJson()), tokenizer: text(s.tokenizerJson()), tokenizerConfig: text(s.tokenizerConfigJson()) });
      }
      await update({ [OWN_MODEL]: { name: request.name, files } }, tunedKeys(methodNames()));
      return null;
    }
    case 'shippedModel':
      await forget([OWN_MODEL, ...tunedKeys(methodNames())]);
      return null;
    case 'usePrompts': {
      const prompts: string[] = JSON.parse(parsePrompts(request.file, request.bytes));
      await save({ [PROMPTS]: { name: request.file, prompts } });
      ownPrompts = heldOut = prompts;
      return prompts;
    }
    case 'builtInPrompts':
      await forget([PROMPTS]);
      ownPrompts = null;
      heldOut = await shippedPrompts();
      return heldOut;
    case 'loadDemos': {
      const demos: unknown[] = JSON.parse(parseDemonstrations(request.file, request.bytes));
      await save({ [DEMOS]: demos });
      return demos.length;
    }
    case 'startSft': {
      const demos = await load<unknown[]>(DEMOS);
      if (!demos?.length) throw new Error('load a demonstrations file first');
      sftCurve = [];
      return JSON.parse(need().startSft(JSON.stringify(demos), JSON.stringify(request.changes)));
    }
    case 'sftStep':
      return sftStep();
    case 'coverage':
      return JSON.parse(promptCoverage(request.prompt));
    case 'saveView':
      await save({ [VIEW]: request.view });
      return null;
    case 'setRankingsAside':
      return setRankingsAside();
    case 'bringRankingsBack':
      return bringRankingsBack();
    case 'memory': {
      const heap = (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? null;
      return { wasm: wasmMemory?.buffer.byteLength ?? 0, heap };
    }
    case 'trap':
      trapForTests();
      return null;
    case 'fillMemory':
      if (!wasmMemory) throw new Error('the model is still loading');
      fillMemory(wasmMemory);
      fillHeapForTests();
      return wasmMemory.buffer.byteLength;
    case 'workerCopies': {
      const own: Uint8Array = request.which === 'reward' ? await need().rewardWeights() : await need().policyWeights(request.which);
      const copies = team ? await team.copies(request.which, own) : [own];
      const same = copies.every((c) => c.length === own.length && c.every((b, i) => b === own[i]));
      return { workers: copies.length, identical: same };
    }
    case 'trapHelper':
      if (!team) throw new Error('this worker trains alone');
      await team.trapHelper(request.exchange);
      return null;
    case 'loseDevice':
      if (!devices.length) throw new Error('this worker made no GPU device');
      devices.forEach((d) => d.destroy());
      return null;
  }
}

// A trap in an async step (wasm-bindgen's futures run the module outside the request's promise) is
// the worker's uncaught error. Out of memory, the page is told so, to name what to lower.
self.addEventListener('error', (event) => {
  if (!(event.error instanceof WebAssembly.RuntimeError)) return;
  const memory = outOfMemory(wasmMemory);
  if (!memory) return;
  event.preventDefault();
  dead ??= memory;
  post({ id: null, event: 'died', error: memory, outOfMemory: true });
});

let queue: Promise<unknown> = Promise.resolve();

self.onmessage = (message: MessageEvent<Envelope>) => {
  const { id, ...request } = message.data;
  queue = queue.then(async () => {
    try {
      if (dead) throw new Error(`the module stopped earlier (${dead})`);
      const result = await handle(request as Request);
      // A kernel WebGPU refused ran nothing: what the request computed cannot be trusted.
      const failed = session?.backend() === 'webgpu' ? reportedErrors() : null;
      if (failed) throw new Error(`WebGPU reported an error: ${failed}`);
      post({ id, ok: true, result });
    } catch (e) {
      const fatal = isFatal(e);
      const memory = fatal ? outOfMemory(wasmMemory) : null;
      const error = memory ?? (e instanceof StorageFull ? e.say(savedWhat(e.keys)) : e instanceof Error ? e.message : String(e));
      if (fatal) dead ??= error;
      post({ id, ok: false, error, fatal: dead !== null, outOfMemory: memory !== null });
    }
  });
};
