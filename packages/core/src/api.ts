/** The tensor functions users call, each a thin layer over one op of the interface (or a few). */
import { getBackend, noGrad, record, runOp, Tensor, wrap } from './engine.js';
import { conv2dGeometry, pool2dGeometry, type Conv2dOptions, type Pair, type Pool2dOptions } from './geometry.js';
import type { BinaryFn, CompareFn, DataArray, DType, ReduceFn, UnaryFn } from './ops.js';
import { broadcastReductionAxes, checkShape, normAxis, ShapeError, sizeOf, type Shape } from './shape.js';
import { nextDraw } from './random.js';

export { Tensor };

/** Nested arrays of numbers, as `tensor()` accepts them. */
export type NestedArray = number | readonly NestedArray[];

const inferShape = (v: NestedArray): number[] => (Array.isArray(v) ? [v.length, ...(v.length ? inferShape(v[0]) : [])] : []);

/**
 * A tensor from values: a typed array or flat array with `shape`, nested arrays (shape inferred),
 * or a number (a scalar). dtype defaults to f32 (i32 for an Int32Array).
 */
export const tensor = (values: NestedArray | ArrayLike<number>, shape?: Shape, dtype?: DType): Tensor => {
  const dt: DType = dtype ?? (values instanceof Int32Array ? 'i32' : 'f32');
  const flatValues = typeof values === 'number' ? [values] : Array.isArray(values) ? (values as NestedArray[]).flat(Infinity as 1) as number[] : (values as ArrayLike<number>);
  const s = shape ?? (typeof values === 'number' ? [] : Array.isArray(values) ? inferShape(values as NestedArray) : [flatValues.length]);
  checkShape(s);
  if (sizeOf(s) !== flatValues.length) throw new ShapeError(`tensor(): ${flatValues.length} values do not fill shape [${s.join(', ')}]`);
  const data: DataArray =
    dt === 'f32' ? (flatValues instanceof Float32Array ? flatValues : Float32Array.from(flatValues))
      : flatValues instanceof Int32Array ? flatValues : Int32Array.from(flatValues, (x) => Math.trunc(x));
  const backend = getBackend();
  return wrap(backend, backend.upload(data), s, dt);
};

/** A rank-0 tensor. */
export const scalar = (value: number, dtype: DType = 'f32'): Tensor => full([], value, dtype);

/** A tensor of `shape` filled with `value`. */
export const full = (shape: Shape, value: number, dtype: DType = 'f32'): Tensor => {
  checkShape(shape);
  return runOp('fill', {}, { shape: [...shape], dtype, value })[0];
};

/** Zeros of `shape`. */
export const zeros = (shape: Shape, dtype: DType = 'f32'): Tensor => full(shape, 0, dtype);
/** Ones of `shape`. */
export const ones = (shape: Shape, dtype: DType = 'f32'): Tensor => full(shape, 1, dtype);

/** Options of the random factories; without `seed`, draws come from the global generator (`manualSeed`). */
export interface RandomOptions {
  seed?: number;
}

/** Uniform draws in (low, high), counter-based so every backend draws the same numbers. */
export const rand = (shape: Shape, { low = 0, high = 1, seed }: RandomOptions & { low?: number; high?: number } = {}): Tensor => {
  checkShape(shape);
  const { key, counter } = nextDraw('uniform', sizeOf(shape), seed);
  return runOp('randomFill', {}, { shape: [...shape], dist: 'uniform', seed: key, counter, a: low, b: high })[0];
};

/** Normal draws with the given mean and standard deviation. */
export const randn = (shape: Shape, { mean = 0, std = 1, seed }: RandomOptions & { mean?: number; std?: number } = {}): Tensor => {
  checkShape(shape);
  const { key, counter } = nextDraw('normal', sizeOf(shape), seed);
  return runOp('randomFill', {}, { shape: [...shape], dist: 'normal', seed: key, counter, a: mean, b: std })[0];
};

// --- elementwise -----------------------------------------------------------------------------

