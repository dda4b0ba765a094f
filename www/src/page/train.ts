// The reward-model and policy-tuning views: knobs, buttons and live charts. The worker trains; this
// loop asks for one step at a time, so pause and stop act between steps. Each method (PPO, GRPO,
// RLOO, DPO) has its own panel, saved policy and curves. One tab trains at a time: a run holds the
// Web Lock `tinyrlhf-training`, and a second tab's run is refused while it does.
import { chartFigure, GoldChart, LiveChart, type GoldPoint } from './charts';
import { Progress } from './progress';
import { judge, showResults, verdict } from './results';
import { saveView } from './page-view';

export type { GoldPoint };
import { call, OUT_OF_MEMORY } from './client';
import { METHODS, changes, fillDefaults, knobInput, type Knob, type MethodView } from './methods';
import { pointOf, type Method, type Ready, type Sample, type StepResult } from '../protocol';
import { $, app, show } from './ui';
import { drive } from './drive';

const RM_KNOBS: Knob[] = [
  { setting: 'epochs', label: 'epochs', id: 'epochs' },
  { setting: 'lr', label: 'learning rate', id: 'lr' },
];

const rm = {
  train: $<HTMLButtonElement>('train-reward'),
  status: $('reward-status'),
  loss: new LiveChart($<HTMLCanvasElement>('chart-rm-loss'), 'step', {
    series: [{ key: 'loss', label: 'train' }, { key: 'held_out_loss', label: 'held-out' }],
    title: 'reward-model loss',
    y: 'loss (nats per pair)',
    watch: 'Starts near ln 2 ≈ 0.69 (a coin flip). Held-out rising while train falls: it memorises your rankings.',
  }),
  accuracy: new LiveChart($<HTMLCanvasElement>('chart-rm-accuracy'), 'step', {
    series: [{ key: 'accuracy', label: 'train batch' }, { key: 'held_out_accuracy', label: 'held-out' }],
    title: 'pair accuracy',
    y: 'fraction of pairs',
    watch: 'How often the preferred answer scores higher. Held-out is what counts; 0.5 is chance.',
  }),
};

interface Panel {
  view: MethodView;
  needsReward: boolean;
  tab: HTMLButtonElement;
  element: HTMLElement;
  run: HTMLButtonElement;
  pause: HTMLButtonElement;
  stop: HTMLButtonElement;
  status: HTMLElement;
  samples: HTMLOListElement | null;
  /** The method's own charts, then (for the methods that sample) gold vs proxy. */
  charts: (LiveChart | GoldChart)[];
  state: 'idle' | 'running' | 'paused';
  started: boolean;
  done: number;
  target: number;
  /** The KL leash moved during the run: sent with the next step. */
  movedBeta: number | null;
}

const panels = new Map<Method, Panel>();

