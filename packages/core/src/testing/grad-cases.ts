/**
 * Gradient cases. For a loss L = sum(w ⊙ f(inputs)) with a fixed random w, the analytic gradient
 * comes from the backend through autograd (`requireGrad`, the op, `L.backward()`, `.grad`), and
 * the numeric one from central differences of the float64 reference, exact up to O(h²).
 */
import {
  adaptiveAvgPool2d, add, avgPool2d, batchNormTrain, channelAffine, concat, conv2d, crossEntropy, flatten, globalAvgPool2d, logSoftmax, matmul, max,
  maxPool2d, mean, min, mul, pad, permute, relu, reshape, slice, softmax, softmaxCrossEntropy, sum, broadcastTo,
} from '../api.js';
import { runOp, tidy, type Tensor } from '../engine.js';
import { conv2dGeometry, pool2dGeometry, type Conv2dOptions, type Pool2dOptions } from '../geometry.js';
import type { OpAttrs, OpName } from '../ops.js';
import type { ConformanceCase } from './cases.js';
import { asI32, expectClose, maxAbs, readback, Rng, shapeName, toTensor, type KitTensor } from './harness.js';
import { numel, numericGrad, ref, refReshape, refTensor, type RefTensor } from './reference.js';

type Named<T> = Record<string, T>;

interface GradSpec {
  /** Every input of f; i32 ones (labels, conditions) are never differentiated. */
  inputs: Named<KitTensor>;
  /** The input whose gradient is checked. */
  wrt: string;
  /** f on the backend. */
  f: (t: Named<Tensor>) => Tensor;
  /** f in the reference. */
  fref: (t: Named<RefTensor>) => RefTensor;
  /** The longest sum behind one gradient element (see the tolerance rule in harness.ts). */
  k?: number;
}

/**
 * A gradient check of one input. The tolerance scale is the largest numeric gradient, so elements
 * whose gradient cancels to ~0 get the same absolute floor as the rest.
 */
const gradCase = (name: string, op: OpName, make: (rng: Rng) => GradSpec): ConformanceCase => ({
  name,
  op,
  run: async () => {
    const rng = new Rng(name);
    const { inputs, wrt, f, fref, k = 1 } = make(rng);
    const w = rng.uniform(fref(inputs).shape);
    const numeric = numericGrad((x) => fref({ ...inputs, [wrt]: x }), inputs[wrt], w.data);
    const leaf = tidy(() => {
      const ts = Object.fromEntries(Object.entries(inputs).map(([key, v]) => [key, toTensor(v)]));
      ts[wrt].requireGrad();
      sum(mul(f(ts), toTensor(w))).backward();
      return ts[wrt];
    });
    try {
      // An op with a zero derivative may leave .grad unset; that is right only where it is 0 everywhere.
      const got = leaf.grad ? await readback(leaf.grad) : { shape: leaf.shape, dtype: 'f32' as const, data: new Float32Array(leaf.size) };
      if (!leaf.grad && maxAbs(numeric) !== 0) throw new Error(`${name}: no gradient reached '${wrt}'`);
      expectClose(`${name} (d/d${wrt})`, got, numeric, 'f32', { k, scale: maxAbs(numeric) });
    } finally {
      leaf.dispose();
    }
  },
});

const r = refTensor;
const one = <K extends OpName>(op: K, inputs: Named<Tensor | Tensor[]>, attrs: OpAttrs<K>): Tensor => runOp(op, inputs as never, attrs)[0];
const refOne = <K extends OpName>(op: K, inputs: Named<RefTensor | RefTensor[]>, attrs: OpAttrs<K>): RefTensor =>
  (ref[op] as (i: unknown, a: unknown) => RefTensor[])(inputs, attrs)[0];

/** A gradient case for one input of a single op applied with `attrs`. */
const opGrad = <K extends OpName>(name: string, op: K, wrt: string, inputs: (g: Rng) => Named<KitTensor>, attrs: OpAttrs<K>, k = 1) =>
  gradCase(name, op, (g) => ({ inputs: inputs(g), wrt, f: (t) => one(op, t, attrs), fref: (t) => refOne(op, t, attrs), k }));

