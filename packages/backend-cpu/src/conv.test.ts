import {
  conv2dGeometry, OPS, pool2dGeometry, sizeOf,
  type Conv2dGeometry, type DataArray, type DType, type OpAttrs, type OpInputs, type OpName, type Pool2dGeometry, type Shape, type TensorView,
  nextVersion,
} from '@residual/core';
import { describe, expect, it } from 'vitest';
import { conv2d } from './conv.js';
import { maxPool2d, maxPool2dBackward } from './pool.js';
import { createCpuBackend, type CpuStorage } from './index.js';
import { fmaSupported, Wasm } from './wasm.js';

const cpu = createCpuBackend({ provider: 'wasm' });
const t = (values: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): TensorView<CpuStorage> => {
  const data = dtype === 'f32' ? Float32Array.from(values) : Int32Array.from(values);
  return { storage: cpu.upload(data), shape, dtype, size: data.length, version: nextVersion() };
};
const run = <K extends OpName>(op: K, inputs: OpInputs<K, CpuStorage>, attrs: OpAttrs<K>): DataArray[] => {
  const specs = OPS[op].outputs(inputs as never, attrs);
  return cpu.kernels[op](inputs, attrs, specs).map((s, i) => cpu.readSync!(s, sizeOf(specs[i].shape), specs[i].dtype));
};

/** Values rounded to f32 (so float64 references see exactly what the kernel sees), from a fixed LCG. */
const rand = (n: number, seed: number): number[] => {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.fround(s / 2 ** 31 - 1);
  });
};
const close = (got: ArrayLike<number>, want: number[], tol = 1e-5) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(Math.abs(got[i] - w), `index ${i}: ${got[i]} vs ${w}`).toBeLessThanOrEqual(tol * (1 + Math.abs(w))));
};

describe('matmul', () => {
  /** Float64 reference over broadcast batches, each operand indexed through its own transposition. */
  const ref = (a: number[], as: Shape, ta: boolean, b: number[], bs: Shape, tb: boolean, out: Shape): number[] => {
    const [m, n] = out.slice(-2);
    const k = ta ? as[as.length - 2] : as[as.length - 1];
    const batch = out.slice(0, -2);
    const res: number[] = [];
    const batchOffset = (s: Shape, idx: number[]) =>
      s.slice(0, -2).reduce((o, d, ax) => o * d + (d === 1 ? 0 : idx[ax + batch.length - (s.length - 2)]), 0);
    for (let bi = 0; bi < sizeOf(batch); bi++) {
      const idx = batch.map((d, ax) => Math.floor(bi / sizeOf(batch.slice(ax + 1))) % d);
      const ao = batchOffset(as, idx) * m * k;
      const bo = batchOffset(bs, idx) * k * n;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += a[ao + (ta ? p * m + i : i * k + p)] * b[bo + (tb ? j * k + p : p * n + j)];
          res.push(s);
        }
      }
    }
    return res;
  };
  const cases: [Shape, Shape][] = [
    [[1, 1], [1, 1]], [[3, 5], [5, 2]], [[7, 9], [9, 6]], [[13, 17], [17, 11]], [[2, 3, 4], [4, 5]], [[4, 5], [3, 5, 6]],
    [[2, 1, 5, 3], [3, 3, 4]], [[0, 3], [3, 4]], [[3, 0], [0, 4]], [[0, 2, 3], [3, 2]], [[2, 8, 8], [1, 8, 8]],
  ];
  for (const [as, bs] of cases) {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
      const sw = (s: Shape, tr: boolean) => (tr ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s);
      const [asT, bsT] = [sw(as, ta), sw(bs, tb)];
      it(`[${asT}]${ta ? 'ᵀ' : ''} x [${bsT}]${tb ? 'ᵀ' : ''}`, () => {
        const av = rand(sizeOf(asT), 1);
        const bv = rand(sizeOf(bsT), 2);
        const a = t(av, asT);
        const b = t(bv, bsT);
        // Dirty pool memory of the output size must not leak into the result.
        const out = OPS.matmul.outputs({ a, b } as never, { transA: ta, transB: tb })[0].shape;
        cpu.free(t(new Float32Array(sizeOf(out)).fill(NaN), out).storage);
        const [y] = run('matmul', { a, b }, { transA: ta, transB: tb });
        close(y, ref(av, asT, ta, bv, bsT, tb, out));
      });
    }
  }
});