/** One tab and one panel per method, built from its view. */
function build(view: MethodView): Panel {
  const m = view.name;
  const tab = Object.assign(document.createElement('button'), { id: `tab-${m}`, textContent: view.label, type: 'button' });
  tab.setAttribute('role', 'tab');
  tab.setAttribute('aria-controls', `panel-${m}`);
  $('method-tabs').append(tab);
  const element = document.createElement('div');
  element.className = 'method-panel';
  element.id = `panel-${m}`;
  element.setAttribute('role', 'tabpanel');
  element.setAttribute('aria-labelledby', `tab-${m}`);
  element.innerHTML = `<p class="teach"></p><div class="controls knobs"></div>
    <div class="controls"><button id="${m}-run" class="primary" disabled>Run</button><button id="${m}-pause" disabled>Pause</button><button id="${m}-stop" disabled>Stop</button><span id="${m}-status" class="muted"></span></div>
    <div class="charts three"></div>`;
  (element.querySelector('.teach') as HTMLElement).textContent = view.teach;
  element.querySelector('.knobs')!.append(...view.knobs.map((k) => knobInput(m, k)));
  const figures = view.charts.map(() => chartFigure());
  const gold = view.unit === 'iteration' ? chartFigure('gold') : null;
  if (gold) gold.canvas.id = `${m}-gold-chart`;
  element.querySelector('.charts')!.append(...[...figures, ...(gold ? [gold] : [])].map((f) => f.figure));
  let samples: HTMLOListElement | null = null;
  if (view.unit === 'iteration') {
    const title = Object.assign(document.createElement('h3'), { textContent: 'Sample answers as the policy changes' });
    samples = Object.assign(document.createElement('ol'), { id: `${m}-samples`, className: 'samples', reversed: true });
    element.append(title, samples);
  }
  $('method-panels').append(element);
  const panel: Panel = {
    view,
    needsReward: true,
    tab,
    element,
    run: $<HTMLButtonElement>(`${m}-run`),
    pause: $<HTMLButtonElement>(`${m}-pause`),
    stop: $<HTMLButtonElement>(`${m}-stop`),
    status: $(`${m}-status`),
    samples,
    charts: [...view.charts.map((c, i) => new LiveChart(figures[i].canvas, view.unit, c)), ...(gold ? [new GoldChart(gold.canvas)] : [])],
    state: 'idle',
    started: false,
    done: 0,
    target: 0,
    movedBeta: null,
  };
  for (const knob of view.knobs.filter((k) => k.live)) {
    // Before a run the slider is a setting like the others; during one it moves the leash.
    $<HTMLInputElement>(`${m}-${knob.id}`).addEventListener('input', (e) => {
      if (panel.started) panel.movedBeta = Number((e.target as HTMLInputElement).value);
    });
  }
  tab.addEventListener('click', () => choose(m));
  panel.run.addEventListener('click', () => runMethod(m));
  panel.pause.addEventListener('click', () => {
    panel.state = 'paused';
    app.changed();
  });
  panel.stop.addEventListener('click', () => {
    panel.state = 'idle';
    panel.started = false;
    app.busy = false;
    panel.status.textContent = 'stopped; the policy so far is saved. Run starts a new run from it.';
    app.changed();
  });
  return panel;
}
METHODS.forEach((view) => panels.set(view.name, build(view)));

let shown: Method = 'ppo';
/** The method whose panel is shown. */
export const chosen = () => shown;

/** Shows `method`'s panel. */
export function choose(method: Method) {
  shown = method;
  for (const [m, p] of panels) {
    p.element.hidden = m !== method;
    p.tab.setAttribute('aria-selected', String(m === method));
  }
}
choose('ppo');

const ANOTHER_TAB = 'Another tab is training: wait for it to finish (or pause it), then run here.';
/** Whether this tab holds the training lock now (the demo holds it across its runs). */
let holding = false;

/**
 * Runs `work` holding the training lock, or returns `refused` without running it when another tab
 * holds it. Both tabs write the same saved policies and curves, so their runs must not interleave.
 */
export async function exclusive<T>(work: () => Promise<T>, refused: () => T): Promise<T> {
  if (holding || !navigator.locks) return work();
  return navigator.locks.request('tinyrlhf-training', { ifAvailable: true }, async (lock) => {
    if (!lock) return refused();
    holding = true;
    try {
      return await work();
    } finally {
      holding = false;
    }
  });
}

/** After the worker restarted: whatever ran is gone, and a new run starts from the saved policy. */
export function resetTraining() {
  for (const p of panels.values()) {
    p.state = 'idle';
    p.started = false;
  }
  app.busy = false;
  app.changed();
}

function refresh() {
  const n = app.rankings.length;
  const least = app.limits?.min_rankings ?? 1;
  const rankings = `${least} ranking${least === 1 ? '' : 's'}`;
  rm.train.disabled = app.busy || n < least;
  rm.train.title = n < least ? `A reward model needs at least ${rankings}; there ${n === 1 ? 'is 1' : `are ${n}`}.` : '';
  if (!app.busy && n < least && !app.hasReward) rm.status.textContent = rm.train.title;
  for (const p of panels.values()) {
    const missing = p.needsReward ? (app.hasReward ? '' : 'Train a reward model first.') : n < least ? `DPO needs at least ${rankings}.` : '';
    p.run.disabled = !!missing || p.state === 'running' || (app.busy && p.state === 'idle');
    p.run.title = missing;
    p.run.textContent = p.state === 'paused' ? 'Resume' : 'Run';
    p.pause.disabled = p.state !== 'running';
    p.stop.disabled = p.state === 'idle';
  }
}
app.listeners.push(refresh);