// --- elementwise -------------------------------------------------------------------------------

type UnaryFn = OpAttrs<'unary'>['fn'];
/** Domains away from poles and kinks (relu/abs/sign at 0, floor/ceil at integers). */
const UNARY_GRAD_DOMAIN: Record<UnaryFn, (g: Rng, s: number[]) => KitTensor> = {
  neg: (g, s) => g.uniform(s, -2, 2),
  abs: (g, s) => g.signed(s, 0.05, 2),
  exp: (g, s) => g.uniform(s, -3, 3),
  log: (g, s) => g.uniform(s, 0.2, 5),
  sqrt: (g, s) => g.uniform(s, 0.2, 5),
  rsqrt: (g, s) => g.uniform(s, 0.2, 5),
  reciprocal: (g, s) => g.signed(s, 0.3, 3),
  square: (g, s) => g.uniform(s, -2, 2),
  relu: (g, s) => g.signed(s, 0.05, 2),
  sigmoid: (g, s) => g.uniform(s, -4, 4),
  tanh: (g, s) => g.uniform(s, -3, 3),
  sign: (g, s) => g.signed(s, 0.05, 2),
  floor: (g, s) => r(s, g.uniform(s, 0.1, 0.9).data.map((v, i) => v + (i % 5) - 2)),
  ceil: (g, s) => r(s, g.uniform(s, 0.1, 0.9).data.map((v, i) => v + (i % 5) - 2)),
};

type BinaryFn = OpAttrs<'binary'>['fn'];
const binaryGradInputs = (fn: BinaryFn, sa: number[], sb: number[]) => (g: Rng) => ({
  a: fn === 'pow' ? g.uniform(sa, 0.5, 2) : g.uniform(sa, -2, 2),
  b: fn === 'div' ? g.signed(sb, 0.5, 2) : g.uniform(sb, -2, 2),
});

const elementwiseGrads = (): ConformanceCase[] => [
  ...(Object.keys(UNARY_GRAD_DOMAIN) as UnaryFn[]).map((fn) => opGrad(`grad/unary ${fn} [4,3]`, 'unary', 'x', (g) => ({ x: UNARY_GRAD_DOMAIN[fn](g, [4, 3]) }), { fn })),
  ...(['add', 'sub', 'mul', 'div', 'max', 'min', 'pow'] as const).flatMap((fn) =>
    ['a', 'b'].map((wrt) => opGrad(`grad/binary ${fn} broadcast [3,1,4] [2,1] d${wrt}`, 'binary', wrt, binaryGradInputs(fn, [3, 1, 4], [2, 1]), { fn }, 12)),
  ),
  ...['a', 'b'].map((wrt) => opGrad(`grad/binary mul same shape [5,3] d${wrt}`, 'binary', wrt, binaryGradInputs('mul', [5, 3], [5, 3]), { fn: 'mul' })),
  gradCase('grad/binary mul x*x accumulates both paths', 'binary', (g) => ({
    inputs: { x: g.uniform([6]) },
    wrt: 'x',
    f: ({ x }) => mul(x, x),
    fref: ({ x }) => refOne('binary', { a: x, b: x }, { fn: 'mul' }),
  })),
  ...['a', 'b'].map((wrt) =>
    gradCase(`grad/where broadcast d${wrt}`, 'where', (g) => ({
      inputs: { cond: g.ints([3, 1], 0, 2), a: g.uniform([3, 4]), b: g.uniform([4]) },
      wrt,
      f: (t) => one('where', t, {}),
      fref: (t) => refOne('where', t, {}),
      k: 3,
    })),
  ),
  opGrad('grad/cast f32 to f32', 'cast', 'x', (g) => ({ x: g.uniform([3, 2]) }), { dtype: 'f32' }),
  opGrad('grad/copy', 'copy', 'x', (g) => ({ x: g.uniform([3, 2]) }), {}),
];

// --- reductions and matmul ---------------------------------------------------------------------

