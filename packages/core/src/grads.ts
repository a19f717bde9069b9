/**
 * Gradient rules: one per differentiable op of the interface, written with ops, in one table.
 * Ops absent from this table (compare, argmax, topk, fill, randomFill, sgdUpdate and the backward
 * ops) are not differentiable.
 */
import {
  add, broadcastTo, cast, channelAffine, div, eq, full, gt, log, mul, neg, pad, permute, reshape, sign, slice, square, sub,
  sum, sumTo, where,
} from './api.js';
import type { Tensor } from './engine.js';
import { runOp } from './engine.js';
import type { Pool2dGeometry } from './geometry.js';
import type { BatchNormAttrs, BinaryFn, Conv2dAttrs, DropoutAttrs, LocalResponseNormAttrs, OpName, ReduceFn, UnaryFn } from './ops.js';

/** What a rule sees of the recorded op. */
export interface GradContext {
  readonly inputs: Record<string, Tensor | readonly Tensor[]>;
  readonly outputs: readonly Tensor[];
  readonly attrs: unknown;
}

/** Gradients per input name (an array for a variadic input); null where none flows. */
export type InputGrads = Record<string, Tensor | null | (Tensor | null)[]>;

/** A gradient rule: output gradients (null where an output got none) in, input gradients out. */
export interface GradRule {
  /** Outputs that carry gradients (default: all). */
  readonly differentiableOutputs?: readonly number[];
  backward(ctx: GradContext, dys: (Tensor | null)[]): InputGrads;
}

type Ctx<I, A> = { inputs: I; outputs: readonly Tensor[]; attrs: A };
const rule = <I, A>(backward: (ctx: Ctx<I, A>, dy: Tensor, dys: (Tensor | null)[]) => InputGrads, differentiableOutputs?: number[]): GradRule => ({
  differentiableOutputs,
  backward: (ctx, dys) => backward(ctx as unknown as Ctx<I, A>, dys[0] ?? full(ctx.outputs[0].shape, 0), dys),
});

type X = { x: Tensor };
type AB = { a: Tensor; b: Tensor };
const f32 = (t: Tensor) => cast(t, 'f32');

const unaryGrad: Record<UnaryFn, (x: Tensor, y: Tensor, dy: Tensor) => Tensor> = {
  neg: (_x, _y, dy) => neg(dy),
  abs: (x, _y, dy) => mul(dy, sign(x)),
  exp: (_x, y, dy) => mul(dy, y),
  log: (x, _y, dy) => div(dy, x),
  sqrt: (_x, y, dy) => div(dy, mul(y, 2)),
  rsqrt: (_x, y, dy) => mul(dy, mul(mul(square(y), y), -0.5)),
  reciprocal: (_x, y, dy) => neg(mul(dy, square(y))),
  square: (x, _y, dy) => mul(dy, mul(x, 2)),
  relu: (x, y, dy) => (x.dtype === 'f32' ? runOp('reluBackward', { y, dy }, {})[0] : mul(dy, f32(gt(x, 0)))),
  sigmoid: (_x, y, dy) => mul(dy, mul(y, sub(full([], 1), y))),
  tanh: (_x, y, dy) => mul(dy, sub(full([], 1), square(y))),
  // piecewise constant: zero almost everywhere, as PyTorch returns
  sign: (x) => full(x.shape, 0),
  floor: (x) => full(x.shape, 0),
  ceil: (x) => full(x.shape, 0),
};

/** Share of the gradient each side of max/min gets: 1 where it wins, 1/2 on ties (PyTorch's rule). */
const winShare = (a: Tensor, b: Tensor, fn: 'max' | 'min') =>
  add(f32(runOp('compare', { a, b }, { fn: fn === 'max' ? 'gt' : 'lt' })[0]), mul(f32(eq(a, b)), 0.5));

