import { describe, expect, it } from 'vitest';
import { keyedRandom, randInt, type Rand } from './random.js';
import { chw, hwc, plan, validateTransform, writeWindow, type Step, type Transform } from './transforms.js';

/** A reference that runs crop/flip steps one at a time on real pixel arrays (CHW, float, zero padded). */
function naive(img: number[][][], steps: readonly Step[], rand: Rand): number[][][] {
  for (const s of steps) {
    const h = img[0].length;
    const w = img[0][0].length;
    const cropAt = (top: number, left: number, size: number) =>
      img.map((plane) => Array.from({ length: size }, (_, y) => Array.from({ length: size }, (_, x) => plane[top + y]?.[left + x] ?? 0)));
    if (s.op === 'hflip') {
      if (rand() < (s.p ?? 0.5)) img = img.map((plane) => plane.map((row) => [...row].reverse()));
    } else if (s.op === 'randomCrop') {
      const pad = s.padding ?? 0;
      const top = randInt(rand, 0, h + 2 * pad - s.size) - pad;
      img = cropAt(top, randInt(rand, 0, w + 2 * pad - s.size) - pad, s.size);
    } else if (s.op === 'centerCrop') {
      // Python's round((h - size) / 2), which sends halves to the even neighbour.
      const pyRound = (x: number) => (Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x));
      img = cropAt(pyRound((h - s.size) / 2), pyRound((w - s.size) / 2), s.size);
    } else throw new Error(`no reference for ${s.op}`);
  }
  return img;
}

function randomImage(w: number, h: number, rand: Rand): { planes: Uint8Array; nested: number[][][] } {
  const planes = Uint8Array.from({ length: 3 * w * h }, () => randInt(rand, 0, 255));
  const nested = [0, 1, 2].map((c) => Array.from({ length: h }, (_, y) => Array.from({ length: w }, (_, x) => planes[c * w * h + y * w + x])));
  return { planes, nested };
}