/** Rust's defaults into every knob; what an earlier visit saw (curves, answers, results, the reward model's accuracy) back in place. */
export function restore({ defaults, rewardCurve, curves, interrupted, samples, view }: Pick<Ready, 'defaults' | 'rewardCurve' | 'curves' | 'interrupted' | 'samples' | 'view'>) {
  fillDefaults(defaults, 'reward', 'rm', RM_KNOBS);
  for (const p of panels.values()) {
    fillDefaults(defaults, p.view.name, p.view.name, p.view.knobs);
    p.needsReward = defaults.methods.find((m) => m.name === p.view.name)?.needs_reward_model ?? true;
  }
  rm.loss.reset(rewardCurve);
  rm.accuracy.reset(rewardCurve);
  const last = rewardCurve.at(-1);
  rm.status.textContent = '';
  if (last) {
    const heldOut = [...rewardCurve].reverse().find((p) => typeof p.held_out_accuracy === 'number')?.held_out_accuracy;
    rm.status.textContent = `trained: ${last.step} steps · loss ${Number(last.loss).toFixed(3)}${typeof heldOut === 'number' ? ` · held-out accuracy ${(100 * heldOut).toFixed(0)}%` : ''} · saved in this browser`;
  }
  for (const p of panels.values()) {
    const curve = curves[p.view.name] ?? [];
    p.charts.forEach((c) => c.reset(curve));
    p.done = curve.length;
    p.samples?.replaceChildren();
    for (const sample of samples[p.view.name] ?? []) addSample(p, sample);
    const next = interrupted.includes(p.view.name) ? 'Run goes on with the interrupted run' : 'Run continues from the saved policy';
    if (curve.length) p.status.textContent = `${curve.length} ${p.view.unit}s so far; ${next}.`;
  }
  showResults(view.results);
  if (view.demoStatus) show($('demo-status'), view.demoStatus);
  if (view.gold) {
    gold.every.value = view.gold.every;
    gold.labeler.value = view.gold.labeler;
  }
  app.changed();
}

/** Trains the reward model on every saved ranking. Resolves to the last held-out accuracy. */
export function trainReward(): Promise<number | null> {
  rm.status.textContent = 'starting…';
  return exclusive(trainRewardNow, () => {
    show(rm.status, ANOTHER_TAB, 'error');
    return null;
  });
}

async function trainRewardNow(): Promise<number | null> {
  app.busy = true;
  app.changed();
  let heldOut: number | null = null;
  const progress = new Progress('reward model', 'step');
  try {
    const info = await call({ type: 'startReward', changes: changes('rm', RM_KNOBS) });
    const started = performance.now();
    rm.loss.reset();
    rm.accuracy.reset();
    const cut = info.prompts_cut ? ` · ${info.prompts_cut} long prompts lost their beginning to fit the context` : '';
    const skipped = info.skipped ? ` · ${info.skipped}` : '';
    rm.status.textContent = `${info.train} rankings (${info.pairs} pairs) to train on, ${info.held_out} held out${cut}${skipped}…`;
    rm.status.dataset.skipped = info.skipped ?? '';
    let epoch = 0;
    await drive(
      () => call({ type: 'rewardStep' }),
      ({ stats, done, dropped }) => {
        const point = { step: stats.step, loss: stats.loss, accuracy: stats.accuracy, held_out_accuracy: stats.held_out?.accuracy ?? null, held_out_loss: stats.held_out?.loss ?? null };
        rm.loss.push(point);
        rm.accuracy.push(point);
        document.body.dataset.rewardPoints = String(rm.loss.length);
        if (stats.held_out) heldOut = stats.held_out.accuracy;
        epoch = stats.epoch;
        progress.update(stats.step, info.steps);
        rm.status.textContent = `step ${stats.step}/${info.steps} · epoch ${stats.epoch} · loss ${stats.loss.toFixed(3)}${heldOut === null ? '' : ` · held-out accuracy ${(100 * heldOut).toFixed(0)}%`} · ${speed(stats.tokens_per_sec)}`;
        if (!done) return;
        // The policies tuned against the old reward model are gone: their runs start over.
        app.policies = app.policies.filter((name) => !dropped.includes(name));
        for (const name of dropped) {
          const p = panels.get(name as Method);
          if (!p) continue;
          p.charts.forEach((c) => c.reset());
          Object.assign(p, { done: 0, started: false });
          p.samples?.replaceChildren();
        }
      },
    );
    const seconds = (performance.now() - started) / 1000;
    rm.status.textContent += ` · done in ${seconds.toFixed(1)} s (${(seconds / Math.max(1, epoch)).toFixed(1)} s per epoch), saved in this browser${cut}${skipped}`;
    app.hasReward = true;
  } catch (e) {
    show(rm.status, `Training failed: ${(e as Error).message}`, 'error');
  } finally {
    progress.end();
    app.busy = false;
    app.changed();
  }
  return heldOut;
}

