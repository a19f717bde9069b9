import { conv2d, conv2dGeometry, nextVersion, OPS, setBackend, SGD, sizeOf, tensor, type Conv2dGeometry, type OpName, type Shape } from '@residual/core';
import { expectClose, ref, refTensor, RTOL } from '@residual/core/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { winogradBackwardFilter, winogradConv2d, winogradPanelsConv2d } from './conv.js';
import { createCpuBackend, type CpuStorage } from './index.js';
import { TransformCache } from './transform-cache.js';
import { fmaSupported, Wasm } from './wasm.js';

/** Values in [-1, 1) from a fixed LCG. */
const rand = (n: number, seed: number): Float32Array => {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
};

const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** Direct float64 convolution, with Σ|x·w| over each output's taps beside it (the scale of its rounding error). */
const direct = (x: Float32Array, w: Float32Array, g: Conv2dGeometry) => {
  const { batch, inChannels: C, inH: H, inW: W, outChannels: K, outH: OH, outW: OW } = g;
  const y = new Float64Array(batch * K * OH * OW);
  const abs = new Float64Array(y.length);
  for (let n = 0; n < batch; n++)
    for (let k = 0; k < K; k++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let s = 0;
          let a = 0;
          for (let c = 0; c < C; c++)
            for (let r = 0; r < 3; r++)
              for (let q = 0; q < 3; q++) {
                const ih = oh - g.padTop + r;
                const iw = ow - g.padLeft + q;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const p = x[((n * C + c) * H + ih) * W + iw] * w[((k * C + c) * 3 + r) * 3 + q];
                s += p;
                a += Math.abs(p);
              }
          const o = ((n * K + k) * OH + oh) * OW + ow;
          y[o] = s;
          abs[o] = a;
        }
  return { y, abs };
};

/** The filter gradient dw [K, C, 3, 3] = Σ dy·x over images and outputs in float64, with Σ|dy·x| beside it. */
const directFilterGrad = (x: Float32Array, dy: Float32Array, g: Conv2dGeometry) => {
  const { batch, inChannels: C, inH: H, inW: W, outChannels: K, outH: OH, outW: OW } = g;
  const dw = new Float64Array(K * C * 9);
  const abs = new Float64Array(dw.length);
  for (let k = 0; k < K; k++)
    for (let c = 0; c < C; c++)
      for (let r = 0; r < 3; r++)
        for (let q = 0; q < 3; q++) {
          let s = 0;
          let a = 0;
          for (let n = 0; n < batch; n++)
            for (let oh = 0; oh < OH; oh++)
              for (let ow = 0; ow < OW; ow++) {
                const ih = oh - g.padTop + r;
                const iw = ow - g.padLeft + q;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const p = x[((n * C + c) * H + ih) * W + iw] * dy[((n * K + k) * OH + oh) * OW + ow];
                s += p;
                a += Math.abs(p);
              }
          dw[((k * C + c) * 3 + r) * 3 + q] = s;
          abs[((k * C + c) * 3 + r) * 3 + q] = a;
        }
  return { dw, abs };
};

/**
 * The error bounds, in units of Σ|x·w| (direct summation's error scale), ε the f32 unit roundoff.
 * F(2x2, 3x3) sums, per output and input channel, 9 transformed products (M combined by Aᵀ·A)
 * instead of 9 taps. A transformed input is a ±sum of up to 4 pixels and a transformed filter tap a
 * sum of taps weighted at most 1·1.5, so a transformed product is at most 4·2.25 = 9 times a tap
 * product. Each output sees C + 3 (input transform) + 4 (output transform) roundings, with random
 * signs, so the error grows like their square root: |got - want| <= 16·ε·sqrt(C + 7)·Σ|x·w|.
 * Measured worst: 1.8·ε·sqrt(C + 7)·Σ|x·w| (C = 4, pad 2), 0.2 at C = 64.
 * F(4x4, 3x3)'s transforms have entries up to 5 (Bᵀ) and 8 (Aᵀ), so the same reasoning gives a bound
 * too loose to catch anything; its bound is the measured worst, 19·ε·sqrt(C + 7)·Σ|x·w| (C = 4, pad
 * 2; 8 at C = 16; its filter transform rounds in f32), times 4. Both must also pass the conformance kit's tolerance, RTOL·sqrt(9C)·(|want|
 * + max|x|·max|w|): measured worst 0.03 of it for F(2x2, 3x3), 0.43 for F(4x4, 3x3).
 */
