/**
 * The WebAssembly provider in Debian's Chromium, served from source by Vite: on a cross-origin
 * isolated page it runs on Web Workers sharing its memory, by default one thread per
 * `navigator.hardwareConcurrency`, with the logits of one thread; on a page without the isolation
 * headers it runs on one thread and says why; where workers are forbidden, on one thread too.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { createServer, type ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { forward } from './threads.page.js';

const CHROMIUM = '/usr/bin/chromium';
// Without Chromium a developer's run skips, saying why; in CI (CI set) the test runs and fails.
const skip = !existsSync(CHROMIUM) && !process.env.CI;
if (skip) console.warn(`browser threads test skipped: no ${CHROMIUM} (apt-get install chromium); with CI set it fails instead`);

/** The headers that make a page cross-origin isolated, the condition for sharing memory with workers. */
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
/** Empty pages and their headers: isolated, plain, and isolated with a policy that forbids workers. */
const PAGES: Record<string, Record<string, string>> = {
  '/isolated': ISOLATION,
  '/plain': {},
  '/no-workers': { ...ISOLATION, 'Content-Security-Policy': "worker-src 'none'" },
};

type Result = Awaited<ReturnType<typeof forward>>;

describe.skipIf(skip)('threads in a browser', () => {
  let server: ViteDevServer;
  let browser: Browser;
  let origin: string;

  beforeAll(async () => {
    server = await createServer({
      root: fileURLToPath(new URL('..', import.meta.url)),
      configFile: false,
      logLevel: 'error',
      resolve: { conditions: ['source', 'module', 'browser', 'development|production'] },
      optimizeDeps: { noDiscovery: true },
      server: { host: '127.0.0.1', port: 0, hmr: false, watch: null },
      plugins: [{
        name: 'pages',
        // The modules the pages import need no headers of their own: they are same-origin.
        configureServer({ middlewares }) {
          middlewares.use((req, res, next) => {
            const headers = PAGES[req.url ?? ''];
            if (!headers) return next();
            res.writeHead(200, { 'content-type': 'text/html', ...headers }).end('<!doctype html><link rel="icon" href="data:,"><title>threads</title>');
          });
        },
      }],
    });
    await server.listen();
    origin = server.resolvedUrls!.local[0].replace(/\/$/, '');
    // Without the background-networking flags a first start on a closed network waits on lookups.
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  }, 60_000);

  /** Opens a page and runs the forward of threads.page.ts there with each of `options`; the page's warnings and errors too. */
  const run = async (path: keyof typeof PAGES, ...options: { threads?: number }[]) => {
    const page = await browser.newPage();
    const troubles: string[] = [];
    page.on('pageerror', (e) => troubles.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') troubles.push(m.text());
    });
    await page.goto(origin + path);
    // Strings, not functions: Vitest would rewrite the import() in a function's source for Node.
    const info = (await page.evaluate('({ isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency })')) as { isolated: boolean; cores: number };
    const results: Result[] = [];
    for (const o of options) results.push(await page.evaluate(`import('/src/threads.page.ts').then((m) => m.forward(${JSON.stringify(o)}))`));
    await page.close();
    return { ...info, results, troubles };
  };

  it('runs on every core of an isolated page, or as many threads as asked, with the logits of one thread', async () => {
    const { isolated, cores, results: [one, all, three], troubles } = await run('/isolated', { threads: 1 }, {}, { threads: 3 });
    expect(troubles).toEqual([]);
    expect(isolated).toBe(true);
    expect(one).toMatchObject({ threads: 1, running: 1 });
    expect(all).toMatchObject({ threads: cores, running: cores });
    expect(all.device).toContain(`${cores} thread`);
    expect(three).toMatchObject({ threads: 3, running: 3 });
    // A forward splits no sum over threads, so the results are those of one thread bit for bit, as in Node.
    expect(one.logits).toHaveLength(20);
    expect(all.logits).toEqual(one.logits);
    expect(three.logits).toEqual(one.logits);
  });

  it('runs on one thread where the page is not isolated, saying why, whatever is asked', async () => {
    const { isolated, results: [plain, asked], troubles } = await run('/plain', {}, { threads: 3 });
    expect(troubles).toEqual([]);
    expect(isolated).toBe(false);
    for (const r of [plain, asked]) {
      expect(r).toMatchObject({ threads: 1, running: 1 });
      expect(r.device).toContain('1 thread; no worker threads: the page is not cross-origin isolated');
    }
    expect(asked.logits).toEqual(plain.logits);
  });

  it('runs on one thread, with a warning, where the page forbids workers', async () => {
    const { isolated, results: [one, blocked], troubles } = await run('/no-workers', { threads: 1 }, { threads: 3 });
    expect(isolated).toBe(true);
    // It still splits ops in three, all run by the calling thread.
    expect(blocked).toMatchObject({ threads: 3, running: 1 });
    // Chromium reports the blocked workers itself; the backend says once what it does about it.
    expect(troubles.filter((t) => t.startsWith('cpu backend'))).toEqual([expect.stringMatching(/worker threads failed to start .*; running on one thread$/)]);
    expect(blocked.logits).toEqual(one.logits);
  });
});
