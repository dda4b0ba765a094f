// The tab trains: demo mode from a fresh profile ranks with a scripted labeler, trains the reward
// model and runs PPO on the CPU fallback (two workers sharing every step), and the policy beats SFT
// under that labeler; a reload in
// the middle of PPO resumes from the saved policy; the main thread stays responsive; memory does
// not grow iteration over iteration; and on WebGPU (SwiftShader) one RM epoch and one PPO iteration
// give finite numbers and chart points.
import { test, expect, type Page } from '@playwright/test';
import { importRankings, ready, saved } from './helpers';

async function watchLongTasks(page: Page) {
  await page.evaluate(() => {
    const w = window as unknown as { longTasks: number[] };
    w.longTasks = [];
    new PerformanceObserver((list) => list.getEntries().forEach((e) => w.longTasks.push(e.duration))).observe({ type: 'longtask', buffered: false });
  });
}

const longTasks = (page: Page) => page.evaluate(() => (window as unknown as { longTasks: number[] }).longTasks);

test('demo mode learns a labeler’s taste on the CPU fallback, on two workers', async ({ page }) => {
  test.setTimeout(30 * 60_000);
  await ready(page, '?workers=2');
  await expect(page.locator('body')).toHaveAttribute('data-workers', '2');
  await watchLongTasks(page);
  // The person's own rankings wait aside while the demo ranks its own, and come back after.
  await importRankings(page);
  const started = Date.now();
  await page.locator('#demo-labeler').selectOption('concise');
  await page.locator('#demo').click();
  await expect(page.locator('#ranking-count')).toHaveText('0');
  // The bar at the top says where the demo is, with the count and the time left, and PPO's box shows the demo's iterations.
  await expect(page.locator('#run-progress-text')).toContainText(/Demo, 3 of 3: PPO: iteration \d+\/15 · about \d+ (s|min) left/, { timeout: 20 * 60_000 });
  await expect(page.locator('#run-progress')).toBeInViewport();
  await expect(page.locator('#ppo-iterations')).toHaveValue('15');
  await expect(page.locator('body')).toHaveAttribute('data-demo', /win_rate/, { timeout: 30 * 60_000 });
  await expect(page.locator('#ranking-count')).toHaveText('2');
  await expect(page.locator('#demo-status')).toContainText('Your 2 rankings are back');
  await expect(page.locator('#results-table tbody tr')).toHaveCount(1);
  const result = JSON.parse((await page.locator('body').getAttribute('data-demo'))!);
  console.log(`demo (concise), ${((Date.now() - started) / 1000).toFixed(0)} s: ${JSON.stringify(result)}`);
  console.log(await page.locator('#demo-status').textContent());
  console.log(`PPO: ${await page.locator('#ppo-status').textContent()}`);
  console.log(`reward model: ${await page.locator('#reward-status').textContent()}`);
  await page.screenshot({ path: 'test-results/demo.png', fullPage: true });
  expect(result.accuracy).toBeGreaterThanOrEqual(0.7);
  expect(result.win_rate).toBeGreaterThanOrEqual(0.65);
  expect(Number.isFinite(result.kl)).toBe(true);
  expect(result.points.reward).toBeGreaterThan(0);
  expect(result.points.policy).toBeGreaterThan(0);
  expect((await longTasks(page)).filter((d) => d > 200)).toEqual([]);

  // Reload in the middle of a PPO run: the curves and the policy come back, and PPO continues from
  // the saved policy (its KL to SFT is far from 0 at once).
  await page.locator('#ppo-iterations').fill('3');
  await page.locator('#ppo-run').click();
  await expect(page.locator('#ppo-status')).toContainText('iteration 16/18', { timeout: 120_000 });
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#ppo-status')).toContainText(/1[67] iterations so far/);
  await page.evaluate(() => ((window as unknown as { tinyrlhf: { memoryLog: unknown[] } }).tinyrlhf.memoryLog = []));
  await page.locator('#ppo-iterations').fill('6');
  await page.locator('#ppo-run').click();
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 600_000 });
  const status = (await page.locator('#ppo-status').textContent())!;
  const kl = Number(/KL ([\d.]+)/.exec(status)![1]);
  expect(kl).toBeGreaterThan(0.5);
  const memory = await page.evaluate(() => (window as unknown as { tinyrlhf: { memoryLog: { wasm: number; heap: number }[] } }).tinyrlhf.memoryLog);
  console.log(`memory per PPO iteration after the reload (wasm bytes, JS heap bytes): ${JSON.stringify(memory)}`);
  // Not growing iteration over iteration: the wasm memory is flat over the last iterations.
  expect(memory.at(-1)!.wasm).toBeLessThanOrEqual(memory[2].wasm);

  // Compare: three answers with rewards, and a heatmap of the policy's answer with values on hover.
  await page.locator('#compare-run').click();
  await expect(page.locator('#compare-columns .column')).toHaveCount(3);
  await expect(page.locator('#compare-columns .score').first()).toContainText('reward');
  await expect(page.locator('#heatmap span').first()).toHaveAttribute('title', /log π\/π_ref = -?[\d.]+ · advantage = -?[\d.]+/);
  // The keyboard reads the same values: focus the first token, → to the second.
  await page.locator('#heatmap span').first().focus();
  await page.keyboard.press('ArrowRight');
  await expect(page.locator('#heatmap span').nth(1)).toBeFocused();
  expect(await page.locator('#heatmap-value').textContent()).toContain((await page.locator('#heatmap span').nth(1).getAttribute('title'))!);
  // Blind A/B, by default SFT against the newest policy: nothing revealed until the round ends,
  // then the page says who wrote what and keeps the person's win-rate (a tie counts half).
  await expect(page.locator('#ab-a')).toHaveValue('sft');
  await expect(page.locator('#ab-b')).toHaveValue('ppo');
  await page.locator('#ab-next').click();
  await page.locator('#ab-pair button').first().click();
  await expect(page.locator('#ab-score')).toHaveText('Pair 1 of 5 recorded; the models are revealed at the end.');
  await page.locator('#ab-next').click();
  await page.locator('#ab-pair button.tie').click();
  await page.locator('#ab-reveal').click();
  await expect(page.locator('#ab-score')).toContainText(/You preferred the SFT model over the PPO policy in [01] of 2 \(1 tied\)/);
  await expect(page.locator('#ab-picks li')).toHaveCount(2);

  // The other methods on the same rankings, briefly: DPO (no reward model) and GRPO, each with its
  // own charts, saved policy and a resumed run after a reload; then every policy side by side.
  await page.locator('#tab-dpo').click();
  await page.locator('#dpo-epochs').fill('1');
  await page.locator('#dpo-run').click();
  await expect(page.locator('#dpo-status')).toContainText('done', { timeout: 300_000 });
  console.log(`DPO, 1 epoch: ${await page.locator('#dpo-status').textContent()}`);
  await page.locator('#tab-grpo').click();
  for (const [knob, value] of [['iterations', '1'], ['prompts', '2'], ['length', '8']]) await page.locator(`#grpo-${knob}`).fill(value);
  await page.locator('#grpo-run').click();
  await expect(page.locator('#grpo-status')).toContainText('done', { timeout: 300_000 });
  console.log(`GRPO, 1 small iteration: ${await page.locator('#grpo-status').textContent()}`);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#dpo-status')).toContainText(/\d+ steps so far/);
  await expect(page.locator('#grpo-status')).toContainText('1 iterations so far');
  await page.locator('#compare-run').click();
  await expect(page.locator('#compare-columns .column')).toHaveCount(5);
  await expect(page.locator('#compare-columns [data-model="dpo"] .score')).toContainText('reward');
  await page.locator('#ab-a').selectOption('dpo');
  await page.locator('#ab-b').selectOption('grpo');
  await page.locator('#ab-next').click();
  await page.locator('#ab-pair button').first().click();
  await page.locator('#ab-reveal').click();
  await expect(page.locator('#ab-score')).toContainText(/You preferred the DPO policy over the GRPO policy in [01] of 1/);
  await page.screenshot({ path: 'test-results/compare.png', fullPage: true });
});

