// The page as a person uses it, in the machine's Chromium: it starts on the right backend, samples,
// ranks by keyboard, keeps rankings across reloads and profiles (export/import), stays responsive,
// and never talks to anything but its own origin.
import { test, expect, type Page, chromium } from '@playwright/test';
import { ready } from './helpers';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

const ORIGIN = 'http://127.0.0.1:8080';

/** Every request the page makes, to check none leaves the origin. */
function recordRequests(page: Page): string[] {
  const urls: string[] = [];
  page.on('request', (r) => urls.push(r.url()));
  return urls;
}

/** Four answers, less any that repeat another (a ranking orders different answers). */
async function sampleFour(page: Page) {
  await page.locator('#k').fill('4');
  await page.locator('#sample').click();
  await expect(page.locator('#sample-speed')).toContainText('tok/s');
  const n = await page.locator('#answers .answer').count();
  expect(n >= 2 && n <= 4, `${n} answers`).toBe(true);
}

/** Prints what a person waits for: page open to model loaded to 4 answers, and sampling speed. */
async function reportSpeed(page: Page, label: string, opened: number) {
  const loaded = Date.now();
  await sampleFour(page);
  const sampled = Date.now();
  const speed = await page.locator('#sample-speed').textContent();
  console.log(`${label}: model loaded ${((loaded - opened) / 1000).toFixed(1)} s after opening; first 4 answers ${((sampled - loaded) / 1000).toFixed(1)} s later (${speed})`);
  await page.locator('#sample').click();
  await expect(page.locator('#sample-speed')).toContainText('tok/s');
  console.log(`${label}: second sampling ${await page.locator('#sample-speed').textContent()}`);
}

function offOrigin(urls: string[]) {
  return urls.filter((u) => !u.startsWith(ORIGIN) && !u.startsWith('blob:') && !u.startsWith('data:'));
}

test('by default here it picks the CPU fallback, says so, and samples', async ({ page }) => {
  const urls = recordRequests(page);
  const opened = Date.now();
  await ready(page);
  await expect(page.locator('#backend')).toHaveText(/^CPU \(wasm\) · [1-8] workers?$/);
  await expect(page.locator('#backend')).toHaveAttribute('title', /software WebGPU adapter|no WebGPU/);
  await expect(page.locator('#model-info')).toContainText('M parameters');
  await expect(page.locator('#train-reward')).toBeDisabled();
  await expect(page.locator('#train-reward')).toHaveAttribute('title', /at least 1 ranking; there are 0/);
  await reportSpeed(page, 'CPU (wasm)', opened);
  await page.screenshot({ path: 'test-results/page-cpu.png', fullPage: true });
  expect(offOrigin(urls)).toEqual([]);
});

type Sampler = { tinyrlhf: { sample(prompt: string, k: number, seed: number): Promise<{ completions: string[] }> } };

/** The SFT model's first 8 tokens of 2 answers to a fixed prompt with `seed`, sampled on the device. */
function answers(page: Page, seed: number): Promise<string[]> {
  return page.evaluate(async (seed) => (await (window as unknown as Sampler).tinyrlhf.sample('what colour is the frog?', 2, seed)).completions, seed);
}

/** The sampler chooses tokens on the device from seeded draws: a seed fixes the answers. */
async function expectSeededAnswers(page: Page, label: string): Promise<string[]> {
  const first = await answers(page, 11);
  expect(first).toHaveLength(2);
  expect(first.every((a) => a.length > 0)).toBe(true);
  expect(await answers(page, 11)).toEqual(first);
  const other = await answers(page, 12);
  expect(other).not.toEqual(first);
  console.log(`${label}, seed 11: ${JSON.stringify(first)}`);
  return first;
}

test('with ?backend=webgpu the page loads on WebGPU (SwiftShader here), samples 4 answers, and a seed fixes the answers', async ({ page }) => {
  // SwiftShader runs on the CPU: on 2 cores this takes 3 minutes alone, longer on a busy machine.
  test.setTimeout(480_000);
  const urls = recordRequests(page);
  const opened = Date.now();
  await ready(page, '?backend=webgpu');
  await expect(page.locator('#backend')).toContainText('WebGPU');
  await reportSpeed(page, 'WebGPU (SwiftShader)', opened);
  await expectSeededAnswers(page, 'WebGPU (SwiftShader)');
  await page.screenshot({ path: 'test-results/page-webgpu.png', fullPage: true });
  expect(offOrigin(urls)).toEqual([]);
});

