// The tab's training speed on the CPU fallback, printed, never asserted: a benchmark, opt-in
// (`TINYRLHF_SPEED=1 npx playwright test tests/speed.spec.ts`), not part of CI. It times PPO
// iterations at the page's default sizes (batch 16, 48-token answers, 4 epochs x 2 minibatches) and
// a reward-model epoch, as each step's status line reports them, and demo mode's wall time, on one CPU
// worker and on two.
import { test, expect } from '@playwright/test';
import { TWO, importRankings, ready, trainReward } from './helpers';

test.skip(!process.env.TINYRLHF_SPEED, 'a benchmark: set TINYRLHF_SPEED=1 to run it');

for (const workers of [1, 2]) {
  test(`speed of the tab on ${workers} CPU worker(s): PPO iterations at the default sizes and a reward-model epoch`, async ({ page }) => {
    test.setTimeout(15 * 60_000);
    await ready(page, `?backend=cpu&workers=${workers}`);
    // 24 rankings: an epoch of the reward model is 3 steps of 8.
    await importRankings(page, Array.from({ length: 12 }, (_, i) => TWO.map((r) => ({ ...r, prompt: `${r.prompt} (${i})` }))).flat());
    await trainReward(page);
    const reward = (await page.locator('#reward-status').textContent())!;
    const iterations = 4;
    await page.locator('#ppo-iterations').fill(String(iterations));
    await page.locator('#ppo-run').click();
    const seen: { seconds: number; tokensPerSec: number }[] = [];
    for (let i = 1; i <= iterations; i++) {
      await expect(page.locator('#ppo-status')).toContainText(new RegExp(`iteration ${i}/${iterations}`), { timeout: 300_000 });
      const status = (await page.locator('#ppo-status').textContent())!;
      const seconds = Number(/ ([\d.]+) s · /.exec(status)![1]);
      const tokensPerSec = Number(/(\d+) training tokens\/s/.exec(status)![1]);
      seen.push({ seconds, tokensPerSec });
    }
    // The first iteration warms up; the rest are the figure.
    const rest = seen.slice(1);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(
      `tab speed, ${workers} worker(s): ${JSON.stringify({
        ppo_iteration_secs: median(rest.map((s) => s.seconds)),
        ppo_update_tokens_per_sec: median(rest.map((s) => s.tokensPerSec)),
        each: seen,
        reward_model: reward,
      })}`,
    );
  });
}

for (const workers of [1, 2]) {
  test(`demo mode's wall time on ${workers} CPU worker(s)`, async ({ page }) => {
    test.setTimeout(15 * 60_000);
    await ready(page, `?backend=cpu&workers=${workers}`);
    const started = Date.now();
    await page.locator('#demo-labeler').selectOption('concise');
    await page.locator('#demo').click();
    await expect(page.locator('body')).toHaveAttribute('data-demo', /win_rate/, { timeout: 15 * 60_000 });
    const result = JSON.parse((await page.locator('body').getAttribute('data-demo'))!);
    const wall = ((Date.now() - started) / 1000).toFixed(0);
    const parts = `reward model ${result.reward_seconds.toFixed(1)} s (held-out ${result.accuracy}), PPO ${result.steps} iterations ${result.seconds.toFixed(1)} s`;
    console.log(`demo, ${workers} worker(s): ${wall} s in all; ${parts}; win-rate ${result.win_rate}, KL ${result.kl}`);
  });
}
