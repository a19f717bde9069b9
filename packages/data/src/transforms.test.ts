import { describe, expect, it } from 'vitest';
import { keyedRandom, randInt, type Rand } from './random.js';
import { decodeSample } from './decode.js';
import { chw, hwc, IMAGENET_PCA, lightingShift, plan, scaleAugment, tenCropEval, validateTransform, writeWindow, type Step, type Transform } from './transforms.js';

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
      const [p] = plan(steps, 7, 5, keyedRandom(trial, 1));
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
    const [p] = plan([{ op: 'resize', size: 256 }, { op: 'centerCrop', size: 224 }], 500, 375, keyedRandom(0));
    expect(p).toEqual({ sourceWidth: 341, sourceHeight: 256, left: 58, top: 16, width: 224, height: 224, flip: false, clip: [58, 16, 282, 240] });
    const [tall] = plan([{ op: 'resize', size: 10 }], 20, 31, keyedRandom(0));
    expect([tall.sourceWidth, tall.sourceHeight, tall.width, tall.height]).toEqual([10, 15, 10, 15]);
  });

  it('draws CIFAR crops from every offset in [-4, 4] and flips about half the time', () => {
    const lefts = new Set<number>();
    let flips = 0;
    for (let i = 0; i < 2000; i++) {
      const [p] = plan([{ op: 'randomCrop', size: 32, padding: 4 }, { op: 'hflip' }], 32, 32, keyedRandom(0, 0, i));
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
      const [p] = plan([{ op: 'randomResize', min: 256, max: 480 }, { op: 'randomCrop', size: 224 }], 400, 300, keyedRandom(1, 0, i));
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
      const [p] = plan([{ op: 'randomResizedCrop', size: 224, scale: [0.2, 0.9] }], 640, 480, keyedRandom(2, 0, i));
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
    const [strip] = plan([{ op: 'randomResizedCrop', size: 8 }], 100, 2, keyedRandom(0));
    expect([strip.sourceWidth, strip.sourceHeight, strip.left, strip.top]).toEqual([267, 8, 128, 0]);
  });

  it('rejects bad transforms naming the step', () => {
    expect(() => validateTransform({ steps: [{ op: 'centerCrop', size: 0 }] })).toThrow('step 0 (centerCrop): size 0 is not an integer >= 1');
    expect(() => validateTransform({ steps: [{ op: 'resize' } as unknown as Step] })).toThrow('step 0 (resize): size undefined');
    expect(() => validateTransform({ steps: [{ op: 'hflip' }, { op: 'randomResize', min: 9, max: 3 }] })).toThrow('step 1 (randomResize): max 3 is not an integer >= 9');
    expect(() => validateTransform({ steps: [{ op: 'randomResizedCrop', size: 8, scale: [0.5, 0.1] }] })).toThrow('scale 0.5,0.1 is not [lo, hi]');
    expect(() => validateTransform({ steps: [{ op: 'rotate' } as unknown as Step] })).toThrow('step 0 (rotate): unknown op');
    expect(() => validateTransform({ steps: [{ op: 'tenCrop', size: 2 }, { op: 'hflip' }] })).toThrow('step 0 (tenCrop): must be the last step');
    expect(() => validateTransform({ steps: [], lighting: { ...IMAGENET_PCA, eigval: [1, 2] } as unknown as Transform['lighting'] })).toThrow('lighting needs');
    expect(() => validateTransform({ steps: [], mean: [0, 0, 0] })).toThrow('give both mean and std');
    expect(() => validateTransform({ steps: [], mean: [0, 0], std: [1, 1] } as unknown as Transform)).toThrow('mean must be three numbers');
  });
});