/** Every other iteration's first answer goes on the panel's list (newest first). */
function addSample(p: Panel, { index, ...sample }: Sample) {
  if (index % 2 === 0) return;
  const li = document.createElement('li');
  li.value = index;
  li.innerHTML = '<span class="prompt"></span> → <span class="response"></span>';
  (li.querySelector('.prompt') as HTMLElement).textContent = sample.prompt.trim();
  (li.querySelector('.response') as HTMLElement).textContent = sample.response;
  p.samples?.prepend(li);
}

/** The last training step's speed (Rust's `tokens_per_sec`: tokens through forward and backward). */
function speed(tokensPerSec: number): string {
  return `${Math.round(tokensPerSec)} training tokens/s`;
}

/**
 * What a failed run says. Out of memory, the run stopped where its last step was saved; the
 * settings whose smaller values take less memory are named.
 */
function failure(p: Panel, e: Error): string {
  if (e.name !== OUT_OF_MEMORY) return `${p.view.label} failed: ${e.message}`;
  const knobs = p.view.knobs.filter((k) => k.memory).map((k) => k.label);
  const kept = p.done ? `the policy is the one saved after ${p.view.unit} ${p.done}` : 'it starts from the SFT model';
  const lower = new Intl.ListFormat('en', { type: 'disjunction' }).format(knobs);
  return `${p.view.label} stopped: ${e.message}. Lower ${lower} and run it again; ${kept}.`;
}

/** One line on how the step went, in the method's own numbers. */
function summary(p: Panel, stats: StepResult): string {
  const num = (key: string) => Number(stats[key]);
  const head = `${p.view.unit} ${p.done}/${p.target}`;
  if (p.view.unit === 'step') {
    const held = stats.held_out ? ` · held-out accuracy ${(100 * stats.held_out.accuracy).toFixed(0)}%` : '';
    return `${head} · loss ${num('loss').toFixed(3)} · margin ${num('rewards/margins').toFixed(2)}${held} · ${speed(num('tokens_per_sec'))}`;
  }
  const seconds = num('rollout_secs') + num('scoring_secs') + num('update_secs');
  return `${head} · score ${num('score').toFixed(2)} · KL ${num('kl').toFixed(2)} · β ${num('beta').toFixed(3)} · ${seconds.toFixed(1)} s · ${speed(num('tokens_per_sec'))}`;
}

const gold = { every: $<HTMLInputElement>('gold-every'), labeler: $<HTMLSelectElement>('gold-labeler') };
gold.labeler.replaceChildren(...[...$<HTMLSelectElement>('labeler').options].map((o) => new Option(o.text, o.value)));
for (const input of [gold.every, gold.labeler]) input.addEventListener('change', () => saveView({ gold: { every: gold.every.value, labeler: gold.labeler.value } }));

/** The labeler to measure gold and proxy with after the panel's next step, if that step is due one. */
function goldThisStep(p: Panel): string | undefined {
  const every = Math.floor(Number(gold.every.value));
  const step = p.done + 1;
  const due = every > 0 && (step % every === 0 || step === p.target);
  return p.view.unit === 'iteration' && due ? gold.labeler.value : undefined;
}

/**
 * Runs (or resumes) `method` until its planned steps are done, pause or stop; `changed` settings
 * show in their knobs. A run that finishes is judged against SFT (unless `judged` is false: the
 * demo judges its own) and its row added to the results table.
 */
