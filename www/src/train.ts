// The reward-model and PPO views: buttons, knobs and live charts. The worker trains; this loop
// asks for one step at a time, so pause and stop act between steps. One tab trains at a time: a
// run holds the Web Lock `tinyrlhf-training`, and a second tab's run is refused while it does.
import { LiveChart } from './charts';
import { call } from './client';
import type { PpoSettings, PpoStepResult, Point } from './protocol';
import { $, app, nextFrame, show } from './ui';

const rm = {
  train: $<HTMLButtonElement>('train-reward'),
  status: $('reward-status'),
  epochs: $<HTMLInputElement>('rm-epochs'),
  lr: $<HTMLInputElement>('rm-lr'),
  loss: new LiveChart($<HTMLCanvasElement>('chart-rm-loss'), 'step', [{ key: 'loss', label: 'train' }, { key: 'held_out_loss', label: 'held-out' }], 'loss'),
  accuracy: new LiveChart($<HTMLCanvasElement>('chart-rm-accuracy'), 'step', [{ key: 'accuracy', label: 'train batch' }, { key: 'held_out_accuracy', label: 'held-out' }], 'pair accuracy'),
};

const ppo = {
  run: $<HTMLButtonElement>('ppo-run'),
  pause: $<HTMLButtonElement>('ppo-pause'),
  stop: $<HTMLButtonElement>('ppo-stop'),
  status: $('ppo-status'),
  samples: $<HTMLOListElement>('ppo-samples'),
  charts: [
    new LiveChart($<HTMLCanvasElement>('chart-ppo-score'), 'iteration', [{ key: 'score', label: 'score' }], 'mean reward-model score'),
    new LiveChart($<HTMLCanvasElement>('chart-ppo-kl'), 'iteration', [{ key: 'kl', label: 'KL' }, { key: 'beta', label: 'β' }], 'KL to SFT (nats per answer)'),
    new LiveChart($<HTMLCanvasElement>('chart-ppo-entropy'), 'iteration', [{ key: 'entropy', label: 'entropy' }], 'entropy per token'),
    new LiveChart($<HTMLCanvasElement>('chart-ppo-clip'), 'iteration', [{ key: 'pg_clipfrac', label: 'clip fraction' }], 'policy clip fraction'),
    new LiveChart($<HTMLCanvasElement>('chart-ppo-length'), 'iteration', [{ key: 'mean_length', label: 'tokens' }], 'answer length'),
    new LiveChart($<HTMLCanvasElement>('chart-ppo-eos'), 'iteration', [{ key: 'eos_rate', label: 'EOS rate' }], 'answers that end'),
  ],
  state: 'idle' as 'idle' | 'running' | 'paused',
  started: false,
  done: 0,
  target: 0,
};

const ANOTHER_TAB = 'Another tab is training: wait for it to finish (or pause it), then run here.';
/** Whether this tab holds the training lock now (the demo holds it across its RM and PPO runs). */
let holding = false;

/**
 * Runs `work` holding the training lock, or returns `refused` without running it when another tab
 * holds it. Both tabs write the same saved policy and curves, so their runs must not interleave.
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

/** After the worker restarted: whatever ran is gone, and a new PPO run starts from the saved policy. */
export function resetTraining() {
  ppo.state = 'idle';
  ppo.started = false;
  app.busy = false;
  app.changed();
}

function refresh() {
  const n = app.rankings.length;
  rm.train.disabled = app.busy || n < 2;
  rm.train.title = n < 2 ? `A reward model needs at least 2 rankings; there ${n === 1 ? 'is 1' : `are ${n}`}.` : '';
  if (!app.busy && n < 2) rm.status.textContent = rm.train.title;
  ppo.run.disabled = !app.hasReward || ppo.state === 'running' || (app.busy && ppo.state === 'idle');
  ppo.run.title = app.hasReward ? '' : 'Train a reward model first.';
  ppo.run.textContent = ppo.state === 'paused' ? 'Resume' : 'Run';
  ppo.pause.disabled = ppo.state !== 'running';
  ppo.stop.disabled = ppo.state === 'idle';
}
app.listeners.push(refresh);

export function restoreCurves(rewardCurve: Point[], ppoCurve: Point[]) {
  rm.loss.reset(rewardCurve);
  rm.accuracy.reset(rewardCurve);
  ppo.charts.forEach((c) => c.reset(ppoCurve));
  ppo.done = ppoCurve.length;
  if (ppoCurve.length) ppo.status.textContent = `${ppoCurve.length} iterations so far; Run continues from the saved policy.`;
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
  try {
    const epochs = Number(rm.epochs.value) || 8;
    const info = await call({ type: 'startReward', epochs, lr: Number(rm.lr.value) || 1e-4 });
    const started = performance.now();
    rm.loss.reset();
    rm.accuracy.reset();
    const cut = info.prompts_cut ? ` · ${info.prompts_cut} long prompts lost their beginning to fit the context` : '';
    const skipped = info.skipped ? ` · ${info.skipped}` : '';
    rm.status.textContent = `${info.train} rankings (${info.pairs} pairs) to train on, ${info.held_out} held out${cut}${skipped}…`;
    rm.status.dataset.skipped = info.skipped ?? '';
    for (;;) {
      const { stats, done } = await call({ type: 'rewardStep' });
      const point = { step: stats.step, loss: stats.loss, accuracy: stats.accuracy, held_out_accuracy: stats.held_out?.accuracy ?? null, held_out_loss: stats.held_out?.loss ?? null };
      rm.loss.push(point);
      rm.accuracy.push(point);
      document.body.dataset.rewardPoints = String(rm.loss.length);
      if (stats.held_out) heldOut = stats.held_out.accuracy;
      rm.status.textContent = `step ${stats.step}/${info.steps} · epoch ${stats.epoch} · loss ${stats.loss.toFixed(3)}${heldOut === null ? '' : ` · held-out accuracy ${(100 * heldOut).toFixed(0)}%`}`;
      if (done) break;
      await nextFrame();
    }
    const seconds = (performance.now() - started) / 1000;
    rm.status.textContent += ` · done in ${seconds.toFixed(1)} s (${(seconds / epochs).toFixed(1)} s per epoch), saved in this browser${cut}${skipped}`;
    app.hasReward = true;
    app.hasPolicy = false;
    ppo.charts.forEach((c) => c.reset());
    ppo.done = 0;
    ppo.started = false;
  } catch (e) {
    show(rm.status, `Training failed: ${(e as Error).message}`, 'error');
  } finally {
    app.busy = false;
    app.changed();
  }
  return heldOut;
}

