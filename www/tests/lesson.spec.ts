// What a teacher needs: a first visit gets a guided tour (skippable, re-openable, by keyboard); a
// link carries the lesson's settings, refuses the ones it cannot use by name, and the page writes
// such links itself; β moves while PPO runs and the next iteration uses it; the compare view shows
// what the reward model sees token by token; the page has no serious accessibility violation.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, type Page } from '@playwright/test';
import { importRankings, ready, runPpo, saved, trainReward } from './helpers';

/** Moves a slider as a hand would (Playwright cannot `fill` a range input). */
async function slide(page: Page, id: string, value: string) {
  await page.locator(`#${id}`).evaluate((input: HTMLInputElement, value) => {
    input.value = value;
    input.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

test.describe('a first visit', () => {
  test.use({ storageState: { cookies: [], origins: [] } });

  test('opens a five-step tour that the keyboard drives, skips and re-opens, and a reload keeps closed', async ({ page }) => {
    await ready(page);
    const tour = page.locator('#tour');
    await expect(tour).toBeVisible();
    await expect(tour).toHaveAttribute('role', 'dialog');
    await expect(page.locator('#tour-title')).toContainText('Base models continue text');
    await expect(page.locator('#tour-next')).toBeFocused();
    await page.keyboard.press('ArrowRight');
    await expect(page.locator('#tour-count')).toHaveText('Step 2 of 5');
    await expect(page.locator('#sample')).toHaveClass(/tour-target/);
    await page.keyboard.press('Enter');
    await expect(page.locator('#tour-count')).toHaveText('Step 3 of 5');
    await expect(page.locator('#train-reward')).toHaveClass(/tour-target/);
    await page.keyboard.press('ArrowLeft');
    await expect(page.locator('#tour-count')).toHaveText('Step 2 of 5');
    await page.keyboard.press('Escape');
    await expect(tour).toBeHidden();
    await expect(page.locator('.tour-target')).toHaveCount(0);

    await page.reload();
    await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
    await expect(tour).toBeHidden();
    await page.locator('#tour-open').focus();
    await page.keyboard.press('Enter');
    await expect(page.locator('#tour-count')).toHaveText('Step 1 of 5');
    for (let step = 2; step <= 5; step++) await page.locator('#tour-next').click();
    await expect(page.locator('#compare-run')).toHaveClass(/tour-target/);
    await expect(page.locator('#tour-next')).toHaveText('Done');
    await page.locator('#tour-next').click();
    await expect(tour).toBeHidden();
    // Focus goes back to where the tour was opened from.
    await expect(page.locator('#tour-open')).toBeFocused();
  });
});

test('a link sets the method, its knobs, the labeler and K; names what it cannot use; and the page writes the same link back', async ({ page }) => {
  await ready(page, '?method=grpo&beta=0.1&iterations=3&k=6&labeler=polite&answers=5&lr=fast&bogus=1');
  await expect(page.locator('#tab-grpo')).toHaveAttribute('aria-selected', 'true');
  await expect(page.locator('#panel-grpo')).toBeVisible();
  await expect(page.locator('#grpo-beta')).toHaveValue('0.1');
  await expect(page.locator('#grpo-beta-value')).toHaveText('0.1');
  await expect(page.locator('#grpo-iterations')).toHaveValue('3');
  await expect(page.locator('#grpo-k')).toHaveValue('6');
  await expect(page.locator('#labeler')).toHaveValue('polite');
  await expect(page.locator('#demo-labeler')).toHaveValue('polite');
  await expect(page.locator('#k')).toHaveValue('5');
  const problems = page.locator('#link-status');
  await expect(problems).toContainText('lr=fast: GRPO');
  await expect(problems).toContainText('bogus: not a setting');
  // The refused learning rate kept its default.
  await expect(page.locator('#grpo-lr')).toHaveValue((await page.locator('#grpo-lr').getAttribute('data-default'))!);

  await page.locator('#copy-link').click();
  const link = new URL(await page.locator('#link').inputValue());
  expect(Object.fromEntries(link.searchParams)).toEqual({ method: 'grpo', beta: '0.1', iterations: '3', k: '6', labeler: 'polite', answers: '5' });

  // The written link opens the same page, with nothing refused.
  await ready(page, link.search);
  await expect(page.locator('#grpo-k')).toHaveValue('6');
  await expect(page.locator('#link-status')).toBeHidden();
});

test('a link with demo=ppo starts demo mode once the model is loaded', async ({ page }) => {
  await ready(page, '?demo=ppo&labeler=enthusiastic');
  await expect(page.locator('#demo-status')).toContainText(/Demo \(enthusiastic\): ranking \d+\/30/);
  await expect(page.locator('#demo')).toBeDisabled();
});

test('β moves while PPO runs and the next iteration uses it; gold and proxy are measured every 2 iterations; the compare view shows what the reward model sees; both say their training speed', async ({ page }) => {
  test.setTimeout(10 * 60_000);
  await ready(page);
  await importRankings(page);
  await trainReward(page);
  const trainingSpeed = /([1-9]\d*) training tokens\/s/;
  await expect(page.locator('#reward-status')).toContainText(trainingSpeed);
  await page.locator('#gold-every').fill('2');
  await page.locator('#gold-labeler').selectOption('concise');
  await slide(page, 'ppo-beta', '0.05');
  await runPpo(page, 4);
  await expect(page.locator('#ppo-status')).toContainText('iteration 1/4');
  expect(await page.locator('#ppo-status').textContent()).toContain('β 0.050');
  await expect(page.locator('#ppo-status')).toContainText(trainingSpeed);
  await slide(page, 'ppo-beta', '0.3');
  await expect(page.locator('#ppo-beta-value')).toHaveText('0.3');
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  await expect(page.locator('#ppo-status')).toContainText('β 0.300');
  // The saved curve: β was 0.05 for the first iteration and 0.3 for the last.
  const curve = (await saved(page, 'curve:ppo')) as { beta: number; gold?: number; proxy?: number; gold_kl?: number }[];
  expect(curve.at(0)!.beta).toBeCloseTo(0.05, 6);
  expect(curve.at(-1)!.beta).toBeCloseTo(0.3, 6);
  // Gold (the labeler's win-rate over SFT) and proxy (the reward model's mean score) at iterations 2
  // and 4 only, kept in the curve, and drawn against the KL.
  expect(curve.map((p) => p.gold !== undefined)).toEqual([false, true, false, true]);
  for (const p of curve.filter((p) => p.gold !== undefined)) {
    expect(p.gold).toBeGreaterThanOrEqual(0);
    expect(p.gold).toBeLessThanOrEqual(1);
    expect(Number.isFinite(p.proxy) && Number.isFinite(p.gold_kl)).toBe(true);
  }
  expect(await page.evaluate(() => document.body.dataset.ppoGold)).toBe('2');

  // What the reward model sees of the policy's answer: a score after every token, beside the
  // policy's own heatmap of the same tokens.
  await page.locator('#compare-run').click();
  await expect(page.locator('#reward-heatmap span').first()).toBeVisible({ timeout: 120_000 });
  expect(await page.locator('#reward-heatmap span').count()).toBe(await page.locator('#heatmap span').count());
  await expect(page.locator('#reward-heatmap span').first()).toHaveAttribute('title', /score after this token -?[\d.]+ \([+-][\d.]+\)/);
  await expect(page.locator('#reward-heatmap-score')).toContainText('of the whole answer');
});

/** axe-core's serious and critical findings on the page as it is now, one line each. */
async function seriousViolations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

test('the page has no serious or critical accessibility violation (axe-core): each method panel, and the tour', async ({ page }) => {
  await ready(page);
  for (const method of ['ppo', 'grpo', 'rloo', 'dpo']) {
    await page.locator(`#tab-${method}`).click();
    expect(await seriousViolations(page), method).toEqual([]);
  }
  await page.locator('#tour-open').click();
  await expect(page.locator('#tour')).toBeVisible();
  expect(await seriousViolations(page), 'tour').toEqual([]);
});
