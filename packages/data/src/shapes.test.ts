import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { keyedRandom } from './random.js';
import { drawShape, ensureShapes, SHAPE_CLASSES, SHAPE_SIZE } from './shapes.js';

const roots: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'residual-shapes-'));
  roots.push(d);
  return d;
}
afterAll(() => Promise.all(roots.map((d) => rm(d, { recursive: true, force: true }))));

/**
 * Total variation of the image's row means (profile down y) and column means (profile along x):
 * averaging over the other axis cancels the noise, and a linear gradient adds little.
 */
function profiles(p: Uint8Array): { down: number; along: number } {
  const rows = new Array(SHAPE_SIZE).fill(0);
  const cols = new Array(SHAPE_SIZE).fill(0);
  for (let y = 0; y < SHAPE_SIZE; y++) {
    for (let x = 0; x < SHAPE_SIZE; x++) {
      const i = 3 * (y * SHAPE_SIZE + x);
      const v = p[i] + p[i + 1] + p[i + 2];
      rows[y] += v / SHAPE_SIZE;
      cols[x] += v / SHAPE_SIZE;
    }
  }
  const tv = (a: number[]) => a.slice(1).reduce((s, v, k) => s + Math.abs(v - a[k]), 0);
  return { down: tv(rows), along: tv(cols) };
}

const rgbAt = (p: Uint8Array, k: number) => [p[3 * k], p[3 * k + 1], p[3 * k + 2]];
const l1 = (a: number[], b: number[]) => a.reduce((s, v, c) => s + Math.abs(v - b[c]), 0);

describe('drawShape', () => {
  it('draws stripes across the axis their class names', () => {
    for (let i = 0; i < 20; i++) {
      const h = profiles(drawShape(SHAPE_CLASSES.indexOf('hstripes'), keyedRandom(0, 9, i)));
      const v = profiles(drawShape(SHAPE_CLASSES.indexOf('vstripes'), keyedRandom(0, 9, i)));
      expect(h.down).toBeGreaterThan(1.5 * h.along);
      expect(v.along).toBeGreaterThan(1.5 * v.down);
    }
  });

  it('draws a ring with a hole of background and a circle without one', () => {
    const holes = { ring: 0, circle: 0 };
    for (let i = 0; i < 20; i++) {
      for (const name of ['ring', 'circle'] as const) {
        const p = drawShape(SHAPE_CLASSES.indexOf(name), keyedRandom(5, i));
        // Foreground: pixels far from the corner's colour; their mean position is the shape's centre.
        const corner = rgbAt(p, 0);
        const fg = [0, 0, 0];
        let [sx, sy, n] = [0, 0, 0];
        for (let k = 0; k < SHAPE_SIZE * SHAPE_SIZE; k++) {
          if (l1(rgbAt(p, k), corner) <= 150) continue;
          rgbAt(p, k).forEach((v, c) => (fg[c] += v));
          [sx, sy, n] = [sx + (k % SHAPE_SIZE), sy + Math.floor(k / SHAPE_SIZE), n + 1];
        }
        const centre = rgbAt(p, Math.round(sy / n) * SHAPE_SIZE + Math.round(sx / n));
        if (l1(centre, corner) < l1(centre, fg.map((v) => v / n))) holes[name]++;
      }
    }
    expect(holes).toEqual({ ring: 20, circle: 0 });
  });
});

describe('ensureShapes', () => {
  it('writes an ImageFolder of 32x32 RGB JPEGs, class i % 10, once', async () => {
    const cacheDir = await tmp();
    const dir = await ensureShapes({ cacheDir, train: 30, val: 10, seed: 3 });
    expect(dir).toBe(join(cacheDir, 'builtin-shapes-v1-30-10-3'));
    expect(await readdir(cacheDir)).toEqual(['builtin-shapes-v1-30-10-3']); // no temporary folder left
    for (const [split, count] of [['train', 30], ['val', 10]] as const) {
      expect(await readdir(join(dir, split))).toEqual([...SHAPE_CLASSES]);
      let total = 0;
      for (const [label, cls] of SHAPE_CLASSES.entries()) {
        const files = await readdir(join(dir, split, cls));
        total += files.length;
        for (const f of files) expect(Number.parseInt(f, 10) % 10).toBe(label);
      }
      expect(total).toBe(count);
    }
    const meta = await sharp(join(dir, 'train', 'star', '7.jpg')).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels]).toEqual(['jpeg', 32, 32, 3]);

    const before = (await stat(join(dir, 'train', 'star', '7.jpg'))).mtimeMs;
    expect(await ensureShapes({ cacheDir, train: 30, val: 10, seed: 3 })).toBe(dir);
    expect((await stat(join(dir, 'train', 'star', '7.jpg'))).mtimeMs).toBe(before);
  });

  it('is deterministic for a seed and differs across seeds', async () => {
    const [a, b, c] = await Promise.all([
      tmp().then((cacheDir) => ensureShapes({ cacheDir, train: 10, val: 0, seed: 1 })),
      tmp().then((cacheDir) => ensureShapes({ cacheDir, train: 10, val: 0, seed: 1 })),
      tmp().then((cacheDir) => ensureShapes({ cacheDir, train: 10, val: 0, seed: 2 })),
    ]);
    const bytes = (d: string) => readFile(join(d, 'train', 'cross', '2.jpg'));
    expect((await bytes(a)).equals(await bytes(b))).toBe(true);
    expect((await bytes(a)).equals(await bytes(c))).toBe(false);
  });

  it('uses $RESIDUAL_CACHE when no folder is given, and rejects bad counts', async () => {
    const cacheDir = await tmp();
    const saved = process.env.RESIDUAL_CACHE;
    process.env.RESIDUAL_CACHE = cacheDir;
    try {
      expect(await ensureShapes({ train: 2, val: 1 })).toBe(join(cacheDir, 'builtin-shapes-v1-2-1-0'));
    } finally {
      if (saved === undefined) delete process.env.RESIDUAL_CACHE;
      else process.env.RESIDUAL_CACHE = saved;
    }
    await expect(ensureShapes({ cacheDir, train: -1 })).rejects.toThrow(/builtin:shapes: train -1/);
  });
});