const bound = {
  2: (abs: number, C: number) => 16 * 2 ** -24 * Math.sqrt(C + 7) * abs,
  4: (abs: number, C: number) => 64 * 2 ** -24 * Math.sqrt(C + 7) * abs,
};

/**
 * The filter gradient's bounds. dw = Gᵀ·dU·G mixes all 9 taps of a (k, c) pair, so its scale is
 * the largest of their Σ|dy·x|; dU sums N·⌈OH/m⌉·⌈OW/m⌉ tile products with random rounding signs.
 * For F(2x2, 3x3) a tile product is within 4·4 of tap products (A·dy·Aᵀ sums up to 4 gradients, the
 * input transform up to 4 pixels): |got - want| <= 4·ε·sqrt(N·OH·OW)·max_taps Σ|dy·x|, measured
 * worst 0.9 (a 1x1 image). F(4x4, 3x3)'s is the measured worst, 1.2 (C = 4, pad 2), times 8. Both
 * must also pass the conformance kit's tolerance, RTOL·sqrt(N·OH·OW)·(|want| + max|x|·max|dy|):
 * measured worst 0.02 of it for F(2x2, 3x3), 0.18 for F(4x4, 3x3).
 */
const filterBound = {
  2: (taps: number, g: Conv2dGeometry) => 4 * 2 ** -24 * Math.sqrt(g.batch * g.outH * g.outW) * taps,
  4: (taps: number, g: Conv2dGeometry) => 8 * 2 ** -24 * Math.sqrt(g.batch * g.outH * g.outW) * taps,
};

const cases: [string, number[], number[], number][] = [
  ['ResNet stage 1: 16 channels at 32x32', [2, 16, 32, 32], [16, 16, 3, 3], 1],
  ['ResNet stage 2: 32 channels at 16x16', [3, 32, 16, 16], [32, 32, 3, 3], 1],
  ['ResNet stage 3: 64 channels at 8x8', [4, 64, 8, 8], [64, 64, 3, 3], 1],
  ['odd 7x5 images, C=3, K=5 (edge tiles, partial register tiles)', [3, 3, 7, 5], [5, 3, 3, 3], 1],
  ['odd 9x11 images, no padding', [2, 5, 9, 11], [6, 5, 3, 3], 0],
  ['padding 2: outputs grow past the input', [1, 4, 5, 6], [7, 4, 3, 3], 2],
  ['1x1 image', [2, 3, 1, 1], [4, 3, 3, 3], 1],
  ['odd 15x13 images, K=13, large enough to split over threads', [8, 24, 15, 13], [13, 24, 3, 3], 1],
  // Rows of tiles that four-tile groups straddle (7 2x2 or 3.5 4x4 tiles to a row), and images whose
  // tile count is no multiple of 4, so groups run on into the next row or image: ResNet-50's widths.
  ['14x14 images, batch 2', [2, 4, 14, 14], [5, 4, 3, 3], 1],
  ['28x28 images, C=8', [1, 8, 28, 28], [8, 8, 3, 3], 1],
  ['56x56 image, C=3, K=4', [1, 3, 56, 56], [4, 3, 3, 3], 1],
  ['7x7 images, batch 2', [2, 6, 7, 7], [7, 6, 3, 3], 1],
  ['9x7 images, batch 3', [3, 5, 9, 7], [4, 5, 3, 3], 1],
];