const reduceMatmulGrads = (): ConformanceCase[] => [
  ...(['sum', 'mean', 'max', 'min'] as const).flatMap((fn) =>
    [[1], [0, 2]].map((axes) => opGrad(`grad/reduce ${fn} [3,4,5] axes ${shapeName(axes)}`, 'reduce', 'x', (g) => ({ x: g.distinct([3, 4, 5]) }), { fn, axes })),
  ),
  ...[false, true].flatMap((transA) =>
    [false, true].flatMap((transB) =>
      ['a', 'b'].map((wrt) =>
        opGrad(
          `grad/matmul 5x4x3${transA ? ' transA' : ''}${transB ? ' transB' : ''} d${wrt}`,
          'matmul',
          wrt,
          (g) => ({ a: g.uniform(transA ? [4, 5] : [5, 4]), b: g.uniform(transB ? [3, 4] : [4, 3]) }),
          { transA, transB },
          5,
        ),
      ),
    ),
  ),
  ...['a', 'b'].map((wrt) =>
    opGrad(`grad/matmul broadcast batch [2,1,3,4] [3,4,2] d${wrt}`, 'matmul', wrt, (g) => ({ a: g.uniform([2, 1, 3, 4]), b: g.uniform([3, 4, 2]) }), { transA: false, transB: false }, 12),
  ),
];

// --- convolution, pooling, normalisation, loss -------------------------------------------------

const CONV_GRAD: [number[], number[], Conv2dOptions][] = [
  [[2, 3, 6, 5], [4, 3, 3, 3], { padding: 1 }],
  [[1, 4, 7, 7], [4, 2, 3, 3], { stride: 2, padding: 1, groups: 2 }],
  [[2, 3, 5, 5], [2, 3, 1, 1], { stride: 2 }],
  [[1, 4, 8, 7], [4, 1, 3, 3], { padding: 2, dilation: 2, groups: 4 }],
  [[1, 2, 9, 9], [3, 2, 5, 5], { stride: 3, padding: 2 }],
  [[2, 2, 5, 6], [3, 2, 2, 3], { stride: [2, 1], padding: [0, 1], dilation: [1, 2] }],
];

const POOL_GRAD: [string, number[], Pool2dOptions][] = [
  ['maxPool2d', [2, 2, 7, 7], { kernelSize: 3, stride: 2, padding: 1 }],
  ['maxPool2d', [1, 3, 6, 5], { kernelSize: 2 }],
  ['avgPool2d', [2, 2, 7, 7], { kernelSize: 3, stride: 2, padding: 1 }],
  ['avgPool2d', [2, 2, 7, 7], { kernelSize: 3, stride: 2, padding: 1, countIncludePad: false }],
  ['avgPool2d', [1, 2, 5, 6], { kernelSize: 2, stride: 1 }],
];

const convPoolGrads = (): ConformanceCase[] => [
  ...CONV_GRAD.flatMap(([xs, ws, opts]) =>
    ['x', 'w'].map((wrt) => {
      const geom = conv2dGeometry(xs, ws, opts);
      const k = wrt === 'x' ? geom.outChannels * geom.kernelH * geom.kernelW : geom.batch * geom.outH * geom.outW;
      return gradCase(`grad/conv2d x${shapeName(xs)} w${shapeName(ws)} ${JSON.stringify(opts)} d${wrt}`, 'conv2d', (g) => ({
        inputs: { x: g.uniform(xs), w: g.uniform(ws) },
        wrt,
        f: ({ x, w }) => conv2d(x, w, opts),
        fref: (t) => refOne('conv2d', t, geom),
        k,
      }));
    }),
  ),
  ...POOL_GRAD.map(([op, xs, opts]) => {
    const geom = pool2dGeometry(xs, opts);
    const pool = op === 'maxPool2d' ? maxPool2d : avgPool2d;
    return gradCase(`grad/${op} x${shapeName(xs)} ${JSON.stringify(opts)}`, op as 'maxPool2d' | 'avgPool2d', (g) => ({
      inputs: { x: g.distinct(xs) },
      wrt: 'x',
      f: ({ x }) => pool(x, opts),
      fref: (t) => refOne(op as 'maxPool2d', t, geom),
      k: geom.kernelH * geom.kernelW,
    }));
  }),
];

