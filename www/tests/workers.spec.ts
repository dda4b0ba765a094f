// The CPU backend on several workers: each is its own wasm instance with a copy of the models, and
// every copy ends each step with the same weights, bit for bit (the reward model, and PPO's, GRPO's
// and DPO's policies); a worker that traps mid-update stops the run, the last good policy comes
// back from IndexedDB, and training goes on with one worker fewer.
import { test, expect, type Page } from '@playwright/test';
import { importRankings, ready, runPpo, saved, trainReward } from './helpers';

type Copies = { workers: number; identical: boolean };
const copies = (page: Page, which: string) =>
  page.evaluate((which) => (window as unknown as { tinyrlhf: { workerCopies(w: string): Promise<Copies> } }).tinyrlhf.workerCopies(which), which);

test('two workers end every run with identical reward models and policies, bit for bit', async ({ page }) => {
  test.setTimeout(10 * 60_000);
  await ready(page, '?backend=cpu&workers=2');
  await expect(page.locator('body')).toHaveAttribute('data-workers', '2');
  await expect(page.locator('#backend')).toContainText('2 workers');
  await importRankings(page);
  await trainReward(page);
  expect(await copies(page, 'reward')).toEqual({ workers: 2, identical: true });
  await runPpo(page, 2);
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  expect(await copies(page, 'ppo')).toEqual({ workers: 2, identical: true });

  await page.locator('#tab-grpo').click();
  for (const [knob, value] of [['iterations', '1'], ['prompts', '2'], ['length', '8']]) await page.locator(`#grpo-${knob}`).fill(value);
  await page.locator('#grpo-run').click();
  await expect(page.locator('#grpo-status')).toContainText('done', { timeout: 300_000 });
  expect(await copies(page, 'grpo')).toEqual({ workers: 2, identical: true });

  await page.locator('#tab-dpo').click();
  await page.locator('#dpo-epochs').fill('1');
  await page.locator('#dpo-run').click();
  await expect(page.locator('#dpo-status')).toContainText('done', { timeout: 300_000 });
  expect(await copies(page, 'dpo')).toEqual({ workers: 2, identical: true });
});

test('a worker that traps mid-update: the run stops, the last good policy is restored, and training goes on with one worker', async ({ page }) => {
  test.setTimeout(10 * 60_000);
  await ready(page, '?backend=cpu&workers=2');
  await importRankings(page);
  await trainReward(page);
  await runPpo(page, 1);
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  expect(await copies(page, 'ppo')).toEqual({ workers: 2, identical: true });
  // The helper traps in its third exchange of the next iteration: after the rollout's and the first
  // minibatch's, in the middle of the update.
  await page.evaluate(() => (window as unknown as { tinyrlhf: { trapHelper(n: number): Promise<unknown> } }).tinyrlhf.trapHelper(3));
  await runPpo(page, 1);
  await expect(page.locator('#ppo-status')).toContainText(
    /PPO failed: worker 2 of 2 stopped \(.+\)\. The PPO policy of the last completed step was restored from this browser's storage\. Training goes on with 1 worker/,
    { timeout: 300_000 },
  );
  expect(((await saved(page, 'curve:ppo')) as unknown[]).length).toBe(1);
  // The next run trains on the one worker left, from the restored policy, and the page is alive.
  await runPpo(page, 1);
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  expect(await copies(page, 'ppo')).toEqual({ workers: 1, identical: true });
  expect(((await saved(page, 'curve:ppo')) as unknown[]).length).toBe(2);
});