describe('Winograd conv against a direct float64 loop', () => {
  const fmas = fmaSupported() ? [false, true] : [false];
  const forms = [
    ['F(2x2, 3x3)', 2, winogradConv2d],
    ['F(4x4, 3x3)', 4, winogradConv2d],
    ['F(2x2, 3x3) by filter panels', 2, winogradPanelsConv2d],
    ['F(4x4, 3x3) by filter panels', 4, winogradPanelsConv2d],
  ] as const;
  for (const [form, m, conv] of forms)
    for (const [name, xs, ws, padding] of cases)
      for (const fma of fmas)
        for (const threads of [1, 3]) {
          it(`${form}, ${name}, ${threads} thread${threads > 1 ? 's' : ''}${fma ? ', FMA' : ''}`, () => {
            const g = conv2dGeometry(xs, ws, { padding });
            const x = rand(sizeOf(xs), 1);
            const w = rand(sizeOf(ws), 2);
            const y = new Float32Array(g.batch * g.outChannels * g.outH * g.outW).fill(NaN);
            // Workers are not started, so this thread runs every slice of ops large enough to split.
            conv(new Wasm({ threads, fma, onGrow: () => {} }), g, x, w, y, m);
            const ref = direct(x, w, g);
            const scale = maxAbs(x) * maxAbs(w);
            for (let i = 0; i < y.length; i++) {
              const err = Math.abs(y[i] - ref.y[i]);
              if (!(err <= bound[m](ref.abs[i], g.inChannels))) expect.fail(`index ${i}: ${y[i]} vs ${ref.y[i]}`);
              if (!(err <= RTOL * Math.sqrt(9 * g.inChannels) * (Math.abs(ref.y[i]) + scale))) expect.fail(`index ${i}: ${y[i]} vs ${ref.y[i]} (kit tolerance)`);
            }
          });
        }
});

describe('the epilogue (scale, bias, residual, ReLU) on every Winograd form, as the output tiles are stored', () => {
  const fmas = fmaSupported() ? [false, true] : [false];
  const forms = [
    ['F(2x2, 3x3)', 2, winogradConv2d],
    ['F(4x4, 3x3)', 4, winogradConv2d],
    ['F(2x2, 3x3) by filter panels', 2, winogradPanelsConv2d],
    ['F(4x4, 3x3) by filter panels', 4, winogradPanelsConv2d],
  ] as const;
  const all = { scale: true, bias: true, residual: true, relu: true };
  // Each part alone on one thread; all of them on every thread count and build.
  const runs = [
    ...fmas.flatMap((fma) => [1, 3].map((threads) => ({ parts: all, threads, fma }))),
    { parts: { scale: true }, threads: 1, fma: fmaSupported() },
    { parts: { bias: true }, threads: 1, fma: fmaSupported() },
    { parts: { residual: true }, threads: 1, fma: fmaSupported() },
    { parts: { relu: true }, threads: 1, fma: fmaSupported() },
  ];
  for (const [form, m, conv] of forms)
    for (const [name, xs, ws, padding] of cases)
      for (const { parts, threads, fma } of runs) {
        const label = Object.keys(parts).join('+');
        it(`${form}, ${label}, ${name}, ${threads} thread${threads > 1 ? 's' : ''}${fma ? ', FMA' : ''}`, () => {
          const g = conv2dGeometry(xs, ws, { padding });
          const x = rand(sizeOf(xs), 1);
          const w = rand(sizeOf(ws), 2);
          const n = g.batch * g.outChannels * g.outH * g.outW;
          const bias = 'bias' in parts ? rand(g.outChannels, 8) : undefined;
          // A folded batch-norm's scale: both signs, and a zero (zero-initialised gamma).
          const scale = 'scale' in parts ? rand(g.outChannels, 10).map((v, k) => (k === 1 ? 0 : 2 * v)) : undefined;
          // Residuals of the conv's size, so the ReLU cuts about half the outputs.
          const residual = 'residual' in parts ? rand(n, 9).map((v) => 4 * v) : undefined;
          const relu = 'relu' in parts;
          const y = new Float32Array(n).fill(NaN);
          conv(new Wasm({ threads, fma, onGrow: () => {} }), g, x, w, y, m, { scale, bias, residual, relu });
          const ref = direct(x, w, g);
          const plane = g.outH * g.outW;
          const s = (i: number) => (scale ? Math.abs(scale[Math.floor(i / plane) % g.outChannels]) : 1);
          const magnitude = maxAbs(x) * maxAbs(w) * (scale ? maxAbs(scale) : 1) + (bias ? maxAbs(bias) : 0) + (residual ? maxAbs(residual) : 0);
          let cut = 0;
          for (let i = 0; i < n; i++) {
            const k = Math.floor(i / plane) % g.outChannels;
            const add = (bias ? bias[k] : 0) + (residual ? residual[i] : 0);
            const pre = ref.y[i] * (scale ? scale[k] : 1) + add;
            const want = relu && !(pre > 0) ? 0 : pre;
            if (relu && want === 0) cut++;
            // The conv's bound, and a rounding or two of each addition; a ReLU only shrinks the error.
            const err = Math.abs(y[i] - want);
            // The conv's bound (times the scale), and a rounding or two of each multiplication and addition.
            if (!(err <= s(i) * bound[m](ref.abs[i], g.inChannels) + 2 ** -22 * (s(i) * Math.abs(ref.y[i]) + Math.abs(add)))) expect.fail(`index ${i}: ${y[i]} vs ${want}`);
            if (!(err <= RTOL * Math.sqrt(9 * g.inChannels) * (Math.abs(want) + magnitude))) expect.fail(`index ${i}: ${y[i]} vs ${want} (kit tolerance)`);
          }
          if (relu && n >= 8) expect(cut).toBeGreaterThan(0);
        });
      }
});