/** conv2d's fused epilogue, d every input: act(conv(x, w)·scale + bias + residual). */
const epilogueGrads = (): ConformanceCase[] => {
  const opts = { padding: 1 };
  const geom = conv2dGeometry([2, 3, 5, 4], [4, 3, 3, 3], opts);
  const inputs = (g: Rng) => ({
    x: g.uniform([2, 3, 5, 4]), w: g.uniform([4, 3, 3, 3]), scale: g.uniform([4], 0.5, 2), bias: g.uniform([4]), residual: g.uniform([2, 4, 5, 4], -2, 2),
  });
  return [true, false].flatMap((relu) =>
    ['x', 'w', 'scale', 'bias', 'residual'].map((wrt) =>
      gradCase(`grad/conv2d epilogue scale+bias+residual${relu ? '+relu' : ''} d${wrt}`, 'conv2d', (g) => ({
        inputs: inputs(g),
        wrt,
        f: ({ x, w, scale, bias, residual }) => conv2d(x, w, { ...opts, scale, bias, residual, relu }),
        fref: (t) => refOne('conv2d', t, { ...geom, relu }),
        k: wrt === 'w' || wrt === 'bias' || wrt === 'scale' ? 40 : 36,
      })),
    ),
  );
};

const normLossGrads = (): ConformanceCase[] => [
  ...epilogueGrads(),
  ...[true, false].flatMap((relu) =>
    ['x', 'gamma', 'beta', 'residual'].map((wrt) =>
      gradCase(`grad/batchNormTrain residual${relu ? '+relu' : ''} [4,3,2,2] d${wrt}`, 'batchNormTrain', (g) => ({
        inputs: { x: g.uniform([4, 3, 2, 2], -2, 2), gamma: g.uniform([3], 0.5, 2), beta: g.uniform([3]), residual: g.uniform([4, 3, 2, 2], -2, 2) },
        wrt,
        f: ({ x, gamma, beta, residual }) => batchNormTrain(x, gamma, beta, 1e-3, { residual, relu }).y,
        fref: (t) => refOne('batchNormTrain', t, { eps: 1e-3, relu }),
        k: 16,
      })),
    ),
  ),
  gradCase('grad/batchNormTrain relu [5,2,3] dx', 'batchNormTrain', (g) => ({
    inputs: { x: g.uniform([5, 2, 3], -2, 2), gamma: g.uniform([2], 0.5, 2), beta: g.uniform([2]) },
    wrt: 'x',
    f: ({ x, gamma, beta }) => batchNormTrain(x, gamma, beta, 1e-3, { relu: true }).y,
    fref: (t) => refOne('batchNormTrain', t, { eps: 1e-3, relu: true }),
    k: 15,
  })),
  ...[['x', [4, 3, 2, 2]], ['gamma', [4, 3, 2, 2]], ['beta', [4, 3, 2, 2]], ['x', [5, 2]]].map(([wrt, shape]) => {
    const s = shape as number[];
    return gradCase(`grad/batchNormTrain ${shapeName(s)} d${wrt}`, 'batchNormTrain', (g) => ({
      inputs: { x: g.uniform(s, -2, 2), gamma: g.uniform([s[1]], 0.5, 2), beta: g.uniform([s[1]]) },
      wrt: wrt as string,
      f: ({ x, gamma, beta }) => batchNormTrain(x, gamma, beta, 1e-3).y,
      fref: (t) => refOne('batchNormTrain', t, { eps: 1e-3 }),
      k: numel(s) / s[1],
    }));
  }),
  ...['x', 'scale', 'shift'].map((wrt) =>
    gradCase(`grad/channelAffine [2,3,2,2] d${wrt}`, 'channelAffine', (g) => ({
      inputs: { x: g.uniform([2, 3, 2, 2]), scale: g.uniform([3]), shift: g.uniform([3]) },
      wrt,
      f: ({ x, scale, shift }) => channelAffine(x, scale, shift),
      fref: (t) => refOne('channelAffine', t, {}),
      k: 8,
    })),
  ),
  ...[0, 0.1].map((smoothing) =>
    gradCase(`grad/softmaxCrossEntropy [4,5] smoothing ${smoothing}`, 'softmaxCrossEntropy', (g) => ({
      inputs: { logits: g.uniform([4, 5], -3, 3), labels: g.ints([4], 0, 5) },
      wrt: 'logits',
      f: ({ logits, labels }) => softmaxCrossEntropy(logits, labels, smoothing),
      fref: (t) => refOne('softmaxCrossEntropy', t, { smoothing }),
      k: 5,
    })),
  ),
];

