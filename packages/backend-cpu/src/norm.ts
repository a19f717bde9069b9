/**
 * Per-channel kernels over x [N, C, ...] in WebAssembly (assembly/kernels.ts has the maths): batch-norm
 * training forward/backward and the affine map. Sums are float64; threads split the channels. Operands
 * outside the WebAssembly memory are copied in, results out (Wasm.place).
 */
import type { Shape } from '@residual/core';
import type { Wasm } from './wasm.js';

/** N, C and the size of the trailing axes of an [N, C, ...] shape. */
const layout = (shape: Shape) => {
  const [n, c] = shape;
  return { n, c, inner: shape.slice(2).reduce((p, d) => p * d, 1) };
};

/** Work units per element of these memory-bound kernels, against the multiply-adds that decide threading. */
const PER_ELEMENT = 4;

/** batchNormTrain's fused epilogue: a residual of x's shape added, then a ReLU. */
export interface NormEpilogue {
  readonly residual?: Float32Array;
  /** max(y, 0) last, NaN and -0 to +0 (the op's float64 reference). */
  readonly relu?: boolean;
}

/**
 * y = act((x - mean)·invstd·gamma + beta + residual) with batch statistics; invstd = 1/sqrt(biased
 * var + eps). The epilogue rides on the pass that writes y.
 */
export const batchNormTrain = (
  wasm: Wasm, x: Float32Array, shape: Shape, gamma: Float32Array, beta: Float32Array, eps: number,
  y: Float32Array, mean: Float32Array, invstd: Float32Array, { residual, relu = false }: NormEpilogue = {},
): void => {
  const { n, c, inner } = layout(shape);
  const { at, done } = wasm.place([x, gamma, beta, ...(residual ? [residual] : [])], [y, mean, invstd]);
  const [px, pg, pb] = at;
  const [pr, py, pm, pi] = residual ? at.slice(3) : [0, ...at.slice(3)];
  wasm.run('batchNormTrain', [px, py, pg, pb, pm, pi, n, c, inner, eps, pr, +relu], PER_ELEMENT * x.length);
  done();
};

/** The epilogue's part of batch-norm's gradient: the forward's output, when it ended in a ReLU, and where the residual's gradient goes. */
export interface EpilogueGrad {
  /** batchNormTrain's output, whose zeros mask dy (set when the forward had a ReLU). */
  readonly y?: Float32Array;
  /** Receives dy after the mask: the residual's gradient. */
  readonly dresidual?: Float32Array;
}

/**
 * dy' = dy masked where y <= 0 (with a ReLU), then dbeta = Σ dy', dgamma = Σ dy'·x̂,
 * dx = gamma·invstd·(dy' - dbeta/M - x̂·dgamma/M), x̂ = (x - mean)·invstd; dresidual = dy'. The
 * mask is read inside the kernel's passes, so dy' is never a separate pass.
 */
export const batchNormBackward = (
  wasm: Wasm, dy: Float32Array, x: Float32Array, shape: Shape, gamma: Float32Array, mean: Float32Array, invstd: Float32Array,
  dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array, { y, dresidual }: EpilogueGrad = {},
): void => {
  const { n, c, inner } = layout(shape);
  const { at, done } = wasm.place(
    [dy, x, gamma, mean, invstd, ...(y ? [y] : [])], [dx, dgamma, dbeta, ...(dresidual ? [dresidual] : [])],
  );
  const [pdy, px, pg, pm, pi] = at;
  const rest = at.slice(5);
  const py = y ? rest.shift()! : 0;
  const [pdx, pdg, pdb] = rest;
  const pdr = dresidual ? rest[3] : 0;
  wasm.run('batchNormBackward', [pdy, px, pg, pm, pi, pdx, pdg, pdb, n, c, inner, py, pdr], PER_ELEMENT * x.length);
  done();
};

/** y = x · scale[c] + shift[c] along axis 1. */
export const channelAffine = (wasm: Wasm, x: Float32Array, shape: Shape, scale: Float32Array, shift: Float32Array, y: Float32Array): void => {
  const { n, c, inner } = layout(shape);
  const { at: [px, ps, pt, py], done } = wasm.place([x, scale, shift], [y]);
  wasm.run('channelAffine', [px, ps, pt, py, n, c, inner], PER_ELEMENT * x.length);
  done();
};
