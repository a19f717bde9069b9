/**
 * `residual data` end to end, as a user runs it (the built dist, a child process), on data the tests
 * make: an ImageFolder tree with a broken file, CIFAR-format records, and an archive served on loopback.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSafetensors } from '@residual/core/node';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** Runs the CLI without blocking this process (the test's HTTP server must keep answering). */
const cli = (args: string[]) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, RESIDUAL_BACKEND: 'cpu' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
const json = async (args: string[]) => {
  const r = await cli([...args, '--json']);
  if (r.code !== 0) throw new Error(`residual ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
};

let root: string;
let tree: string;
let cifar: string;
let records: Uint8Array;
let server: Server;
let base: string;
let archive: Buffer;
let md5: string;

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`build the CLI first (pnpm build): ${MAIN} is missing`);
  root = await mkdtemp(join(tmpdir(), 'residual-cli-data-'));

  // An ImageFolder: 3 classes, train 9 images of mixed sizes (one truncated), val 3.
  tree = join(root, 'tree');
  for (const [split, count] of [['train', 9], ['val', 3]] as const) {
    for (let i = 0; i < count; i++) {
      const cls = ['ant', 'bee', 'cow'][i % 3];
      const jpeg = await sharp({ create: { width: 40 + i, height: 30, channels: 3, background: { r: 25 * i, g: 90, b: 160 } } }).jpeg().toBuffer();
      await mkdir(join(tree, split, cls), { recursive: true });
      await writeFile(join(tree, split, cls, `${i}.jpg`), split === 'train' && i === 4 ? jpeg.subarray(0, jpeg.length >> 1) : jpeg);
    }
  }

  // CIFAR-10 records (train and test), pixels from a fixed formula.
  cifar = join(root, 'cifar');
  await mkdir(cifar);
  records = new Uint8Array(20 * 3073);
  for (let r = 0; r < 20; r++) {
    records[r * 3073] = r % 10;
    for (let p = 0; p < 3072; p++) records[r * 3073 + 1 + p] = (r * 37 + p * 11 + (p >> 10) * 50) & 255;
  }
  await writeFile(join(cifar, 'data_batch_1.bin'), records);
  await writeFile(join(cifar, 'test_batch.bin'), records.subarray(0, 5 * 3073));

  // The same records as the official archive lays them out, served on loopback.
  const inner = join(root, 'archive', 'cifar-10-batches-bin');
  await mkdir(inner, { recursive: true });
  for (const name of ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin']) {
    await writeFile(join(inner, name), records.subarray(0, 2 * 3073));
  }
  const tgz = join(root, 'cifar-10-binary.tar.gz');
  spawnSync('tar', ['-czf', tgz, '-C', join(root, 'archive'), 'cifar-10-batches-bin']);
  archive = await readFile(tgz);
  md5 = spawnSync('md5sum', [tgz], { encoding: 'utf8' }).stdout.split(' ')[0];
  server = createServer((req, res) => {
    if (req.url !== '/c10.tar.gz') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': archive.length }).end(archive);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await rm(root, { recursive: true, force: true });
});

describe('residual data inspect', () => {
  it('decodes every image of every split once and names the unreadable ones', async () => {
    const r = await json(['data', 'inspect', `imagenet:${tree}`, '--workers', '1']);
    expect(r).toEqual({
      classes: 3,
      images: 12,
      unreadable: 1,
      unreadableFiles: [join(tree, 'train', 'bee', '4.jpg')],
      splits: { train: 9, val: 3 },
      issues: [],
    });
    expect(await json(['data', 'inspect', `cifar10:${cifar}`])).toMatchObject({ classes: 10, images: 25, unreadable: 0, splits: { train: 20, test: 5 } });
  });

  it('rejects a malformed spec as a usage error', async () => {
    const r = await cli(['data', 'inspect', 'mnist:/x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SPEC: data spec "mnist:/x": unknown kind "mnist"');
  });
});

describe('residual data bench', () => {
  it('streams every image of the split once per epoch through the augmentation', async () => {
    const r = await json(['data', 'bench', `cifar10:${cifar}`, '--augment', 'cifar', '--batch-size', '8', '--epochs', '2', '--workers', '0']);
    expect([r.images, r.skipped, r.batchSize]).toEqual([40, 0, 8]);
    expect(r.imagesPerSecond).toBeCloseTo(r.images / r.seconds, 6);
    const paper = await json(['data', 'bench', `imagenet:${tree}`, '--split', 'train', '--augment', 'paper', '--batch-size', '4', '--workers', '1']);
    expect([paper.images, paper.skipped]).toEqual([8, 1]);
    // Times count from the process's start: start-up (to the first batch) is part of them, and also given apart.
    expect(paper.startupSeconds).toBeGreaterThan(0);
    expect(paper.startupSeconds).toBeLessThan(paper.seconds);
    expect(paper.steadyImagesPerSecond).toBeGreaterThan(0);
    // The installed command sizes libuv's pool (libvips' decoding threads) to the cores, unless told.
    const bin = fileURLToPath(new URL('../bin/residual.cjs', import.meta.url));
    const sized = (entry: string, env: NodeJS.ProcessEnv) => {
      const run = spawnSync(process.execPath, [entry, 'data', 'bench', `cifar10:${cifar}`, '--augment', 'cifar', '--workers', '0', '--json'], { env, encoding: 'utf8' });
      return JSON.parse(run.stdout).uvThreadpoolSize;
    };
    const { UV_THREADPOOL_SIZE: _, ...unset } = process.env;
    expect(sized(MAIN, unset)).toBeNull();
    expect(sized(bin, unset)).toBe(Math.max(4, availableParallelism()));
    expect(sized(bin, { ...unset, UV_THREADPOOL_SIZE: '7' })).toBe(7);
    const bad = await cli(['data', 'bench', `cifar10:${cifar}`, '--augment', 'autoaugment']);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining('--augment: ')]);
  });
});

describe('residual data download', () => {
  it('downloads, checks the MD5 and extracts; a wrong MD5 fails and leaves nothing', async () => {
    const dir = join(root, 'dl', 'c10');
    const r = await json(['data', 'download', 'cifar10', dir, '--url', `${base}/c10.tar.gz`, '--md5', md5]);
    expect(r).toMatchObject({ dir, bytes: archive.length, md5 });
    expect((await readdir(dir)).sort()).toEqual(['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin']);

    const bad = await cli(['data', 'download', 'cifar10', join(root, 'dl2', 'c10'), '--url', `${base}/c10.tar.gz`, '--md5', '0'.repeat(32)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`MD5 ${md5} is not the expected ${'0'.repeat(32)}`);
    expect(await readdir(join(root, 'dl2'))).toEqual([]);
    const flag = await cli(['data', 'download', 'cifar10', dir, '--md5', 'xyz']);
    expect([flag.code, flag.stderr]).toEqual([2, expect.stringContaining('--md5: must be 32 hex digits')]);
  });
});

describe('residual data shards make', () => {
  it('writes shards that inspect and bench stream like the tree they came from', async () => {
    const out = join(root, 'shards');
    const r = await json(['data', 'shards', 'make', `imagenet:${tree}`, out, '--per-shard', '4', '--seed', '1']);
    expect(r).toEqual({ out, classes: 3, splits: { train: { shards: 3, samples: 9 }, val: { shards: 1, samples: 3 } } });
    expect((await readdir(out)).sort()).toEqual(['shards.json', 'train-000000.tar', 'train-000001.tar', 'train-000002.tar', 'val-000000.tar']);
    const inspected = await json(['data', 'inspect', `shards:${out}`, '--workers', '1']);
    expect(inspected).toMatchObject({ classes: 3, images: 12, unreadable: 1, splits: { train: 9, val: 3 } });
    expect(inspected.unreadableFiles[0]).toMatch(/train-00000\d\.tar#000000004$/);
    const pattern = await json(['data', 'bench', `shards:${out}/train-{000000..000002}.tar`, '--augment', 'none', '--batch-size', '3', '--workers', '1']);
    expect([pattern.images, pattern.skipped]).toEqual([8, 1]);
  });

  it('re-encodes with --max-side/--quality, stores decoded photos with --format ppm and pixels with --raw, refusing what does not fit', async () => {
    const jpeg = join(root, 'shards-480');
    expect(await json(['data', 'shards', 'make', `imagenet:${tree}`, jpeg, '--max-side', '480', '--quality', '90'])).toMatchObject({ splits: { train: { samples: 9 } } });
    expect(JSON.parse(await readFile(join(jpeg, 'shards.json'), 'utf8')).jpeg).toEqual({ maxSide: 480, quality: 90 });
    const raw = join(root, 'shards-raw');
    await json(['data', 'shards', 'make', `cifar10:${cifar}`, raw, '--raw', '32']);
    const streamed = await json(['data', 'bench', `shards:${raw}`, '--augment', 'cifar', '--batch-size', '8', '--workers', '1']);
    expect([streamed.images, streamed.skipped]).toEqual([20, 0]);
    const both = await cli(['data', 'shards', 'make', `imagenet:${tree}`, join(root, 'x'), '--max-side', '480', '--raw', '32']);
    expect([both.code, both.stderr]).toEqual([2, expect.stringContaining('not both')]);
    const quality = await cli(['data', 'shards', 'make', `imagenet:${tree}`, join(root, 'y'), '--quality', '90']);
    expect([quality.code, quality.stderr]).toEqual([2, expect.stringContaining('--quality applies to --max-side')]);
    const ppm = join(root, 'shards-ppm');
    await json(['data', 'shards', 'make', `imagenet:${tree}`, ppm, '--max-side', '480', '--format', 'ppm']);
    expect(JSON.parse(await readFile(join(ppm, 'shards.json'), 'utf8')).ppm).toEqual({ maxSide: 480 });
    const decoded = await json(['data', 'bench', `shards:${ppm}`, '--augment', 'paper', '--batch-size', '4', '--workers', '1']);
    const fromTree = await json(['data', 'bench', `imagenet:${tree}`, '--augment', 'paper', '--batch-size', '4', '--workers', '1']);
    expect([decoded.images, decoded.skipped]).toEqual([fromTree.images, fromTree.skipped]);
    const ppmQuality = await cli(['data', 'shards', 'make', `imagenet:${tree}`, join(root, 'z'), '--max-side', '480', '--format', 'ppm', '--quality', '90']);
    expect([ppmQuality.code, ppmQuality.stderr]).toEqual([2, expect.stringContaining('--quality applies to --format jpeg, not ppm')]);
    const format = await cli(['data', 'shards', 'make', `imagenet:${tree}`, join(root, 'w'), '--format', 'ppm']);
    expect([format.code, format.stderr]).toEqual([2, expect.stringContaining('--format applies to --max-side')]);
  });
});

describe('residual data stats', () => {
  it('computes per-channel mean and std and writes the mean image', async () => {
    const file = join(root, 'mean.safetensors');
    const r = await json(['data', 'stats', `cifar10:${cifar}`, '--mean-image', file, '--workers', '0']);
    // The reference, in float64 from the record bytes.
    for (let c = 0; c < 3; c++) {
      const values: number[] = [];
      for (let i = 0; i < 20; i++) for (let p = 0; p < 1024; p++) values.push(records[i * 3073 + 1 + c * 1024 + p] / 255);
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
      expect(r.mean[c]).toBeCloseTo(mean, 6);
      expect(r.std[c]).toBeCloseTo(std, 6);
    }
    expect([r.images, r.pixels, r.meanImage]).toEqual([20, 20 * 1024, file]);
    expect(r.pca.eigvec).toHaveLength(3);
    const saved = await openSafetensors(file);
    const mean = saved.header.tensors.get('mean')!;
    expect([mean.dtype, mean.shape]).toEqual(['F32', [3, 32, 32]]);
    await saved.close();

    const mixed = await cli(['data', 'stats', `imagenet:${tree}`, '--mean-image', file]);
    expect([mixed.code, mixed.stderr]).toEqual([1, expect.stringContaining('a mean image needs a transform that crops to one size')]);
    const sized = await json(['data', 'stats', `imagenet:${tree}`, '--size', '16', '--split', 'val']);
    expect([sized.images, sized.pixels]).toEqual([3, 3 * 256]);
  });
});
