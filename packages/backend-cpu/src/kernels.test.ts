import { nextVersion, OPS, philoxFill, sizeOf, type BinaryFn, type CompareFn, type DataArray, type DType, type OpAttrs, type OpInputs, type OpName, type Shape, type TensorView, type UnaryFn } from '@residual/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend, type CpuStorage } from './index.js';

const cpu = createCpuBackend({ provider: 'wasm' });
const t = (values: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): TensorView<CpuStorage> => {
  const data = dtype === 'f32' ? Float32Array.from(values) : Int32Array.from(values);
  return { storage: cpu.upload(data), shape, dtype, size: data.length, version: nextVersion() };
};
const run = <K extends OpName>(op: K, inputs: OpInputs<K, CpuStorage>, attrs: OpAttrs<K>): DataArray[] => {
  const specs = OPS[op].outputs(inputs as never, attrs);
  return cpu.kernels[op](inputs, attrs, specs).map((s, i) => cpu.readSync!(s, sizeOf(specs[i].shape), specs[i].dtype));
};

/** Deterministic values in [-4, 4) with some exact zeros and repeats. */
const values = (n: number, seed = 1): number[] =>
  Array.from({ length: n }, (_, i) => Math.round((((i * 7919 + seed * 104729) % 1000) / 125 - 4) * 4) / 4);

/** Reference broadcast: each output index unravelled and mapped back into each operand independently. */
const broadcastRef = (shapes: Shape[], out: Shape, f: (...v: number[]) => number, data: ArrayLike<number>[]): number[] =>
  Array.from({ length: sizeOf(out) }, (_, flat) => {
    const idx = out.map((_, ax) => Math.floor(flat / sizeOf(out.slice(ax + 1))) % out[ax]);
    const args = shapes.map((s, k) => {
      let off = 0;
      s.forEach((d, ax) => {
        off = off * d + (d === 1 ? 0 : idx[ax + out.length - s.length]);
      });
      return data[k][off];
    });
    return f(...args);
  });

const SHAPE_PAIRS: [Shape, Shape][] = [
  [[], []], [[3], []], [[], [2, 3]], [[4], [4]], [[2, 3], [3]], [[2, 1], [1, 3]], [[5, 1, 4], [3, 1]],
  [[0, 3], [3]], [[2, 0], [1, 1]], [[1, 2, 1, 3, 1, 2], [2, 1, 4, 1, 2, 1]], [[2, 1, 3, 1, 2, 1, 2], [1, 2, 1, 2, 1, 2, 1]],
  [[7, 9], [7, 9]], [[6, 1, 5], [6, 4, 5]],
];

describe('unary', () => {
  const x = [-3.5, -1, -0.25, 0, 0.5, 1, 2.75, 30, -30, -100, 100];
  const ref: Record<UnaryFn, (v: number) => number> = {
    neg: (v) => -v, abs: Math.abs, exp: Math.exp, log: Math.log, sqrt: Math.sqrt, rsqrt: (v) => 1 / Math.sqrt(v),
    reciprocal: (v) => 1 / v, square: (v) => v * v, relu: (v) => (v > 0 ? v : 0), sigmoid: (v) => 1 / (1 + Math.exp(-v)),
    tanh: Math.tanh, sign: Math.sign, floor: Math.floor, ceil: Math.ceil,
  };
  for (const fn of Object.keys(ref) as UnaryFn[]) {
    it(`${fn} matches the float64 function rounded to f32`, () => {
      const [y] = run('unary', { x: t(x, [x.length]) }, { fn });
      expect(Array.from(y)).toEqual(x.map((v) => Math.fround(ref[fn](Math.fround(v)))));
    });
  }
  it('sigmoid saturates without NaN at both tails', () => {
    const [y] = run('unary', { x: t([-1000, 1000, -88, 88], [4]) }, { fn: 'sigmoid' });
    expect(Array.from(y)).toEqual([0, 1, Math.fround(1 / (1 + Math.exp(88))), 1]);
  });
  it('i32 neg/abs/square/relu/sign wrap like int32', () => {
    const x32 = [-5, 0, 7, 46341, -2147483648];
    const [sq] = run('unary', { x: t(x32, [5], 'i32') }, { fn: 'square' });
    expect(Array.from(sq)).toEqual(x32.map((v) => Math.imul(v, v)));
    const [neg] = run('unary', { x: t(x32, [5], 'i32') }, { fn: 'neg' });
    expect(Array.from(neg)).toEqual([5, 0, -7, -46341, -2147483648]);
    const [relu] = run('unary', { x: t(x32, [5], 'i32') }, { fn: 'relu' });
    expect(Array.from(relu)).toEqual([0, 0, 7, 46341, 0]);
  });
});

