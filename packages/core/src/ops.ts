/**
 * The op interface: every primitive a backend implements, declared once.
 *
 * Each op has typed inputs, typed attributes and an output rule (`outputs`) that validates the
 * inputs and computes every output's shape and dtype. Core runs the rule before dispatch, so a
 * kernel receives inputs that are already checked and output specs it never re-derives.
 * Gradient rules live in `grads.ts`, keyed by the same names.
 */
import { broadcastShapes, ShapeError, sizeOf, type Shape } from './shape.js';
import type { Conv2dGeometry, Pool2dGeometry } from './geometry.js';

/** Element types a tensor can hold. */
export type DType = 'f32' | 'i32';

/** The JS array type that carries a dtype's elements. */
export type TypedArrayFor<D extends DType> = D extends 'f32' ? Float32Array : Int32Array;

/** Any array type a tensor's elements come in. */
export type DataArray = Float32Array | Int32Array;

/** Shape and dtype of a tensor, without its data. */
export interface TensorSpec {
  readonly shape: Shape;
  readonly dtype: DType;
}

/** What a kernel sees of an input: its backend storage plus its (contiguous, row-major) layout. */
export interface TensorView<S = unknown> extends TensorSpec {
  readonly storage: S;
  /** Element count, the product of `shape`. */
  readonly size: number;
  /**
   * Identifies the storage's contents: a number drawn from one process-wide counter when the storage
   * is made and again at every in-place write (`sgdUpdate`, `assign`), so two views with the same
   * version hold the same elements. A backend may cache what it derives from an input (packed or
   * transformed weights) under this number; such a cache can never be stale.
   */
  readonly version: number;
}

/** Elementwise functions of one argument. */
export type UnaryFn =
  | 'neg' | 'abs' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'reciprocal' | 'square'
  | 'relu' | 'sigmoid' | 'tanh' | 'sign' | 'floor' | 'ceil';
/** Elementwise functions of two (broadcast) arguments. */
export type BinaryFn = 'add' | 'sub' | 'mul' | 'div' | 'max' | 'min' | 'pow';
/** Elementwise comparisons; the result is i32 0/1. */
export type CompareFn = 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge';
/** Reductions over a set of axes. */
export type ReduceFn = 'sum' | 'mean' | 'max' | 'min';

/** Attributes of the fused SGD update (PyTorch's `torch.optim.SGD` semantics). */
export interface SgdAttrs {
  readonly lr: number;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  /** True on the first step: the momentum buffer is set to the gradient rather than blended. */
  readonly firstStep: boolean;
}

/** Attributes of the counter-based random fill (Philox 4x32-10). */
export interface RandomAttrs {
  readonly shape: Shape;
  readonly dist: 'uniform' | 'normal';
  /** 64-bit key as two u32 words. */
  readonly seed: readonly [number, number];
  /** First Philox counter block (u32 words lo, hi) — advanced by the caller between draws. */
  readonly counter: readonly [number, number];
  /** uniform: low bound; normal: mean. */
  readonly a: number;
  /** uniform: high bound; normal: standard deviation. */
  readonly b: number;
}

/**
 * Attributes of `localResponseNorm` (PyTorch's `nn.LocalResponseNorm(size, alpha, beta, k)`): each
 * element is divided by (k + alpha/size · Σ x²)^beta, the sum over channels c - floor(size/2) ..
 * c + floor((size-1)/2) of the same position, channels past either edge counting as zeros.
 */
export interface LocalResponseNormAttrs {
  readonly size: number;
  readonly alpha: number;
  readonly beta: number;
  readonly k: number;
}

/**
 * Attributes of `dropout`: drop probability `p` in [0, 1), and the Philox draw the mask comes from.
 * Element i is kept when word (i mod 4) of block (counter + floor(i / 4)) (the words a uniform
 * `randomFill` from the same key and counter turns into element i) is at least
 * `dropoutThreshold(p)`; kept elements are multiplied by 1/(1-p), dropped ones by 0.
 */