test('on the CPU backend a seed fixes the answers too', async ({ page }) => {
  await ready(page, '?backend=cpu');
  await expectSeededAnswers(page, 'CPU (wasm)');
});

test('where a hardware adapter would be, the page checks WebGPU computes what the CPU does, times both and keeps the faster, saying which and why', async ({ page }) => {
  test.setTimeout(400_000);
  // `?backend=measure` takes SwiftShader's adapter as if it were hardware: the CPU must win here.
  // Timing generation on SwiftShader (its shaders compiled on the CPU) takes a while.
  await page.goto('/?backend=measure');
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true', { timeout: 300_000 });
  await expect(page.locator('body')).toHaveAttribute('data-backend', 'cpu');
  // It checked first that WebGPU computes what the CPU does (logits, seeded samples, one step, two LoRA steps).
  await expect(page.locator('#backend')).toContainText(/WebGPU on fused kernels agrees with the CPU \(logits within .*, packed products within .*, the same sampled tokens, one step's loss within .*, \d+ of \d+ weights apart after it, a LoRA step's loss within .* and gradient norm within [^)]*\)/);
  await expect(page.locator('#backend')).toContainText(/measured WebGPU \d+ tokens\/s, CPU \d+ tokens\/s on .*: the CPU is faster/);
  console.log(`measured choice: ${await page.locator('#backend').textContent()}`);
  await sampleFour(page);
});

test('where one of the fused kernels fails to build on the adapter, the page checks WebGPU again on burn\'s unfused kernels and names them', async ({ page }) => {
  test.setTimeout(480_000);
  // The worker's script, served with one kernel's shader broken, as a driver that cannot build it
  // would have it: WebGPU then reports a device error and runs nothing of that kernel.
  await page.route(/\/assets\/worker-[^/]*\.js$/, async (route) => {
    const response = await route.fetch();
    const breakOneKernel = `{
      const createShaderModule = GPUDevice.prototype.createShaderModule;
      GPUDevice.prototype.createShaderModule = function (descriptor) {
        const broken = /rows_kernel/.test(descriptor.label ?? '');
        return createShaderModule.call(this, broken ? { ...descriptor, code: 'this is not WGSL' } : descriptor);
      };
    }\n`;
    await route.fulfill({ response, body: breakOneKernel + (await response.text()) });
  });
  await page.goto('/?backend=measure');
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true', { timeout: 400_000 });
  await expect(page.locator('#backend')).toContainText(/WebGPU on unfused kernels \(a fused kernel failed on this adapter: .*rows_kernel.*\) agrees with the CPU \(logits within/);
  console.log(`with a broken kernel: ${await page.locator('#backend').textContent()}`);
  await sampleFour(page);
});

test('a ranking made by keyboard survives a reload', async ({ page }) => {
  await ready(page);
  await page.locator('#reset').evaluate(() => (window.confirm = () => true));
  await page.locator('#reset').click();
  await expect(page.locator('#ranking-count')).toHaveText('0');
  // Four different answers (a repeat is dropped): sample again until there are.
  for (let tries = 0; tries < 5; tries++) {
    await sampleFour(page);
    if ((await page.locator('#answers .answer').count()) === 4) break;
  }
  const texts = await page.locator('#answers .answer .text').allTextContents();
  await page.locator('#answers').click({ position: { x: 1, y: 1 } });
  await page.keyboard.type('3142');
  await expect(page.locator('#answers .answer .label')).toHaveText(['3', '1', '4', '2']);
  await page.keyboard.press('Enter');
  await expect(page.locator('#ranking-count')).toHaveText('1');
  await expect(page.locator('#pair-count')).toHaveText('6');
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#ranking-count')).toHaveText('1');
  const exported = await exportRankings(page);
  const saved = JSON.parse(exported.trim());
  expect(saved.completions).toEqual(texts);
  expect(saved.ranking).toEqual([2, 0, 3, 1]);
});

async function exportRankings(page: Page): Promise<string> {
  const download = page.waitForEvent('download');
  await page.locator('#export-rankings').click();
  const file = await (await download).path();
  return readFileSync(file!, 'utf8');
}

test('export then import into a fresh browser profile gives the same rankings; a bad file changes nothing', async ({ page }) => {
  await ready(page);
  // Two rankings by the scripted labeler.
  for (let i = 0; i < 2; i++) {
    await page.locator('#prompt-select').selectOption({ index: i });
    await sampleFour(page);
    await page.locator('#rank-for-me').click();
    await page.locator('#submit').click();
    await expect(page.locator('#notice')).toContainText('Saved');
  }
  const exported = await exportRankings(page);
  // Under the test's own output folder, which Playwright empties before every run.
  const path = test.info().outputPath('rankings.jsonl');
  writeFileSync(path, exported);

  const fresh = await chromium.launchPersistentContext(test.info().outputPath('profile'), {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    baseURL: `${ORIGIN}/`,
    acceptDownloads: true,
  });
  const other = await fresh.newPage();
  await ready(other);
  await expect(other.locator('#ranking-count')).toHaveText('0');
  const bad = path.replace('rankings.jsonl', 'bad.jsonl');
  writeFileSync(bad, exported.split('\n')[0] + '\n{"prompt": "x", "completions": ["a", "b"], "ranking": [0, 0]}\n');
  await other.locator('#import').setInputFiles(bad);
  await expect(other.locator('#data-message')).toContainText('bad.jsonl:2: field `ranking`');
  await expect(other.locator('#ranking-count')).toHaveText('0');
  await other.locator('#import').setInputFiles(path);
  await expect(other.locator('#ranking-count')).toHaveText(String(exported.trim().split('\n').length));
  expect(await exportRankings(other)).toEqual(exported);
  await fresh.close();
});

test('while sampling, the main thread has no task longer than 200 ms', async ({ page }) => {
  await ready(page);
  await page.evaluate(() => {
    (window as unknown as { longTasks: number[] }).longTasks = [];
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) (window as unknown as { longTasks: number[] }).longTasks.push(entry.duration);
    }).observe({ type: 'longtask', buffered: false });
  });
  await page.locator('#k').fill('9');
  await page.locator('#sample').click();
  await expect(page.locator('#sample-speed')).toContainText('tok/s');
  expect(await page.locator('#answers .answer').count()).toBeGreaterThanOrEqual(2);
  const longTasks = await page.evaluate(() => (window as unknown as { longTasks: number[] }).longTasks);
  expect(longTasks.filter((d) => d > 200)).toEqual([]);
});