const binaryGrad: Record<BinaryFn, (a: Tensor, b: Tensor, y: Tensor, dy: Tensor) => [Tensor | null, Tensor | null]> = {
  add: (_a, _b, _y, dy) => [dy, dy],
  sub: (_a, _b, _y, dy) => [dy, neg(dy)],
  mul: (a, b, _y, dy) => [mul(dy, b), mul(dy, a)],
  div: (_a, b, y, dy) => [div(dy, b), neg(div(mul(dy, y), b))],
  max: (a, b, _y, dy) => [mul(dy, winShare(a, b, 'max')), mul(dy, winShare(b, a, 'max'))],
  min: (a, b, _y, dy) => [mul(dy, winShare(a, b, 'min')), mul(dy, winShare(b, a, 'min'))],
  pow: (a, b, y, dy) => [mul(dy, mul(b, div(y, a))), mul(dy, mul(y, log(a)))],
};

const nonChannelAxes = (rank: number) => [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
const channelShape = (c: number, rank: number) => [1, c, ...Array<number>(rank - 2).fill(1)];

/** The rules, keyed by op name. */
export const GRADS: Partial<Record<OpName, GradRule>> = {
  unary: rule<X, { fn: UnaryFn }>(({ inputs: { x }, outputs: [y], attrs }, dy) => {
    return { x: unaryGrad[attrs.fn](x, y, dy) };
  }),
  binary: rule<AB, { fn: BinaryFn }>(({ inputs: { a, b }, outputs: [y], attrs }, dy) => {
    const [da, db] = binaryGrad[attrs.fn](a, b, y, dy);
    return { a: da && a.requiresGrad ? sumTo(da, a.shape) : null, b: db && b.requiresGrad ? sumTo(db, b.shape) : null };
  }),
  where: rule<{ cond: Tensor } & AB, unknown>(({ inputs: { cond, a, b } }, dy) => {
    const zero = full([], 0);
    return {
      a: a.requiresGrad ? sumTo(where(cond, dy, zero), a.shape) : null,
      b: b.requiresGrad ? sumTo(where(cond, zero, dy), b.shape) : null,
    };
  }),
  cast: rule<X, unknown>((_, dy) => ({ x: dy })),
  copy: rule<X, unknown>((_, dy) => ({ x: dy })),
  reduce: rule<X, { fn: ReduceFn; axes: number[] }>(({ inputs: { x }, outputs: [y], attrs: { fn, axes } }, dy) => {
    if (fn === 'sum') return { x: broadcastTo(dy, x.shape) };
    const count = axes.reduce((n, a) => n * x.shape[a], 1);
    if (fn === 'mean') return { x: broadcastTo(div(dy, count), x.shape) };
    const mask = f32(eq(x, y));
    return { x: mul(broadcastTo(div(dy, sum(mask, axes, true)), x.shape), mask) };
  }),
  matmul: rule<AB, { transA: boolean; transB: boolean }>(({ inputs: { a, b }, attrs: { transA, transB } }, dy) => {
    const mm = (p: Tensor, q: Tensor, tp: boolean, tq: boolean) => runOp('matmul', { a: p, b: q }, { transA: tp, transB: tq })[0];
    let da: Tensor, db: Tensor;
    if (!transA && !transB) [da, db] = [mm(dy, b, false, true), mm(a, dy, true, false)];
    else if (transA && !transB) [da, db] = [mm(b, dy, false, true), mm(a, dy, false, false)];
    else if (!transA && transB) [da, db] = [mm(dy, b, false, false), mm(dy, a, true, false)];
    else [da, db] = [mm(b, dy, true, true), mm(dy, a, true, true)];
    return { a: a.requiresGrad ? sumTo(da, a.shape) : null, b: b.requiresGrad ? sumTo(db, b.shape) : null };
  }),
  conv2d: rule<{ x: Tensor; w: Tensor; scale?: Tensor; bias?: Tensor; residual?: Tensor }, Conv2dAttrs>(
    ({ inputs: { x, w, scale, bias, residual }, outputs: [y], attrs }, dout) => {
      const { relu, ...geometry } = attrs;
      // The epilogue's gradient: dout through the ReLU is the gradient of every term it summed, and
      // the convolution's is that times the scale of its channel.
      const dy = relu ? runOp('reluBackward', { y, dy: dout }, {})[0] : dout;
      const dconv = scale ? mul(dy, reshape(scale, [1, scale.size, 1, 1])) : dy;
      return {
        x: x.requiresGrad ? runOp('conv2dBackwardData', { dy: dconv, w }, geometry)[0] : null,
        w: w.requiresGrad ? runOp('conv2dBackwardFilter', { x, dy: dconv }, geometry)[0] : null,
        scale: scale?.requiresGrad ? sum(mul(dy, runOp('conv2d', { x, w }, geometry)[0]), [0, 2, 3]) : null,
        bias: bias?.requiresGrad ? sum(dy, [0, 2, 3]) : null,
        residual: residual?.requiresGrad ? dy : null,
      };
    },
  ),
  maxPool2d: rule<X, Pool2dGeometry>(({ inputs: { x }, attrs }, dy) => ({ x: runOp('maxPool2dBackward', { dy, x }, attrs)[0] })),
  avgPool2d: rule<X, Pool2dGeometry>(({ attrs }, dy) => ({ x: runOp('avgPool2dBackward', { dy }, attrs)[0] })),
  batchNormTrain: rule<{ x: Tensor; gamma: Tensor; beta: Tensor; residual?: Tensor }, BatchNormAttrs>(
    ({ inputs: { x, gamma, residual }, outputs: [y, m, invstd], attrs: { relu = false } }, dy) => {
      const [dx, dgamma, dbeta, dresidual] = runOp(
        'batchNormBackward',
        { dy, x, gamma, mean: m, invstd, y: relu ? y : undefined },
        { relu, residual: residual !== undefined },
      );
      return { x: dx, gamma: dgamma, beta: dbeta, residual: dresidual ?? null };
    },
    [0],
  ),
  localResponseNorm: rule<X, LocalResponseNormAttrs>(({ inputs: { x }, attrs }, dy) => ({
    x: runOp('localResponseNormBackward', { x, dy }, attrs)[0],
  })),
  // The mask is a function of (seed, counter, position), so dy meets the same one, scaled the same.
  dropout: rule<X, DropoutAttrs>(({ attrs }, dy) => ({ x: runOp('dropout', { x: dy }, attrs)[0] })),
  channelAffine: rule<{ x: Tensor; scale: Tensor; shift: Tensor }, unknown>(({ inputs: { x, scale, shift } }, dy) => {
    const axes = nonChannelAxes(x.rank);
    return {
      x: x.requiresGrad ? mul(dy, reshape(scale, channelShape(scale.size, x.rank))) : null,
      scale: scale.requiresGrad ? sum(mul(dy, x), axes) : null,
      shift: shift.requiresGrad ? sum(dy, axes) : null,
    };
  }),
  softmaxCrossEntropy: rule<{ logits: Tensor; labels: Tensor }, { smoothing: number }>(({ inputs: { logits, labels }, attrs }, dy) => ({
    logits: runOp('softmaxCrossEntropyBackward', { logits, labels, dloss: dy }, attrs)[0],
  })),
  permute: rule<X, { perm: number[] }>(({ attrs: { perm } }, dy) => {
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return { x: permute(dy, inverse) };
  }),
  slice: rule<X, { begin: number[]; size: number[] }>(({ inputs: { x }, attrs: { begin, size } }, dy) => ({
    x: pad(dy, x.shape.map((d, i) => [begin[i], d - begin[i] - size[i]] as const)),
  })),
  pad: rule<X, { pads: [number, number][] }>(({ inputs: { x }, attrs: { pads } }, dy) => ({
    x: slice(dy, pads.map(([p]) => p), x.shape),
  })),
  concat: rule<{ xs: Tensor[] }, { axis: number }>(({ inputs: { xs }, attrs: { axis } }, dy) => {
    let offset = 0;
    return {
      xs: xs.map((t) => {
        const begin = t.shape.map((_, i) => (i === axis ? offset : 0));
        offset += t.shape[axis];
        return t.requiresGrad ? slice(dy, begin, t.shape) : null;
      }),
    };
  }),
  broadcastTo: rule<X, unknown>(({ inputs: { x } }, dy) => ({ x: sumTo(dy, x.shape) })),
};