test('on WebGPU (SwiftShader) one reward-model epoch and one PPO iteration give finite numbers and chart points', async ({ page }) => {
  test.setTimeout(20 * 60_000);
  await ready(page, '?backend=webgpu');
  await expect(page.locator('#backend')).toContainText('WebGPU');
  const rankings = [
    { prompt: 'what colour is the frog?', completions: ['green.', 'sure! the frog is green. i hope this helps.'], ranking: [0, 1] },
    { prompt: 'say hello.', completions: ['hello.', 'of course. hello there, my friend.'], ranking: [0, 1] },
  ];
  await page.locator('#import').setInputFiles({ name: 'two.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(rankings.map((r) => JSON.stringify(r)).join('\n') + '\n') });
  await expect(page.locator('#ranking-count')).not.toHaveText('0');
  await page.locator('#rm-epochs').fill('1');
  const t0 = Date.now();
  await page.locator('#train-reward').click();
  await expect(page.locator('#reward-status')).toContainText('done', { timeout: 600_000 });
  const rmSeconds = (Date.now() - t0) / 1000;
  await page.locator('#ppo-iterations').fill('1');
  await page.locator('#ppo-epochs').fill('1');
  // Four answers, not the sixteen the method defaults to: a forward of the tiny model over sixteen
  // takes SwiftShader about half a minute (the sampling and the CPU tests check the rest).
  await page.locator('#ppo-batch').fill('4');
  await page.locator('#ppo-length').fill('8');
  const t1 = Date.now();
  await page.locator('#ppo-run').click();
  // The iteration's numbers (the run's judging against SFT comes after; on SwiftShader it is slow
  // and the CPU tests check it).
  await expect(page.locator('#ppo-status')).toContainText('iteration 1/1', { timeout: 900_000 });
  const status = (await page.locator('#ppo-status').textContent())!;
  console.log(`WebGPU (SwiftShader): ${await page.locator('#reward-status').textContent()}; reward-model training ${rmSeconds.toFixed(0)} s; PPO iteration (4 answers, 8 tokens, 1 epoch) ${((Date.now() - t1) / 1000).toFixed(0)} s: ${status}`);
  const [point] = (await saved(page, 'curve:ppo')) as Record<string, number>[];
  console.log(`  rollout ${point.rollout_secs.toFixed(1)} s, scoring ${point.scoring_secs.toFixed(1)} s, update ${point.update_secs.toFixed(1)} s in ${point.update_groups} backward passes`);
  const score = Number(/score (-?[\d.]+)/.exec(status)![1]);
  const kl = Number(/KL (-?[\d.]+)/.exec(status)![1]);
  expect(Number.isFinite(score) && Number.isFinite(kl)).toBe(true);
  expect(await page.locator('#reward-status').textContent()).toMatch(/loss \d/);
  // The charts got their points.
  await expect(page.locator('body')).toHaveAttribute('data-reward-points', '1');
  await expect(page.locator('body')).toHaveAttribute('data-ppo-points', '1');
  await page.screenshot({ path: 'test-results/webgpu-training.png', fullPage: true });
});

// Opt-in (long: about a quarter of an hour on 2 cores): the demo runs every method on the same
// rankings and ends with its table; the README's tab figures come from this run.
test('demo mode runs PPO, GRPO, RLOO and DPO on the same rankings and ends with a table', async ({ page }) => {
  test.skip(!process.env.TINYRLHF_DEMO_ALL, 'set TINYRLHF_DEMO_ALL=1 to run every method in the tab');
  test.setTimeout(60 * 60_000);
  await ready(page);
  await page.locator('#demo-labeler').selectOption('concise');
  await page.locator('#demo-methods').selectOption('all');
  const started = Date.now();
  await page.locator('#demo').click();
  await expect(page.locator('body')).toHaveAttribute('data-demo', /rows/, { timeout: 60 * 60_000 });
  const result = JSON.parse((await page.locator('body').getAttribute('data-demo'))!);
  console.log(`demo (concise, all methods), ${((Date.now() - started) / 1000).toFixed(0)} s; reward model ${result.reward_seconds.toFixed(0)} s, held-out accuracy ${result.accuracy}`);
  for (const r of result.rows) {
    console.log(`  ${r.method}: win-rate ${(100 * r.win_rate).toFixed(1)}%, KL ${r.kl.toFixed(2)}, EOS ${(100 * r.eos_rate).toFixed(0)}%, ${r.seconds.toFixed(0)} s = ${r.steps} × ${(r.seconds / r.steps).toFixed(2)} s`);
  }
  await expect(page.locator('#results-table tbody tr')).toHaveCount(4);
  await page.screenshot({ path: 'test-results/demo-all.png', fullPage: true });
  for (const r of result.rows) expect(Number.isFinite(r.kl)).toBe(true);
});

// The over-optimisation lesson as it ships (one click: 30 iterations at β 0, gold measured every 3;
// about a minute on the CPU fallback): gold, the labeler's win-rate over SFT, peaks and then falls
// while the proxy, the reward model's score, ends above where it stood at gold's peak.
test('the over-optimisation lesson: gold turns down while the proxy keeps rising', async ({ page }) => {
  test.setTimeout(30 * 60_000);
  await ready(page);
  await page.locator('#demo-methods').selectOption('over');
  const started = Date.now();
  await page.locator('#demo').click();
  await expect(page.locator('body')).toHaveAttribute('data-demo', /"over":true/, { timeout: 30 * 60_000 });
  const result = JSON.parse((await page.locator('body').getAttribute('data-demo'))!);
  console.log(`over-optimisation lesson, ${((Date.now() - started) / 1000).toFixed(0)} s (PPO ${result.seconds.toFixed(0)} s); reward model held-out accuracy ${result.accuracy}`);
  for (const p of result.curve) console.log(`  iteration ${p.iteration}: KL ${p.kl.toFixed(2)}, proxy ${p.proxy.toFixed(3)}, gold ${p.gold.toFixed(3)}`);
  console.log(await page.locator('#demo-status').textContent());
  await page.locator('#ppo-gold-chart').screenshot({ path: 'test-results/gold-vs-proxy.png' });
  expect(result.curve.length).toBe(10);
  expect(result.fell).toBe(true);
  expect(result.proxy_rose).toBe(true);
});
