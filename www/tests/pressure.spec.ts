// The tab under pressure, as people's browsers put it: the site's storage full, the module's memory
// at the browser's limit, a tab closed or crashed in the middle of a save. Each time the page says
// what happened, keeps every state saved before, and stays usable.
import { test, expect, type Page } from '@playwright/test';
import { importRankings, ready, runPpo, saved, trainReward } from './helpers';

const ORIGIN = 'http://127.0.0.1:8080';

type TestHooks = { tinyrlhf: { fillMemory(): Promise<number> } };

/** Samples, lets the page rank for the person, and submits. */
async function rankOne(page: Page) {
  await page.locator('#sample').click();
  await expect(page.locator('#sample-speed')).toContainText('tok/s');
  await page.locator('#rank-for-me').click();
  await page.locator('#submit').click();
}

/** A reward model and one PPO iteration, saved: the state every test below must keep. */
async function trainedOnce(page: Page) {
  await ready(page);
  await importRankings(page);
  await trainReward(page);
  await runPpo(page, 1);
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
}

/** What the tab saved of PPO's run: its policy's size, and how many iterations its curve and answers hold. */
async function ppoSaved(page: Page) {
  const curve = ((await saved(page, 'curve:ppo')) as unknown[] | undefined) ?? [];
  const samples = ((await saved(page, 'samples:ppo')) as { index: number }[] | undefined) ?? [];
  return { policy: await saved(page, 'policy:ppo'), iterations: curve.length, lastSample: samples.at(-1)?.index ?? 0 };
}

/**
 * Fills the origin's storage to its quota with a database of its own, the way other data fills a
 * disk: blobs of halving sizes until not even 256 bytes more fit. Returns the bytes it took.
 */
function fillStorage(page: Page): Promise<number> {
  return page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const open = indexedDB.open('filler', 1);
      open.onupgradeneeded = () => open.result.createObjectStore('blobs');
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    let taken = 0;
    for (let size = 2 ** 25, n = 0; size >= 256; n++) {
      const put = new Promise<void>((resolve, reject) => {
        const tx = db.transaction('blobs', 'readwrite');
        tx.objectStore('blobs').put(new Blob([new Uint8Array(size)]), n);
        tx.oncomplete = () => resolve();
        tx.onabort = () => reject(tx.error);
      });
      try {
        await put;
        taken += size;
      } catch {
        size /= 2;
      }
    }
    db.close();
    return taken;
  });
}

test('storage full: the PPO step, the reward model and a ranking each say what did not fit and its size; with room again a reload finds everything saved before', async ({ page, context }) => {
  test.setTimeout(10 * 60_000);
  // The browser's quota for the origin, set before its storage is first used (later it keeps the one it saw).
  const cdp = await context.newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: ORIGIN, quotaSize: 64 * 2 ** 20 });
  await trainedOnce(page);
  const before = await ppoSaved(page);
  expect(before.iterations).toBe(1);
  const reward = await saved(page, 'reward');
  expect(await fillStorage(page)).toBeGreaterThan(2 ** 20);

  await runPpo(page, 1);
  const status = page.locator('#ppo-status');
  await expect(status).toContainText(/PPO failed: the PPO policy \([\d.]+ MB\) did not fit in this browser's storage for the page \([\d.,]+ MB used of [\d.,]+ MB allowed\)/);
  await expect(status).toContainText('nothing of it was saved, and everything saved before is kept');
  await page.locator('#train-reward').click();
  await expect(page.locator('#reward-status')).toContainText(/Training failed: the reward model \([\d.]+ MB\) did not fit/);
  // Full again to the last few hundred bytes: the aborted saves can leave a ranking's worth of room
  // (one run in eight here saved the ranking).
  await fillStorage(page);
  await rankOne(page);
  await expect(page.locator('#notice')).toContainText(/Could not save: the rankings \([\d.]+ MB\) did not fit/);
  await expect(page.locator('#ranking-count')).toHaveText('2');

  // Room again (the other data deleted, the quota back to the browser's own: Chromium 148 frees a
  // deleted database's bytes later, so under the 64 MB quota the page stayed full): the next visit
  // loads what was saved before, and goes on from it.
  await page.evaluate(() => new Promise((resolve) => (indexedDB.deleteDatabase('filler').onsuccess = resolve)));
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: ORIGIN });
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#notice')).not.toContainText('no longer loads');
  await expect(page.locator('#ranking-count')).toHaveText('2');
  expect(await ppoSaved(page)).toEqual(before);
  expect(await saved(page, 'reward')).toEqual(reward);
  await expect(status).toContainText('1 iterations so far');
  await runPpo(page, 1);
  await expect(status).toContainText('done', { timeout: 300_000 });
  expect((await ppoSaved(page)).iterations).toBe(2);
  await rankOne(page);
  await expect(page.locator('#ranking-count')).toHaveText('3');
});

test('out of memory in a PPO run: it stops naming the settings to lower, the module restarts with the saved policy and rankings, and the page samples and trains', async ({ page }) => {
  test.setTimeout(10 * 60_000);
  await trainedOnce(page);
  const before = await ppoSaved(page);
  // The module's memory grown to the browser's limit: its next allocation fails, as a large model's would.
  const bytes = await page.evaluate(() => (window as unknown as TestHooks).tinyrlhf.fillMemory());
  expect(bytes).toBeGreaterThan(2 ** 31);
  await runPpo(page, 2);
  const status = page.locator('#ppo-status');
  await expect(status).toContainText(/PPO stopped: the tab ran out of memory: it needed \d+ MB more with [\d.]+ GiB in use/);
  await expect(status).toContainText('Lower samples per prompt, answers per iteration, or max length and run it again; the policy is the one saved after iteration 1.');
  await expect(page.locator('#notice')).toContainText("The tab's model stopped (the tab ran out of memory");
  await expect(page.locator('#notice')).toContainText('was restarted again; your rankings and saved models are safe');
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#ranking-count')).toHaveText('2');
  expect(await ppoSaved(page)).toEqual(before);
  await rankOne(page);
  await expect(page.locator('#ranking-count')).toHaveText('3');
  await runPpo(page, 1);
  await expect(status).toContainText('done', { timeout: 300_000 });
  expect((await ppoSaved(page)).iterations).toBe(2);
});

