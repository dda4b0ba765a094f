import { defineConfig } from 'vite';

// The page is static: Vite bundles the TypeScript, the worker and the wasm; `public/` (the shipped
// models) is copied as is. Served on 127.0.0.1 only.
export default defineConfig({
  base: './',
  build: { target: 'es2022', assetsInlineLimit: 0 },
  worker: { format: 'es' },
  server: { host: '127.0.0.1', port: 8080, strictPort: true },
  preview: { host: '127.0.0.1', port: 8080, strictPort: true },
});
