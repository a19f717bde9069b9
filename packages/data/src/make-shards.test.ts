import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLoader, type Batch } from './loader.js';
import { take } from './loopback.test-support.js';
import { decodeRgb, readPpm } from './decode.js';
import { makeShards } from './make-shards.js';
import { shardSamples } from './shards.js';
import { openSource, type Source } from './sources.js';

let root: string;
let folder: Source;
/** Image bytes by class and file, to check shards against. */
const originals = new Map<string, Buffer>();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'residual-make-shards-'));
  // 3 classes; train has 7 images (one PNG), val 2; pixel value 20 * i tells image i apart.
  for (const [split, count] of [['train', 7], ['val', 2]] as const) {
    for (let i = 0; i < count; i++) {
      const cls = ['ant', 'bee', 'cow'][i % 3];
      const image = sharp({ create: { width: 6, height: 5, channels: 3, background: { r: 20 * i, g: 100, b: split === 'val' ? 200 : 0 } } });
      const name = i === 3 ? `${i}.PNG` : `${i}.jpg`;
      const bytes = await (i === 3 ? image.png() : image.jpeg()).toBuffer();
      await mkdir(join(root, 'tree', split, cls), { recursive: true });
      await writeFile(join(root, 'tree', split, cls, name), bytes);
      originals.set(`${split}/${cls}/${name}`, bytes);
    }
  }
  folder = await openSource(`imagenet:${join(root, 'tree')}`);
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('makeShards', () => {
  it('writes every image once, bytes unchanged, in shuffled shards of a fixed size, and shards.json', async () => {
    const out = join(root, 'out');
    const manifest = await makeShards({ source: folder, out, perShard: 3, seed: 5 });
    expect(manifest).toEqual({
      classes: ['ant', 'bee', 'cow'],
      splits: {
        train: [{ url: 'train-000000.tar', samples: 3 }, { url: 'train-000001.tar', samples: 3 }, { url: 'train-000002.tar', samples: 1 }],
        val: [{ url: 'val-000000.tar', samples: 2 }],
      },
    });
    expect((await readdir(out)).sort()).toEqual(['shards.json', 'train-000000.tar', 'train-000001.tar', 'train-000002.tar', 'val-000000.tar']);
    expect(JSON.parse(await readFile(join(out, 'shards.json'), 'utf8'))).toEqual(manifest);

    // GNU tar reads them, and their members sit in pairs: the image, then its label.
    const listing = spawnSync('tar', ['-tf', join(out, 'train-000000.tar')], { encoding: 'utf8' }).stdout.trim().split('\n');
    expect(listing).toHaveLength(6);
    listing.forEach((name, k) => expect(name).toMatch(k % 2 === 0 ? /^\d{9}\.(jpg|png)$/ : /^\d{9}\.cls$/));
    const extracted = join(root, 'extracted');
    await mkdir(extracted);
    for (const shard of manifest.splits.train!) spawnSync('tar', ['-xf', join(out, shard.url), '-C', extracted]);
    const train = await folder.split('train');
    if (train.kind !== 'files') throw new Error('expected files');
    const members = (await readdir(extracted)).sort();
    expect(members).toHaveLength(14);
    for (const [id, file] of train.files.entries()) {
      const key = String(id).padStart(9, '0');
      const ext = file.endsWith('.PNG') ? 'png' : 'jpg';
      expect(await readFile(join(extracted, `${key}.${ext}`))).toEqual(originals.get(file.slice(join(root, 'tree').length + 1)));
      expect(await readFile(join(extracted, `${key}.cls`), 'utf8')).toBe(String(train.labels[id]));
    }
    // Shuffled: the first shard is not the first three files.
    expect(listing.filter((_, k) => k % 2 === 0).map((n) => Number.parseInt(n, 10))).not.toEqual([0, 1, 2]);
  });

  it('is a pure function of (source, seed), and the loader reads the shards as it reads the tree', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((d) => join(root, d));
    await makeShards({ source: folder, out: a, perShard: 4, seed: 1 });
    await makeShards({ source: folder, out: b, perShard: 4, seed: 1 });
    await makeShards({ source: folder, out: c, perShard: 4, seed: 2 });
    expect(await readFile(join(a, 'train-000000.tar'))).toEqual(await readFile(join(b, 'train-000000.tar')));
    expect(await readFile(join(a, 'train-000000.tar'))).not.toEqual(await readFile(join(c, 'train-000000.tar')));

    const samples = async (source: Source) => {
      const out: string[] = [];
      for await (const batch of await createLoader({ source, split: 'val', batchSize: 4, workers: 0 })) out.push(...fingerprints(batch));
      return out.sort();
    };
    const shards = await openSource(`shards:${a}`);
    expect(shards.splits).toEqual(['train', 'val']);
    expect(await samples(shards)).toEqual(await samples(folder));
  });

  it('refuses a folder that is not empty and a source of raw records', async () => {
    const out = join(root, 'full');
    await mkdir(out);
    await writeFile(join(out, 'x'), 'x');
    await expect(makeShards({ source: folder, out, perShard: 2 })).rejects.toThrow(`makeShards: ${out} is not empty`);
    await expect(makeShards({ source: folder, out: join(root, 'zero'), perShard: 0 })).rejects.toThrow('perShard 0 is not an integer in [1, ');
    await expect(makeShards({ source: folder, out: join(root, 'q'), perShard: 2, maxSide: 8, quality: 101 })).rejects.toThrow('quality 101');
    await expect(makeShards({ source: folder, out: join(root, 'both'), perShard: 2, maxSide: 8, raw: 8 })).rejects.toThrow('not both');
    const cifar = join(root, 'cifar');
    await mkdir(cifar);
    await writeFile(join(cifar, 'data_batch_1.bin'), new Uint8Array(3073));
    await expect(makeShards({ source: await openSource(`cifar10:${cifar}`), out: join(root, 'c10'), perShard: 2 })).rejects.toThrow(
      'holds raw 32x32 records, not image files; shard them with raw 32',
    );
  });

  it('re-encodes with maxSide: upright, shorter side at most maxSide, never enlarged; read in the same order', async () => {
    const dir = join(root, 'photos');
    // 60x40 turned upright by EXIF (orientation 6: shown 40x60), 30x20, and 16x16 CMYK.
    const shapes = [
      sharp({ create: { width: 60, height: 40, channels: 3, background: '#c83' } }).jpeg().withMetadata({ orientation: 6 }),
      sharp({ create: { width: 30, height: 20, channels: 3, background: '#38c' } }).jpeg(),
      sharp({ create: { width: 16, height: 16, channels: 3, background: '#3c8' } }).toColourspace('cmyk').jpeg(),
    ];
    for (const [i, image] of shapes.entries()) {
      await mkdir(join(dir, 'train', `c${i}`), { recursive: true });
      await writeFile(join(dir, 'train', `c${i}`, `${i}.jpg`), await image.toBuffer());
    }
    const source = await openSource(`imagenet:${dir}`);
    const out = join(root, 'photos-shards');
    const manifest = await makeShards({ source, out, perShard: 2, seed: 3, maxSide: 24, quality: 80 });
    expect(manifest.jpeg).toEqual({ maxSide: 24, quality: 80 });
    const sizes = new Map<string, [number, number, number]>();
    for (const shard of manifest.splits.train!) {
      for await (const s of shardSamples(join(out, shard.url))) {
        const meta = await sharp(s.image!).metadata();
        sizes.set(s.key, [meta.width, meta.height, meta.orientation ?? 1]);
        expect([meta.format, meta.isProgressive, meta.space]).toEqual(['jpeg', false, 'srgb']);
      }
    }
    // 40x60 shown: shorter side 40 -> 24 (24x36); 30x20 and 16x16 have shorter sides below 24: kept.
    expect(Object.fromEntries(sizes)).toEqual({ '000000000': [24, 36, 1], '000000001': [30, 20, 1], '000000002': [16, 16, 1] });
    // The 30x20 baseline JPEG is stored byte for byte; the CMYK one is not (it decodes dearer).
    const stored = new Map<string, Uint8Array>();
    for (const shard of manifest.splits.train!) for await (const s of shardSamples(join(out, shard.url))) stored.set(s.key, s.image!);
    expect(Buffer.from(stored.get('000000001')!)).toEqual(await readFile(join(dir, 'train', 'c1', '1.jpg')));
    expect(Buffer.from(stored.get('000000002')!)).not.toEqual(await readFile(join(dir, 'train', 'c2', '2.jpg')));

    // The loader reads them exactly as it reads the original bytes' shards: same order, same resumption.
    const plainShards = join(root, 'photos-plain');
    await makeShards({ source, out: plainShards, perShard: 2, seed: 3 });
    const order = async (spec: string, state?: { epoch: number; position: number }) => {
      const loader = await createLoader({ source: await openSource(spec), split: 'train', batchSize: 1, shuffle: true, seed: 9, state, workers: 0, transform: { steps: [{ op: 'centerCrop', size: 8 }] } });
      const seen: number[][] = [];
      for await (const b of loader) seen.push([b.indices[0], b.labels[0]]);
      return seen;
    };
    const whole = await order(`shards:${out}`);
    expect(whole).toEqual(await order(`shards:${plainShards}`));
    expect(await order(`shards:${out}`, { epoch: 0, position: 1 })).toEqual(whole.slice(1));
  });

  it('stores decoded pixels with format ppm: exactly the tree\'s pixels where small enough, and the tree\'s batches', async () => {
    const dir = join(root, 'ppm-photos');
    // Noise, so resampling shows: 20x14 and 14x18 (shorter sides below maxSide 16 -> stored exactly),
    // 40x30 (shrunk to shorter side 16), one 18x12 grayscale, one PNG with alpha.
    const noise = (w: number, h: number, c: number) => sharp(Buffer.from(Array.from({ length: w * h * c }, (_, i) => (i * 7919 + (i >> 3) * 31) & 255)), { raw: { width: w, height: h, channels: c as 3 } });
    const files: [string, Promise<Buffer>][] = [
      ['a.jpg', noise(20, 14, 3).jpeg({ quality: 85 }).toBuffer()],
      ['b.jpg', noise(14, 18, 3).jpeg({ quality: 85 }).toBuffer()],
      ['c.jpg', noise(40, 30, 3).jpeg({ quality: 85 }).toBuffer()],
      ['d.jpg', noise(18, 12, 1).jpeg().toBuffer()],
      ['e.png', noise(15, 13, 4).png().toBuffer()],
    ];
    for (const [i, [name, bytes]] of files.entries()) {
      await mkdir(join(dir, 'train', `c${i % 2}`), { recursive: true });
      await writeFile(join(dir, 'train', `c${i % 2}`, name), await bytes);
    }
    const source = await openSource(`imagenet:${dir}`);
    const out = join(root, 'ppm-shards');
    const manifest = await makeShards({ source, out, perShard: 2, seed: 4, maxSide: 16, format: 'ppm' });
    expect(manifest.ppm).toEqual({ maxSide: 16 });
    expect(manifest.jpeg).toBeUndefined();
    const train = await source.split('train');
    if (train.kind !== 'files') throw new Error('expected files');
    const seen = new Map<string, Uint8Array>();
    const fileAt: string[] = []; // by the loader's index: position in the shards, in order
    for (const shard of manifest.splits.train!) {
      for await (const s of shardSamples(join(out, shard.url))) {
        seen.set(s.key, s.image!);
        fileAt.push(train.files[Number(s.key)]);
      }
    }
    expect(seen.size).toBe(5);
    for (const [id, file] of train.files.entries()) {
      const ppm = readPpm(seen.get(String(id).padStart(9, '0'))!)!;
      // The member is a plain binary PPM: the netpbm header, then the rows.
      const member = seen.get(String(id).padStart(9, '0'))!;
      const head = `P6\n${ppm.width} ${ppm.height}\n255\n`;
      expect(new TextDecoder().decode(member.subarray(0, head.length))).toBe(head);
      expect(member.length).toBe(head.length + 3 * ppm.width * ppm.height);
      const decoded = await decodeRgb(await readFile(file));
      if (file.endsWith('c.jpg')) {
        expect([ppm.width, ppm.height]).toEqual([21, 16]); // 40x30 with its shorter side at 16
      } else {
        expect([ppm.width, ppm.height]).toEqual([decoded.width, decoded.height]);
        expect(Buffer.from(ppm.data)).toEqual(Buffer.from(decoded.data));
      }
    }

    // The paper's augmentation at this scale: every view of a stored-exactly image is the tree's, bit
    // for bit, enlarged or reduced; in workers or not; and the order and resumption are the tree shards'.
    const transform = { steps: [{ op: 'randomResize', min: 10, max: 24 }, { op: 'randomCrop', size: 9 }, { op: 'hflip' }], mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] } as const;
    const plain = join(root, 'ppm-plain');
    await makeShards({ source, out: plain, perShard: 2, seed: 4 });
    const batches = async (spec: string, workers: number, state?: { epoch: number; position: number }) => {
      const loader = await createLoader({ source: await openSource(spec), split: 'train', batchSize: 2, shuffle: true, seed: 6, workers, transform, shuffleBuffer: 3, state });
      const all: Batch[] = [];
      for (let epoch = 0; epoch < 3; epoch++) for await (const b of loader) all.push(b);
      await loader.close();
      return all;
    };
    const want = await batches(`shards:${plain}`, 0);
    let [exact, near] = [0, 0];
    for (const workers of [0, 1]) {
      const got = await batches(`shards:${out}`, workers);
      expect(got.map((b) => [...b.indices])).toEqual(want.map((b) => [...b.indices]));
      got.forEach((b, k) =>
        b.indices.forEach((index, j) => {
          const size = 3 * 9 * 9;
          const [mine, theirs] = [b.images.subarray(j * size, (j + 1) * size), want[k].images.subarray(j * size, (j + 1) * size)];
          const file = fileAt[index];
          // Exactly the tree's pixels -> its views: bit for bit where enlarged (the same kernel), and
          // within 2 levels of 255 where reduced (PIL's filter in floats, against libvips' to 8 bits).
          // Not the shrunk one (resampled twice), nor the PNG with alpha: libvips resizes it
          // premultiplied before dropping the alpha, the PPM holds it dropped first (as PIL does).
          if (file.endsWith('c.jpg') || file.endsWith('e.png')) expect(mine.every(Number.isFinite)).toBe(true);
          else if (mine.every((v, i) => v === theirs[i])) exact++;
          else {
            mine.forEach((v, i) => expect(Math.abs(v - theirs[i]) * 255 * transform.std[Math.floor(i / 81)]).toBeLessThan(2));
            near++;
          }
        }),
      );
    }
    expect([exact > 4, near > 4]).toEqual([true, true]);
    const resumed = await batches(`shards:${out}`, 0, { epoch: 1, position: 2 });
    expect(resumed.slice(0, 5).map((b) => [...b.indices])).toEqual(want.slice(4).map((b) => [...b.indices]));

    await expect(makeShards({ source, out: join(root, 'ppm-q'), perShard: 2, maxSide: 16, format: 'ppm', quality: 80 })).rejects.toThrow('quality applies to JPEG');
    await expect(makeShards({ source, out: join(root, 'ppm-nomax'), perShard: 2, format: 'ppm' })).rejects.toThrow('format "ppm" needs maxSide');
  });

  it('stores raw CHW pixels with raw, which the loader reads without decoding, in workers or not', async () => {
    const cifar = join(root, 'cifar-raw');
    await mkdir(cifar);
    const records = new Uint8Array(5 * 3073).map((_, i) => (i % 3073 === 0 ? (i / 3073) % 10 : (i * 13) & 255));
    await writeFile(join(cifar, 'data_batch_1.bin'), records);
    const source = await openSource(`cifar10:${cifar}`);
    const out = join(root, 'cifar-shards');
    const manifest = await makeShards({ source, out, perShard: 2, raw: 32 });
    expect(manifest.raw).toEqual({ width: 32, height: 32 });
    const shards = await openSource(`shards:${out}`);
    const keys: number[] = [];
    for (const shard of manifest.splits.train!) for await (const s of shardSamples(join(out, shard.url))) keys.push(Number(s.key));
    for (const workers of [0, 2]) {
      const loader = await createLoader({ source: shards, split: 'train', batchSize: 5, workers });
      const [batch] = await take(loader);
      await loader.close();
      // Stream order holds record keys[j]: its label, and its pixels / 255 in CHW.
      expect(Array.from(batch.labels)).toEqual(keys.map((k) => records[k * 3073]));
      keys.forEach((k, j) => {
        const want = Array.from(records.subarray(k * 3073 + 1, (k + 1) * 3073), (v) => v / 255);
        expect(Array.from(batch.images.subarray(j * 3072, (j + 1) * 3072))).toEqual(want.map((v) => expect.closeTo(v, 6)));
      });
    }
    // Images are resized and centre-cropped to the raw size.
    const fromImages = await makeShards({ source: folder, out: join(root, 'folder-raw'), perShard: 4, raw: 4 });
    const [first] = fromImages.splits.train!;
    for await (const s of shardSamples(join(root, 'folder-raw', first.url))) expect(s.pixels).toHaveLength(3 * 4 * 4);
  });
});

/** Each sample of a batch as "label:first pixel values", to compare data sets regardless of order. */
function fingerprints(batch: Batch): string[] {
  const size = batch.images.length / batch.labels.length;
  return Array.from(batch.labels, (label, j) => `${label}:${Array.from(batch.images.subarray(j * size, j * size + 3)).join(',')}`);
}
