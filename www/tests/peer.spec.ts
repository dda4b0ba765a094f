// Sampling beside llama.cpp's own WebAssembly build (the `@wllama/wllama` npm package) on the same
// GGUF in the same browser: a benchmark, printed, never asserted, opt-in (not part of CI):
//
//   TINYRLHF_PEER_GGUF=FILE.gguf npx playwright test tests/peer.spec.ts
//
// wllama runs in a page of its own that this test serves on a port of its own, from the package's
// files, with the cross-origin isolation its threads need: its CPU path (no GPU layers),
// 1 and 2 threads, greedy, 64 new tokens after a fixed prompt with EOS ignored; one answer, then
// four one after another (llama.cpp's own figures of the decoding), and a prompt of about 150
// tokens read with one new token (its prompt figure). The tab: the same file loaded as the person's
// model on the CPU backend, with one worker and then two sharing its base by rows, K = 1 and K = 4,
// the speed the page shows, and the same long prompt with one new token, timed from the worker's
// message to its answer (so the prompt's rate counts that one token too).
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test, type Page } from '@playwright/test';
import { openOwnModel, ready } from './helpers';

const GGUF = process.env.TINYRLHF_PEER_GGUF;
test.skip(!GGUF, 'a benchmark: set TINYRLHF_PEER_GGUF to a .gguf file');
// Both on the CPU: without a GPU process wllama's build finds no WebGPU to probe (with
// SwiftShader's, its page closed while loading here).
test.use({ launchOptions: { executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] } });

const WLLAMA = join(dirname(fileURLToPath(import.meta.url)), '../node_modules/@wllama/wllama/esm');
const PROMPT = 'Once upon a time, in a small village by the sea, there lived';
const NEW_TOKENS = 64;
// Each read starts with another word, so that no cached prefix spares a peer the reading.
const LONG_PROMPT = (first: string) =>
  `${first} the harbour lay quiet under a grey morning sky. The fishermen had gone out before dawn, leaving their ` +
  'wives to mend the nets on the stones by the water. Children ran between the boats pulled up on the sand, ' +
  'shouting to one another about the ship they had seen on the horizon the evening before. Nobody in the village ' +
  'knew where it had come from or where it was going, and the old men who sat outside the inn argued about it over ' +
  'their cups. Some said it carried spices from the south; others swore it was a warship, come to take the young ' +
  'men away. By noon the ship had anchored in the bay, and a small boat was rowing towards the shore. Write what happened next:';
const ISOLATED = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
const TYPES: Record<string, string> = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };

const PEER_PAGE = `<!doctype html><meta charset="utf-8"><title>wllama</title><script type="module">
import { Wllama } from './esm/index.js';
let w;
window.load = async (threads) => {
  w = new Wllama({ default: './esm/wasm/wllama.wasm' }, { suppressNativeLog: true });
  await w.loadModelFromUrl(location.origin + '/model.gguf', { n_threads: threads, n_ctx: 2048, n_gpu_layers: 0 });
  return crossOriginIsolated && w.isMultithread();
};
window.answer = async (prompt, n) => (await w.createCompletion({ prompt, max_tokens: n, temperature: 0, ignore_eos: true })).timings;
window.read = async (prompt) => (await w.createCompletion({ prompt, max_tokens: 1, temperature: 0 })).timings;
window.ready = true;
</script>`;

/** A server on a port of its own for wllama's page: the page, the package's files and the GGUF
 * (whole, or the byte range asked for), cross-origin isolated. Playwright's routes carry a body
 * in one message, which a model file is too large for. */