/** Direct float64 convolution and its two adjoints, by scattering over every (output, tap) pair. */
const convRef = (x: number[], w: number[], dy: number[], g: Conv2dGeometry) => {
  const cg = g.inChannels / g.groups;
  const kg = g.outChannels / g.groups;
  const y = new Array<number>(g.batch * g.outChannels * g.outH * g.outW).fill(0);
  const dx = new Array<number>(x.length).fill(0);
  const dw = new Array<number>(w.length).fill(0);
  for (let n = 0; n < g.batch; n++)
    for (let k = 0; k < g.outChannels; k++)
      for (let oh = 0; oh < g.outH; oh++)
        for (let ow = 0; ow < g.outW; ow++)
          for (let c = 0; c < cg; c++)
            for (let r = 0; r < g.kernelH; r++)
              for (let s = 0; s < g.kernelW; s++) {
                const ih = oh * g.strideH - g.padTop + r * g.dilationH;
                const iw = ow * g.strideW - g.padLeft + s * g.dilationW;
                if (ih < 0 || ih >= g.inH || iw < 0 || iw >= g.inW) continue;
                const xi = ((n * g.inChannels + Math.floor(k / kg) * cg + c) * g.inH + ih) * g.inW + iw;
                const wi = ((k * cg + c) * g.kernelH + r) * g.kernelW + s;
                const yi = ((n * g.outChannels + k) * g.outH + oh) * g.outW + ow;
                y[yi] += x[xi] * w[wi];
                dx[xi] += dy[yi] * w[wi];
                dw[wi] += dy[yi] * x[xi];
              }
  return { y, dx, dw };
};

describe('conv2d forward, backward data, backward filter', () => {
  it('a 3x3 input, 2x2 kernel, padding 1, stride 2, by hand', () => {
    const g = conv2dGeometry([1, 1, 3, 3], [1, 1, 2, 2], { stride: 2, padding: 1 });
    const [y] = run('conv2d', { x: t([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]), w: t([1, 10, 100, 1000], [1, 1, 2, 2]) }, g);
    // Windows (top-left at -1,-1 / -1,1 / 1,-1 / 1,1) each see the image cells under the kernel taps.
    expect(Array.from(y)).toEqual([1000 * 1, 100 * 2 + 1000 * 3, 10 * 4 + 1000 * 7, 1 * 5 + 10 * 6 + 100 * 8 + 1000 * 9]);
  });
  const configs: [string, Shape, Shape, Parameters<typeof conv2dGeometry>[2]][] = [
    ['3x3 pad 1', [2, 3, 6, 5], [4, 3, 3, 3], { padding: 1 }],
    ['stride 2 pad 1', [2, 4, 7, 8], [6, 4, 3, 3], { stride: 2, padding: 1 }],
    ['dilation 2 pad 2', [1, 2, 9, 7], [3, 2, 3, 3], { dilation: 2, padding: 2 }],
    ['groups 2 stride (2,1) dilation (1,2) pad (0,2)', [2, 4, 6, 7], [6, 2, 2, 3], { groups: 2, stride: [2, 1], dilation: [1, 2], padding: [0, 2] }],
    ['depthwise', [1, 3, 5, 5], [3, 1, 3, 3], { groups: 3, padding: 1 }],
    ['1x1 pointwise', [2, 5, 4, 3], [7, 5, 1, 1], {}],
    ['1x1 stride 2 (projection shortcut)', [2, 3, 5, 5], [4, 3, 1, 1], { stride: 2 }],
    ['7x7 stride 2 pad 3 (stem)', [1, 3, 11, 11], [4, 3, 7, 7], { stride: 2, padding: 3 }],
    ['kernel larger than input with padding', [1, 1, 2, 2], [2, 1, 3, 3], { padding: 1, stride: 3 }],
  ];
  const check = (g: Conv2dGeometry) => {
    const xs: Shape = [g.batch, g.inChannels, g.inH, g.inW];
    const ws: Shape = [g.outChannels, g.inChannels / g.groups, g.kernelH, g.kernelW];
    const ys: Shape = [g.batch, g.outChannels, g.outH, g.outW];
    const [xv, wv, dyv] = [rand(sizeOf(xs), 3), rand(sizeOf(ws), 4), rand(sizeOf(ys), 5)];
    const ref = convRef(xv, wv, dyv, g);
    close(run('conv2d', { x: t(xv, xs), w: t(wv, ws) }, g)[0], ref.y);
    close(run('conv2dBackwardData', { dy: t(dyv, ys), w: t(wv, ws) }, g)[0], ref.dx);
    close(run('conv2dBackwardFilter', { x: t(xv, xs), dy: t(dyv, ys) }, g)[0], ref.dw);
  };
  for (const [name, xs, ws, opts] of configs) it(name, () => check(conv2dGeometry(xs, ws, opts)));
  it('asymmetric padding (more at the bottom/right, as TF "same" with stride 2)', () => {
    const base = conv2dGeometry([2, 2, 6, 6], [3, 2, 3, 3], { stride: 2 });
    // Pad 0 before and 1 after: out = floor((6 + 1 - 3) / 2) + 1 = 3.
    check({ ...base, padTop: 0, padLeft: 1, padBottom: 1, padRight: 0, outH: 3, outW: 3 });
  });
});