/** Local response normalisation (strong and AlexNet's weak one, odd and even windows) and dropout. */
const lrnDropoutGrads = (): ConformanceCase[] => [
  ...([
    ['', [2, 7, 3, 3], { size: 5, alpha: 1, beta: 0.75, k: 2 }, 2],
    ['even size ', [1, 6, 2, 3], { size: 4, alpha: 2, beta: 1.5, k: 1 }, 2],
    ["AlexNet's ", [2, 8, 2, 2], { size: 5, alpha: 1e-4, beta: 0.75, k: 2 }, 30],
    ['rank 3 ', [2, 5, 4], { size: 3, alpha: 1, beta: 0.5, k: 1 }, 2],
  ] as const).map(([label, shape, attrs, range]) =>
    opGrad(`grad/localResponseNorm ${label}${shapeName([...shape])} size ${attrs.size}`, 'localResponseNorm', 'x', (g) => ({ x: g.uniform([...shape], -range, range) }), attrs, attrs.size * attrs.size),
  ),
  opGrad('grad/dropout p 0.3 [4,5,6]', 'dropout', 'x', (g) => ({ x: g.uniform([4, 5, 6]) }), { p: 0.3, seed: [5, 6], counter: [9, 0] }),
];

// --- layout ------------------------------------------------------------------------------------

const layoutGrads = (): ConformanceCase[] => [
  opGrad('grad/permute [2,3,4] by [2,0,1]', 'permute', 'x', (g) => ({ x: g.uniform([2, 3, 4]) }), { perm: [2, 0, 1] }),
  opGrad('grad/slice [5,6] at [1,2] size [3,3]', 'slice', 'x', (g) => ({ x: g.uniform([5, 6]) }), { begin: [1, 2], size: [3, 3] }),
  opGrad('grad/pad [2,3] by [[1,2],[0,1]]', 'pad', 'x', (g) => ({ x: g.uniform([2, 3]) }), { pads: [[1, 2], [0, 1]], value: 0.5 }),
  opGrad('grad/broadcastTo [3,1] to [2,3,4]', 'broadcastTo', 'x', (g) => ({ x: g.uniform([3, 1]) }), { shape: [2, 3, 4] }, 8),
  ...['p', 'q'].map((wrt) =>
    gradCase(`grad/concat [2,3] [2,2] axis 1 d${wrt}`, 'concat', (g) => ({
      inputs: { p: g.uniform([2, 3]), q: g.uniform([2, 2]) },
      wrt,
      f: ({ p, q }) => concat([p, q], 1),
      fref: ({ p, q }) => refOne('concat', { xs: [p, q] }, { axis: 1 }),
    })),
  ),
];

// --- composites (functions built from several ops) ---------------------------------------------

const refSoftmax = (x: RefTensor, axis: number, log: boolean): RefTensor => {
  const m = refOne('reduce', { x }, { fn: 'max', axes: [axis] });
  const shifted = refOne('binary', { a: x, b: m }, { fn: 'sub' });
  const s = refOne('reduce', { x: refOne('unary', { x: shifted }, { fn: 'exp' }) }, { fn: 'sum', axes: [axis] });
  return log
    ? refOne('binary', { a: shifted, b: refOne('unary', { x: s }, { fn: 'log' }) }, { fn: 'sub' })
    : refOne('binary', { a: refOne('unary', { x: shifted }, { fn: 'exp' }), b: s }, { fn: 'div' });
};
const refReduce = (x: RefTensor, fn: OpAttrs<'reduce'>['fn'], axes: number[]) =>
  refReshape(refOne('reduce', { x }, { fn, axes }), x.shape.filter((_, i) => !axes.includes(i)));