const unary = (fn: UnaryFn) => (x: Tensor): Tensor => runOp('unary', { x }, { fn })[0];
/** -x */ export const neg = unary('neg');
/** |x| */ export const abs = unary('abs');
/** e^x */ export const exp = unary('exp');
/** Natural logarithm. */ export const log = unary('log');
/** Square root. */ export const sqrt = unary('sqrt');
/** 1 / sqrt(x) */ export const rsqrt = unary('rsqrt');
/** 1 / x */ export const reciprocal = unary('reciprocal');
/** x² */ export const square = unary('square');
/** max(x, 0) */ export const relu = unary('relu');
/** 1 / (1 + e^-x) */ export const sigmoid = unary('sigmoid');
/** Hyperbolic tangent. */ export const tanh = unary('tanh');
/** -1, 0 or 1. */ export const sign = unary('sign');
/** Round toward -inf. */ export const floor = unary('floor');
/** Round toward +inf. */ export const ceil = unary('ceil');

const operand = (like: Tensor, b: Tensor | number): Tensor => (b instanceof Tensor ? b : full([], b, like.dtype));
const binary = (fn: BinaryFn) => (a: Tensor, b: Tensor | number): Tensor => runOp('binary', { a, b: operand(a, b) }, { fn })[0];
/** a + b (broadcast). */ export const add = binary('add');
/** a - b (broadcast). */ export const sub = binary('sub');
/** a * b (broadcast). */ export const mul = binary('mul');
/** a / b (broadcast). */ export const div = binary('div');
/** Elementwise maximum. */ export const maximum = binary('max');
/** Elementwise minimum. */ export const minimum = binary('min');
/** a ** b */ export const pow = binary('pow');

const compare = (fn: CompareFn) => (a: Tensor, b: Tensor | number): Tensor => runOp('compare', { a, b: operand(a, b) }, { fn })[0];
/** a == b as i32 0/1. */ export const eq = compare('eq');
/** a != b as i32 0/1. */ export const ne = compare('ne');
/** a < b as i32 0/1. */ export const lt = compare('lt');
/** a <= b as i32 0/1. */ export const le = compare('le');
/** a > b as i32 0/1. */ export const gt = compare('gt');
/** a >= b as i32 0/1. */ export const ge = compare('ge');

