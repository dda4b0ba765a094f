// Nothing lost, nothing crashes: bad input is refused with a message and the page keeps working; a
// trapped module is restarted with the data intact; a saved model that no longer loads is dropped;
// a retrained reward model resets the policies tuned against it; two tabs never train at once; the page works offline
// once loaded, under its Content-Security-Policy.
import { test, expect, type Page } from '@playwright/test';
import { importRankings, ready, runPpo, saved, trainReward } from './helpers';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MODELS = join(dirname(fileURLToPath(import.meta.url)), '..', 'public', 'models');

/** Samples and waits for the answers (repeats are dropped, so 2 to `k` come back). */
async function sample(page: Page) {
  await page.locator('#sample').click();
  await expect(page.locator('#sample-speed')).toContainText('tok/s');
  expect(await page.locator('#answers .answer').count()).toBeGreaterThanOrEqual(2);
}

/** The shipped SFT weights with one NaN written into a named tensor. */
function poisonedWeights(tensor: string): Buffer {
  const bytes = readFileSync(join(MODELS, 'sft', 'model.safetensors'));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  bytes.writeFloatLE(NaN, 8 + headerLength + header[tensor].data_offsets[0]);
  return bytes;
}

test('an absurd config.json is refused at once naming n_layer, and sampling still works', async ({ page }) => {
  await ready(page);
  const config = JSON.parse(readFileSync(join(MODELS, 'sft', 'config.json'), 'utf8'));
  config.n_layer = 1e9;
  await page.locator('#import-policy').setInputFiles([
    { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(config)) },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: readFileSync(join(MODELS, 'sft', 'model.safetensors')) },
  ]);
  await expect(page.locator('#data-message')).toContainText('`n_layer`: 1000000000 is more than');
  await sample(page);
});

test('K and the size of an imported file are capped with a clear message', async ({ page }) => {
  await ready(page);
  await page.locator('#k').fill('50');
  await sample(page);
  await expect(page.locator('#notice')).toContainText('at most 9 answers');
  // Under the test's own output folder, which Playwright empties before every run.
  const big = test.info().outputPath('huge.jsonl');
  writeFileSync(big, '');
  truncateSync(big, 65 * 2 ** 20);
  await page.locator('#import').setInputFiles(big);
  await expect(page.locator('#data-message')).toContainText('huge.jsonl is 65.0 MiB; files of at most 64 MiB are read');
  await expect(page.locator('#ranking-count')).toHaveText('0');
});

test('a ranking on a prompt longer than the context does not block the reward model', async ({ page }) => {
  await ready(page);
  await page.locator('#prompt-input').fill(Array.from({ length: 120 }, (_, i) => `the cat number ${i} sat on the mat.`).join(' '));
  await sample(page);
  await page.locator('#rank-for-me').click();
  await page.locator('#submit').click();
  await expect(page.locator('#notice')).toContainText('Saved');
  await importRankings(page);
  await trainReward(page);
  await expect(page.locator('#reward-status')).toContainText('1 long prompts lost their beginning');
});

test('a trapped module is restarted: the ranking count is unchanged and sampling works', async ({ page }) => {
  await ready(page);
  await importRankings(page);
  const error = await page.evaluate(() => (window as unknown as { tinyrlhf: { trap(): Promise<string> } }).tinyrlhf.trap());
  expect(String(error)).toMatch(/unreachable/i);
  await expect(page.locator('#notice')).toContainText('was restarted again; your rankings and saved models are safe');
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#ranking-count')).toHaveText('2');
  await sample(page);
});

test('a GPU device lost mid-run: the page restarts on the CPU with everything saved, and samples', async ({ page }) => {
  await ready(page, '?backend=webgpu');
  await expect(page.locator('body')).toHaveAttribute('data-backend', 'webgpu');
  await importRankings(page);
  // What a driver reset or an unplugged GPU does to the tab: its device is destroyed under it.
  const lost = await page.evaluate(() => (window as unknown as { tinyrlhf: { loseDevice(): Promise<unknown> } }).tinyrlhf.loseDevice());
  expect(lost).toBeNull();
  await page.locator('#sample').click();
  await expect(page.locator('#notice')).toContainText('was restarted on the CPU; your rankings and saved models are safe', { timeout: 120_000 });
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('body')).toHaveAttribute('data-backend', 'cpu');
  await expect(page.locator('#ranking-count')).toHaveText('2');
  await sample(page);
});

test('retraining the reward model resets the policies tuned against it (the next PPO run starts at a KL of exactly 0) and keeps DPO’s', async ({ page }) => {
  test.setTimeout(10 * 60_000);
  await ready(page);
  await importRankings(page);
  await trainReward(page);
  await runPpo(page, 1);
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  const first = (await saved(page, 'curve:ppo')) as { kl: number }[];
  expect(first).toHaveLength(1);
  // DPO learns from the rankings, not the reward model: its policy outlives a new reward model.
  await page.locator('#tab-dpo').click();
  await page.locator('#dpo-epochs').fill('1');
  await page.locator('#dpo-run').click();
  await expect(page.locator('#dpo-status')).toContainText('done', { timeout: 300_000 });
  await trainReward(page);
  // One transaction saved the new reward model and dropped the old policy and its curve.
  expect(await saved(page, 'policy:ppo')).toBeUndefined();
  expect(await saved(page, 'curve:ppo')).toBeUndefined();
  expect(await saved(page, 'policy:dpo')).toMatch(/^\d+ bytes$/);
  await page.locator('#tab-ppo').click();
  await runPpo(page, 1);
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  const second = (await saved(page, 'curve:ppo')) as { kl: number }[];
  expect(second).toHaveLength(1);
  expect(second[0].kl).toBe(0);
  // A setting out of range is refused, naming it, before anything trains.
  await page.locator('#tab-grpo').click();
  await page.locator('#grpo-k').fill('1');
  await page.locator('#grpo-run').click();
  await expect(page.locator('#grpo-status')).toContainText('samples_per_prompt (K) = 1: a group needs at least 2 answers');
  expect(await saved(page, 'policy:grpo')).toBeUndefined();
});

