// A reload brings back what the page knew: the reward model's accuracy, each run's verdict against
// SFT in the results table, the answers shown as the policy changed, and the gold-vs-proxy setting.
import { expect, test } from '@playwright/test';
import { importRankings, ready, runPpo } from './helpers';

/** Ten rankings of the concise kind: two of them (every fifth) are held out. */
const TEN = Array.from({ length: 10 }, (_, i) => ({
  prompt: `what colour is the ${['frog', 'owl', 'fox', 'cat', 'duck'][i % 5]}?`,
  completions: [`it is ${['green', 'grey', 'red', 'black', 'white'][i % 5]}.`, 'sure! i am happy to help with that. i think it is a colour.'],
  ranking: [0, 1],
}));

test('every finished run ends with its win-rate over SFT, KL and EOS in the results table, and a reload restores the panels', async ({ page }) => {
  test.setTimeout(10 * 60_000);
  await ready(page);
  await importRankings(page, TEN);
  await page.locator('#rm-epochs').fill('2');
  await page.locator('#train-reward').click();
  await expect(page.locator('#reward-status')).toContainText('done', { timeout: 300_000 });
  const accuracy = /held-out accuracy (\d+)%/.exec((await page.locator('#reward-status').textContent())!)![1];

  await page.locator('#gold-every').fill('1');
  await page.locator('#gold-every').dispatchEvent('change');
  await runPpo(page, 1);
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  // The run's verdict: in its status line and as a row of the table.
  await expect(page.locator('#ppo-status')).toContainText(/\d+% over SFT \(judged by the concise labeler\), KL -?[\d.]+, EOS \d+%/);
  await expect(page.locator('#results-table tbody tr')).toHaveCount(1);
  const row = await page.locator('#results-table tbody tr').textContent();
  await expect(page.locator('#ppo-samples li')).toHaveCount(1);
  const sample = await page.locator('#ppo-samples li').textContent();

  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#ranking-count')).toHaveText('10');
  await expect(page.locator('#reward-status')).toContainText(`held-out accuracy ${accuracy}%`);
  await expect(page.locator('#reward-status')).toContainText('saved in this browser');
  await expect(page.locator('#train-reward')).not.toHaveAttribute('title', /needs at least/);
  await expect(page.locator('#results-table tbody tr')).toHaveText([row!]);
  await expect(page.locator('#ppo-samples li')).toHaveText([sample!]);
  await expect(page.locator('#gold-every')).toHaveValue('1');
});