describe('binary and compare broadcasting', () => {
  const bin: Record<BinaryFn, (a: number, b: number) => number> = {
    add: (a, b) => a + b, sub: (a, b) => a - b, mul: (a, b) => a * b, div: (a, b) => a / b,
    max: Math.max, min: Math.min, pow: (a, b) => a ** b,
  };
  const cmp: Record<CompareFn, (a: number, b: number) => boolean> = {
    eq: (a, b) => a === b, ne: (a, b) => a !== b, lt: (a, b) => a < b, le: (a, b) => a <= b, gt: (a, b) => a > b, ge: (a, b) => a >= b,
  };
  for (const [as, bs] of SHAPE_PAIRS) {
    it(`binary/compare over [${as}] and [${bs}]`, () => {
      const av = values(sizeOf(as), 3);
      const bv = values(sizeOf(bs), 5).map((v) => (v === 0 ? 0.5 : v));
      const a = t(av, as);
      const b = t(bv, bs);
      const out = OPS.binary.outputs({ a, b } as never, { fn: 'add' })[0].shape;
      for (const fn of Object.keys(bin) as BinaryFn[]) {
        const [y] = run('binary', { a, b }, { fn });
        expect(Array.from(y), fn).toEqual(broadcastRef([as, bs], out, (p, q) => Math.fround(bin[fn](p, q)), [Float32Array.from(av), Float32Array.from(bv)]));
      }
      for (const fn of Object.keys(cmp) as CompareFn[]) {
        const [y] = run('compare', { a, b }, { fn });
        expect(Array.from(y), fn).toEqual(broadcastRef([as, bs], out, (p, q) => (cmp[fn](p, q) ? 1 : 0), [av, bv]));
      }
    });
  }
  it('i32 mul wraps like int32; i32 div is rejected by the op rule', () => {
    const a = t([65536, -7, 7, 3], [4], 'i32');
    const b = t([65537, 2, -2, 3], [4], 'i32');
    expect(Array.from(run('binary', { a, b }, { fn: 'mul' })[0])).toEqual([Math.imul(65536, 65537), -14, -14, 9]);
    expect(() => run('binary', { a, b }, { fn: 'div' })).toThrow(/needs f32/);
  });
  it('max/min propagate NaN', () => {
    const a = t([NaN, 1, 2], [3]);
    const b = t([0, NaN, 1], [3]);
    expect(Array.from(run('binary', { a, b }, { fn: 'max' })[0])).toEqual([NaN, NaN, 2]);
    expect(Array.from(run('binary', { a, b }, { fn: 'min' })[0])).toEqual([NaN, NaN, 1]);
  });
});

describe('where, cast, copy, fill', () => {
  it('where broadcasts cond, a and b together', () => {
    const cs: Shape = [2, 1, 3];
    const as: Shape = [4, 1];
    const bs: Shape = [];
    const cv = [1, 0, 1, 0, 0, 1];
    const av = values(4, 2);
    const [y] = run('where', { cond: t(cv, cs, 'i32'), a: t(av, as), b: t([9], bs) }, {});
    expect(Array.from(y)).toEqual(broadcastRef([cs, as, bs], [2, 4, 3], (c, p, q) => (c ? p : q), [cv, av, [9]]));
  });
  it('cast f32 -> i32 truncates toward zero, i32 -> f32 is exact', () => {
    const [y] = run('cast', { x: t([-1.7, 1.7, 2.5, -0.5, 3], [5]) }, { dtype: 'i32' });
    expect(y).toBeInstanceOf(Int32Array);
    expect(Array.from(y)).toEqual([-1, 1, 2, 0, 3]);
    const [z] = run('cast', { x: t([-3, 16777216], [2], 'i32') }, { dtype: 'f32' });
    expect(z).toBeInstanceOf(Float32Array);
    expect(Array.from(z)).toEqual([-3, 16777216]);
  });
  it('copy makes an independent storage and fill writes every element', () => {
    const x = t([1, 2, 3], [3]);
    const specs = OPS.copy.outputs({ x } as never, {});
    const [c] = cpu.kernels.copy({ x }, {}, specs);
    expect(c).not.toBe(x.storage);
    c.data[0] = 5;
    expect(x.storage.data[0]).toBe(1);
    // Fill must overwrite reused (dirty) pool memory: free a storage of the same size first.
    cpu.free(t([7, 7, 7, 7, 7, 7], [2, 3], 'i32').storage);
    expect(Array.from(run('fill', {}, { shape: [2, 3], dtype: 'i32', value: -2 })[0])).toEqual([-2, -2, -2, -2, -2, -2]);
    expect(run('fill', {}, { shape: [0], dtype: 'f32', value: 1 })[0].length).toBe(0);
  });
});