export interface DropoutAttrs {
  readonly p: number;
  /** 64-bit key as two u32 words. */
  readonly seed: readonly [number, number];
  /** First Philox counter block (u32 words lo, hi). */
  readonly counter: readonly [number, number];
}

/**
 * The u32 threshold of dropout's keep rule: ceil(p·2^32), so a uniform word is dropped with
 * probability p (to within 2^-32). Capped at 2^32 - 1 so it fits a u32 for p just below 1.
 */
export const dropoutThreshold = (p: number): number => Math.min(Math.ceil(p * 2 ** 32), 2 ** 32 - 1);

/** Attributes of `conv2d`: the geometry, and whether a ReLU closes the fused epilogue. */
export type Conv2dAttrs = Conv2dGeometry & {
  /** y = max(y, 0) after the scale, the bias and the residual. Default false. */
  readonly relu?: boolean;
};

/** Attributes of `batchNormTrain`. */
export interface BatchNormAttrs {
  readonly eps: number;
  /** y = max(y, 0) after the affine map and the residual. Default false. */
  readonly relu?: boolean;
}

/** Attributes of `batchNormBackward`: the epilogue `batchNormTrain` applied. */
export interface BatchNormBackwardAttrs {
  /** The forward closed with a ReLU: `y` (its output) masks dy. Default false. */
  readonly relu?: boolean;
  /** The forward added a residual: a fourth output holds its gradient (dy after the mask). Default false. */
  readonly residual?: boolean;
}

/**
 * The op table: for each op, its named inputs and its attributes. A `TensorView` slot named `xs`
 * holding an array is variadic; an optional slot (`?`) may be left out. Outputs are always returned
 * as an array of storages.
 */
