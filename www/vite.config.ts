import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { defineConfig, type Plugin } from 'vite';

// What the page may load and run: its own files only, and WebAssembly compiled from them. The same
// policy goes into index.html (a <meta>) and `vite preview`'s responses (a header, which also covers
// the worker's script).
const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "connect-src 'self'",
  "worker-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'none'",
].join('; ');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/**
 * The CSP <meta>, and `sw.js` written after the build: the service worker of `sw/` with the list
 * of every built file and a version that changes whenever any of them does.
 */
function offline(): Plugin {
  let outDir = '';
  return {
    name: 'tinyrlhf-offline',
    configResolved(config) {
      outDir = config.build.outDir;
    },
    transformIndexHtml: () => [{ tag: 'meta', attrs: { 'http-equiv': 'Content-Security-Policy', content: CSP }, injectTo: 'head-prepend' }],
    closeBundle() {
      const files = filesUnder(outDir)
        .map((path) => relative(outDir, path).split('\\').join('/'))
        .filter((f) => f !== 'sw.js')
        .sort();
      const hash = createHash('sha256');
      for (const f of files) hash.update(f).update(readFileSync(join(outDir, f)));
      const head = `const VERSION = ${JSON.stringify(hash.digest('hex').slice(0, 16))};\nconst FILES = ${JSON.stringify(files)};\n`;
      writeFileSync(join(outDir, 'sw.js'), head + readFileSync('sw/service-worker.js', 'utf8'));
    },
  };
}

// Cross-origin isolation: the workers that share a real model's base exchange through a
// SharedArrayBuffer (`src/worker/rows.ts`), which a page has only when isolated. Every file is the
// page's own, so nothing it loads is refused. A host that cannot set headers gets them from the
// service worker (`sw/`) from the second visit on.
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

// The page is static: Vite bundles the TypeScript, the worker and the wasm; `public/` (the shipped
// models) is copied as is. Served on 127.0.0.1 only.
export default defineConfig({
  base: './',
  build: { target: 'es2022', assetsInlineLimit: 0 },
  worker: { format: 'es' },
  plugins: [offline()],
  server: { host: '127.0.0.1', port: 8080, strictPort: true, headers: ISOLATION },
  preview: { host: '127.0.0.1', port: 8080, strictPort: true, headers: { 'Content-Security-Policy': CSP, ...ISOLATION } },
});