/** Naive reduction: every output cell scans the input for the indices that map onto it. */
const reduceRef = (x: number[], shape: Shape, axes: number[], f: (v: number[]) => number): number[] => {
  const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const groups: number[][] = Array.from({ length: sizeOf(outShape) }, () => []);
  x.forEach((v, flat) => {
    let o = 0;
    shape.forEach((d, ax) => {
      const i = Math.floor(flat / sizeOf(shape.slice(ax + 1))) % d;
      o = o * outShape[ax] + (axes.includes(ax) ? 0 : i);
    });
    groups[o].push(v);
  });
  return groups.map(f);
};

describe('reduce', () => {
  const cases: [Shape, number[]][] = [
    [[], []], [[5], [0]], [[3, 4], [0]], [[3, 4], [1]], [[3, 4], [0, 1]], [[2, 3, 4], [0, 2]], [[2, 3, 4, 5], [1, 3]],
    [[2, 3, 4, 5], [0, 1, 2]], [[2, 1, 3, 1, 2, 3], [1, 2, 5]], [[4, 0, 3], [1]], [[0, 3], [1]], [[3, 4], []],
  ];
  const sum = (v: number[]) => v.reduce((p, q) => p + q, 0);
  for (const [shape, axes] of cases) {
    it(`sum/mean/max/min of [${shape}] over [${axes}]`, () => {
      const xv = values(sizeOf(shape), 11);
      const x = t(xv, shape);
      const r = (fn: 'sum' | 'mean' | 'max' | 'min') => Array.from(run('reduce', { x }, { fn, axes })[0]);
      expect(r('sum')).toEqual(reduceRef(xv, shape, axes, (v) => Math.fround(sum(v))));
      expect(r('mean')).toEqual(reduceRef(xv, shape, axes, (v) => Math.fround(sum(v) / v.length)));
      if (axes.every((a) => shape[a] > 0)) {
        expect(r('max')).toEqual(reduceRef(xv, shape, axes, (v) => Math.max(...v)));
        expect(r('min')).toEqual(reduceRef(xv, shape, axes, (v) => Math.min(...v)));
      }
    });
  }
  it('sums a million f32 values without drift', () => {
    const n = 1 << 20;
    const [s] = run('reduce', { x: t(new Float32Array(n).fill(0.1), [n]) }, { fn: 'sum', axes: [0] });
    expect(s[0]).toBe(Math.fround(n * Math.fround(0.1)));
  });
  it('max/min propagate NaN; i32 sums stay integer', () => {
    const x = t([1, NaN, 3, 2, 5, 4], [2, 3]);
    expect(Array.from(run('reduce', { x }, { fn: 'max', axes: [1] })[0])).toEqual([NaN, 5]);
    expect(Array.from(run('reduce', { x }, { fn: 'min', axes: [0] })[0])).toEqual([1, NaN, 3]);
    const [s] = run('reduce', { x: t([7, -2, 9], [3], 'i32') }, { fn: 'sum', axes: [0] });
    expect(s).toBeInstanceOf(Int32Array);
    expect(Array.from(s)).toEqual([14]);
  });
});

describe('argmax and topk', () => {
  it('argmax picks the first maximum along any axis; NaN counts as the maximum', () => {
    const x = t([1, 5, 5, 7, 5, 2, 0, 7, NaN, 1, NaN, 9], [2, 2, 3]);
    expect(Array.from(run('argmax', { x }, { axis: 2 })[0])).toEqual([1, 0, 2, 1]);
    expect(Array.from(run('argmax', { x }, { axis: 1 })[0])).toEqual([1, 0, 0, 1, 1, 0]);
    expect(Array.from(run('argmax', { x }, { axis: 0 })[0])).toEqual([0, 1, 1, 0, 1, 1]);
  });
  it('topk is descending with ties to the lower index, NaN first', () => {
    const x = t([3, 1, 3, 2, 3, 0, 4, NaN, 4, 1], [2, 5]);
    const [v, i] = run('topk', { x }, { k: 4 });
    expect(Array.from(v)).toEqual([3, 3, 3, 2, NaN, 4, 4, 1]);
    expect(Array.from(i)).toEqual([0, 2, 4, 3, 2, 1, 3, 4]);
    const [v0, i0] = run('topk', { x }, { k: 0 });
    expect([v0.length, i0.length]).toEqual([0, 0]);
    const [vi] = run('topk', { x: t([5, -1, 5, 9], [4], 'i32') }, { k: 2 });
    expect(Array.from(vi)).toEqual([9, 5]);
  });
});

