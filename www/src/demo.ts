// Demo mode: the whole loop from a fresh page with a scripted labeler, so a class can watch it —
// rank 30 prompts, train the reward model, run PPO, then a blind comparison against SFT.
import { call } from './client';
import { chartPoints, exclusive, runPpo, trainReward } from './train';
import { $, app, show } from './ui';

const status = $('demo-status');
const button = $<HTMLButtonElement>('demo');
const DEMO_PROMPTS = 30;
const DEMO_ITERATIONS = 15;

export function demo(labeler: string, setRankings: (n: ReturnType<typeof app.rankings.slice>) => void): Promise<void> {
  return exclusive(
    () => run(labeler, setRankings),
    () => show(status, 'Demo: another tab is training: wait for it to finish (or pause it), then run here.', 'error'),
  );
}

async function run(labeler: string, setRankings: (n: ReturnType<typeof app.rankings.slice>) => void) {
  button.disabled = true;
  const say = (m: string) => show(status, `Demo (${labeler}): ${m}`);
  try {
    const prompts = await call({ type: 'trainingPrompts', n: DEMO_PROMPTS });
    for (const [i, prompt] of prompts.entries()) {
      say(`ranking ${i + 1}/${prompts.length}: “${prompt}”`);
      const out = await call({ type: 'sample', which: 'sft', prompt, k: 4, temperature: 1, maxNewTokens: 48, seed: i });
      const ranking = await call({ type: 'strictRanking', labeler, prompt, completions: out.completions });
      if (ranking) setRankings(await call({ type: 'addRanking', ranking }));
    }
    say('training the reward model on the rankings…');
    const accuracy = await trainReward();
    say(`reward model held-out accuracy ${accuracy === null ? '–' : (100 * accuracy).toFixed(0) + '%'}; running PPO…`);
    ($<HTMLInputElement>('ppo-iterations')).value = String(DEMO_ITERATIONS);
    await runPpo(DEMO_ITERATIONS);
    say('comparing the policy with the SFT model on held-out prompts…');
    const result = await call({ type: 'evaluate', labeler, prompts: 64, temperature: 0.7 });
    const points = chartPoints();
    document.body.dataset.demo = JSON.stringify({ accuracy, ...result, points });
    say(
      `done. Reward model held-out accuracy ${accuracy === null ? '–' : (100 * accuracy).toFixed(0) + '%'}; the ${labeler} labeler prefers the RLHF policy over SFT in ${(100 * result.win_rate).toFixed(0)}% of 64 held-out prompts (${result.wins} wins, ${result.ties} ties, ${result.losses} losses), KL ${result.kl.toFixed(2)} nats, EOS ${(100 * result.eos_rate).toFixed(0)}%.`,
    );
  } catch (e) {
    show(status, `Demo stopped: ${(e as Error).message}`, 'error');
  } finally {
    button.disabled = false;
  }
}
