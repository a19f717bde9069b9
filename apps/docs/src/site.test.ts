/**
 * The built site (`pnpm build` first) in Debian's Chromium, served with the headers of its `_headers`
 * file (cross-origin isolation): every page loads without console errors, every link inside the
 * site reaches a page or file and, with a #fragment, an element of that page, and the demo
 * classifies sample images with the probabilities `residual predict` computes for them in Node: on
 * WebGPU (SwiftShader), after switching to the CPU, and in a browser without WebGPU with the weights
 * and the image given as files. The CPU backend runs on every core there, with the prediction of
 * one thread, and on one thread where the site is served without the headers.
 * Screenshots of the home page and of the demo's results go to screenshots/ (git-ignored).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';

const CHROMIUM = '/usr/bin/chromium';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const shots = join(root, 'screenshots');
const cli = join(root, '../cli/dist/main.js');

// Without Chromium a developer's run skips, saying why; in CI (CI set) the test runs and fails.
const skip = !existsSync(CHROMIUM) && !process.env.CI;
if (skip) console.warn(`docs site test skipped: no ${CHROMIUM} (apt-get install chromium); with CI set it fails instead`);

const TYPES: Record<string, string> = {
  '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.json': 'application/json', '.woff2': 'font/woff2', '.txt': 'text/plain',
};

/** The file a URL path names in dist: `dir/` is `dir/index.html`; none when it escapes dist or is missing. */
const fileFor = (path: string): string | null => {
  const file = join(dist, decodeURIComponent(path).replace(/\/$/, '/index.html'));
  if (relative(dist, file).startsWith('..')) return null;
  return existsSync(file) && statSync(file).isFile() ? file : null;
};

/** The headers that dist/_headers gives every path (its one rule, `/*`), as a static host reading it sends them. */
const siteHeaders = (): Record<string, string> => {
  const [rule, ...lines] = readFileSync(join(dist, '_headers'), 'utf8').trimEnd().split('\n');
  if (rule !== '/*') throw new Error(`dist/_headers: expected one rule for /*, got '${rule}'`);
  return Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).trim(), line.slice(line.indexOf(':') + 1).trim()]));
};