/** Reference gather: out[flat] = x[index(flat)] for an arbitrary index map over multi-indices. */
const gather = (x: number[], shape: Shape, outShape: Shape, src: (idx: number[]) => number[] | null, fillValue = 0): number[] =>
  Array.from({ length: sizeOf(outShape) }, (_, flat) => {
    const idx = outShape.map((d, ax) => Math.floor(flat / sizeOf(outShape.slice(ax + 1))) % d);
    const s = src(idx);
    return s === null ? fillValue : x[s.reduce((o, i, ax) => o * shape[ax] + i, 0)];
  });

describe('layout', () => {
  const shape: Shape = [2, 3, 4, 5];
  const xv = values(sizeOf(shape), 7);
  const x = t(xv, shape);
  it('permute matches a gather for several permutations', () => {
    for (const perm of [[0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 3, 1], [1, 0, 3, 2], [2, 0, 1, 3]]) {
      const outShape = perm.map((p) => shape[p]);
      const want = gather(xv, shape, outShape, (idx) => {
        const src = new Array<number>(4);
        perm.forEach((p, i) => (src[p] = idx[i]));
        return src;
      });
      expect(Array.from(run('permute', { x }, { perm })[0]), `perm ${perm}`).toEqual(want);
    }
    expect(Array.from(run('permute', { x: t([4], []) }, { perm: [] })[0])).toEqual([4]);
  });
  it('slice copies the box, including empty and full ones', () => {
    for (const [begin, size] of [[[1, 0, 1, 2], [1, 3, 2, 3]], [[0, 0, 0, 0], [2, 3, 4, 5]], [[0, 1, 4, 0], [2, 2, 0, 5]]]) {
      const want = gather(xv, shape, size, (idx) => idx.map((i, ax) => i + begin[ax]));
      expect(Array.from(run('slice', { x }, { begin, size })[0])).toEqual(want);
    }
  });
  it('pad surrounds with the value', () => {
    const pads: [number, number][] = [[0, 1], [2, 0], [1, 1], [0, 0]];
    const outShape = shape.map((d, i) => d + pads[i][0] + pads[i][1]);
    const want = gather(xv, shape, outShape, (idx) => {
      const src = idx.map((i, ax) => i - pads[ax][0]);
      return src.every((i, ax) => i >= 0 && i < shape[ax]) ? src : null;
    }, -1.5);
    expect(Array.from(run('pad', { x }, { pads, value: -1.5 })[0])).toEqual(want);
  });
  it('concat joins along every axis, skipping empty parts', () => {
    for (let axis = 0; axis < 4; axis++) {
      const other = shape.map((d, i) => (i === axis ? 2 : d));
      const empty = shape.map((d, i) => (i === axis ? 0 : d));
      const ov = values(sizeOf(other), 13);
      const outShape = shape.map((d, i) => (i === axis ? d + 2 : d));
      const want = gather([...xv, ...ov], [2, ...shape], outShape, () => null).map((_, flat) => {
        const idx = outShape.map((d, ax) => Math.floor(flat / sizeOf(outShape.slice(ax + 1))) % d);
        const fromX = idx[axis] < shape[axis];
        const at = fromX ? idx : idx.map((i, ax) => (ax === axis ? i - shape[axis] : i));
        const s = fromX ? shape : other;
        return (fromX ? xv : ov)[at.reduce((o, i, ax) => o * s[ax] + i, 0)];
      });
      const [y] = run('concat', { xs: [x, t([], empty), t(ov, other)] }, { axis });
      expect(Array.from(y), `axis ${axis}`).toEqual(want);
    }
  });
  it('broadcastTo repeats along new and size-1 axes', () => {
    const sv = values(6, 3);
    const want = broadcastRef([[3, 1, 2]], [2, 3, 4, 2], (v) => v, [sv]);
    expect(Array.from(run('broadcastTo', { x: t(sv, [3, 1, 2]) }, { shape: [2, 3, 4, 2] })[0])).toEqual(want.map(Math.fround));
  });
});