describe('tenCrop', () => {
  it("gives torchvision's ten_crop: the corners and centre, then those of the mirrored image", () => {
    const { planes, nested } = randomImage(7, 6, keyedRandom(5));
    const size = 3;
    const cropAt = (img: number[][][], top: number, left: number) => img.map((pl) => pl.slice(top, top + size).map((row) => row.slice(left, left + size)));
    const mirrored = nested.map((pl) => pl.map((row) => [...row].reverse()));
    // five_crop's corners, then center_crop at round((6 - 3) / 2) = 2 (half to even), round((7 - 3) / 2) = 2.
    const five = (img: number[][][]) => [cropAt(img, 0, 0), cropAt(img, 0, 4), cropAt(img, 3, 0), cropAt(img, 3, 4), cropAt(img, 2, 2)];
    const want = [...five(nested), ...five(mirrored)].flatMap((v) => v.flat(2).map((x) => x / 255));
    const views = plan([{ op: 'tenCrop', size }], 7, 6, keyedRandom(0));
    expect(views).toHaveLength(10);
    const got = new Float32Array(want.length);
    views.forEach((p, v) => writeWindow(planes, chw(7, 6), p, { steps: [] }, got.subarray(v * 27, (v + 1) * 27)));
    got.forEach((x, i) => expect(x).toBeCloseTo(want[i], 6));
    expect(() => plan([{ op: 'tenCrop', size: 7 }], 7, 6, keyedRandom(0))).toThrow('tenCrop 7 is larger than the 7x6 image');
  });

  it('resamples once for all ten views (tenCropEval)', async () => {
    const { planes } = randomImage(40, 30, keyedRandom(6));
    const t = tenCropEval({ mean: [0, 0, 0], std: [1, 1, 1] }, 20, 16);
    const d = await decodeSample({ kind: 'planes', pixels: planes, width: 40, height: 30 }, 0, 0, { transform: t, seed: 0, limitInputPixels: 1e9 });
    expect([d.views, d.width, d.height, d.data.length]).toEqual([10, 16, 16, 10 * 3 * 16 * 16]);
    // View 5 (the mirror's top left) is view 1 (top right) mirrored.
    const at = (v: number, c: number, y: number, x: number) => d.data[v * 768 + c * 256 + y * 16 + x];
    for (const [c, y, x] of [[0, 0, 0], [1, 7, 3], [2, 15, 15]]) expect(at(5, c, y, x)).toBe(at(1, c, y, 15 - x));
  });
});

describe('PCA lighting', () => {
  const lighting = { alphaStd: 0.1, eigval: [0.3, 0.02, 0.005], eigvec: IMAGENET_PCA.eigvec } as const;

  it('shifts along the eigenvectors by alpha * eigval, alpha ~ N(0, alphaStd^2) per component', () => {
    const alphas: number[][] = [];
    for (let i = 0; i < 4000; i++) {
      const shift = lightingShift({ steps: [], lighting }, keyedRandom(7, i));
      // Project back: the (nearly orthonormal) eigenvectors' columns give alpha_k * eigval_k.
      alphas.push([0, 1, 2].map((k) => [0, 1, 2].reduce((a, c) => a + lighting.eigvec[c][k] * shift[c], 0) / lighting.eigval[k]));
    }
    for (let k = 0; k < 3; k++) {
      const xs = alphas.map((a) => a[k]);
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
      expect(Math.abs(mean)).toBeLessThan(0.01);
      expect(std).toBeGreaterThan(0.095);
      expect(std).toBeLessThan(0.105);
    }
    expect(lightingShift({ steps: [] }, keyedRandom(0))).toEqual([0, 0, 0]);
  });

  it('adds one shift per channel to every pixel before normalisation, drawn after the geometric steps', async () => {
    const { planes } = randomImage(32, 32, keyedRandom(8));
    const base: Transform = { steps: [{ op: 'randomCrop', size: 28, padding: 2 }, { op: 'hflip' }], mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] };
    const input = { kind: 'planes', pixels: planes, width: 32, height: 32 } as const;
    const o = { seed: 3, limitInputPixels: 1e9 };
    const plain = await decodeSample(input, 1, 2, { ...o, transform: base });
    const lit = await decodeSample(input, 1, 2, { ...o, transform: { ...base, lighting } });
    const rand = keyedRandom(3, 1, 2);
    plan(base.steps, 32, 32, rand);
    const shift = lightingShift({ ...base, lighting }, rand);
    for (let c = 0; c < 3; c++) {
      for (const i of [0, 100, 783]) expect(lit.data[c * 784 + i] - plain.data[c * 784 + i]).toBeCloseTo(shift[c] / base.std![c], 5);
    }
    expect(shift.some((x) => Math.abs(x) > 1e-4)).toBe(true);
    expect(scaleAugment(undefined, 256, 480, 224, IMAGENET_PCA).lighting).toBe(IMAGENET_PCA);
    expect(scaleAugment()).not.toHaveProperty('lighting');
  });
});
