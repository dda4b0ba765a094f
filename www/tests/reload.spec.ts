// A reload brings back what the page knew: the reward model's accuracy, each run's verdict against
// SFT in the results table, the answers shown as the policy changed, the gold-vs-proxy setting, and
// a run interrupted mid-way, which goes on where it stopped.
import { expect, test, type Page } from '@playwright/test';
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

/** SHA-256 of a byte value the tab saved, and the loss of each point of a saved curve. */
function fingerprint(page: Page, keys: { bytes: string; curve: string }): Promise<{ digest: string; losses: number[] }> {
  return page.evaluate(
    ({ bytes, curve }) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('tinyrlhf');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const store = open.result.transaction('saved').objectStore('saved');
          const [weights, points] = [store.get(bytes), store.get(curve)];
          points.onsuccess = () => {
            open.result.close();
            const saved = weights.result as Uint8Array | Blob;
            const bytes = saved instanceof Blob ? saved.arrayBuffer() : Promise.resolve(saved);
            bytes
              .then((b) => crypto.subtle.digest('SHA-256', b))
              .then((digest) => {
                const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
                resolve({ digest: hex, losses: (points.result as { loss: number }[]).map((p) => p.loss) });
              }, reject);
          };
        };
      }),
    keys,
  );
}

/** Four DPO steps (one batch an epoch) on TEN's eight training rankings. */
async function startDpo(page: Page) {
  await page.locator('#tab-dpo').click();
  await page.locator('#dpo-epochs').fill('4');
  await page.locator('#dpo-run').click();
}

test('a run interrupted by a reload goes on from its last step with its optimizer state: it ends where the same run without the reload ends', async ({ page, browser }, testInfo) => {
  test.setTimeout(10 * 60_000);
  const DPO = { bytes: 'policy:dpo', curve: 'curve:dpo' };
  // The run in one go, in a browser profile of its own.
  const alone = await browser.newContext({ baseURL: testInfo.project.use.baseURL });
  const whole = await alone.newPage();
  await ready(whole);
  await importRankings(whole, TEN);
  await startDpo(whole);
  await expect(whole.locator('#dpo-status')).toContainText('done', { timeout: 300_000 });
  const uninterrupted = await fingerprint(whole, DPO);
  expect(uninterrupted.losses).toHaveLength(4);
  await alone.close();

  await ready(page);
  await importRankings(page, TEN);
  // Paused as soon as its first step is charted (the steps are quick), then the tab reloads, as a
  // closed one comes back.
  const pausedAfterOne = page.evaluate(
    () =>
      new Promise<void>((resolve) => {
        const watch = new MutationObserver(() => {
          if (document.body.dataset.dpoPoints !== '1') return;
          document.getElementById('dpo-pause')!.click();
          watch.disconnect();
          resolve();
        });
        watch.observe(document.body, { attributes: true });
      }),
  );
  await startDpo(page);
  await pausedAfterOne;
  await expect(page.locator('#dpo-run')).toHaveText('Resume', { timeout: 300_000 });
  const before = (await fingerprint(page, DPO)).losses;
  expect(before.length).toBeLessThan(4);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  expect(await savedKeys(page)).toContain('run:dpo');
  await expect(page.locator('#dpo-status')).toContainText(`${before.length} steps so far; Run goes on with the interrupted run.`);
  await startDpo(page);
  await expect(page.locator('#dpo-status')).toContainText('done', { timeout: 300_000 });
  // Only the steps left ran (a new run would have added four), with the same losses and ending in the
  // same policy, bit for bit: Adam's moments came back. A run that is done keeps no checkpoint.
  expect(await fingerprint(page, DPO)).toEqual(uninterrupted);
  expect(await savedKeys(page)).not.toContain('run:dpo');
});

/** The keys of what the tab saved. */
function savedKeys(page: Page): Promise<string[]> {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('tinyrlhf');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const keys = open.result.transaction('saved').objectStore('saved').getAllKeys();
          keys.onsuccess = () => {
            open.result.close();
            resolve(keys.result.map(String));
          };
        };
      }),
  );
}
