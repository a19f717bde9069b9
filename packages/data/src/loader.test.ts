import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLoader, type Loader, type LoaderOptions } from './loader.js';
import { take } from './loopback.test-support.js';
import { keyedRandom, randInt } from './random.js';
import { openSource, type Source } from './sources.js';
import { cifarAugment, type Transform } from './transforms.js';

let root: string;
let cifar: Source;
let folder: Source;
const N = 50;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'residual-loader-'));
  // CIFAR-10: N records of random pixels, label i % 10.
  const rand = keyedRandom(99);
  const bytes = new Uint8Array(N * 3073);
  for (let i = 0; i < N; i++) {
    bytes[i * 3073] = i % 10;
    for (let k = 1; k < 3073; k++) bytes[i * 3073 + k] = randInt(rand, 0, 255);
  }
  await mkdir(join(root, 'cifar'));
  await writeFile(join(root, 'cifar', 'data_batch_1.bin'), bytes);
  cifar = await openSource(`cifar10:${join(root, 'cifar')}`);

  // An ImageFolder of 12 random 20x16 JPEGs over two classes, plus bad files in class b.
  for (const cls of ['a', 'b']) await mkdir(join(root, 'folder', 'train', cls), { recursive: true });
  for (let i = 0; i < 12; i++) {
    const px = Uint8Array.from({ length: 20 * 16 * 3 }, () => randInt(rand, 0, 255));
    const jpeg = await sharp(px, { raw: { width: 20, height: 16, channels: 3 } }).jpeg().toBuffer();
    await writeFile(join(root, 'folder', 'train', i < 6 ? 'a' : 'b', `${i}.jpg`), jpeg);
    if (i === 11) await writeFile(join(root, 'folder', 'train', 'b', 'cut.jpg'), jpeg.subarray(0, jpeg.length / 2));
  }
  await writeFile(join(root, 'folder', 'train', 'b', 'empty.jpg'), new Uint8Array(0));
  await writeFile(join(root, 'folder', 'train', 'b', 'noise.jpg'), randomBytes(500));
  folder = await openSource(`imagenet:${join(root, 'folder')}`);
});
afterAll(() => rm(root, { recursive: true, force: true }));

const options = (o: Partial<LoaderOptions> = {}): LoaderOptions => ({
  source: cifar,
  split: 'train',
  batchSize: 16,
  shuffle: true,
  seed: 5,
  transform: cifarAugment(),
  ...o,
});