describe('plan + writeWindow', () => {
  it('matches running the crop and flip steps one by one, for CHW and HWC layouts', () => {
    const chains: Step[][] = [
      [{ op: 'randomCrop', size: 6, padding: 2 }, { op: 'hflip' }, { op: 'randomCrop', size: 4, padding: 1 }, { op: 'hflip', p: 1 }, { op: 'centerCrop', size: 3 }],
      [{ op: 'hflip', p: 1 }, { op: 'randomCrop', size: 3 }],
      [{ op: 'centerCrop', size: 8 }, { op: 'hflip' }, { op: 'centerCrop', size: 3 }],
      [{ op: 'randomCrop', size: 9, padding: 4 }],
    ];
    const t = (steps: Step[]): Transform => ({ steps, mean: [0.5, 0.25, 0], std: [0.5, 2, 1] });
    for (let trial = 0; trial < 40; trial++) {
      const steps = chains[trial % chains.length];
      const { planes, nested } = randomImage(7, 5, keyedRandom(trial));
      const want = naive(nested, steps, keyedRandom(trial, 1)).flat(2).map((v, i, all) => {
        const c = Math.floor(i / (all.length / 3));
        return (v / 255 - t(steps).mean![c]) / t(steps).std![c];
      });
      const p = plan(steps, 7, 5, keyedRandom(trial, 1));
      expect([p.sourceWidth, p.sourceHeight]).toEqual([7, 5]);
      const fromPlanes = new Float32Array(want.length);
      writeWindow(planes, chw(7, 5), p, t(steps), fromPlanes);
      const interleaved = Uint8Array.from({ length: planes.length }, (_, i) => planes[(i % 3) * 35 + Math.floor(i / 3)]);
      const fromRows = new Float32Array(want.length);
      writeWindow(interleaved, hwc(7), p, t(steps), fromRows);
      for (let i = 0; i < want.length; i++) {
        expect(fromPlanes[i]).toBeCloseTo(want[i], 5);
        expect(fromRows[i]).toBe(fromPlanes[i]);
      }
    }
  });

  it('follows torchvision for Resize then CenterCrop, rounding halves to even', () => {
    // 500x375: shorter side 375 -> 256, longer int(256 * 500 / 375) = 341; crop left round(58.5) = 58, top 16.
    const p = plan([{ op: 'resize', size: 256 }, { op: 'centerCrop', size: 224 }], 500, 375, keyedRandom(0));
    expect(p).toEqual({ sourceWidth: 341, sourceHeight: 256, left: 58, top: 16, width: 224, height: 224, flip: false, clip: [58, 16, 282, 240] });
    const tall = plan([{ op: 'resize', size: 10 }], 20, 31, keyedRandom(0));
    expect([tall.sourceWidth, tall.sourceHeight, tall.width, tall.height]).toEqual([10, 15, 10, 15]);
  });

  it('draws CIFAR crops from every offset in [-4, 4] and flips about half the time', () => {
    const lefts = new Set<number>();
    let flips = 0;
    for (let i = 0; i < 2000; i++) {
      const p = plan([{ op: 'randomCrop', size: 32, padding: 4 }, { op: 'hflip' }], 32, 32, keyedRandom(0, 0, i));
      lefts.add(p.left);
      expect(Math.abs(p.top)).toBeLessThanOrEqual(4);
      flips += +p.flip;
    }
    expect([...lefts].sort((a, b) => a - b)).toEqual([-4, -3, -2, -1, 0, 1, 2, 3, 4]);
    expect(Math.abs(flips - 1000)).toBeLessThan(100);
  });

  it('keeps the scale augmentation shorter side in [256, 480] and the crop inside it', () => {
    const sides = new Set<number>();
    for (let i = 0; i < 3000; i++) {
      const p = plan([{ op: 'randomResize', min: 256, max: 480 }, { op: 'randomCrop', size: 224 }], 400, 300, keyedRandom(1, 0, i));
      sides.add(p.sourceHeight);
      expect(p.sourceWidth).toBe(Math.floor((p.sourceHeight * 400) / 300));
      expect(p.left).toBeGreaterThanOrEqual(0);
      expect(p.left + 224).toBeLessThanOrEqual(p.sourceWidth);
      expect(p.top + 224).toBeLessThanOrEqual(p.sourceHeight);
    }
    expect(Math.min(...sides)).toBe(256);
    expect(Math.max(...sides)).toBe(480);
    expect(sides.size).toBeGreaterThan(200);
  });

  it('keeps RandomResizedCrop windows inside the image, within its scale and ratio ranges', () => {
    for (let i = 0; i < 500; i++) {
      const p = plan([{ op: 'randomResizedCrop', size: 224, scale: [0.2, 0.9] }], 640, 480, keyedRandom(2, 0, i));
      // The window in source pixels: the output size over the resampling scale.
      const w = (224 * 640) / p.sourceWidth;
      const h = (224 * 480) / p.sourceHeight;
      const x = (p.left * 640) / p.sourceWidth;
      const y = (p.top * 480) / p.sourceHeight;
      expect([p.width, p.height]).toEqual([224, 224]);
      expect((w * h) / (640 * 480)).toBeGreaterThan(0.2 * 0.97);
      expect((w * h) / (640 * 480)).toBeLessThan(0.9 * 1.03);
      expect(w / h).toBeGreaterThan(0.75 * 0.97);
      expect(w / h).toBeLessThan((4 / 3) * 1.03);
      expect(x).toBeGreaterThan(-1);
      expect(y).toBeGreaterThan(-1);
      expect(x + w).toBeLessThan(641);
      expect(y + h).toBeLessThan(481);
    }
    // A 50:1 strip never holds a window of 8% of its area at a ratio within [3/4, 4/3]: the fallback is its widest central 4:3 crop, 3x2 at left 48.
    const strip = plan([{ op: 'randomResizedCrop', size: 8 }], 100, 2, keyedRandom(0));
    expect([strip.sourceWidth, strip.sourceHeight, strip.left, strip.top]).toEqual([267, 8, 128, 0]);
  });

  it('rejects bad transforms naming the step', () => {
    expect(() => validateTransform({ steps: [{ op: 'centerCrop', size: 0 }] })).toThrow('step 0 (centerCrop): size 0 is not an integer >= 1');
    expect(() => validateTransform({ steps: [{ op: 'resize' } as unknown as Step] })).toThrow('step 0 (resize): size undefined');
    expect(() => validateTransform({ steps: [{ op: 'hflip' }, { op: 'randomResize', min: 9, max: 3 }] })).toThrow('step 1 (randomResize): max 3 is not an integer >= 9');
    expect(() => validateTransform({ steps: [{ op: 'randomResizedCrop', size: 8, scale: [0.5, 0.1] }] })).toThrow('scale 0.5,0.1 is not [lo, hi]');
    expect(() => validateTransform({ steps: [{ op: 'rotate' } as unknown as Step] })).toThrow('step 0 (rotate): unknown op');
    expect(() => validateTransform({ steps: [], mean: [0, 0, 0] })).toThrow('give both mean and std');
    expect(() => validateTransform({ steps: [], mean: [0, 0], std: [1, 1] } as unknown as Transform)).toThrow('mean must be three numbers');
  });
});