describe('implicit-GEMM conv2d with its epilogue, on every way threads split it', () => {
  // Each is past the size at which an op splits over threads. Workers are not started, so this
  // thread runs every slice: the same results as when workers run them.
  const configs: [string, Shape, Shape, Parameters<typeof conv2dGeometry>[2]][] = [
    ['1 image, positions split: 7x7/2 stem, rows of 30 (no vector unfold), K=12', [1, 3, 64, 60], [12, 3, 7, 7], { stride: 2, padding: 3 }],
    ['1 image, positions split: 7x7/2 stem, rows of 32', [1, 3, 64, 64], [12, 3, 7, 7], { stride: 2, padding: 3 }],
    ['1 image, channels split: 1x1 at 7x7, K=200', [1, 128, 7, 7], [200, 128, 1, 1], {}],
    ['2 images, positions split: 3x3/2, patch 288 (two panels of the sum)', [2, 32, 19, 17], [24, 32, 3, 3], { stride: 2, padding: 1 }],
    ['5 images split: 1x1, C=300, K=70 (two blocks of rows)', [5, 300, 6, 6], [70, 300, 1, 1], {}],
    ['1 image, positions split, 2 groups', [1, 16, 64, 64], [24, 8, 3, 3], { stride: 2, padding: 1, groups: 2 }],
  ];
  const fma = fmaSupported();
  for (const [name, xs, ws, opts] of configs) {
    it(name, () => {
      const g = conv2dGeometry(xs, ws, opts);
      const ys: Shape = [g.batch, g.outChannels, g.outH, g.outW];
      const [xv, wv] = [rand(sizeOf(xs), 13), rand(sizeOf(ws), 14)];
      const bias = Float32Array.from(rand(g.outChannels, 15));
      const scale = Float32Array.from(rand(g.outChannels, 17), (v, k) => (k === 1 ? 0 : 2 * v));
      const residual = Float32Array.from(rand(sizeOf(ys), 16), (v) => 4 * v);
      const plane = g.outH * g.outW;
      const ref = convRef(xv, wv, new Array<number>(sizeOf(ys)).fill(0), g).y.map((v, i) => {
        const k = Math.floor(i / plane) % g.outChannels;
        const pre = v * scale[k] + bias[k] + residual[i];
        return pre > 0 ? pre : 0;
      });
      const results = [1, 3].map((threads) => {
        const y = new Float32Array(sizeOf(ys)).fill(NaN);
        conv2d(new Wasm({ threads, fma, onGrow: () => {} }), Float32Array.from(xv), Float32Array.from(wv), y, g, { scale, bias, residual, relu: true });
        close(y, ref);
        return y;
      });
      expect(results[0].some((v) => v === 0) && results[0].some((v) => v > 0)).toBe(true);
      // Each output sums its taps in the same order whoever computes it.
      expect(results[1]).toEqual(results[0]);
    });
  }
});

