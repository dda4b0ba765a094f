import { defineConfig } from '@playwright/test';

// Drives the machine's Chromium (never a downloaded browser) against the built page, served by
// `vite preview` on 127.0.0.1. WebGPU is enabled so `?backend=webgpu` finds SwiftShader; the page
// itself treats that software adapter as "no GPU" unless forced.
export default defineConfig({
  testDir: 'tests',
  timeout: 240_000,
  expect: { timeout: 120_000 },
  workers: 1,
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    baseURL: 'http://127.0.0.1:8080/',
    // Every test is a returning visitor (the first-visit tour stays closed), except the tour's own.
    storageState: { cookies: [], origins: [{ origin: 'http://127.0.0.1:8080', localStorage: [{ name: 'tinyrlhf-tour', value: 'seen' }] }] },
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    },
  },
  webServer: {
    command: 'npx vite preview',
    url: 'http://127.0.0.1:8080/',
    reuseExistingServer: false,
    timeout: 60_000,
  },
});