export function runMethod(method: Method, changed: Record<string, number> = {}, judged = true): Promise<StepResult | null> {
  const p = panels.get(method)!;
  p.status.textContent = 'starting…';
  for (const [setting, value] of Object.entries(changed)) {
    const knob = p.view.knobs.find((k) => k.setting === setting);
    if (knob) $<HTMLInputElement>(`${method}-${knob.id}`).value = String(value);
  }
  return exclusive(
    () => runNow(p, changed, judged),
    () => {
      show(p.status, ANOTHER_TAB, 'error');
      return null;
    },
  );
}

async function runNow(p: Panel, changed: Record<string, number>, judged: boolean): Promise<StepResult | null> {
  const method = p.view.name;
  let last: StepResult | null = null;
  const started = performance.now();
  const progress = new Progress(p.view.label, p.view.unit, p.done);
  const firstStep = p.done;
  app.busy = true;
  p.state = 'running';
  app.changed();
  try {
    if (!p.started) {
      // A new run (or the first after a reload) continues from this method's saved policy.
      const plan = await call({ type: 'startTraining', method, changes: { ...changes(method, p.view.knobs), ...changed } });
      p.started = true;
      p.target = p.done + plan.total;
      if (plan.resumed_at !== null) p.status.textContent = `the interrupted run goes on after its ${p.view.unit} ${plan.resumed_at}, with its own settings and optimizer state`;
      if (plan.skipped) p.status.textContent = plan.skipped;
    }
    const step = () => {
      const beta = p.movedBeta ?? undefined;
      p.movedBeta = null;
      return call({ type: 'trainStep', method, beta, gold: goldThisStep(p) });
    };
    if (p.done < p.target) await drive(step, async (stats) => {
      last = stats;
      p.done += 1;
      const point = pointOf(stats, p.done);
      p.charts.forEach((c) => c.push(point));
      document.body.dataset[`${method}Points`] = String(p.charts[0].length);
      document.body.dataset[`${method}Gold`] = String(p.charts.at(-1) instanceof GoldChart ? p.charts.at(-1)!.length : 0);
      if (stats.sample) addSample(p, { index: p.done, ...stats.sample });
      p.status.textContent = summary(p, stats);
      progress.update(p.done, p.target);
      if (!app.policies.includes(method)) app.policies = [...app.policies, method];
      if (app.memoryLog) app.memoryLog.push(await call({ type: 'memory' }));
      const why = stats.restored ?? stats.skipped;
      if (why) {
        // Divergence: the last good policy was kept; stop here and say so.
        p.state = 'paused';
        show(p.status, `Paused at ${p.view.unit} ${p.done}: ${why}. Lower the learning rate or raise β, then resume.`, 'error');
        return 'stop';
      }
      if (stats.done) p.target = p.done;
      return p.state === 'running' && p.done < p.target ? undefined : 'stop';
    });
    if (p.done >= p.target) {
      p.state = 'idle';
      p.started = false;
      if (judged && last) {
        const line = p.status.textContent;
        const prompts = app.footprint!.judged_prompts;
        p.status.textContent = `${line} · judging against SFT on ${prompts} held-out prompts…`;
        const row = await judge(method, gold.labeler.value, prompts, (performance.now() - started) / 1000, p.done - firstStep);
        p.status.textContent = `${line} · ${verdict(row)}`;
      }
      p.status.textContent += ' · done';
    }
  } catch (e) {
    p.state = 'idle';
    p.started = false;
    show(p.status, failure(p, e as Error), 'error');
  } finally {
    progress.end();
    if (p.state === 'running') p.state = 'idle';
    app.busy = (p.state as string) === 'paused';
    app.changed();
  }
  return last;
}

rm.train.addEventListener('click', () => trainReward());

/** Charts' point counts, for tests and the demo's report. */
export function chartPoints(method: Method): { reward: number; policy: number } {
  return { reward: rm.loss.length, policy: panels.get(method)!.charts[0].length };
}

/** The gold-vs-proxy measurements of `method`'s run so far (what its chart draws). */
export function goldCurve(method: Method): GoldPoint[] {
  const chart = panels.get(method)!.charts.at(-1);
  return chart instanceof GoldChart ? chart.points : [];
}