describe('max-pool backward and the 1x1 subsampling pool, in WebAssembly', () => {
  /** dx of max pooling by a plain scan: each dy to its window's first maximum (the first NaN), added in f32 in output order. */
  const scan = (x: Float32Array, dy: Float32Array, g: Pool2dGeometry): Float32Array => {
    const dx = new Float32Array(x.length);
    for (let p = 0, o = 0; p < g.batch * g.channels; p++)
      for (let oh = 0; oh < g.outH; oh++)
        for (let ow = 0; ow < g.outW; ow++, o++) {
          let at = -1;
          for (let h = oh * g.strideH - g.padTop, i = 0; i < g.kernelH; h++, i++)
            for (let w = ow * g.strideW - g.padLeft, j = 0; j < g.kernelW; w++, j++) {
              if (h < 0 || h >= g.inH || w < 0 || w >= g.inW) continue;
              const c = (p * g.inH + h) * g.inW + w;
              if (at < 0 || (x[c] > x[at] && x[at] === x[at]) || (x[c] !== x[c] && x[at] === x[at])) at = c;
            }
          dx[at] = Math.fround(dx[at] + dy[o]);
        }
    return dx;
  };
  /** Few distinct values (ties), NaN in about 1 of 9 cells (often two to a window), -Infinity in 1 of 37. */
  const values = (n: number, seed: number) =>
    Float32Array.from(rand(n, seed), (v, i) => (i % 13 === 7 || i % 29 === 3 ? NaN : i % 37 === 5 ? -Infinity : Math.round(v * 4)));
  const configs: [string, Shape, Parameters<typeof pool2dGeometry>[1]][] = [
    ['3x3/2 pad 1 (ResNet stem), large enough for threads', [8, 16, 56, 56], { kernelSize: 3, stride: 2, padding: 1 }],
    ['3x3/2 pad 1, odd width', [2, 3, 20, 23], { kernelSize: 3, stride: 2, padding: 1 }],
    ['2x2/2', [1, 2, 9, 16], { kernelSize: 2, stride: 2 }],
    ['3x3/1 pad 1', [2, 2, 7, 13], { kernelSize: 3, stride: 1, padding: 1 }],
    ['3x2 stride (2,1) pad (1,1)', [2, 3, 7, 6], { kernelSize: [3, 2], stride: [2, 1], padding: [1, 1] }],
    ['5x5/3 pad 2 (window by window)', [1, 2, 17, 19], { kernelSize: 5, stride: 3, padding: 2 }],
    ['1x1/2 (option-A shortcut)', [4, 16, 32, 32], { kernelSize: 1, stride: 2 }],
    ['1x1/2, odd sizes', [2, 3, 9, 7], { kernelSize: 1, stride: 2 }],
    ['1x1 stride (1,2)', [2, 3, 5, 12], { kernelSize: 1, stride: [1, 2] }],
    ['1x1 stride (2,1)', [2, 3, 6, 9], { kernelSize: 1, stride: [2, 1] }],
    ['1x1/3, odd sizes', [2, 3, 10, 11], { kernelSize: 1, stride: 3 }],
  ];
  const fma = fmaSupported();
  for (const [name, xs, opts] of configs) {
    it(name, () => {
      const g = pool2dGeometry(xs, opts);
      const x = values(sizeOf(xs), 21);
      const dy = Float32Array.from(rand(g.batch * g.channels * g.outH * g.outW, 22));
      const want = scan(x, dy, g);
      for (const threads of [1, 3]) {
        const wasm = new Wasm({ threads, fma, onGrow: () => {} });
        const dx = new Float32Array(x.length).fill(NaN);
        maxPool2dBackward(wasm, dy, x, dx, g);
        expect(dx).toEqual(want);
        if (g.kernelH === 1 && g.kernelW === 1) {
          const y = new Float32Array(dy.length).fill(NaN);
          maxPool2d(wasm, x, y, g);
          const plane = g.outH * g.outW;
          const cell = (o: number) => ((Math.floor(o / plane) * g.inH + Math.floor((o % plane) / g.outW) * g.strideH) * g.inW + (o % g.outW) * g.strideW);
          expect(y).toEqual(Float32Array.from(y, (_, o) => x[cell(o)]));
        }
      }
    });
  }
});

