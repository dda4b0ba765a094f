// The page as a person first meets it, on a laptop and on a phone: every chart says what it shows,
// the first task is in view, and the person's-own-model panel waits until asked for. Screenshots
// of both sizes land in test-results/ to be looked at.
import { expect, test, type Page } from '@playwright/test';
import { importRankings, ready } from './helpers';

const LAPTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

/** Every chart canvas on the page with its accessible name, fallback text and caption. */
async function charts(page: Page) {
  return page.locator('canvas').evaluateAll((canvases) =>
    canvases.map((c) => ({
      id: c.id || c.closest('[id]')?.id,
      role: c.getAttribute('role'),
      name: c.getAttribute('aria-label') ?? '',
      fallback: c.textContent ?? '',
      caption: c.closest('figure')?.querySelector('figcaption')?.textContent ?? '',
    })),
  );
}

test('every chart is named for what it shows: title and y axis in its accessible name, a line on what to watch under it', async ({ page }) => {
  await page.setViewportSize(LAPTOP);
  await ready(page);
  const all = await charts(page);
  // SFT's loss, the reward model's two, and every method's own charts (PPO, GRPO and RLOO also gold vs proxy).
  expect(all.length).toBeGreaterThanOrEqual(28);
  for (const chart of all) {
    expect(chart.role, `${chart.id}`).toBe('img');
    // "title: y axis by x axis".
    expect(chart.name, `${chart.id}`).toMatch(/^[^:]+: .+ by .+$/);
    expect(chart.caption.length, `${chart.id}'s caption`).toBeGreaterThan(20);
    expect(chart.fallback, `${chart.id}'s fallback text`).toBe(chart.caption);
  }
  // The KL and the clip fraction a teacher points at are there by name.
  const names = all.map((c) => c.name);
  expect(names).toContain('KL to SFT: nats per answer by iteration');
  expect(names).toContain('policy clip fraction: fraction of tokens by iteration');
  expect(names).toContain('pair accuracy: fraction of pairs by step');
});

test('the first task is in view on arrival and the own-model panel stays folded until the intro link or #model opens it', async ({ page }) => {
  await page.setViewportSize(LAPTOP);
  await ready(page);
  const rank = await page.locator('#rank-title').boundingBox();
  expect(rank!.y + rank!.height).toBeLessThan(LAPTOP.height);
  await expect(page.locator('#model-files')).toBeHidden();
  await expect(page.locator('#model-title')).toBeVisible();
  await page.screenshot({ path: 'test-results/first-visit-laptop.png' });

  await page.locator('#own-model-link').click();
  await expect(page.locator('#model-files')).toBeVisible();

  await page.goto('/#model');
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#model-files')).toBeVisible();
});

for (const width of [360, PHONE.width]) {
  test(`a ${width} px phone needs no sideways scrolling: answers, menus, file pickers and charts fit`, async ({ page }) => {
    await page.setViewportSize({ width, height: PHONE.height });
    await ready(page);
    await page.locator('#sample').click();
    await expect(page.locator('#answers li')).not.toHaveCount(0);
    await page.locator('#own-model-link').click();
    const wider = await page.evaluate(() =>
      [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().right > innerWidth + 0.5)
        .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''} ends at ${Math.round(e.getBoundingClientRect().right)} px`),
    );
    expect(wider).toEqual([]);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBe(width);
    // Menus keep a usable width.
    expect((await page.locator('#compare-prompt').boundingBox())!.width).toBeGreaterThan(width / 2);
    if (width === PHONE.width) {
      await page.screenshot({ path: 'test-results/first-visit-phone.png' });
      await page.locator('#rank').screenshot({ path: 'test-results/first-visit-phone-rank.png' });
    }
  });
}

test('the keyboard stays where the person works: the first answer after sampling, the first task after the tour, Compare a few Tabs away', async ({ page, browser }) => {
  await ready(page);
  await page.locator('#sample').click();
  await expect(page.locator('#answers li').first()).toBeFocused();
  const labeler = await page.locator('#labeler').inputValue();
  const first = await page.locator('#answers li').first().getAttribute('data-answer');
  await page.keyboard.press('ArrowDown');
  // ↓ moved the answer (and its focus) down, not the labeler menu.
  await expect(page.locator('#answers li').nth(1)).toHaveAttribute('data-answer', first!);
  await expect(page.locator('#answers li').nth(1)).toBeFocused();
  expect(await page.locator('#labeler').inputValue()).toBe(labeler);

  // From the top of the page, Compare is a few Tabs away.
  await page.goto('/');
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  let tabs = 0;
  while (tabs < 15 && !(await page.evaluate(() => document.activeElement?.getAttribute('href') === '#compare'))) {
    await page.keyboard.press('Tab');
    tabs += 1;
  }
  expect(tabs).toBeLessThan(15);

  // A first visit: the tour opens; Esc closes it and the keyboard lands on the first task.
  const fresh = await browser.newContext({ baseURL: 'http://127.0.0.1:8080/', storageState: { cookies: [], origins: [] } });
  const visitor = await fresh.newPage();
  await visitor.goto('/');
  await expect(visitor.locator('#tour-next')).toBeFocused({ timeout: 120_000 });
  await visitor.keyboard.press('Escape');
  await expect(visitor.locator('#sample')).toBeFocused();
  await fresh.close();
});

test('a typed prompt outside the shipped model’s world gets a line on what it knows and a prompt to try; the menu shows it is not in use', async ({ page }) => {
  await ready(page);
  await page.locator('#prompt-input').fill('Write a short poem about the sea.');
  await expect(page.locator('#prompt-select')).toBeDisabled();
  await page.locator('#sample').click();
  await expect(page.locator('#prompt-hint')).toBeVisible();
  await expect(page.locator('#prompt-hint')).toContainText('“poem”');
  await expect(page.locator('#prompt-hint')).toContainText('“sea”');
  await expect(page.locator('#prompt-hint')).toContainText('animals');
  const example = (await page.locator('#prompt-example').textContent())!;
  await page.locator('#prompt-example').click();
  await expect(page.locator('#prompt-input')).toHaveValue(example);
  await page.locator('#sample').click();
  await expect(page.locator('#answers li').first()).toBeFocused();
  await expect(page.locator('#prompt-hint')).toBeHidden();
  // A prompt of the world: no line.
  await page.locator('#prompt-input').fill('');
  await expect(page.locator('#prompt-select')).toBeEnabled();
});

test('export buttons wait for something to export, and say what', async ({ page }) => {
  await ready(page);
  for (const id of ['export-rankings', 'export-pairs', 'export-policy', 'export-reward']) {
    await expect(page.locator(`#${id}`)).toBeDisabled();
    await expect(page.locator(`#${id}`)).toHaveAttribute('title', /^No .+ yet: /);
  }
  await importRankings(page);
  await expect(page.locator('#export-rankings')).toBeEnabled();
  await expect(page.locator('#export-pairs')).toBeEnabled();
  await expect(page.locator('#export-policy')).toBeDisabled();
});

test('?workers and ?backend are settings the page uses, not ones it refuses; a load logs no error (the favicon is there)', async ({ page }) => {
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('response', (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));
  await ready(page, '?backend=cpu&workers=1');
  expect(errors).toEqual([]);
  await expect(page.locator('#backend')).toHaveText('CPU (wasm) · 1 worker');
  await expect(page.locator('#link-status')).toBeHidden();
});