export interface OpTable<S = unknown> {
  unary: [{ x: TensorView<S> }, { fn: UnaryFn }];
  binary: [{ a: TensorView<S>; b: TensorView<S> }, { fn: BinaryFn }];
  compare: [{ a: TensorView<S>; b: TensorView<S> }, { fn: CompareFn }];
  /** out = cond != 0 ? a : b, all three broadcast together. */
  where: [{ cond: TensorView<S>; a: TensorView<S>; b: TensorView<S> }, Record<string, never>];
  cast: [{ x: TensorView<S> }, { dtype: DType }];
  /** A new tensor with the same elements (no aliasing). */
  copy: [{ x: TensorView<S> }, Record<string, never>];
  /** A new tensor of `shape` filled with `value`. */
  fill: [Record<string, never>, { shape: Shape; dtype: DType; value: number }];
  /** Output keeps reduced axes as size 1; `axes` sorted, unique, non-negative. */
  reduce: [{ x: TensorView<S> }, { fn: ReduceFn; axes: readonly number[] }];
  /** Index of the first maximum along `axis` (kept as size 1), i32. */
  argmax: [{ x: TensorView<S> }, { axis: number }];
  /** The k largest along the last axis, descending (ties: lower index first): [values, indices]. */
  topk: [{ x: TensorView<S> }, { k: number }];
  /** Batched: a [..., M, K] · b [..., K, N] (before transposes); batch dims broadcast. */
  matmul: [{ a: TensorView<S>; b: TensorView<S> }, { transA: boolean; transB: boolean }];
  /**
   * x [N,C,H,W] * w [K,C/groups,R,S] -> [N,K,OH,OW], with a fused epilogue applied while the output is
   * in cache: y = act(conv(x, w)·scale[k] + bias[k] + residual), each part optional (scale and bias
   * [K], residual [N,K,OH,OW], act = ReLU when `relu`). An inference batch-norm is scale and bias, so a
   * residual block's convolution, batch-norm, addition and ReLU run as this one op; a backend folds
   * scale into the weights it packs (w·scale[k] is the convolution with the batch-norm folded in),
   * caching them by the versions of w and scale, so no folded copy of the weights lives in core.
   */
  conv2d: [{ x: TensorView<S>; w: TensorView<S>; scale?: TensorView<S>; bias?: TensorView<S>; residual?: TensorView<S> }, Conv2dAttrs];
  /** dy [N,K,OH,OW], w -> dx [N,C,H,W]. */
  conv2dBackwardData: [{ dy: TensorView<S>; w: TensorView<S> }, Conv2dGeometry];
  /** x, dy -> dw [K,C/groups,R,S]. */
  conv2dBackwardFilter: [{ x: TensorView<S>; dy: TensorView<S> }, Conv2dGeometry];
  maxPool2d: [{ x: TensorView<S> }, Pool2dGeometry];
  /** Gradient flows to the first maximum of each window (PyTorch's choice). */
  maxPool2dBackward: [{ dy: TensorView<S>; x: TensorView<S> }, Pool2dGeometry];
  avgPool2d: [{ x: TensorView<S> }, Pool2dGeometry];
  avgPool2dBackward: [{ dy: TensorView<S> }, Pool2dGeometry];
  /**
   * Batch-norm with batch statistics over every axis but 1: x [N,C,...], gamma/beta [C] ->
   * [y, mean [C], invstd [C]] where invstd = 1/sqrt(biased var + eps), with a fused epilogue:
   * y = act(gamma·(x - mean)·invstd + beta + residual) (residual of x's shape, optional; act = ReLU
   * when `relu`): a residual block's closing batch-norm, addition and ReLU in one pass.
   */
  batchNormTrain: [{ x: TensorView<S>; gamma: TensorView<S>; beta: TensorView<S>; residual?: TensorView<S> }, BatchNormAttrs];
  /**
   * -> [dx, dgamma, dbeta] (+ [dresidual] when `residual`). With `relu`, `y` is the forward's output
   * and dy is first masked where y <= 0; that masked dy is the residual's gradient.
   */
  batchNormBackward: [
    { dy: TensorView<S>; x: TensorView<S>; gamma: TensorView<S>; mean: TensorView<S>; invstd: TensorView<S>; y?: TensorView<S> },
    BatchNormBackwardAttrs,
  ];
  /**
   * The gradient of relu, fused: dx = dy where y > 0, else 0. `y` is relu's output (or its input:
   * both are positive at the same places), so the mask costs no compare, cast and multiply passes.
   */
  reluBackward: [{ y: TensorView<S>; dy: TensorView<S> }, Record<string, never>];
  /** Local response normalisation across channels of x [N, C, ...] (see `LocalResponseNormAttrs`). */
  localResponseNorm: [{ x: TensorView<S> }, LocalResponseNormAttrs];
  /** x, dy -> dx of `localResponseNorm` (its scales recomputed from x). */
  localResponseNormBackward: [{ x: TensorView<S>; dy: TensorView<S> }, LocalResponseNormAttrs];
  /**
   * x times a random mask scaled by 1/(1-p) (see `DropoutAttrs`). The mask is a function of (seed,
   * counter, position), so the gradient is the same op on dy, and every backend draws the same mask.
   */
  dropout: [{ x: TensorView<S> }, DropoutAttrs];
  /** y = x * scale[c] + shift[c] over axis 1 (inference batch-norm, folded). */
  channelAffine: [{ x: TensorView<S>; scale: TensorView<S>; shift: TensorView<S> }, Record<string, never>];
  /**
   * logits [N,C] f32, labels [N] i32 -> per-sample loss [N]:
   * -(1-s)·log p[label] - (s/C)·Σ log p. Labels outside [0,C) give NaN.
   */
  softmaxCrossEntropy: [{ logits: TensorView<S>; labels: TensorView<S> }, { smoothing: number }];
  /** -> dlogits = dloss[n] · (softmax - target). */
  softmaxCrossEntropyBackward: [
    { logits: TensorView<S>; labels: TensorView<S>; dloss: TensorView<S> },
    { smoothing: number },
  ];
  permute: [{ x: TensorView<S> }, { perm: readonly number[] }];
  /** Contiguous copy of x[begin[i] : begin[i] + size[i]] on every axis. */
  slice: [{ x: TensorView<S> }, { begin: readonly number[]; size: readonly number[] }];
  /** Constant padding: `pads[i] = [before, after]`, both >= 0. */
  pad: [{ x: TensorView<S> }, { pads: readonly (readonly [number, number])[]; value: number }];
  concat: [{ xs: readonly TensorView<S>[] }, { axis: number }];
  broadcastTo: [{ x: TensorView<S> }, { shape: Shape }];
  /** In place: updates `param` and `momentum` (which may be unused when momentum == 0). No outputs. */
  sgdUpdate: [{ param: TensorView<S>; grad: TensorView<S>; momentum: TensorView<S> }, SgdAttrs];
  randomFill: [Record<string, never>, RandomAttrs];
}

