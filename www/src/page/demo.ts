// Demo mode: the whole loop from a fresh page with a scripted labeler, so a class can watch it —
// rank 30 prompts, train the reward model, tune the policy with PPO (or each method in turn on the
// same rankings), then a blind comparison of each policy against SFT, ending in a table. The
// over-optimisation lesson instead lets PPO push on an imperfect reward model with no leash and
// shows gold (the labeler) turning down while the proxy (the reward model) keeps rising.
import { call } from './client';
import { METHODS, policyLabel } from './methods';
import { saveView } from './page-view';
import { Progress, setStage } from './progress';
import type { Method, Ranking, RunResult } from '../protocol';
import { clearResults, judge, verdict } from './results';
import { chartPoints, choose, exclusive, goldCurve, runMethod, trainReward, type GoldPoint } from './train';
import { $, app, show } from './ui';

const status = $('demo-status');
const button = $<HTMLButtonElement>('demo');
const DEMO_PROMPTS = 30;
/** PPO's demo run is shorter than its default, to keep the class's wait under four minutes. */
const DEMO_CHANGES: Partial<Record<Method, Record<string, number>>> = { ppo: { iterations: 15 } };
/** Gold and proxy are measured every this many iterations in the demo (unless the person chose). */
const DEMO_GOLD_EVERY = 5;

/**
 * The over-optimisation lesson: rankings by a labeler whose first rule (correctness) 30 rankings
 * cannot teach the small reward model well, so the reward model learns a proxy; PPO with β 0 then
 * climbs the proxy past the point where the labeler stops agreeing. The knobs are set to these
 * values unless the person (or the link) changed them first. Measured natively with the same
 * recipe: gold 0.62 at KL 1.1, then 0.49 at KL 5.2 and 0.40-0.45 at KL 9-11, while the proxy rose
 * from 0.34 to about 0.9.
 */
const OVER = { labeler: 'correct+concise', knobs: { beta: '0', lr: '0.0001', iterations: '30' }, goldEvery: 3 };

/** What the demo's choice runs: 'ppo', 'all' (every method) or 'over' (the over-optimisation lesson). */
export const DEMO_CHOICES = ['ppo', 'all', 'over'];

export function demo(labeler: string, choice: string, setRankings: (rankings: Ranking[]) => void): Promise<void> {
  return exclusive(
    () => withOwnRankingsAside(setRankings, () => (choice === 'over' ? overOptimisation(setRankings) : run(labeler, choice === 'all' ? METHODS.map((m) => m.name) : ['ppo'], setRankings))),
    () => show(status, 'Demo: another tab is training: wait for it to finish (or pause it), then run here.', 'error'),
  );
}

/**
 * The demo ranks with its labeler on a clean set: the person's own rankings wait aside (in
 * IndexedDB, so a closed tab loses nothing) and come back when it ends, however it ends.
 */
async function withOwnRankingsAside(setRankings: (rankings: Ranking[]) => void, demo: () => Promise<void>) {
  const aside = await call({ type: 'setRankingsAside' });
  setRankings([]);
  try {
    await demo();
  } finally {
    setStage('');
    setRankings(await call({ type: 'bringRankingsBack' }));
    if (aside) status.textContent += ` Your ${aside} rankings are back (the demo's were its own).`;
    saveView({ demoStatus: status.textContent ?? '' });
  }
}

async function run(labeler: string, methods: Method[], setRankings: (rankings: Ranking[]) => void) {
  button.disabled = true;
  const stages = methods.length + 2;
  const say = (m: string) => show(status, `Demo (${labeler}): ${m}`);
  const rows: RunResult[] = [];
  clearResults();
  try {
    setStage(`Demo, 1 of ${stages}: `);
    await rank(labeler, say, setRankings);
    say('training the reward model on the rankings…');
    setStage(`Demo, 2 of ${stages}: `);
    const rewardStarted = performance.now();
    const accuracy = await trainReward();
    const rewardSeconds = (performance.now() - rewardStarted) / 1000;
    const rm = `reward model held-out accuracy ${accuracy === null ? '–' : (100 * accuracy).toFixed(0) + '%'}`;
    measureGold(labeler, DEMO_GOLD_EVERY);
    for (const [i, method] of methods.entries()) {
      say(`${rm}; tuning with ${policyLabel(method).replace(' policy', '')}…`);
      setStage(`Demo, ${i + 3} of ${stages}: `);
      choose(method);
      const started = performance.now();
      const last = await runMethod(method, DEMO_CHANGES[method], false);
      if (!last) throw new Error(`${method} did not run`);
      const seconds = (performance.now() - started) / 1000;
      say(`comparing the ${policyLabel(method)} with the SFT model on ${app.footprint!.demo_judged_prompts} held-out prompts…`);
      rows.push(await judge(method, labeler, app.footprint!.demo_judged_prompts, seconds, chartPoints(method).policy));
    }
    const first = rows[0];
    document.body.dataset.demo = JSON.stringify({ accuracy, reward_seconds: rewardSeconds, ...first, rows, points: chartPoints(first.method) });
    say(`done. ${rm}; the ${labeler} labeler prefers, on ${app.footprint!.demo_judged_prompts} held-out prompts: ${rows.map((r) => `${policyLabel(r.method)} ${verdict(r)}`).join('; ')}.`);
  } catch (e) {
    show(status, `Demo stopped: ${(e as Error).message}`, 'error');
  } finally {
    button.disabled = false;
  }
}