/** cond != 0 ? a : b, broadcast together. */
export const where = (cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor => {
  const ta = a instanceof Tensor ? a : full([], a, b instanceof Tensor ? b.dtype : 'f32');
  return runOp('where', { cond, a: ta, b: operand(ta, b) }, {})[0];
};

/** Converts to another dtype (f32 -> i32 truncates toward zero). */
export const cast = (x: Tensor, dtype: DType): Tensor => (x.dtype === dtype ? clone(x) : runOp('cast', { x }, { dtype })[0]);
/** A copy with its own storage. */
export const clone = (x: Tensor): Tensor => runOp('copy', { x }, {})[0];

// --- reductions ------------------------------------------------------------------------------

const axesOf = (x: Tensor, axes: number | readonly number[] | undefined, op: string): number[] => {
  const list = axes === undefined ? x.shape.map((_, i) => i) : typeof axes === 'number' ? [axes] : [...axes];
  const norm = [...new Set(list.map((a) => normAxis(a, x.rank, op)))].sort((a, b) => a - b);
  return norm;
};

const reduce = (fn: ReduceFn) => (x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor => {
  const ax = axesOf(x, axes, fn);
  const [y] = runOp('reduce', { x }, { fn, axes: ax });
  return keepDims ? y : reshape(y, x.shape.filter((_, i) => !ax.includes(i)));
};
/** Sum over `axes` (all when omitted). */ export const sum = reduce('sum');
/** Mean over `axes` (all when omitted). */ export const mean = reduce('mean');
/** Maximum over `axes` (all when omitted); the gradient is shared among ties. */ export const max = reduce('max');
/** Minimum over `axes` (all when omitted). */ export const min = reduce('min');

/** Index of the first maximum along `axis`, as i32. */
export const argmax = (x: Tensor, axis: number, keepDims = false): Tensor => {
  const a = normAxis(axis, x.rank, 'argmax');
  const [y] = runOp('argmax', { x }, { axis: a });
  return keepDims ? y : reshape(y, x.shape.filter((_, i) => i !== a));
};

/** The k largest entries along the last axis, in descending order, with their indices. */
export const topk = (x: Tensor, k: number): { values: Tensor; indices: Tensor } => {
  const [values, indices] = runOp('topk', { x }, { k });
  return { values, indices };
};

/** Sums a broadcast gradient back to `shape`. */
export const sumTo = (g: Tensor, shape: Shape): Tensor => {
  const axes = broadcastReductionAxes(shape, g.shape);
  if (axes.length === 0) return g;
  return reshape(runOp('reduce', { x: g }, { fn: 'sum', axes })[0], shape);
};

// --- linear algebra and convolutions ----------------------------------------------------------

/** Batched matrix product, optionally transposing the last two axes of either operand. */
export const matmul = (a: Tensor, b: Tensor, { transA = false, transB = false } = {}): Tensor =>
  runOp('matmul', { a, b }, { transA, transB })[0];

/** The fused epilogue of `conv2d` and `batchNormTrain`: y = act(y + bias + residual). */
export interface EpilogueOptions {
  /** Added to the output (the shortcut of a residual block); same shape as the output. */
  residual?: Tensor;
  /** Ends with max(y, 0). */
  relu?: boolean;
}

/** Options of the `conv2d` function: geometry, a per-output-channel scale and bias, and the fused epilogue. */
export interface Conv2dCallOptions extends Conv2dOptions, EpilogueOptions {
  /** [K], multiplies each output channel (an inference batch-norm's gamma/sqrt(var + eps)). */
  scale?: Tensor;
  /** [K], added per output channel. */
  bias?: Tensor;
}

/**
 * 2-D convolution (cross-correlation, as PyTorch) of x [N,C,H,W] with w [K,C/groups,R,S], then
 * act(y·scale + bias + residual) in the same op: relu(bn(conv(x, w)) + shortcut) at inference costs
 * one pass, not four.
 */
export const conv2d = (x: Tensor, w: Tensor, { scale, bias, residual, relu = false, ...opts }: Conv2dCallOptions = {}): Tensor =>
  runOp('conv2d', { x, w, scale, bias, residual }, { ...conv2dGeometry(x.shape, w.shape, opts), relu })[0];

/** 2-D max pooling. */
export const maxPool2d = (x: Tensor, opts: Pool2dOptions): Tensor => runOp('maxPool2d', { x }, pool2dGeometry(x.shape, opts, 'maxPool2d'))[0];
/** 2-D average pooling. */
export const avgPool2d = (x: Tensor, opts: Pool2dOptions): Tensor => runOp('avgPool2d', { x }, pool2dGeometry(x.shape, opts, 'avgPool2d'))[0];
/** Mean over H and W: [N,C,H,W] -> [N,C]. */
export const globalAvgPool2d = (x: Tensor): Tensor => {
  if (x.rank !== 4) throw new ShapeError(`globalAvgPool2d: input must be [N, C, H, W], got [${x.shape.join(', ')}]`);
  return mean(x, [2, 3]);
};

/**
 * The averaging matrix [out, in] of adaptive pooling along one axis: row i holds 1/len over PyTorch's
 * window floor(i·in/out) .. ceil((i+1)·in/out), so windows overlap where out does not divide in.
 */
const adaptiveWeights = (inSize: number, outSize: number): Float32Array => {
  const m = new Float32Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    const [start, end] = [Math.floor((i * inSize) / outSize), Math.ceil(((i + 1) * inSize) / outSize)];
    for (let j = start; j < end; j++) m[i * inSize + j] = 1 / (end - start);
  }
  return m;
};

/**
 * Adaptive average pooling to `outputSize` (PyTorch's `F.adaptive_avg_pool2d`), composed from other
 * ops: the input itself where the sizes agree; a global mean for 1x1; one `avgPool2d` (kernel =
 * stride = in/out) where the output divides the input; otherwise, as every output cell averages a
 * rectangle of rows times columns, Pₕ · x · Pᵥᵀ, two matmuls by the averaging matrices of the axes
 * (which also repeats cells when the output is larger than the input).
 */
export const adaptiveAvgPool2d = (x: Tensor, outputSize: Pair): Tensor => {
  if (x.rank !== 4) throw new ShapeError(`adaptiveAvgPool2d: input must be [N, C, H, W], got [${x.shape.join(', ')}]`);
  const [oh, ow] = typeof outputSize === 'number' ? [outputSize, outputSize] : outputSize;
  if (![oh, ow].every((d) => Number.isInteger(d) && d >= 1)) throw new ShapeError(`adaptiveAvgPool2d: output size must be integers >= 1, got ${JSON.stringify(outputSize)}`);
  const [n, c, h, w] = x.shape;
  if (h === 0 || w === 0) throw new ShapeError(`adaptiveAvgPool2d: input [${x.shape.join(', ')}] has no pixels to average`);
  if (h === oh && w === ow) return x;
  if (oh === 1 && ow === 1) return reshape(globalAvgPool2d(x), [n, c, 1, 1]);
  if (h % oh === 0 && w % ow === 0) return avgPool2d(x, { kernelSize: [h / oh, w / ow] });
  const rows = tensor(adaptiveWeights(h, oh), [oh, h]);
  const cols = tensor(adaptiveWeights(w, ow), [ow, w]);
  return matmul(matmul(rows, x), cols, { transB: true });
};

// --- normalisation and losses -----------------------------------------------------------------

/** Options of `localResponseNorm`, with PyTorch's defaults. */
export interface LocalResponseNormOptions {
  alpha?: number;
  beta?: number;
  k?: number;
}

/**
 * Local response normalisation across channels (PyTorch's `F.local_response_norm`): x over
 * (k + alpha/size · Σ x²)^beta, the sum over the `size` channels around each one (zeros past the edges).
 */
export const localResponseNorm = (x: Tensor, size: number, { alpha = 1e-4, beta = 0.75, k = 1 }: LocalResponseNormOptions = {}): Tensor =>
  runOp('localResponseNorm', { x }, { size, alpha, beta, k })[0];

/** Options of `dropout`. */
export interface DropoutOptions extends RandomOptions {
  /** False (evaluation) passes x through. Default true, as PyTorch's `F.dropout`. */
  training?: boolean;
}

/**
 * Dropout (PyTorch's `F.dropout`): in training, each element is zeroed with probability p and the
 * others scaled by 1/(1-p), the mask drawn from the global generator (or `seed`), so it is the same
 * on every backend for the same seed; otherwise x itself.
 */
export const dropout = (x: Tensor, p = 0.5, { training = true, seed }: DropoutOptions = {}): Tensor => {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  if (p === 1) return mul(x, 0);
  const { key, counter } = nextDraw('uniform', x.size, seed);
  return runOp('dropout', { x }, { p, seed: key, counter })[0];
};

/**
 * Batch-norm with batch statistics: y = act(gamma·x̂ + beta + residual), plus the per-channel batch
 * mean and 1/sqrt(var + eps).
 */
export const batchNormTrain = (
  x: Tensor, gamma: Tensor, beta: Tensor, eps = 1e-5, { residual, relu = false }: EpilogueOptions = {},
): { y: Tensor; mean: Tensor; invstd: Tensor } => {
  const [y, m, invstd] = runOp('batchNormTrain', { x, gamma, beta, residual }, { eps, relu });
  return { y, mean: m, invstd };
};

/** y = x * scale[c] + shift[c] over axis 1. */
export const channelAffine = (x: Tensor, scale: Tensor, shift: Tensor): Tensor => runOp('channelAffine', { x, scale, shift }, {})[0];

/** Per-sample softmax cross-entropy of logits [N, C] against i32 labels [N], with label smoothing. */
export const softmaxCrossEntropy = (logits: Tensor, labels: Tensor, smoothing = 0): Tensor =>
  runOp('softmaxCrossEntropy', { logits, labels }, { smoothing })[0];

/** Options of `crossEntropy`, as PyTorch's `F.cross_entropy`. */
export interface CrossEntropyOptions {
  labelSmoothing?: number;
  reduction?: 'mean' | 'sum' | 'none';
}

/** Cross-entropy loss (PyTorch's `F.cross_entropy` with class-index targets). */
export const crossEntropy = (logits: Tensor, labels: Tensor, { labelSmoothing = 0, reduction = 'mean' }: CrossEntropyOptions = {}): Tensor => {
  const per = softmaxCrossEntropy(logits, labels, labelSmoothing);
  return reduction === 'none' ? per : reduction === 'sum' ? sum(per) : mean(per);
};

/** log(softmax(x)) along `axis`, computed stably. */
export const logSoftmax = (x: Tensor, axis = -1): Tensor => {
  const a = normAxis(axis, x.rank, 'logSoftmax');
  const m = noGrad(() => max(x, a, true));
  const shifted = sub(x, m);
  return sub(shifted, log(sum(exp(shifted), a, true)));
};

/** softmax along `axis`. */
export const softmax = (x: Tensor, axis = -1): Tensor => {
  const a = normAxis(axis, x.rank, 'softmax');
  const m = noGrad(() => max(x, a, true));
  const e = exp(sub(x, m));
  return div(e, sum(e, a, true));
};

// --- layout -----------------------------------------------------------------------------------

/** A view with another shape over the same storage (one entry may be -1). */
export const reshape = (x: Tensor, shape: Shape): Tensor => {
  const s = [...shape];
  const hole = s.indexOf(-1);
  if (hole >= 0) {
    const rest = sizeOf(s.filter((_, i) => i !== hole));
    s[hole] = rest === 0 ? 0 : x.size / rest;
  }
  checkShape(s, 'reshape: shape');
  if (sizeOf(s) !== x.size) throw new ShapeError(`reshape: cannot view [${x.shape.join(', ')}] (${x.size} elements) as [${shape.join(', ')}]`);
  x.assertLive();
  x.ref.refs++;
  const y = new Tensor(s, x.dtype, x.ref);
  record('reshape', RESHAPE_GRAD, { x }, [y], { shape: x.shape });
  return y;
};
const RESHAPE_GRAD = { backward: ({ attrs }: { attrs: unknown }, [dy]: (Tensor | null)[]) => ({ x: reshape(dy!, (attrs as { shape: Shape }).shape) }) };

/** Collapses axes startDim..endDim into one. */
export const flatten = (x: Tensor, startDim = 1, endDim = -1): Tensor => {
  if (x.rank === 0) return reshape(x, [1]);
  const s = normAxis(startDim, x.rank, 'flatten');
  const e = normAxis(endDim, x.rank, 'flatten');
  return reshape(x, [...x.shape.slice(0, s), sizeOf(x.shape.slice(s, e + 1)), ...x.shape.slice(e + 1)]);
};

/** Removes axes of size 1 (all of them, or those listed). */
export const squeeze = (x: Tensor, axes?: readonly number[]): Tensor => {
  const ax = axes?.map((a) => normAxis(a, x.rank, 'squeeze'));
  return reshape(x, x.shape.filter((d, i) => !(d === 1 && (!ax || ax.includes(i)))));
};

/** Inserts an axis of size 1 at `axis`. */
export const unsqueeze = (x: Tensor, axis: number): Tensor => {
  const a = normAxis(axis, x.rank + 1, 'unsqueeze');
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
};

/** Reorders axes (a contiguous copy). */
export const permute = (x: Tensor, perm: readonly number[]): Tensor => runOp('permute', { x }, { perm: perm.map((p) => normAxis(p, x.rank, 'permute')) })[0];

/** Swaps two axes. */
export const transpose = (x: Tensor, i = -2, j = -1): Tensor => {
  const perm = x.shape.map((_, k) => k);
  const a = normAxis(i, x.rank, 'transpose');
  const b = normAxis(j, x.rank, 'transpose');
  [perm[a], perm[b]] = [perm[b], perm[a]];
  return permute(x, perm);
};

/** x[begin : begin + size] on every axis (size -1: to the end). */
export const slice = (x: Tensor, begin: readonly number[], size?: readonly number[]): Tensor => {
  const sz = x.shape.map((d, i) => (size === undefined || size[i] === -1 ? d - (begin[i] ?? 0) : size[i]));
  const b = x.shape.map((_, i) => begin[i] ?? 0);
  return runOp('slice', { x }, { begin: b, size: sz })[0];
};

/** Constant padding, `pads[i] = [before, after]` for every axis. */
export const pad = (x: Tensor, pads: readonly (readonly [number, number])[], value = 0): Tensor =>
  runOp('pad', { x }, { pads, value })[0];

/** Joins tensors along `axis`. */
export const concat = (xs: readonly Tensor[], axis = 0): Tensor =>
  runOp('concat', { xs }, { axis: xs.length ? normAxis(axis, xs[0].rank, 'concat') : axis })[0];

/** Repeats size-1 axes (and adds leading ones) to reach `shape`. */
export const broadcastTo = (x: Tensor, shape: Shape): Tensor => runOp('broadcastTo', { x }, { shape: [...shape] })[0];

/** Reads a tensor as nested arrays (convenience for small results and tests). */
export const toArray = async (x: Tensor): Promise<NestedArray> => {
  const data = Array.from(await x.data());
  const build = (dim: number, offset: number): NestedArray => {
    if (dim === x.rank) return data[offset];
    const stride = sizeOf(x.shape.slice(dim + 1));
    return Array.from({ length: x.shape[dim] }, (_, i) => build(dim + 1, offset + i * stride));
  };
  return build(0, 0);
};