describe('kept filter transforms', () => {
  afterEach(() => vi.restoreAllMocks());
  const forms = [
    ['F(2x2, 3x3)', 2, winogradConv2d],
    ['F(4x4, 3x3)', 4, winogradConv2d],
    ['F(2x2, 3x3) by filter panels', 2, winogradPanelsConv2d],
    ['F(4x4, 3x3) by filter panels', 4, winogradPanelsConv2d],
  ] as const;
  for (const [form, m, conv] of forms)
    for (const [name, xs, ws, padding] of cases)
      for (const threads of [1, 3]) {
        it(`${form}, ${name}, ${threads} thread${threads > 1 ? 's' : ''}: outputs from a kept transform are those from a fresh one, bit for bit`, () => {
          const g = conv2dGeometry(xs, ws, { padding });
          const x = rand(sizeOf(xs), 1);
          const w = rand(sizeOf(ws), 2);
          const wasm = new Wasm({ threads, fma: fmaSupported(), onGrow: () => {} });
          const run = vi.spyOn(wasm, 'run');
          const source = { owner: { freed: false }, version: nextVersion() };
          const epilogue = { bias: rand(g.outChannels, 3), relu: true };
          // The first call makes the transform as scratch, the second keeps it, the third reads it.
          const ys = [0, 1, 2].map(() => {
            const y = new Float32Array(g.batch * g.outChannels * g.outH * g.outW).fill(NaN);
            conv(wasm, g, x, w, y, m, epilogue, source);
            return y;
          });
          expect(ys[1]).toEqual(ys[0]);
          expect(ys[2]).toEqual(ys[0]);
          const kernels = run.mock.calls.map(([k]) => k);
          // The blocks transform on the first two calls; the panels transform in place on the first, into the cache on the second.
          expect(kernels.filter((k) => k === 'winogradFilter')).toHaveLength(conv === winogradConv2d ? 2 : 1);
          if (conv === winogradPanelsConv2d) expect(run.mock.calls.map(([, args]) => args.at(-1)).filter((_, i) => kernels[i] !== 'winogradFilter').map(Boolean)).toEqual([false, true, true]);
        });
      }

  // Block forms (F(4x4, 3x3)) and filter panels (F(2x2, 3x3)); weights large enough to live in the
  // kernels' memory, where a freed block goes to the next storage of its size.
  const models = [['block form', [4, 16, 16, 16], [32, 16, 3, 3], 2], ['filter panels', [1, 64, 7, 7], [64, 64, 3, 3], 1]] as const;
  for (const [label, xs, ws, transformsToKeep] of models) {
    it(`${label}: a kept transform is never used after sgdUpdate changes the weights, or after they are freed and their memory reused`, () => {
      const fma = fmaSupported();
      setBackend(createCpuBackend({ provider: 'wasm', threads: 1, fma }));
      const fresh = new Wasm({ threads: 1, fma, onGrow: () => {} });
      const run = vi.spyOn(Wasm.prototype, 'run');
      // Filter transforms the backend made (not the fresh runtime's).
      const transforms = () => run.mock.calls.filter(([k], i) => k === 'winogradFilter' && run.mock.contexts[i] !== fresh).length;
      const g = conv2dGeometry(xs, ws, { padding: 1 });
      const x = tensor(rand(sizeOf(xs), 4), [...xs]);
      /** conv(x, w) as the op gives it, and as a runtime that keeps nothing gives it. */
      const outputs = (w: ReturnType<typeof tensor>) => {
        const y = conv2d(x, w, { padding: 1 });
        const got = y.dataSync() as Float32Array;
        y.dispose();
        const want = new Float32Array(got.length);
        const [conv, m] = label === 'block form' ? [winogradConv2d, 4 as const] : [winogradPanelsConv2d, 2 as const];
        conv(fresh, g, x.dataSync() as Float32Array, w.dataSync() as Float32Array, want, m);
        return { got, want };
      };
      const w = tensor(rand(sizeOf(ws), 5), [...ws]);
      for (let i = 0; i < 3; i++) {
        const { got, want } = outputs(w);
        expect(got).toEqual(want);
      }
      // The third call, and a fourth, read the kept transform.
      expect(transforms()).toBe(transformsToKeep);
      outputs(w);
      expect(transforms()).toBe(transformsToKeep);

      // An optimizer step writes the weights in place (same storage, same memory).
      const opt = new SGD([w], { lr: 0.5 });
      w.grad = tensor(rand(sizeOf(ws), 6), [...ws]);
      opt.step();
      for (let i = 0; i < 3; i++) {
        const { got, want } = outputs(w);
        expect(got).toEqual(want);
      }

      // Freed, and the same block of memory taken by new weights of the same size.
      const at = (w.view().storage as CpuStorage).data.byteOffset;
      w.dispose();
      const w2 = tensor(rand(sizeOf(ws), 7), [...ws]);
      expect((w2.view().storage as CpuStorage).data.byteOffset).toBe(at);
      for (let i = 0; i < 3; i++) {
        const { got, want } = outputs(w2);
        expect(got).toEqual(want);
      }
    });
  }

  it('holds at most its limit, and lets go of the transforms of changed or freed weights', () => {
    const floats = 4096;
    const cache = new TransformCache(new Wasm({ threads: 1, fma: false, onGrow: () => {} }), 3 * floats * 4);
    const owners = Array.from({ length: 5 }, () => ({ freed: false }));
    const versions = owners.map(() => nextVersion());
    let made = 0;
    const get = (i: number) => cache.get({ owner: owners[i], version: versions[i] }, 2, floats, () => made++);
    // Kept from the second call with the same contents, while there is room: three of five.
    expect(owners.map((_, i) => get(i))).toEqual([0, 0, 0, 0, 0]);
    const kept = owners.map((_, i) => get(i));
    expect(kept.map(Boolean)).toEqual([true, true, true, false, false]);
    expect(made).toBe(3);
    expect(cache.bytes).toBeLessThanOrEqual(cache.limitBytes);
    expect(get(0)).toBe(kept[0]);
    // New contents: the old transform is let go, the new one kept from its second call on.
    versions[1] = nextVersion();
    expect(get(1)).toBe(0);
    expect(cache.bytes).toBe(2 * floats * 4);
    // A freed storage's transform goes too, making room for another.
    owners[0].freed = true;
    expect(get(3)).not.toBe(0);
    expect(get(4)).not.toBe(0);
    expect(cache.bytes).toBeLessThanOrEqual(cache.limitBytes);
    expect(made).toBe(5);
  });
});