/** The demo's labeler ranks K = 4 SFT answers to each of 30 training prompts. */
async function rank(labeler: string, say: (m: string) => void, setRankings: (rankings: Ranking[]) => void) {
  const prompts = await call({ type: 'trainingPrompts', n: DEMO_PROMPTS });
  const progress = new Progress('ranking SFT answers', 'prompt');
  for (const [i, prompt] of prompts.entries()) {
    say(`ranking ${i + 1}/${prompts.length}: “${prompt}”`);
    const out = await call({ type: 'sample', which: 'sft', prompt, k: 4, temperature: 1, maxNewTokens: app.limits!.answer_tokens, seed: i });
    const ranking = await call({ type: 'strictRanking', labeler, prompt, completions: out.completions, finished: out.finished });
    if (ranking) setRankings(await call({ type: 'addRanking', ranking }));
    progress.update(i + 1, prompts.length);
  }
}

/** The labeler is the gold the reward model stands in for: gold vs proxy is measured with it. */
function measureGold(labeler: string, every: number) {
  $<HTMLSelectElement>('gold-labeler').value = labeler;
  const input = $<HTMLInputElement>('gold-every');
  if (Number(input.value) <= 0) input.value = String(every);
}

/** Where gold peaked, and how far it and the proxy went after: the lesson's verdict. */
export function turn(curve: GoldPoint[]) {
  const peak = curve.reduce((best, p, i) => (p.gold > curve[best].gold ? i : best), 0);
  const last = curve.at(-1)!;
  return { peak: curve[peak], last, fell: last.gold < curve[peak].gold, proxyRose: last.proxy > curve[peak].proxy };
}

async function overOptimisation(setRankings: (rankings: Ranking[]) => void) {
  button.disabled = true;
  const labeler = OVER.labeler;
  const say = (m: string) => show(status, `Over-optimisation (${labeler} labeler, PPO with β 0): ${m}`);
  try {
    choose('ppo');
    for (const [knob, value] of Object.entries(OVER.knobs)) {
      const input = $<HTMLInputElement>(`ppo-${knob}`);
      if (input.value === input.dataset.default) {
        input.value = value;
        input.dispatchEvent(new Event('change'));
      }
    }
    measureGold(labeler, OVER.goldEvery);
    setStage('Over-optimisation, 1 of 3: ');
    await rank(labeler, say, setRankings);
    say('training the reward model on the rankings (it learns part of the taste: the proxy)…');
    setStage('Over-optimisation, 2 of 3: ');
    const accuracy = await trainReward();
    say('PPO climbs the reward model with no leash; watch gold vs proxy below the PPO charts…');
    setStage('Over-optimisation, 3 of 3: ');
    $('ppo-gold-chart').scrollIntoView({ block: 'center' });
    const started = performance.now();
    if (!(await runMethod('ppo', {}, false))) throw new Error('PPO did not run');
    const seconds = (performance.now() - started) / 1000;
    const curve = goldCurve('ppo');
    if (!curve.length) throw new Error('no gold measurement was made (is “every” 0?)');
    const { peak, last, fell, proxyRose } = turn(curve);
    document.body.dataset.demo = JSON.stringify({ over: true, accuracy, seconds, curve, fell, proxy_rose: proxyRose });
    const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
    const story = fell && proxyRose
      ? `gold peaked at iteration ${peak.iteration} (win-rate ${pct(peak.gold)} over SFT, KL ${peak.kl.toFixed(1)}) and fell to ${pct(last.gold)} at KL ${last.kl.toFixed(1)}, while the reward model's score kept rising (${peak.proxy.toFixed(2)} → ${last.proxy.toFixed(2)}): the policy learned the proxy, not the taste.`
      : `gold ${pct(peak.gold)} at its best (iteration ${peak.iteration}), ${pct(last.gold)} at the end; proxy ${peak.proxy.toFixed(2)} → ${last.proxy.toFixed(2)}. This run did not show the turn: run it longer (iterations) or again.`;
    say(`done in ${seconds.toFixed(0)} s: ${story}`);
  } catch (e) {
    show(status, `Demo stopped: ${(e as Error).message}`, 'error');
  } finally {
    button.disabled = false;
  }
}