async function serve(): Promise<{ url: string; close(): void }> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const headers = { ...ISOLATED, 'Accept-Ranges': 'bytes' };
    if (path === '/index.html') {
      response.writeHead(200, { ...headers, 'Content-Type': 'text/html' }).end(PEER_PAGE);
      return;
    }
    const file = path === '/model.gguf' ? GGUF! : join(WLLAMA, path.replace(/^\/esm\//, ''));
    if (!existsSync(file)) {
      response.writeHead(404, headers).end();
      return;
    }
    const size = statSync(file).size;
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    const range = /bytes=(\d+)-(\d*)/.exec(request.headers.range ?? '');
    const [start, end] = range ? [Number(range[1]), range[2] ? Number(range[2]) : size - 1] : [0, size - 1];
    const partial = range ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {};
    response.writeHead(range ? 206 : 200, { ...headers, ...partial, 'Content-Type': type, 'Content-Length': end - start + 1 });
    if (request.method === 'HEAD') response.end();
    else createReadStream(file, { start, end }).pipe(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/index.html`, close: () => server.close() };
}

type Timings = { prompt_n: number; prompt_ms: number; predicted_n: number; predicted_ms: number };
type Peer = { load(threads: number): Promise<boolean>; answer(prompt: string, n: number): Promise<Timings>; read(prompt: string): Promise<Timings> };

/** wllama's decoding tokens/s for one answer and for four, and its long prompt's tokens/s, on `threads`. */
async function wllama(page: Page, url: string, threads: number) {
  await page.goto(url);
  await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
  const threaded = await page.evaluate((t) => (window as unknown as Peer).load(t), threads);
  const answer = () => page.evaluate(([p, n]) => (window as unknown as Peer).answer(p as string, n as number), [PROMPT, NEW_TOKENS]);
  await answer(); // warm-up
  const one = await answer();
  const four: Timings[] = [];
  for (let i = 0; i < 4; i++) four.push(await answer());
  const rate = (ts: Timings[]) => (1000 * ts.reduce((s, t) => s + t.predicted_n, 0)) / ts.reduce((s, t) => s + t.predicted_ms, 0);
  const read = (first: string) => page.evaluate((p) => (window as unknown as Peer).read(p), LONG_PROMPT(first));
  await read('Early,'); // warm-up
  const long = await read('Then');
  return { threaded, one: rate([one]), four: rate(four), prompt: (1000 * long.prompt_n) / Math.max(long.prompt_ms, 1e-3), promptTokens: long.prompt_n };
}

/** The tab's sampling tokens/s for `k` answers, as the page shows it. */
async function tab(page: Page, k: number): Promise<number> {
  await page.locator('#k').fill(String(k));
  await page.locator('#sample').click();
  await expect(page.locator('#sample-speed')).toContainText('tok/s', { timeout: 600_000 });
  const shown = (await page.locator('#sample-speed').textContent()) ?? '';
  const [, tokens, secs] = /(\d+) tokens in ([\d.]+) s/.exec(shown) ?? [];
  return Number(tokens) / Number(secs);
}

test('sampling a GGUF in the tab beside llama.cpp\'s WebAssembly build (wllama), same browser and file', async ({ page }) => {
  test.setTimeout(60 * 60_000);
  const peerServer = await serve();
  const peers = { 1: await wllama(page, peerServer.url, 1), 2: await wllama(page, peerServer.url, 2) };
  peerServer.close();

  await ready(page, '?backend=cpu&workers=1');
  await openOwnModel(page);
  await page.locator('#model-files').setInputFiles([GGUF!]);
  await expect(page.locator('#model-current')).toContainText('your model', { timeout: 600_000 });
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true', { timeout: 600_000 });
  const ours: Record<number, { one: number; four: number; answer: string; prompt: number; promptTokens: number }> = {};
  for (const workers of [1, 2]) {
    // The model stays saved: the page loads it again with this many workers sharing its base.
    await ready(page, `?backend=cpu&workers=${workers}`);
    await expect(page.locator('body')).toHaveAttribute('data-workers', String(workers));
    await page.locator('#prompt-input').fill(PROMPT);
    await tab(page, 1); // warm-up
    // Sampled with a fixed seed: the same logits give the same tokens.
    type Sampled = { completions: string[] };
    const sampled = await page.evaluate((prompt) => (window as unknown as { tinyrlhf: { sample: (p: string, k: number, seed: number) => Promise<Sampled> } }).tinyrlhf.sample(prompt, 2, 7), PROMPT);
    const answer = JSON.stringify(sampled.completions);
    type Read = { prompt_tokens: number; seconds: number };
    const read = (first: string) =>
      page.evaluate((p) => (window as unknown as { tinyrlhf: { sample: (p: string, k: number, seed: number, n: number) => Promise<Read> } }).tinyrlhf.sample(p, 1, 7, 1), LONG_PROMPT(first));
    await read('Early,'); // warm-up
    const long = await read('Then');
    ours[workers] = { one: await tab(page, 1), four: await tab(page, 4), answer, prompt: long.prompt_tokens / long.seconds, promptTokens: long.prompt_tokens };
  }

  const f = (x: number) => x.toFixed(1);
  console.log(`peer: ${GGUF} on ${cpus()[0]?.model} (${cpus().length} cores), ${await page.evaluate(() => navigator.userAgent)}`);
  for (const [threads, peer] of Object.entries(peers)) {
    console.log(`peer: wllama ${threads} thread(s)${peer.threaded ? ' (threaded build)' : ''}: one answer ${f(peer.one)} tok/s, four answers ${f(peer.four)} tok/s, prompt of ${peer.promptTokens} tokens ${f(peer.prompt)} tok/s`);
  }
  for (const threads of [1, 2] as const) {
    const [us, them] = [ours[threads], peers[threads]];
    console.log(`peer: tinyrlhf, CPU (wasm), ${threads} worker(s): one answer ${f(us.one)} tok/s, four answers ${f(us.four)} tok/s, prompt of ${us.promptTokens} tokens (and one new) ${f(us.prompt)} tok/s`);
    console.log(`peer: tinyrlhf / wllama, ${threads} thread(s) each: one answer ${f(us.one / them.one)}x, four answers ${f(us.four / them.four)}x, prompt ${f(us.prompt / them.prompt)}x`);
  }
  // Two workers sharing the base compute what one computes: the same answers from the same seed.
  console.log(`peer: answers sampled with one seed on 1 and 2 workers: ${ours[1].answer === ours[2].answer ? 'the same' : `differ: ${ours[1].answer} vs ${ours[2].answer}`}`);
});