describe('pooling', () => {
  const x = [
    -1, -2, -3, -4,
    -5, -6, -7, -8,
    -9, -3, -3, -12,
    -13, -14, -15, -16,
  ];
  it('max-pool with padding never picks the padding, and its gradient goes to the first maximum', () => {
    const g = pool2dGeometry([1, 1, 4, 4], { kernelSize: 3, stride: 2, padding: 1 });
    const [y] = run('maxPool2d', { x: t(x, [1, 1, 4, 4]) }, g);
    expect(Array.from(y)).toEqual([-1, -2, -3, -3]);
    const [dx] = run('maxPool2dBackward', { dy: t([1, 10, 100, 1000], [1, 1, 2, 2]), x: t(x, [1, 1, 4, 4]) }, g);
    // Window 4 sees the tie -3 at (2,1) and (2,2): the first in scan order wins, as it does in window 3.
    const want = new Array<number>(16).fill(0);
    want[0] = 1;
    want[1] = 10;
    want[9] = 100 + 1000;
    expect(Array.from(dx)).toEqual(want);
  });
  it('max-pool propagates NaN', () => {
    const g = pool2dGeometry([1, 1, 2, 2], { kernelSize: 2 });
    expect(Array.from(run('maxPool2d', { x: t([1, NaN, 3, 2], [1, 1, 2, 2]) }, g)[0])).toEqual([NaN]);
  });
  const xs: Shape = [1, 1, 3, 3];
  const x3 = [1, 2, 3, 4, 5, 6, 7, 8, 9];
  for (const countIncludePad of [true, false]) {
    it(`avg-pool 2x2 stride 2 padding 1, countIncludePad ${countIncludePad}`, () => {
      const g = pool2dGeometry(xs, { kernelSize: 2, stride: 2, padding: 1, countIncludePad });
      const sums = [1, 2 + 3, 4 + 7, 5 + 6 + 8 + 9];
      const counts = countIncludePad ? [4, 4, 4, 4] : [1, 2, 2, 4];
      const [y] = run('avgPool2d', { x: t(x3, xs) }, g);
      close(y, sums.map((s, i) => s / counts[i]), 1e-7);
      const dy = [4, 8, 12, 16];
      const [dx] = run('avgPool2dBackward', { dy: t(dy, [1, 1, 2, 2]) }, g);
      const win = [0, 1, 1, 2, 3, 3, 2, 3, 3];
      close(dx, win.map((w) => dy[w] / counts[w]), 1e-7);
    });
  }
  it('avg-pool overlapping windows sum their gradients (3x3 stride 1 pad 1)', () => {
    const g = pool2dGeometry([2, 2, 4, 5], { kernelSize: 3, stride: 1, padding: 1, countIncludePad: false });
    const xv = rand(80, 9);
    const dyv = rand(80, 10);
    const y = new Array<number>(80).fill(0);
    const dx = new Array<number>(80).fill(0);
    for (let p = 0; p < 4; p++)
      for (let oh = 0; oh < 4; oh++)
        for (let ow = 0; ow < 5; ow++) {
          const cells: number[] = [];
          for (let h = oh - 1; h <= oh + 1; h++) for (let w = ow - 1; w <= ow + 1; w++) if (h >= 0 && h < 4 && w >= 0 && w < 5) cells.push(p * 20 + h * 5 + w);
          const o = p * 20 + oh * 5 + ow;
          y[o] = cells.reduce((s, i) => s + xv[i], 0) / cells.length;
          for (const i of cells) dx[i] += dyv[o] / cells.length;
        }
    close(run('avgPool2d', { x: t(xv, [2, 2, 4, 5]) }, g)[0], y);
    close(run('avgPool2dBackward', { dy: t(dyv, [2, 2, 4, 5]) }, g)[0], dx);
  });
  it('max-pool backward over a random batch matches a scan for the first maximum', () => {
    const g: Pool2dGeometry = pool2dGeometry([2, 3, 7, 6], { kernelSize: [3, 2], stride: [2, 1], padding: [1, 1] });
    const xv = rand(2 * 3 * 7 * 6, 11).map((v) => Math.round(v * 3));
    const dyv = rand(2 * 3 * g.outH * g.outW, 12);
    const dx = new Array<number>(xv.length).fill(0);
    const y: number[] = [];
    for (let p = 0; p < 6; p++)
      for (let oh = 0; oh < g.outH; oh++)
        for (let ow = 0; ow < g.outW; ow++) {
          let best = -Infinity;
          let at = -1;
          for (let h = oh * 2 - 1; h < oh * 2 + 2; h++)
            for (let w = ow - 1; w < ow + 1; w++)
              if (h >= 0 && h < 7 && w >= 0 && w < 6 && (at < 0 || xv[p * 42 + h * 6 + w] > best)) [best, at] = [xv[p * 42 + h * 6 + w], p * 42 + h * 6 + w];
          y.push(best);
          dx[at] += dyv[y.length - 1];
        }
    expect(Array.from(run('maxPool2d', { x: t(xv, [2, 3, 7, 6]) }, g)[0])).toEqual(y);
    close(run('maxPool2dBackward', { dy: t(dyv, [2, 3, g.outH, g.outW]), x: t(xv, [2, 3, 7, 6]) }, g)[0], dx);
  });
});