describe('Winograd filter gradient against a direct float64 loop', () => {
  const fmas = fmaSupported() ? [false, true] : [false];
  for (const m of [2, 4] as const)
    for (const [name, xs, ws, padding] of cases)
      for (const fma of fmas)
        for (const threads of [1, 3]) {
          it(`F(${m}x${m}, 3x3), ${name}, ${threads} thread${threads > 1 ? 's' : ''}${fma ? ', FMA' : ''}`, () => {
            const g = conv2dGeometry(xs, ws, { padding });
            const x = rand(sizeOf(xs), 3);
            const dy = rand(g.batch * g.outChannels * g.outH * g.outW, 4);
            const dw = new Float32Array(sizeOf(ws)).fill(NaN);
            winogradBackwardFilter(new Wasm({ threads, fma, onGrow: () => {} }), g, x, dy, dw, m);
            const ref = directFilterGrad(x, dy, g);
            const kit = RTOL * Math.sqrt(g.batch * g.outH * g.outW);
            const scale = maxAbs(x) * maxAbs(dy);
            for (let i = 0; i < dw.length; i++) {
              const err = Math.abs(dw[i] - ref.dw[i]);
              const taps = Math.max(...ref.abs.subarray(i - (i % 9), i - (i % 9) + 9));
              if (!(err <= filterBound[m](taps, g))) expect.fail(`index ${i}: ${dw[i]} vs ${ref.dw[i]}`);
              if (!(err <= kit * (Math.abs(ref.dw[i]) + scale))) expect.fail(`index ${i}: ${dw[i]} vs ${ref.dw[i]} (kit tolerance)`);
            }
          });
        }
});