/**
 * Adaptive average pooling by the reference's own ops: for each output cell, a slice of its window
 * averaged (the forward kit checks the same definition written as loops).
 */
const refAdaptiveByOps = (x: RefTensor, oh: number, ow: number): RefTensor => {
  const [n, c, h, w] = x.shape;
  const span = (i: number, inSize: number, outSize: number) => [Math.floor((i * inSize) / outSize), Math.ceil(((i + 1) * inSize) / outSize)];
  const cells: RefTensor[] = [];
  for (let i = 0; i < oh; i++)
    for (let j = 0; j < ow; j++) {
      const [h0, h1] = span(i, h, oh);
      const [w0, w1] = span(j, w, ow);
      const window = refOne('slice', { x }, { begin: [0, 0, h0, w0], size: [n, c, h1 - h0, w1 - w0] });
      cells.push(refOne('reduce', { x: window }, { fn: 'mean', axes: [2, 3] }));
    }
  // Cells [n, c, 1, 1] side by side in row-major order of (i, j).
  return refReshape(refOne('concat', { xs: cells }, { axis: 3 }), [n, c, oh, ow]);
};

const compositeGrads = (): ConformanceCase[] => [
  ...[0, 1].map((axis) =>
    gradCase(`grad/softmax [3,5] axis ${axis}`, 'reduce', (g) => ({
      inputs: { x: g.uniform([3, 5], -3, 3) },
      wrt: 'x',
      f: ({ x }) => softmax(x, axis),
      fref: ({ x }) => refSoftmax(x, axis, false),
      k: 5,
    })),
  ),
  gradCase('grad/logSoftmax [4,6]', 'reduce', (g) => ({
    inputs: { x: g.uniform([4, 6], -3, 3) },
    wrt: 'x',
    f: ({ x }) => logSoftmax(x, -1),
    fref: ({ x }) => refSoftmax(x, 1, true),
    k: 6,
  })),
  ...[
    ['mean', 0],
    ['sum', 0.1],
  ].map(([reduction, labelSmoothing]) =>
    gradCase(`grad/crossEntropy ${reduction} reduction, smoothing ${labelSmoothing}`, 'softmaxCrossEntropy', (g) => ({
      inputs: { logits: g.uniform([6, 4], -3, 3), labels: g.ints([6], 0, 4) },
      wrt: 'logits',
      f: ({ logits, labels }) => crossEntropy(logits, labels, { reduction: reduction as 'mean' | 'sum', labelSmoothing: labelSmoothing as number }),
      fref: (t) => refReduce(refOne('softmaxCrossEntropy', t, { smoothing: labelSmoothing as number }), reduction as 'mean' | 'sum', [0]),
      k: 6,
    })),
  ),
  gradCase('grad/mean over all axes', 'reduce', (g) => ({ inputs: { x: g.uniform([3, 4]) }, wrt: 'x', f: ({ x }) => mean(x), fref: ({ x }) => refReduce(x, 'mean', [0, 1]) })),
  gradCase('grad/max over axis 1', 'reduce', (g) => ({ inputs: { x: g.distinct([3, 5]) }, wrt: 'x', f: ({ x }) => max(x, 1), fref: ({ x }) => refReduce(x, 'max', [1]) })),
  gradCase('grad/min over axis 0', 'reduce', (g) => ({ inputs: { x: g.distinct([3, 5]) }, wrt: 'x', f: ({ x }) => min(x, 0), fref: ({ x }) => refReduce(x, 'min', [0]) })),
  gradCase('grad/globalAvgPool2d', 'reduce', (g) => ({
    inputs: { x: g.uniform([2, 3, 4, 3]) },
    wrt: 'x',
    f: ({ x }) => globalAvgPool2d(x),
    fref: ({ x }) => refReduce(x, 'mean', [2, 3]),
  })),
  ...['x', 'w'].map((wrt) =>
    gradCase(`grad/flatten then matmul d${wrt}`, 'matmul', (g) => ({
      inputs: { x: g.uniform([2, 3, 2, 2]), w: g.uniform([12, 5]) },
      wrt,
      f: ({ x, w }) => matmul(flatten(x), w),
      fref: ({ x, w }) => refOne('matmul', { a: refReshape(x, [2, 12]), b: w }, { transA: false, transB: false }),
      k: 12,
    })),
  ),
  gradCase('grad/reshape view then permute', 'permute', (g) => ({
    inputs: { x: g.uniform([6, 4]) },
    wrt: 'x',
    f: ({ x }) => permute(reshape(x, [2, 3, 4]), [1, 2, 0]),
    fref: ({ x }) => refOne('permute', { x: refReshape(x, [2, 3, 4]) }, { perm: [1, 2, 0] }),
  })),
  gradCase('grad/slice then pad then broadcast', 'slice', (g) => ({
    inputs: { x: g.uniform([4, 5]) },
    wrt: 'x',
    f: ({ x }) => broadcastTo(pad(slice(x, [1, 1], [2, 3]), [[1, 0], [0, 1]]), [2, 3, 4]),
    fref: ({ x }) => {
      const s = refOne('slice', { x }, { begin: [1, 1], size: [2, 3] });
      return refOne('broadcastTo', { x: refOne('pad', { x: s }, { pads: [[1, 0], [0, 1]], value: 0 }) }, { shape: [2, 3, 4] });
    },
    k: 2,
  })),
  ...['x', 'w', 'gamma'].map((wrt) =>
    gradCase(`grad/residual block relu(bn(conv(x))) + x d${wrt}`, 'conv2d', (g) => ({
      inputs: { x: g.uniform([2, 3, 5, 5]), w: g.uniform([3, 3, 3, 3], -0.5, 0.5), gamma: g.uniform([3], 0.5, 2), beta: g.uniform([3]) },
      wrt,
      f: ({ x, w, gamma, beta }) => add(relu(batchNormTrain(conv2d(x, w, { padding: 1 }), gamma, beta).y), x),
      fref: ({ x, w, gamma, beta }) => {
        const geom = conv2dGeometry(x.shape, w.shape, { padding: 1 });
        const y = refOne('batchNormTrain', { x: refOne('conv2d', { x, w }, geom), gamma, beta }, { eps: 1e-5 });
        return refOne('binary', { a: refOne('unary', { x: y }, { fn: 'relu' }), b: x }, { fn: 'add' });
      },
      k: 50,
    })),
  ),
  ...([
    ['avgPool2d', [2, 3, 8, 6], [4, 3]],
    ['matmul', [1, 2, 7, 5], [3, 2]],
    ['matmul', [1, 2, 2, 3], [5, 4]],
  ] as const).map(([op, shape, [oh, ow]]) =>
    gradCase(`grad/adaptiveAvgPool2d x${shapeName([...shape])} to ${oh}x${ow}`, op, (g) => ({
      inputs: { x: g.uniform([...shape]) },
      wrt: 'x',
      f: ({ x }) => adaptiveAvgPool2d(x, [oh, ow]),
      fref: ({ x }) => refAdaptiveByOps(x, oh, ow),
      k: 4,
    })),
  ),
  gradCase('grad/softmaxCrossEntropy times a number', 'softmaxCrossEntropy', (g) => ({
    inputs: { logits: g.uniform([5, 3], -2, 2), labels: asI32(r([5], [0, 2, 1, 1, 0])) },
    wrt: 'logits',
    f: ({ logits, labels }) => mul(softmaxCrossEntropy(logits, labels), 2),
    fref: (t) => refOne('binary', { a: refOne('softmaxCrossEntropy', t, { smoothing: 0 }), b: r([], [2]) }, { fn: 'mul' }),
    k: 3,
  })),
];

/** Every gradient case. */
export const gradientCases = (): ConformanceCase[] => [
  ...elementwiseGrads(),
  ...reduceMatmulGrads(),
  ...convPoolGrads(),
  ...normLossGrads(),
  ...lrnDropoutGrads(),
  ...layoutGrads(),
  ...compositeGrads(),
];