describe('createLoader', () => {
  it('yields NCHW batches that cover the epoch once, in an order fixed by (seed, epoch)', async () => {
    const a = await createLoader(options());
    expect([a.samples, a.batches]).toEqual([N, 4]);
    const epoch0 = await take(a);
    expect(epoch0.map((b) => b.shape)).toEqual([[16, 3, 32, 32], [16, 3, 32, 32], [16, 3, 32, 32], [2, 3, 32, 32]]);
    const indices = epoch0.flatMap((b) => b.indices);
    expect([...indices].sort((x, y) => x - y)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(indices).not.toEqual(Array.from({ length: N }, (_, i) => i));
    for (const b of epoch0) expect([...b.labels]).toEqual(b.indices.map((i) => i % 10));
    expect(a.state()).toEqual({ epoch: 1, position: 0 });
    const epoch1 = await take(a);
    expect(epoch1.flatMap((b) => b.indices)).not.toEqual(indices);

    const again = await take(await createLoader(options()));
    expect(again).toEqual(epoch0);
    const otherSeed = await take(await createLoader(options({ seed: 6 })));
    expect(otherSeed.flatMap((b) => b.indices)).not.toEqual(indices);
  });

  it('puts each sample where its index says, normalised, in NCHW', async () => {
    const t: Transform = { steps: [], mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    const [batch] = await take(await createLoader(options({ transform: t, batchSize: 8 })), 1);
    const train = await cifar.split('train');
    if (train.kind !== 'planes') throw new Error('expected planes');
    for (const [j, index] of batch.indices.entries()) {
      for (const at of [0, 1023, 1024, 3071]) {
        expect(batch.images[j * 3072 + at]).toBeCloseTo(train.pixels[index * 3072 + at] / 127.5 - 1, 6);
      }
    }
  });

  it('resumes mid-epoch from state() with exactly the remaining samples', async () => {
    const full = await take(await createLoader(options({ state: { epoch: 3, position: 0 } })));
    const first = await createLoader(options({ state: { epoch: 3, position: 0 } }));
    const head = await take(first, 2);
    expect(first.state()).toEqual({ epoch: 3, position: 32 });
    const resumed = await take(await createLoader(options({ state: first.state() })));
    expect([...head, ...resumed]).toEqual(full);
    // The same loader, iterated again, continues where the loop left it.
    expect(await take(first)).toEqual(resumed);
    expect(first.state()).toEqual({ epoch: 4, position: 0 });
  });

  it('holds back decoding until batches are taken (bounded prefetch)', async () => {
    for (const prefetch of [1, 2, 3]) {
      const loader = await createLoader(options({ batchSize: 4, prefetch }));
      const it = loader[Symbol.asyncIterator]();
      await it.next();
      await new Promise((r) => setTimeout(r, 30));
      expect(loader.report().decoded).toBe(4 * prefetch);
      await it.return?.(undefined);
    }
  });

  it('splits an epoch between ranks, every sample once, global batches as one process would take them', async () => {
    const loaders = await Promise.all([0, 1, 2].map((rank) => createLoader(options({ rank, worldSize: 3, batchSize: 5 }))));
    const batches = await Promise.all(loaders.map((l) => take(l)));
    const shares = batches.map((bs) => bs.flatMap((b) => b.indices));
    expect(shares.map((s) => s.length)).toEqual([17, 17, 16]);
    expect(loaders.map((l) => [l.samples, l.batches])).toEqual([[17, 4], [17, 4], [16, 4]]);
    expect(shares.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
    // Step k of the three ranks together is the k-th batch of 15 of one process's order.
    const single = (await take(await createLoader(options({ batchSize: 15 })))).map((b) => [...b.indices].sort((a, c) => a - c));
    const together = batches[0].map((_, k) => batches.flatMap((bs) => [...bs[k].indices]).sort((a, c) => a - c));
    expect(together).toEqual(single);
  });

  it('evens the batch count when the last global batch has fewer samples than ranks', async () => {
    // 50 = 2 x 24 + 2: rank 2 would have 2 batches to the others' 3, so it takes one sample again.
    const loaders = await Promise.all([0, 1, 2].map((rank) => createLoader(options({ rank, worldSize: 3, batchSize: 8 }))));
    const shares = await Promise.all(loaders.map(async (l) => (await take(l)).map((b) => b.indices.length)));
    expect(shares).toEqual([[8, 8, 1], [8, 8, 1], [8, 8, 1]]);
    const uneven = await createLoader(options({ rank: 2, worldSize: 3, batchSize: 8, evenBatches: false }));
    expect((await take(uneven)).map((b) => b.indices.length)).toEqual([8, 8]);
  });

  it('batches the 10 views of a tenCrop transform together, one label per sample', async () => {
    const t: Transform = { steps: [{ op: 'tenCrop', size: 28 }] };
    const [batch] = await take(await createLoader(options({ transform: t, batchSize: 4, shuffle: false })), 1);
    expect([batch.shape, batch.views, batch.labels.length]).toEqual([[40, 3, 28, 28], 10, 4]);
    const train = await cifar.split('train');
    if (train.kind !== 'planes') throw new Error('expected planes');
    // Sample 2's view 3 is the bottom-right crop: its first pixel is source pixel (4, 4).
    expect(batch.images[(2 * 10 + 3) * 3 * 784] * 255).toBeCloseTo(train.pixels[2 * 3072 + 4 * 32 + 4], 3);
  });

  it('drops the short last batch when asked', async () => {
    const loader = await createLoader(options({ dropLast: true }));
    expect(loader.batches).toBe(3);
    expect((await take(loader)).map((b) => b.shape[0])).toEqual([16, 16, 16]);
  });

  it('decodes files in workers exactly as on the main thread', async () => {
    const t: Transform = { steps: [{ op: 'randomResizedCrop', size: 12 }, { op: 'hflip' }] };
    const o = options({ source: folder, transform: t, batchSize: 5 });
    let pooled: Loader | undefined;
    try {
      pooled = await createLoader({ ...o, workers: 2 });
      const inProcess = await take(await createLoader({ ...o, workers: 0 }));
      expect(await take(pooled)).toEqual(inProcess);
      expect(inProcess.flatMap((b) => b.indices)).toHaveLength(12);
    } finally {
      await pooled?.close();
    }
  });

  it('skips, names and counts bad files without ending the epoch', async () => {
    const skipped: string[] = [];
    const loader = await createLoader(
      options({ source: folder, transform: { steps: [] }, batchSize: 4, workers: 1, onSkip: (s) => skipped.push(s.file!) }),
    );
    try {
      const batches = await take(loader);
      expect(batches.flatMap((b) => b.indices)).toHaveLength(12);
      expect(batches.every((b) => b.shape[2] === 16 && b.shape[3] === 20)).toBe(true);
      const report = loader.report();
      expect(report.decoded).toBe(12);
      expect(report.skipped).toBe(3);
      expect(report.failures.map((f) => f.file!.split('/').pop()).sort()).toEqual(['cut.jpg', 'empty.jpg', 'noise.jpg']);
      const byName = Object.fromEntries(report.failures.map((f) => [f.file!.split('/').pop(), f.reason]));
      expect(byName['cut.jpg']).toMatch(/premature end/i);
      expect(byName['empty.jpg']).toMatch(/empty/);
      expect(byName['noise.jpg']).toMatch(/unsupported image format/);
      expect(skipped.sort()).toEqual(report.failures.map((f) => f.file!).sort());
    } finally {
      await loader.close();
    }
  });

  it('resumes and splits ranks in workers as on the main thread: the same samples, the same pixels', async () => {
    const t: Transform = { steps: [{ op: 'randomResizedCrop', size: 12 }, { op: 'hflip' }] };
    const o = options({ source: folder, transform: t, batchSize: 3 });
    const loaders: Loader[] = [];
    const make = async (more: Partial<LoaderOptions>) => {
      const l = await createLoader({ ...o, workers: 2, ...more });
      loaders.push(l);
      return l;
    };
    try {
      const inProcess = await take(await createLoader({ ...o, workers: 0, state: { epoch: 1, position: 0 } }));
      const first = await make({ state: { epoch: 1, position: 0 } });
      const head = await take(first, 2);
      const resumed = await take(await make({ state: first.state() }));
      expect([...head, ...resumed]).toEqual(inProcess);
      const ranks = await Promise.all([0, 1].map(async (rank) => take(await make({ rank, worldSize: 2, state: { epoch: 1, position: 0 } }))));
      const mainRanks = await Promise.all([0, 1].map(async (rank) => take(await createLoader({ ...o, workers: 0, rank, worldSize: 2, state: { epoch: 1, position: 0 } }))));
      expect(ranks).toEqual(mainRanks);
      expect(ranks.flat().flatMap((b) => b.indices).sort((a, b) => a - b)).toEqual(inProcess.flatMap((b) => b.indices).sort((a, b) => a - b));
    } finally {
      await Promise.all(loaders.map((l) => l.close()));
    }
  });

  it('gives each batch an array of its own, exactly its samples, when some were skipped', async () => {
    const loader = await createLoader(options({ source: folder, transform: { steps: [{ op: 'centerCrop', size: 8 }] }, batchSize: 5, workers: 1 }));
    try {
      const batches = await take(loader);
      expect(batches.flatMap((b) => b.indices)).toHaveLength(12);
      expect(batches.some((b) => b.labels.length < 5 && b !== batches.at(-1))).toBe(true); // a batch lost a bad file
      for (const b of batches) {
        expect(b.images.length).toBe(b.labels.length * 3 * 8 * 8);
        expect(b.images.buffer.byteLength).toBe(b.images.byteLength);
      }
    } finally {
      await loader.close();
    }
  });

  it('refuses a batch of mixed sizes and bad options, naming them', async () => {
    const dir = join(root, 'mixed');
    for (const [name, w] of [['a/0.png', 8], ['a/1.png', 9]] as const) {
      await mkdir(join(dir, 'train', 'a'), { recursive: true });
      await writeFile(join(dir, 'train', name), await sharp({ create: { width: w, height: 8, channels: 3, background: '#000' } }).png().toBuffer());
    }
    const mixed = await openSource(`imagenet:${dir}`);
    await expect(take(await createLoader({ source: mixed, split: 'train', batchSize: 2, workers: 0 }))).rejects.toThrow(
      /sample 1 came out 9x8 but sample 0 8x8; end the transform with a crop/,
    );
    await expect(createLoader(options({ batchSize: 0 }))).rejects.toThrow('createLoader: batchSize 0');
    await expect(createLoader(options({ rank: 2, worldSize: 2 }))).rejects.toThrow('rank 2 is not in [0, 2)');
    await expect(createLoader(options({ state: { epoch: 0, position: 51 } }))).rejects.toThrow('state.position 51 is past the 50 samples');
  });
});