/** Central finite difference of f at x along coordinate i (float64). */
const fd = (f: (x: number[]) => number, x: number[], i: number, h = 1e-4): number => {
  const up = [...x];
  const down = [...x];
  up[i] += h;
  down[i] -= h;
  return (f(up) - f(down)) / (2 * h);
};
const closeAll = (got: ArrayLike<number>, want: number[], tol: number) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(Math.abs(got[i] - w), `index ${i}: ${got[i]} vs ${w}`).toBeLessThanOrEqual(tol * (1 + Math.abs(w))));
};

describe('softmax cross-entropy', () => {
  const n = 3;
  const c = 5;
  const logits = values(n * c, 17).map((v) => v * 2);
  const labels = [4, 0, 2];
  const lossRef = (l: number[], s: number, row: number): number => {
    const r = l.slice(row * c, row * c + c);
    const m = Math.max(...r);
    const lse = m + Math.log(r.reduce((p, v) => p + Math.exp(v - m), 0));
    const logp = r.map((v) => v - lse);
    return -(1 - s) * logp[labels[row]] - (s / c) * logp.reduce((p, v) => p + v, 0);
  };
  for (const smoothing of [0, 0.1, 1]) {
    it(`forward and backward with smoothing ${smoothing}`, () => {
      const [loss] = run('softmaxCrossEntropy', { logits: t(logits, [n, c]), labels: t(labels, [n], 'i32') }, { smoothing });
      closeAll(loss, [0, 1, 2].map((r) => lossRef(logits.map(Math.fround), smoothing, r)), 1e-6);
      const dloss = [0.5, -1, 2];
      const [d] = run(
        'softmaxCrossEntropyBackward',
        { logits: t(logits, [n, c]), labels: t(labels, [n], 'i32'), dloss: t(dloss, [n]) },
        { smoothing },
      );
      const total = (l: number[]) => [0, 1, 2].reduce((p, r) => p + dloss[r] * lossRef(l, smoothing, r), 0);
      closeAll(d, logits.map((_, i) => fd(total, logits.map(Math.fround), i)), 1e-5);
    });
  }
  it('is stable for huge logits and gives NaN for labels out of range', () => {
    const [loss] = run('softmaxCrossEntropy', { logits: t([1000, 0, -1000, 3, 4, 5, 1, 2, 3], [3, 3]), labels: t([0, 3, -1], [3], 'i32') }, { smoothing: 0 });
    expect(loss[0]).toBeCloseTo(0, 6);
    expect(loss[1]).toBeNaN();
    expect(loss[2]).toBeNaN();
    const [d] = run(
      'softmaxCrossEntropyBackward',
      { logits: t([1000, 0, 0, 1, 2, 3], [2, 3]), labels: t([1, 7], [2], 'i32'), dloss: t([1, 1], [2]) },
      { smoothing: 0 },
    );
    expect(Array.from(d.subarray(0, 3))).toEqual([1, -1, 0]);
    expect(Array.from(d.subarray(3))).toEqual([NaN, NaN, NaN]);
  });
});