/** Every op's name. */
export type OpName = keyof OpTable;
/** The named inputs of op K. */
export type OpInputs<K extends OpName, S = unknown> = OpTable<S>[K][0];
/** The attributes of op K. */
export type OpAttrs<K extends OpName> = OpTable[K][1];

/**
 * A kernel: takes checked inputs, attributes and the output specs computed by core, and returns
 * one new storage per output (fully written). In-place ops return `[]`.
 */
export type Kernel<K extends OpName, S> = (
  inputs: OpInputs<K, S>,
  attrs: OpAttrs<K>,
  outputs: readonly TensorSpec[],
) => S[];

/** The table of kernels a backend must export (check it with `satisfies Kernels<MyStorage>`). */
export type Kernels<S> = { readonly [K in OpName]: Kernel<K, S> };

type SpecInputs<K extends OpName> = OpTable<TensorSpec>[K][0];

/** An op's declaration: its output rule (which also validates). */
export interface OpDecl<K extends OpName> {
  readonly outputs: (inputs: SpecInputs<K>, attrs: OpAttrs<K>) => TensorSpec[];
  /** Inputs the op writes in place; core gives each a new `version` after the op runs. */
  readonly writes?: readonly (keyof OpInputs<K>)[];
}

const fail = (op: string, msg: string): never => {
  throw new ShapeError(`${op}: ${msg}`);
};
const fmt = (s: Shape) => `[${s.join(', ')}]`;
const same = (op: string, a: TensorSpec, b: TensorSpec, an = 'a', bn = 'b') => {
  if (a.dtype !== b.dtype) fail(op, `dtype mismatch: ${an} is ${a.dtype}, ${bn} is ${b.dtype}`);
};
const needF32 = (op: string, x: TensorSpec, name: string) => {
  if (x.dtype !== 'f32') fail(op, `${name} must be f32, got ${x.dtype}`);
};
const rank = (op: string, x: TensorSpec, r: number, name: string, layout = '') => {
  if (x.shape.length !== r) fail(op, `${name} must be rank ${r}${layout ? ` ${layout}` : ''}, got shape ${fmt(x.shape)}`);
};
const checkConv = (op: string, g: Conv2dGeometry) => {
  if (g.outH <= 0 || g.outW <= 0) fail(op, `output would be empty (${g.outH}x${g.outW}) for input ${g.inH}x${g.inW}`);
};
const eqShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);
const expectShape = (op: string, x: TensorSpec, shape: Shape, name: string) => {
  if (!eqShape(x.shape, shape)) fail(op, `${name} must have shape ${fmt(shape)}, got ${fmt(x.shape)}`);
};
const f32 = (shape: Shape): TensorSpec => ({ shape, dtype: 'f32' });
/** The scale k + alpha/size·Σ x² must stay positive for its power to be real: k > 0 and alpha >= 0. */
const checkLrn = (op: string, x: TensorSpec, { size, alpha, beta, k }: LocalResponseNormAttrs) => {
  needF32(op, x, 'x');
  if (x.shape.length < 3) fail(op, `x must be [N, C, ...] of rank 3 or more, got shape ${fmt(x.shape)}`);
  if (!Number.isInteger(size) || size < 1) fail(op, `size must be an integer >= 1, got ${size}`);
  if (!(k > 0) || !(alpha >= 0) || !Number.isFinite(beta)) fail(op, `needs k > 0, alpha >= 0 and a finite beta, got k=${k}, alpha=${alpha}, beta=${beta}`);
};

