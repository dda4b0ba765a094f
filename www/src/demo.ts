// Demo mode: the whole loop from a fresh page with a scripted labeler, so a class can watch it —
// rank 30 prompts, train the reward model, tune the policy with PPO (or each method in turn on the
// same rankings), then a blind comparison of each policy against SFT, ending in a table.
import { call } from './client';
import { METHODS, policyLabel } from './methods';
import type { Evaluation, Method, Ranking } from './protocol';
import { chartPoints, choose, exclusive, runMethod, trainReward } from './train';
import { $, show } from './ui';

const status = $('demo-status');
const button = $<HTMLButtonElement>('demo');
const table = $<HTMLTableElement>('demo-table');
const DEMO_PROMPTS = 30;
const HELD_OUT_PROMPTS = 64;
/** PPO's demo run is shorter than its default, to keep the class's wait under four minutes. */
const DEMO_CHANGES: Partial<Record<Method, Record<string, number>>> = { ppo: { iterations: 15 } };
/** Gold and proxy are measured every this many iterations in the demo (unless the person chose). */
const DEMO_GOLD_EVERY = 5;

interface Row extends Evaluation {
  method: Method;
  seconds: number;
  /** Iterations (PPO, GRPO, RLOO) or steps (DPO) the run took. */
  steps: number;
}

export function demo(labeler: string, methods: Method[], setRankings: (rankings: Ranking[]) => void): Promise<void> {
  return exclusive(
    () => run(labeler, methods, setRankings),
    () => show(status, 'Demo: another tab is training: wait for it to finish (or pause it), then run here.', 'error'),
  );
}

/** The methods the demo's choice names: 'ppo', or 'all'. */
export const demoMethods = (choice: string): Method[] => (choice === 'all' ? METHODS.map((m) => m.name) : [choice as Method]);

function render(rows: Row[]) {
  const percent = (x: number) => `${(100 * x).toFixed(0)}%`;
  table.tBodies[0].replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement('tr');
      for (const cell of [policyLabel(r.method), `${percent(r.win_rate)} (${r.wins}–${r.ties}–${r.losses})`, r.kl.toFixed(2), percent(r.eos_rate), `${r.seconds.toFixed(0)} s (${r.steps} × ${(r.seconds / r.steps).toFixed(1)} s)`]) {
        tr.append(Object.assign(document.createElement('td'), { textContent: cell }));
      }
      return tr;
    }),
  );
  table.hidden = rows.length === 0;
}

async function run(labeler: string, methods: Method[], setRankings: (rankings: Ranking[]) => void) {
  button.disabled = true;
  const say = (m: string) => show(status, `Demo (${labeler}): ${m}`);
  const rows: Row[] = [];
  render(rows);
  try {
    const prompts = await call({ type: 'trainingPrompts', n: DEMO_PROMPTS });
    for (const [i, prompt] of prompts.entries()) {
      say(`ranking ${i + 1}/${prompts.length}: “${prompt}”`);
      const out = await call({ type: 'sample', which: 'sft', prompt, k: 4, temperature: 1, maxNewTokens: 48, seed: i });
      const ranking = await call({ type: 'strictRanking', labeler, prompt, completions: out.completions });
      if (ranking) setRankings(await call({ type: 'addRanking', ranking }));
    }
    say('training the reward model on the rankings…');
    const rewardStarted = performance.now();
    const accuracy = await trainReward();
    const rewardSeconds = (performance.now() - rewardStarted) / 1000;
    const rm = `reward model held-out accuracy ${accuracy === null ? '–' : (100 * accuracy).toFixed(0) + '%'}`;
    // The labeler is the gold the reward model stands in for: the gold-vs-proxy chart uses it.
    $<HTMLSelectElement>('gold-labeler').value = labeler;
    const every = $<HTMLInputElement>('gold-every');
    if (Number(every.value) <= 0) every.value = String(DEMO_GOLD_EVERY);
    for (const method of methods) {
      say(`${rm}; tuning with ${policyLabel(method).replace(' policy', '')}…`);
      choose(method);
      const started = performance.now();
      const last = await runMethod(method, DEMO_CHANGES[method]);
      if (!last) throw new Error(`${method} did not run`);
      const seconds = (performance.now() - started) / 1000;
      say(`comparing the ${policyLabel(method)} with the SFT model on ${HELD_OUT_PROMPTS} held-out prompts…`);
      const result = await call({ type: 'evaluate', a: method, b: 'sft', labeler, prompts: HELD_OUT_PROMPTS, temperature: 0.7 });
      rows.push({ method, seconds, steps: chartPoints(method).policy, win_rate: result.win_rate, wins: result.wins, ties: result.ties, losses: result.losses, kl: result.kl, eos_rate: result.eos_rate });
      render(rows);
    }
    const first = rows[0];
    document.body.dataset.demo = JSON.stringify({ accuracy, reward_seconds: rewardSeconds, ...first, rows, points: chartPoints(first.method) });
    const verdicts = rows.map((r) => `${policyLabel(r.method)} ${(100 * r.win_rate).toFixed(0)}% (KL ${r.kl.toFixed(2)}, EOS ${(100 * r.eos_rate).toFixed(0)}%)`);
    say(`done. ${rm}; the ${labeler} labeler prefers, over SFT on ${HELD_OUT_PROMPTS} held-out prompts: ${verdicts.join('; ')}.`);
  } catch (e) {
    show(status, `Demo stopped: ${(e as Error).message}`, 'error');
  } finally {
    button.disabled = false;
  }
}