describe('the conv ops dispatch 3x3 stride-1 convolutions to Winograd, any padding', () => {
  const cpu = createCpuBackend({ provider: 'wasm' });
  const run = (op: OpName, inputs: Record<string, [Float32Array, Shape]>, g: Conv2dGeometry) => {
    const views = Object.fromEntries(
      Object.entries(inputs).map(([k, [data, shape]]) => [k, { storage: cpu.upload(data), shape, dtype: 'f32', size: data.length, version: nextVersion() }]),
    );
    const [spec] = OPS[op].outputs(views as never, g as never);
    const [out] = cpu.kernels[op](views as never, g as never, [spec]);
    return { shape: spec.shape, dtype: spec.dtype, data: cpu.readSync!(out, sizeOf(spec.shape), 'f32') };
  };
  // Padding 0 and 3 make the data gradient a Winograd conv with padding 2 and -1; rows of 16 outputs take F(4x4, 3x3).
  const configs = [
    [[2, 8, 6, 7], [9, 8, 3, 3], 1], [[2, 8, 6, 7], [9, 8, 3, 3], 3], [[1, 16, 5, 4], [8, 16, 3, 3], 0],
    [[2, 8, 6, 16], [9, 8, 3, 3], 1], [[1, 8, 5, 18], [12, 8, 3, 3], 0],
  ] as const;
  for (const [xs, ws, padding] of configs) {
    it(`x [${xs}] w [${ws}] padding ${padding}: forward, data and filter gradients`, () => {
      const g = conv2dGeometry(xs, ws, { padding });
      const ys: Shape = [g.batch, g.outChannels, g.outH, g.outW];
      const [x, w, dy] = [rand(sizeOf(xs), 5), rand(sizeOf(ws), 6), rand(sizeOf(ys), 7)];
      const [rx, rw, rdy] = [refTensor(xs, x), refTensor(ws, w), refTensor(ys, dy)];
      expectClose('conv2d', run('conv2d', { x: [x, xs], w: [w, ws] }, g), ref.conv2d({ x: rx, w: rw }, g)[0], 'f32', { k: g.inChannels * 9, scale: maxAbs(x) * maxAbs(w) });
      expectClose('conv2dBackwardData', run('conv2dBackwardData', { dy: [dy, ys], w: [w, ws] }, g), ref.conv2dBackwardData({ dy: rdy, w: rw }, g)[0], 'f32',
        { k: g.outChannels * 9, scale: maxAbs(dy) * maxAbs(w) });
      expectClose('conv2dBackwardFilter', run('conv2dBackwardFilter', { x: [x, xs], dy: [dy, ys] }, g), ref.conv2dBackwardFilter({ x: rx, dy: rdy }, g)[0], 'f32',
        { k: g.batch * g.outH * g.outW, scale: maxAbs(x) * maxAbs(dy) });
    });
  }
});