function settings(): PpoSettings {
  const num = (id: string, fallback: number) => Number($<HTMLInputElement>(id).value) || fallback;
  const target = $<HTMLInputElement>('ppo-target').value;
  const k = num('ppo-k', 1);
  return {
    iterations: num('ppo-iterations', 20),
    kl_coef: num('ppo-beta', 0.05),
    kl_target: target ? Number(target) : null,
    lr: num('ppo-lr', 5e-5),
    ppo_epochs: num('ppo-epochs', 4),
    samples_per_prompt: k,
    max_new_tokens: num('ppo-length', 48),
    batch_size: 16,
    minibatch_size: 8,
  };
}

function addSample(stats: PpoStepResult) {
  const li = document.createElement('li');
  li.value = stats.iteration;
  li.innerHTML = '<span class="prompt"></span> → <span class="response"></span>';
  (li.querySelector('.prompt') as HTMLElement).textContent = stats.sample.prompt.replace(/<\|user\|>|<\|assistant\|>/g, '').trim();
  (li.querySelector('.response') as HTMLElement).textContent = stats.sample.response;
  ppo.samples.prepend(li);
}

/** Runs (or resumes) PPO until the planned iterations are done, pause or stop. */
export function runPpo(iterations?: number): Promise<PpoStepResult | null> {
  ppo.status.textContent = 'starting…';
  return exclusive(
    () => runPpoNow(iterations),
    () => {
      show(ppo.status, ANOTHER_TAB, 'error');
      return null;
    },
  );
}

async function runPpoNow(iterations?: number): Promise<PpoStepResult | null> {
  const s = settings();
  if (iterations) s.iterations = iterations;
  let last: PpoStepResult | null = null;
  app.busy = true;
  ppo.state = 'running';
  app.changed();
  try {
    if (!ppo.started) {
      // A new run (or the first after a reload) starts from the saved policy, for `iterations` more.
      await call({ type: 'startPpo', settings: s });
      ppo.started = true;
      ppo.target = ppo.done + s.iterations;
    }
    while (ppo.state === 'running' && ppo.done < ppo.target) {
      const stats = await call({ type: 'ppoStep' });
      last = stats;
      ppo.done += 1;
      const point = { ...stats, iteration: ppo.done } as unknown as Point;
      ppo.charts.forEach((c) => c.push(point));
      document.body.dataset.ppoPoints = String(ppo.charts[0].length);
      if (stats.iteration % 2 === 1) addSample(stats);
      ppo.status.textContent = `iteration ${ppo.done}/${ppo.target} · score ${stats.score.toFixed(2)} · KL ${stats.kl.toFixed(2)} · ${(stats.rollout_secs + stats.scoring_secs + stats.update_secs).toFixed(1)} s`;
      app.hasPolicy = true;
      if (app.memoryLog) app.memoryLog.push(await call({ type: 'memory' }));
      if (stats.restored) {
        // Divergence: the worker restored the last good policy; stop here and say so.
        ppo.state = 'paused';
        show(ppo.status, `Paused at iteration ${ppo.done}: ${stats.restored}. Lower the learning rate or raise β, then resume.`, 'error');
        break;
      }
      await nextFrame();
    }
    if (ppo.done >= ppo.target) {
      ppo.state = 'idle';
      ppo.started = false;
      ppo.status.textContent += ' · done';
    }
  } catch (e) {
    ppo.state = 'idle';
    show(ppo.status, `PPO failed: ${(e as Error).message}`, 'error');
  } finally {
    if (ppo.state === 'running') ppo.state = 'idle';
    app.busy = (ppo.state as string) === 'paused';
    app.changed();
  }
  return last;
}

rm.train.addEventListener('click', () => trainReward());
ppo.run.addEventListener('click', () => runPpo());
ppo.pause.addEventListener('click', () => {
  ppo.state = 'paused';
  app.changed();
});
ppo.stop.addEventListener('click', () => {
  ppo.state = 'idle';
  ppo.started = false;
  app.busy = false;
  ppo.status.textContent = 'stopped; the policy so far is saved. Run starts a new run from it.';
  app.changed();
});

/** Charts' point counts, for tests and the demo's report. */
export function chartPoints(): { reward: number; ppo: number } {
  return { reward: rm.loss.length, ppo: ppo.charts[0].length };
}