test('saved models that no longer load are dropped with a notice naming why; the rankings stay', async ({ page }) => {
  await ready(page);
  await importRankings(page);
  const poisoned = poisonedWeights('transformer.h.0.mlp.c_fc.weight').toString('base64');
  await page.evaluate(
    (poisoned) =>
      new Promise<void>((resolve, reject) => {
        const open = indexedDB.open('tinyrlhf');
        open.onsuccess = () => {
          const tx = open.result.transaction('saved', 'readwrite');
          const store = tx.objectStore('saved');
          store.put(new Uint8Array([1, 2, 3, 254, 255]), 'policy');
          store.put([{ iteration: 1, kl: 0 }], 'ppo-curve');
          store.put(Uint8Array.from(atob(poisoned), (c) => c.charCodeAt(0)), 'reward');
          tx.oncomplete = () => {
            open.result.close();
            resolve();
          };
          tx.onerror = () => reject(tx.error);
        };
      }),
    poisoned,
  );
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  const notice = page.locator('#notice');
  await expect(notice).toContainText('The saved reward model no longer loads');
  await expect(notice).toContainText('`transformer.h.0.mlp.c_fc.weight` holds NaN at index 0');
  // Saved by an older version under the old keys: moved to PPO's, then dropped as unloadable.
  await expect(notice).toContainText('The saved PPO policy no longer loads');
  await expect(notice).toContainText('Your rankings are kept.');
  await expect(page.locator('#ranking-count')).toHaveText('2');
  for (const key of ['policy', 'ppo-curve', 'policy:ppo', 'curve:ppo']) expect(await saved(page, key)).toBeUndefined();
  expect(await saved(page, 'reward')).toBeUndefined();
  await expect(page.locator('#ppo-run')).toBeDisabled();
  await sample(page);
});

test('a NaN weight in an imported policy is refused naming the tensor', async ({ page }) => {
  await ready(page);
  await page.locator('#import-policy').setInputFiles([
    { name: 'config.json', mimeType: 'application/json', buffer: readFileSync(join(MODELS, 'sft', 'config.json')) },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: poisonedWeights('transformer.h.1.attn.c_attn.weight') },
  ]);
  await expect(page.locator('#data-message')).toContainText('`transformer.h.1.attn.c_attn.weight` holds NaN at index 0');
});

test('two tabs: while one runs PPO the other is refused training but samples and ranks, and the curve has only the first tab’s points', async ({ page, context }) => {
  test.setTimeout(10 * 60_000);
  await ready(page);
  await importRankings(page);
  await trainReward(page);
  const other = await context.newPage();
  await ready(other);
  await expect(other.locator('#ppo-run')).toBeEnabled();
  await runPpo(page, 2);
  await expect(page.locator('#ppo-status')).toContainText('iteration');
  await runPpo(other, 3);
  await expect(other.locator('#ppo-status')).toContainText('Another tab is training');
  await other.locator('#train-reward').click();
  await expect(other.locator('#reward-status')).toContainText('Another tab is training');
  // It still samples and ranks: only training is the other tab's.
  await sample(other);
  await other.locator('#rank-for-me').click();
  await other.locator('#submit').click();
  await expect(other.locator('#ranking-count')).toHaveText('3');
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  expect(((await saved(page, 'curve:ppo')) as unknown[]).length).toBe(2);
  await other.close();
});

test('offline once loaded: with no network a reload samples and trains', async ({ page, context }) => {
  test.setTimeout(10 * 60_000);
  await ready(page);
  await expect(page.locator('body')).toHaveAttribute('data-offline', 'ready');
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  await importRankings(page);
  await context.setOffline(true);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await sample(page);
  await trainReward(page);
  await context.setOffline(false);
});

test('the page works under its Content-Security-Policy, and the wasm is served as application/wasm', async ({ page }) => {
  await page.addInitScript(() => {
    const w = window as unknown as { violations: string[] };
    w.violations = [];
    document.addEventListener('securitypolicyviolation', (e) => w.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const wasmTypes: string[] = [];
  page.on('response', (r) => {
    if (r.url().endsWith('.wasm')) wasmTypes.push(r.headers()['content-type']);
  });
  const response = await page.goto('/');
  const header = response!.headers()['content-security-policy'];
  expect(header).toContain("script-src 'self' 'wasm-unsafe-eval'");
  expect(header).toContain("connect-src 'self'");
  expect(await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content')).toBe(header);
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await sample(page);
  expect(wasmTypes.length).toBeGreaterThan(0);
  expect(new Set(wasmTypes)).toEqual(new Set(['application/wasm']));
  expect(await page.evaluate(() => (window as unknown as { violations: string[] }).violations)).toEqual([]);
});