/** A static server for dist on loopback, sending `headers` with every file. */
const serve = async (headers: Record<string, string>): Promise<{ server: Server; origin: string }> => {
  const server = createServer((req, res) => {
    const file = fileFor(new URL(req.url ?? '/', 'http://x').pathname);
    if (!file) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
};

const htmlFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? htmlFiles(join(dir, e.name)) : e.name.endsWith('.html') && e.name !== '404.html' ? [join(dir, e.name)] : []);

/** Console errors, uncaught exceptions and failed requests of a page, as they happen. */
const watchErrors = (page: Page): string[] => {
  const errors: string[] = [];
  page.on('response', (r) => {
    if (r.status() >= 400) errors.push(`${page.url()}: HTTP ${r.status()} for ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${page.url()}: console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`${page.url()}: exception: ${e.message}`));
  return errors;
};

/**
 * The served site and a browser, started once by the first test that needs them, so that a missing
 * build or browser fails every test with the reason rather than skipping them.
 */
let started: Promise<{ browser: Browser; server: Server; origin: string }> | null = null;
const site = () =>
  (started ??= (async () => {
    if (!existsSync(join(dist, 'index.html'))) throw new Error(`${dist} has no index.html: run \`pnpm --filter docs build\` first`);
    if (!existsSync(CHROMIUM)) throw new Error(`Debian's Chromium is missing at ${CHROMIUM}: apt-get install -y chromium`);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // WebGPU on SwiftShader: unsafe WebGPU enabled, and no --disable-gpu.
      args: ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--no-sandbox', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    mkdirSync(shots, { recursive: true });
    return { browser, ...(await serve(siteHeaders())) };
  })());

describe.skipIf(skip)('the built site', () => {
  afterAll(async () => {
    const s = await started?.catch(() => null);
    await s?.browser.close();
    s?.server.close();
  });

  it('loads every page without console errors, and every link inside the site resolves', async () => {
    const { browser, origin } = await site();
    const pages = htmlFiles(dist).map((f) => `/${relative(dist, f).split(sep).join('/')}`);
    expect(pages.length).toBeGreaterThan(10);
    const page = await browser.newPage();
    const errors = watchErrors(page);
    const links = new Map<string, string>(); // link -> a page that has it
    for (const path of pages) {
      const res = await page.goto(origin + path, { waitUntil: 'load' });
      expect(res?.status(), path).toBe(200);
      for (const href of await page.$$eval('a[href]', (as) => as.map((a) => (a as HTMLAnchorElement).href))) {
        const url = new URL(href);
        if (url.origin === origin && !links.has(url.pathname + url.hash)) links.set(url.pathname + url.hash, path);
      }
      if (path === '/index.html') await page.screenshot({ path: join(shots, 'home.png'), fullPage: true });
    }
    await page.close();
    expect(errors).toEqual([]);

    const broken: string[] = [];
    const idsOf = new Map<string, Set<string>>();
    for (const [link, from] of links) {
      const [path, hash] = link.split('#');
      const file = fileFor(path);
      if (!file) {
        broken.push(`${link} (on ${from}): no such page or file`);
        continue;
      }
      if (!hash || !file.endsWith('.html')) continue;
      if (!idsOf.has(file)) idsOf.set(file, new Set([...readFileSync(file, 'utf8').matchAll(/\sid="([^"]+)"/g)].map((m) => m[1])));
      if (!idsOf.get(file)!.has(decodeURIComponent(hash))) broken.push(`${link} (on ${from}): no element #${decodeURIComponent(hash)}`);
    }
    expect(links.size).toBeGreaterThan(50);
    expect(broken).toEqual([]);
  });

  /** What `residual predict` says of a sample in Node on the CPU backend: every class's probability. */
  const reference = (sample: string): Map<string, number> => {
    const out = execFileSync(process.execPath, [cli, 'predict', '--model', 'resnet20', '--weights', join(dist, 'generated/resnet20-shapes.safetensors'),
      '--backend', 'cpu', '--top', '10', '--json', join(dist, `generated/samples/${sample}.png`)], { encoding: 'utf8' });
    const [{ top }] = JSON.parse(out) as { top: { label: string; probability: number }[] }[];
    return new Map(top.map((t) => [t.label, t.probability]));
  };

  /** The rows of the demo's result table. */
  const shownRows = (page: Page) =>
    page.locator('[data-testid="result"] tr').evaluateAll((trs) => trs.map((tr) => ({
      label: tr.querySelector('.label')!.textContent!.trim(),
      probability: Number(tr.querySelector('.p')!.getAttribute('data-probability')),
    })));

  /** The CPU threads the demo says ran (null on WebGPU), and the cores the browser reports. */
  const threadsOf = async (page: Page) => ({
    threads: await page.getByTestId('device').evaluate((el) => (el.hasAttribute('data-threads') ? Number(el.getAttribute('data-threads')) : null)),
    cores: await page.evaluate(() => navigator.hardwareConcurrency),
  });

  /**
   * Opens the demo (at `query`, from `origin`: the isolated site's by default), classifies a sample,
   * and returns the rows it shows, the device line, the threads that ran and the time it took.
   */
  const classifySample = async (page: Page, sample: string, query = '', origin?: string) => {
    await page.goto(`${origin ?? (await site()).origin}/demo.html${query}`);
    await page.locator(`button[data-sample="${sample}"]:not([disabled])`).click({ timeout: 120_000 });
    await page.getByTestId('timing').waitFor({ timeout: 120_000 });
    return {
      shown: await shownRows(page),
      device: await page.getByTestId('device').textContent(),
      ...(await threadsOf(page)),
      ms: Number((await page.getByTestId('timing').textContent())!.split(' ')[0]),
    };
  };

  /** The demo's top 5 are the 5 most probable classes of the reference, with its probabilities. */
  const expectMatches = (shown: { label: string; probability: number }[], ref: Map<string, number>) => {
    const ranked = [...ref.entries()].sort((a, b) => b[1] - a[1]);
    expect(shown).toHaveLength(5);
    for (const [i, row] of shown.entries()) {
      expect(ref.has(row.label), row.label).toBe(true);
      expect(Math.abs(row.probability - ref.get(row.label)!), row.label).toBeLessThan(1e-3);
      expect(Math.abs(row.probability - ranked[i][1]), `rank ${i + 1}`).toBeLessThan(1e-3);
    }
  };

  it('classifies a sample image on WebGPU as residual predict does, and again after switching to the CPU', async () => {
    const page = await (await site()).browser.newPage();
    const errors = watchErrors(page);
    const { shown, device } = await classifySample(page, 'circle');
    const ref = reference('circle');
    expect(device).toMatch(/^WebGPU/);
    expectMatches(shown, ref);
    await expect(page.getByTestId('timing').textContent()).resolves.toMatch(/\d+ ms on WebGPU/);
    await page.screenshot({ path: join(shots, 'demo.png'), fullPage: true });
    await page.getByTestId('backend').selectOption('cpu');
    await expect.poll(() => page.getByTestId('timing').textContent(), { timeout: 60_000 }).toMatch(/\d+ ms on CPU/);
    expectMatches(await shownRows(page), ref);
    const { threads, cores } = await threadsOf(page);
    expect(threads).toBe(cores);
    await page.close();
    expect(errors).toEqual([]);
  });

  it('falls back to the CPU backend in a browser without WebGPU, with weights and an image given as files', async () => {
    const context = await (await site()).browser.newContext();
    // A browser without WebGPU: navigator.gpu is absent.
    await context.addInitScript(() => {
      delete (Navigator.prototype as { gpu?: unknown }).gpu;
    });
    const page = await context.newPage();
    const errors = watchErrors(page);
    await page.goto(`${(await site()).origin}/demo.html`);
    await page.locator('button[data-sample]:not([disabled])').first().waitFor({ timeout: 120_000 });
    await expect(page.getByTestId('device').textContent()).resolves.toMatch(/^CPU \(WebAssembly/);
    const { threads, cores } = await threadsOf(page);
    expect(threads).toBe(cores);
    await expect(page.getByTestId('fallback').textContent()).resolves.toContain('no WebGPU');
    await page.locator('input[accept=".safetensors"]').setInputFiles(join(dist, 'generated/resnet20-shapes.safetensors'));
    await page.getByTestId('image-input').setInputFiles(join(dist, 'generated/samples/star.png'));
    await page.getByTestId('timing').waitFor({ timeout: 60_000 });
    expectMatches(await shownRows(page), reference('star'));
    await page.screenshot({ path: join(shots, 'demo-cpu.png'), fullPage: true });
    await context.close();
    expect(errors).toEqual([]);
  });

  it('runs the CPU backend on every core of the isolated site with the prediction of one thread, and on one thread without the headers', async () => {
    const { browser } = await site();
    const plain = await serve({});
    const page = await browser.newPage();
    const errors = watchErrors(page);
    try {
      const all = await classifySample(page, 'triangle', '?backend=cpu');
      const one = await classifySample(page, 'triangle', '?backend=cpu&threads=1');
      const unisolated = await classifySample(page, 'triangle', '?backend=cpu', plain.origin);
      // This machine's cores, all of them: the test needs two or more to see threads at work.
      expect(all.cores).toBeGreaterThan(1);
      expect(all).toMatchObject({ threads: all.cores, device: expect.stringContaining(`${all.cores} threads`) });
      expect(one).toMatchObject({ threads: 1, device: expect.stringContaining('1 thread)') });
      expect(unisolated).toMatchObject({ threads: 1, device: expect.stringContaining('1 thread; no worker threads: the page is not cross-origin isolated') });
      // A forward splits no sum over threads: the same probabilities, bit for bit, and those of `residual predict`.
      expect(all.shown).toEqual(one.shown);
      expect(unisolated.shown).toEqual(one.shown);
      expectMatches(one.shown, reference('triangle'));
    } finally {
      await page.close();
      plain.server.close();
    }
    expect(errors).toEqual([]);
  });
});
