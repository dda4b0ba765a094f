// What the browser tests share: opening the page, feeding it rankings, the smallest training runs,
// and reading what the tab saved in IndexedDB.
import { expect, type Page } from '@playwright/test';

/**
 * Opens the page (with `query`) and waits until the model is loaded. A page that never gets there
 * fails with what it showed and logged, so a failure far away (CI) says why.
 */
export async function ready(page: Page, query = '') {
  const log: string[] = [];
  const listen = (m: { type(): string; text(): string }) => void log.push(`${m.type()}: ${m.text()}`);
  const crashed = (e: Error) => void log.push(`page error: ${e.message}`);
  page.on('console', listen);
  page.on('pageerror', crashed);
  await page.goto(`/${query}`);
  try {
    await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  } catch (e) {
    const shown = await page
      .evaluate(() => ['backend', 'notice'].map((id) => `#${id}: ${document.getElementById(id)?.textContent?.trim() ?? '(none)'}`))
      .catch((why: Error) => [`(the page could not be read: ${why.message})`]);
    throw new Error(`the page never became ready; it showed ${shown.join('; ')}; it logged:\n${log.slice(-30).join('\n')}\n${(e as Error).message}`);
  } finally {
    page.off('console', listen);
    page.off('pageerror', crashed);
  }
}

/** Opens the person's-own-model panel the way a person does: the intro's link. */
export async function openOwnModel(page: Page) {
  await page.locator('#own-model-link').click();
  await expect(page.locator('#model-files')).toBeVisible();
}

export const TWO = [
  { prompt: 'what colour is the frog?', completions: ['green.', 'sure! the frog is green. i hope this helps.'], ranking: [0, 1] },
  { prompt: 'say hello.', completions: ['hello.', 'of course. hello there, my friend.'], ranking: [0, 1] },
];

/** Imports `rankings` through the Data view's file input. */
export async function importRankings(page: Page, rankings = TWO) {
  const before = Number(await page.locator('#ranking-count').textContent());
  const buffer = Buffer.from(rankings.map((r) => JSON.stringify(r)).join('\n') + '\n');
  await page.locator('#import').setInputFiles({ name: 'rankings.jsonl', mimeType: 'application/jsonl', buffer });
  await expect(page.locator('#ranking-count')).toHaveText(String(before + rankings.length));
}

/** One epoch of the reward model on the saved rankings. */
export async function trainReward(page: Page) {
  await page.locator('#rm-epochs').fill('1');
  await page.locator('#train-reward').click();
  await expect(page.locator('#reward-status')).toContainText('done', { timeout: 300_000 });
}

/** Starts the smallest PPO run: `n` iterations of one epoch on 8-token answers. */
export async function runPpo(page: Page, n: number) {
  await page.locator('#ppo-iterations').fill(String(n));
  await page.locator('#ppo-epochs').fill('1');
  await page.locator('#ppo-length').fill('8');
  await page.locator('#ppo-run').click();
}

/** A value saved in the tab's IndexedDB ('saved' store), read from the page. */
export function saved(page: Page, key: string): Promise<unknown> {
  return page.evaluate(
    (key) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('tinyrlhf');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction('saved').objectStore('saved').get(key);
          get.onsuccess = () => {
            open.result.close();
            resolve(get.result instanceof Uint8Array ? `${get.result.length} bytes` : get.result instanceof Blob ? `${get.result.size} bytes` : get.result);
          };
        };
      }),
    key,
  );
}