/** The declarations of every op: the one place output shapes and input rules are written. */
export const OPS: { readonly [K in OpName]: OpDecl<K> } = {
  unary: {
    outputs: ({ x }, { fn }) => {
      if (x.dtype === 'i32' && !['neg', 'abs', 'square', 'relu', 'sign'].includes(fn)) fail('unary', `${fn} needs f32, got i32`);
      return [{ shape: x.shape, dtype: x.dtype }];
    },
  },
  binary: {
    outputs: ({ a, b }, { fn }) => {
      same(`binary(${fn})`, a, b);
      if (a.dtype === 'i32' && (fn === 'div' || fn === 'pow')) fail(`binary(${fn})`, 'needs f32 operands (cast i32 first)');
      return [{ shape: broadcastShapes(a.shape, b.shape, `binary(${fn})`), dtype: a.dtype }];
    },
  },
  compare: {
    outputs: ({ a, b }, { fn }) => {
      same(`compare(${fn})`, a, b);
      return [{ shape: broadcastShapes(a.shape, b.shape, `compare(${fn})`), dtype: 'i32' }];
    },
  },
  where: {
    outputs: ({ cond, a, b }) => {
      if (cond.dtype !== 'i32') fail('where', `cond must be i32, got ${cond.dtype}`);
      same('where', a, b);
      const s = broadcastShapes(broadcastShapes(cond.shape, a.shape, 'where'), b.shape, 'where');
      return [{ shape: s, dtype: a.dtype }];
    },
  },
  cast: { outputs: ({ x }, { dtype }) => [{ shape: x.shape, dtype }] },
  copy: { outputs: ({ x }) => [{ shape: x.shape, dtype: x.dtype }] },
  fill: { outputs: (_, { shape, dtype }) => [{ shape, dtype }] },
  reduce: {
    outputs: ({ x }, { fn, axes }) => {
      axes.forEach((a, i) => {
        if (!Number.isInteger(a) || a < 0 || a >= x.shape.length) fail(`reduce(${fn})`, `axis ${a} out of range for shape ${fmt(x.shape)}`);
        if (i > 0 && a <= axes[i - 1]) fail(`reduce(${fn})`, `axes must be sorted and unique, got [${axes.join(', ')}]`);
      });
      if ((fn === 'max' || fn === 'min') && axes.some((a) => x.shape[a] === 0)) fail(`reduce(${fn})`, `cannot reduce an empty axis of ${fmt(x.shape)}`);
      if (fn === 'mean' && x.dtype !== 'f32') fail('reduce(mean)', `needs f32, got ${x.dtype}`);
      return [{ shape: x.shape.map((d, i) => (axes.includes(i) ? 1 : d)), dtype: x.dtype }];
    },
  },
  argmax: {
    outputs: ({ x }, { axis }) => {
      if (axis < 0 || axis >= x.shape.length) fail('argmax', `axis ${axis} out of range for shape ${fmt(x.shape)}`);
      if (x.shape[axis] === 0) fail('argmax', `axis ${axis} is empty in ${fmt(x.shape)}`);
      return [{ shape: x.shape.map((d, i) => (i === axis ? 1 : d)), dtype: 'i32' }];
    },
  },
  topk: {
    outputs: ({ x }, { k }) => {
      if (x.shape.length === 0) fail('topk', 'needs rank >= 1');
      const last = x.shape[x.shape.length - 1];
      if (!Number.isInteger(k) || k < 0 || k > last) fail('topk', `k=${k} out of range for last axis of size ${last}`);
      const s = [...x.shape.slice(0, -1), k];
      return [{ shape: s, dtype: x.dtype }, { shape: s, dtype: 'i32' }];
    },
  },
  matmul: {
    outputs: ({ a, b }, { transA, transB }) => {
      needF32('matmul', a, 'a');
      needF32('matmul', b, 'b');
      if (a.shape.length < 2 || b.shape.length < 2) fail('matmul', `needs rank >= 2, got a ${fmt(a.shape)} and b ${fmt(b.shape)}`);
      const [m, k] = transA ? [a.shape.at(-1)!, a.shape.at(-2)!] : [a.shape.at(-2)!, a.shape.at(-1)!];
      const [k2, n] = transB ? [b.shape.at(-1)!, b.shape.at(-2)!] : [b.shape.at(-2)!, b.shape.at(-1)!];
      if (k !== k2) fail('matmul', `inner dimensions differ: a ${fmt(a.shape)}${transA ? 'ᵀ' : ''} and b ${fmt(b.shape)}${transB ? 'ᵀ' : ''}`);
      const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
      return [f32([...batch, m, n])];
    },
  },
  conv2d: {
    outputs: ({ x, w, scale, bias, residual }, g) => {
      needF32('conv2d', x, 'x');
      needF32('conv2d', w, 'w');
      expectShape('conv2d', x, [g.batch, g.inChannels, g.inH, g.inW], 'x');
      expectShape('conv2d', w, [g.outChannels, g.inChannels / g.groups, g.kernelH, g.kernelW], 'w');
      checkConv('conv2d', g);
      const y = [g.batch, g.outChannels, g.outH, g.outW];
      for (const [t, name] of [[scale, 'scale'], [bias, 'bias']] as const)
        if (t) {
          needF32('conv2d', t, name);
          expectShape('conv2d', t, [g.outChannels], name);
        }
      if (residual) {
        needF32('conv2d', residual, 'residual');
        expectShape('conv2d', residual, y, 'residual');
      }
      return [f32(y)];
    },
  },
  conv2dBackwardData: {
    outputs: ({ dy, w }, g) => {
      expectShape('conv2dBackwardData', dy, [g.batch, g.outChannels, g.outH, g.outW], 'dy');
      expectShape('conv2dBackwardData', w, [g.outChannels, g.inChannels / g.groups, g.kernelH, g.kernelW], 'w');
      return [f32([g.batch, g.inChannels, g.inH, g.inW])];
    },
  },
  conv2dBackwardFilter: {
    outputs: ({ x, dy }, g) => {
      expectShape('conv2dBackwardFilter', x, [g.batch, g.inChannels, g.inH, g.inW], 'x');
      expectShape('conv2dBackwardFilter', dy, [g.batch, g.outChannels, g.outH, g.outW], 'dy');
      return [f32([g.outChannels, g.inChannels / g.groups, g.kernelH, g.kernelW])];
    },
  },
  maxPool2d: {
    outputs: ({ x }, g) => {
      needF32('maxPool2d', x, 'x');
      expectShape('maxPool2d', x, [g.batch, g.channels, g.inH, g.inW], 'x');
      return [f32([g.batch, g.channels, g.outH, g.outW])];
    },
  },
  maxPool2dBackward: {
    outputs: ({ dy, x }, g) => {
      expectShape('maxPool2dBackward', dy, [g.batch, g.channels, g.outH, g.outW], 'dy');
      expectShape('maxPool2dBackward', x, [g.batch, g.channels, g.inH, g.inW], 'x');
      return [f32(x.shape)];
    },
  },
  avgPool2d: {
    outputs: ({ x }, g) => {
      needF32('avgPool2d', x, 'x');
      expectShape('avgPool2d', x, [g.batch, g.channels, g.inH, g.inW], 'x');
      return [f32([g.batch, g.channels, g.outH, g.outW])];
    },
  },
  avgPool2dBackward: {
    outputs: ({ dy }, g) => {
      expectShape('avgPool2dBackward', dy, [g.batch, g.channels, g.outH, g.outW], 'dy');
      return [f32([g.batch, g.channels, g.inH, g.inW])];
    },
  },
  batchNormTrain: {
    outputs: ({ x, gamma, beta, residual }) => {
      needF32('batchNormTrain', x, 'x');
      if (x.shape.length < 2) fail('batchNormTrain', `x must be [N, C, ...], got ${fmt(x.shape)}`);
      const c = x.shape[1];
      expectShape('batchNormTrain', gamma, [c], 'gamma');
      expectShape('batchNormTrain', beta, [c], 'beta');
      if (residual) {
        needF32('batchNormTrain', residual, 'residual');
        expectShape('batchNormTrain', residual, x.shape, 'residual');
      }
      if (sizeOf(x.shape) / c < 2) fail('batchNormTrain', `needs more than 1 value per channel, got input ${fmt(x.shape)}`);
      return [f32(x.shape), f32([c]), f32([c])];
    },
  },
  batchNormBackward: {
    outputs: ({ dy, x, gamma, mean, invstd, y }, { relu = false, residual = false }) => {
      expectShape('batchNormBackward', dy, x.shape, 'dy');
      const c = x.shape[1];
      for (const [t, n] of [[gamma, 'gamma'], [mean, 'mean'], [invstd, 'invstd']] as const) expectShape('batchNormBackward', t, [c], n);
      if (relu && !y) fail('batchNormBackward', "relu needs the forward's output y");
      if (y) expectShape('batchNormBackward', y, x.shape, 'y');
      return [f32(x.shape), f32([c]), f32([c]), ...(residual ? [f32(x.shape)] : [])];
    },
  },
  channelAffine: {
    outputs: ({ x, scale, shift }) => {
      needF32('channelAffine', x, 'x');
      if (x.shape.length < 2) fail('channelAffine', `x must be [N, C, ...], got ${fmt(x.shape)}`);
      expectShape('channelAffine', scale, [x.shape[1]], 'scale');
      expectShape('channelAffine', shift, [x.shape[1]], 'shift');
      return [f32(x.shape)];
    },
  },
  localResponseNorm: {
    outputs: ({ x }, a) => {
      checkLrn('localResponseNorm', x, a);
      return [f32(x.shape)];
    },
  },
  localResponseNormBackward: {
    outputs: ({ x, dy }, a) => {
      checkLrn('localResponseNormBackward', x, a);
      expectShape('localResponseNormBackward', dy, x.shape, 'dy');
      return [f32(x.shape)];
    },
  },
  dropout: {
    outputs: ({ x }, { p }) => {
      needF32('dropout', x, 'x');
      if (!(p >= 0 && p < 1)) fail('dropout', `p must be in [0, 1), got ${p}`);
      return [f32(x.shape)];
    },
  },
  reluBackward: {
    outputs: ({ y, dy }) => {
      needF32('reluBackward', y, 'y');
      needF32('reluBackward', dy, 'dy');
      expectShape('reluBackward', dy, y.shape, 'dy');
      return [f32(y.shape)];
    },
  },
  softmaxCrossEntropy: {
    outputs: ({ logits, labels }, { smoothing }) => {
      needF32('softmaxCrossEntropy', logits, 'logits');
      rank('softmaxCrossEntropy', logits, 2, 'logits', '[N, classes]');
      if (labels.dtype !== 'i32') fail('softmaxCrossEntropy', `labels must be i32, got ${labels.dtype}`);
      expectShape('softmaxCrossEntropy', labels, [logits.shape[0]], 'labels');
      if (!(smoothing >= 0 && smoothing <= 1)) fail('softmaxCrossEntropy', `label smoothing must be in [0, 1], got ${smoothing}`);
      return [f32([logits.shape[0]])];
    },
  },
  softmaxCrossEntropyBackward: {
    outputs: ({ logits, labels, dloss }) => {
      expectShape('softmaxCrossEntropyBackward', labels, [logits.shape[0]], 'labels');
      expectShape('softmaxCrossEntropyBackward', dloss, [logits.shape[0]], 'dloss');
      return [f32(logits.shape)];
    },
  },
  permute: {
    outputs: ({ x }, { perm }) => {
      const r = x.shape.length;
      if (perm.length !== r || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) fail('permute', `[${perm.join(', ')}] is not a permutation of ${r} axes`);
      return [{ shape: perm.map((p) => x.shape[p]), dtype: x.dtype }];
    },
  },
  slice: {
    outputs: ({ x }, { begin, size }) => {
      if (begin.length !== x.shape.length || size.length !== x.shape.length) fail('slice', `begin/size must have ${x.shape.length} entries for shape ${fmt(x.shape)}`);
      x.shape.forEach((d, i) => {
        if (begin[i] < 0 || size[i] < 0 || begin[i] + size[i] > d) fail('slice', `axis ${i}: [${begin[i]}, ${begin[i] + size[i]}) is outside 0..${d} of ${fmt(x.shape)}`);
      });
      return [{ shape: [...size], dtype: x.dtype }];
    },
  },
  pad: {
    outputs: ({ x }, { pads }) => {
      if (pads.length !== x.shape.length) fail('pad', `needs ${x.shape.length} [before, after] pairs for shape ${fmt(x.shape)}, got ${pads.length}`);
      if (pads.some(([p, q]) => p < 0 || q < 0)) fail('pad', 'padding must be >= 0 (use slice to crop)');
      return [{ shape: x.shape.map((d, i) => d + pads[i][0] + pads[i][1]), dtype: x.dtype }];
    },
  },
  concat: {
    outputs: ({ xs }, { axis }) => {
      if (xs.length === 0) fail('concat', 'needs at least one tensor');
      const first = xs[0];
      if (axis < 0 || axis >= first.shape.length) fail('concat', `axis ${axis} out of range for shape ${fmt(first.shape)}`);
      let total = 0;
      xs.forEach((t, i) => {
        same('concat', first, t, 'xs[0]', `xs[${i}]`);
        if (t.shape.length !== first.shape.length || t.shape.some((d, j) => j !== axis && d !== first.shape[j]))
          fail('concat', `xs[${i}] has shape ${fmt(t.shape)}, incompatible with ${fmt(first.shape)} along axis ${axis}`);
        total += t.shape[axis];
      });
      return [{ shape: first.shape.map((d, j) => (j === axis ? total : d)), dtype: first.dtype }];
    },
  },
  broadcastTo: {
    outputs: ({ x }, { shape }) => {
      const s = broadcastShapes(x.shape, shape, 'broadcastTo');
      if (!eqShape(s, shape)) fail('broadcastTo', `cannot broadcast ${fmt(x.shape)} to ${fmt(shape)}`);
      return [{ shape, dtype: x.dtype }];
    },
  },
  sgdUpdate: {
    writes: ['param', 'momentum'],
    outputs: ({ param, grad, momentum }) => {
      needF32('sgdUpdate', param, 'param');
      expectShape('sgdUpdate', grad, param.shape, 'grad');
      expectShape('sgdUpdate', momentum, param.shape, 'momentum');
      return [];
    },
  },
  randomFill: {
    outputs: (_, { shape }) => [f32(shape)],
  },
};

/** Op names in declaration order (the conformance kit walks them). */
export const OP_NAMES = Object.keys(OPS) as OpName[];

export { sizeOf };