test('a prompt longer than the context is cut with a visible notice', async ({ page }) => {
  await ready(page);
  await page.locator('#prompt-input').fill(Array.from({ length: 120 }, (_, i) => `the cat number ${i} sat on the mat.`).join(' '));
  await sampleFour(page);
  await expect(page.locator('#notice')).toContainText('longer than the model');
});

test('a policy of the wrong shape is refused and the current one stays; one written by the CLI loads', async ({ page }) => {
  await ready(page);
  const models = join(HERE, '..', 'public', 'models');
  const fixture = join(HERE, '..', '..', 'tests', 'fixtures', 'trl-parity', 'gpt2_tiny');
  await page.locator('#import-policy').setInputFiles([join(fixture, 'config.json'), join(fixture, 'model.safetensors')]);
  await expect(page.locator('#data-message')).toContainText('The policy was not loaded (the current one stays)');
  // A model directory as `tinyrlhf` writes it (here the shipped base model) loads as the policy.
  await page.locator('#import-policy').setInputFiles([join(models, 'base', 'config.json'), join(models, 'base', 'model.safetensors')]);
  await expect(page.locator('#data-message')).toContainText('Loaded the policy from model.safetensors');
  await expect(page.locator('#ab-next')).toBeEnabled();
});

test('an adapter in PEFT layout (as TRL saves it, its base a hub id) goes on this model as the policy, and a reload keeps it', async ({ page }) => {
  await ready(page);
  const adapter = join(HERE, 'fixtures', 'sft-adapter');
  await page.locator('#import-policy').setInputFiles([join(adapter, 'adapter_config.json'), join(adapter, 'adapter_model.safetensors')]);
  await expect(page.locator('#data-message')).toContainText('Loaded the policy from adapter_model.safetensors');
  await expect(page.locator('#ab-a option[value="imported"]')).toHaveCount(1);
  await page.reload();
  await ready(page);
  await expect(page.locator('#ab-a option[value="imported"]')).toHaveCount(1);
});