test('a tab closed or crashed while it saves a PPO step: the next visit finds a whole step, and goes on from it', async ({ page, context }) => {
  test.setTimeout(12 * 60_000);
  await trainedOnce(page);
  await page.close();
  let cut = 0;
  for (const how of ['close', 'crash', 'close', 'crash']) {
    const tab = await context.newPage();
    // The training worker's saves, announced on its console as they start: the signal to cut.
    tab.on('worker', (w) =>
      void w
        .evaluate(() => {
          const put = IDBObjectStore.prototype.put;
          IDBObjectStore.prototype.put = function (this: IDBObjectStore, value: unknown, key?: IDBValidKey) {
            if (key === 'policy:ppo') console.log('saving policy:ppo');
            return put.call(this, value, key);
          };
        })
        .catch(() => {}),
    );
    await ready(tab);
    const { iterations } = await ppoSaved(tab);
    const saving = tab.waitForEvent('console', { predicate: (m) => m.text() === 'saving policy:ppo', timeout: 300_000 });
    await runPpo(tab, 3);
    await saving;
    if (how === 'crash') {
      // SIGKILL to the tab's renderer (it runs the page and its workers): no unload, no last word.
      const browser = await context.browser()!.newBrowserCDPSession();
      const { processInfo } = (await browser.send('SystemInfo.getProcessInfo')) as { processInfo: { type: string; id: number }[] };
      for (const p of processInfo.filter((p) => p.type === 'renderer')) process.kill(p.id, 'SIGKILL');
      await browser.detach();
    }
    await tab.close();

    const next = await context.newPage();
    await ready(next);
    await expect(next.locator('#notice')).not.toContainText('no longer loads');
    const after = await ppoSaved(next);
    // The step that was being saved is there whole or not at all: its policy, curve and answers together.
    expect([iterations, iterations + 1]).toContain(after.iterations);
    expect(after.lastSample).toBe(after.iterations);
    expect(after.policy).toMatch(/^\d+ bytes$/);
    if (after.iterations === iterations) cut += 1;
    await expect(next.locator('#ppo-status')).toContainText(`${after.iterations} iterations so far`);
    await expect(next.locator('#ranking-count')).toHaveText('2');
    await next.close();
  }
  console.log(`of 4 tabs cut while saving, ${cut} left the step unsaved (the others' saves had committed)`);
  const last = await context.newPage();
  await ready(last);
  const { iterations } = await ppoSaved(last);
  await runPpo(last, 1);
  await expect(last.locator('#ppo-status')).toContainText('done', { timeout: 300_000 });
  expect((await ppoSaved(last)).iterations).toBe(iterations + 1);
});

// Opt-in (minutes): `TINYRLHF_SOAK=200 npx playwright test tests/pressure.spec.ts -g soak`.
const SOAK = Number(process.env.TINYRLHF_SOAK ?? 0);

test('soak: PPO iteration after iteration, the wasm memory and the page’s JS heap stay flat', async ({ page, context }) => {
  test.skip(!SOAK, 'set TINYRLHF_SOAK=<iterations> to run it');
  test.setTimeout(SOAK * 10_000 + 10 * 60_000);
  await ready(page);
  await importRankings(page);
  await trainReward(page);
  const cdp = await context.newCDPSession(page);
  /** The page's JS heap after a full collection, in bytes. */
  const pageHeap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    return ((await cdp.send('Runtime.getHeapUsage')) as { usedSize: number }).usedSize;
  };
  await page.evaluate(() => ((window as unknown as { tinyrlhf: { memoryLog: unknown[] } }).tinyrlhf.memoryLog = []));
  const started = Date.now();
  const heaps: [number, number][] = [];
  await runPpo(page, SOAK);
  for (const at of [10, 50, 100, 150, SOAK].filter((n) => n <= SOAK)) {
    await expect(page.locator('body')).toHaveAttribute('data-ppo-points', String(at), { timeout: SOAK * 10_000 });
    heaps.push([at, await pageHeap()]);
  }
  await expect(page.locator('#ppo-status')).toContainText('done', { timeout: 600_000 });
  // The worker's own JS heap is not readable from here (no `performance.memory` in a worker).
  const log = await page.evaluate(() => (window as unknown as { tinyrlhf: { memoryLog: { wasm: number }[] } }).tinyrlhf.memoryLog);
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  console.log(`soak: ${SOAK} PPO iterations in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  console.log(`wasm MiB at iterations 1, 10, 50, 100, 150, last: ${[1, 10, 50, 100, 150, log.length].filter((n) => n <= log.length).map((n) => mb(log[n - 1].wasm)).join(', ')}`);
  console.log(`page JS heap MiB after a collection: ${heaps.map(([at, b]) => `${at}: ${mb(b)}`).join(', ')}`);
  expect(log).toHaveLength(SOAK);
  // Flat after the first ten iterations: no growth in the module's memory, at most 2 MiB more page heap
  // (its charts and the answers shown hold one point and one line per iteration).
  expect(log.at(-1)!.wasm).toBeLessThanOrEqual(log[9].wasm);
  expect(heaps.at(-1)![1] - heaps[0][1]).toBeLessThan(2 * 2 ** 20);
});