describe('batch-norm and channel affine', () => {
  const shape: Shape = [3, 2, 2, 2];
  const xv = values(24, 19).map((v) => v + 100);
  const gamma = [1.5, -0.5];
  const beta = [0.25, 2];
  const eps = 1e-5;
  const bnRef = (x: number[], g: number[], b: number[]) => {
    const y = new Array<number>(x.length);
    const stats = [0, 1].map((ch) => {
      const idx = x.map((_, i) => i).filter((i) => Math.floor(i / 4) % 2 === ch);
      const mean = idx.reduce((p, i) => p + x[i], 0) / idx.length;
      const v = idx.reduce((p, i) => p + (x[i] - mean) ** 2, 0) / idx.length;
      const invstd = 1 / Math.sqrt(v + eps);
      for (const i of idx) y[i] = (x[i] - mean) * invstd * g[ch] + b[ch];
      return { mean, invstd };
    });
    return { y, stats };
  };
  it('forward uses batch statistics with the biased variance, stable under a large mean', () => {
    const [y, mean, invstd] = run('batchNormTrain', { x: t(xv, shape), gamma: t(gamma, [2]), beta: t(beta, [2]) }, { eps });
    const ref = bnRef(xv, gamma, beta);
    closeAll(y, ref.y, 2e-5);
    closeAll(mean, ref.stats.map((s) => s.mean), 1e-7);
    closeAll(invstd, ref.stats.map((s) => s.invstd), 1e-6);
  });
  it('backward matches finite differences of Σ dy·y', () => {
    const dy = values(24, 23);
    const [, mean, invstd] = run('batchNormTrain', { x: t(xv, shape), gamma: t(gamma, [2]), beta: t(beta, [2]) }, { eps });
    const [dx, dgamma, dbeta] = run(
      'batchNormBackward',
      { dy: t(dy, shape), x: t(xv, shape), gamma: t(gamma, [2]), mean: t(mean, [2]), invstd: t(invstd, [2]) },
      {},
    );
    const loss = (x: number[], g: number[], b: number[]) => bnRef(x, g, b).y.reduce((p, v, i) => p + v * dy[i], 0);
    closeAll(dx, xv.map((_, i) => fd((x) => loss(x, gamma, beta), xv, i)), 2e-4);
    closeAll(dgamma, [0, 1].map((i) => fd((g) => loss(xv, g, beta), gamma, i)), 1e-4);
    closeAll(dbeta, [0, 1].map((i) => fd((b) => loss(xv, gamma, b), beta, i)), 1e-4);
  });
  it('channelAffine scales and shifts along axis 1 of a rank-2 and a rank-4 input', () => {
    const [y2] = run('channelAffine', { x: t([1, 2, 3, 4], [2, 2]), scale: t([2, -1], [2]), shift: t([0.5, 1], [2]) }, {});
    expect(Array.from(y2)).toEqual([2.5, -1, 6.5, -3]);
    const [y4] = run('channelAffine', { x: t(xv, shape), scale: t(gamma, [2]), shift: t(beta, [2]) }, {});
    expect(Array.from(y4)).toEqual(xv.map((v, i) => Math.fround(Math.fround(v) * gamma[Math.floor(i / 4) % 2] + beta[Math.floor(i / 4) % 2])));
  });
});

describe('sgdUpdate', () => {
  const p0 = [1, -2, 0.5];
  const grads = [[0.1, 0.2, -0.3], [0.4, -0.1, 0], [-0.2, 0.3, 0.5]];
  /** PyTorch's torch.optim.SGD step, written out by hand in float64. */
  const torchSgd = (o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean }) => {
    const p = [...p0];
    let buf: number[] | null = null;
    for (const g of grads) {
      const d = g.map((v, i) => v + o.weightDecay * p[i]);
      let step = d;
      if (o.momentum !== 0) {
        buf = buf === null ? d : buf.map((b, i) => o.momentum * b + (1 - o.dampening) * d[i]);
        step = o.nesterov ? d.map((v, i) => v + o.momentum * buf![i]) : buf;
      }
      step.forEach((s, i) => (p[i] -= o.lr * s));
    }
    return p;
  };
  for (const o of [
    { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-2, nesterov: true },
    { lr: 0.05, momentum: 0.8, dampening: 0.5, weightDecay: 0, nesterov: false },
    { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 1e-1, nesterov: false },
  ]) {
    it(`three steps in place: ${JSON.stringify(o)}`, () => {
      const param = t(p0, [3]);
      const momentum = t([9, 9, 9], [3]);
      grads.forEach((g, step) => {
        const out = cpu.kernels.sgdUpdate({ param, grad: t(g, [3]), momentum }, { ...o, firstStep: step === 0 }, []);
        expect(out).toEqual([]);
      });
      closeAll(param.storage.data, torchSgd(o), 1e-6);
      if (o.momentum === 0) expect(Array.from(momentum.storage.data)).toEqual([9, 9, 9]);
    });
  }
});

describe('randomFill', () => {
  for (const dist of ['uniform', 'normal'] as const) {
    for (const size of [0, 1, 7, 1001]) {
      it(`${dist} of ${size} equals philoxFill`, () => {
        const attrs = { shape: [size], dist, seed: [12345, 678] as const, counter: [4294967295, 3] as const, a: -1, b: 2.5 };
        const [y] = run('randomFill', {}, attrs);
        expect(Array.from(y)).toEqual(Array.from(philoxFill(new Float32Array(size), dist, attrs.seed, attrs.counter, attrs.a, attrs.b)));
      });
    }
  }
});
