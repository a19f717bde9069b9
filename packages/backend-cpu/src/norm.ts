/**
 * Per-channel kernels over x [N, C, ...] in WebAssembly (assembly/kernels.ts has the maths): batch-norm
 * training forward/backward and the affine map. Sums are float64; threads split the channels. Operands
 * outside the WebAssembly memory are copied in, results out (Wasm.place).
 */
import type { Shape } from '@residual/core';
import { reluBackward } from './elementwise.js';
import { applyEpilogue, type Epilogue } from './epilogue.js';
import type { Wasm } from './wasm.js';

/** N, C and the size of the trailing axes of an [N, C, ...] shape. */
const layout = (shape: Shape) => {
  const [n, c] = shape;
  return { n, c, inner: shape.slice(2).reduce((p, d) => p * d, 1) };
};

/** Work units per element of these memory-bound kernels, against the multiply-adds that decide threading. */
const PER_ELEMENT = 4;

/**
 * y = act((x - mean)·invstd·gamma + beta + residual) with batch statistics; invstd = 1/sqrt(biased
 * var + eps).
 */
export const batchNormTrain = (
  wasm: Wasm, x: Float32Array, shape: Shape, gamma: Float32Array, beta: Float32Array, eps: number,
  y: Float32Array, mean: Float32Array, invstd: Float32Array, epilogue: Omit<Epilogue, 'bias'> = {},
): void => {
  const { n, c, inner } = layout(shape);
  const { at: [px, pg, pb, py, pm, pi], done } = wasm.place([x, gamma, beta], [y, mean, invstd]);
  wasm.run('batchNormTrain', [px, py, pg, pb, pm, pi, n, c, inner, eps], PER_ELEMENT * x.length);
  done();
  applyEpilogue(wasm, y, shape, epilogue);
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
 * dx = gamma·invstd·(dy' - dbeta/M - x̂·dgamma/M), x̂ = (x - mean)·invstd.
 */
export const batchNormBackward = (
  wasm: Wasm, dy: Float32Array, x: Float32Array, shape: Shape, gamma: Float32Array, mean: Float32Array, invstd: Float32Array,
  dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array, { y, dresidual }: EpilogueGrad = {},
): void => {
  let g = dy;
  if (y) {
    g = dresidual ?? new Float32Array(dy.length);
    reluBackward(wasm, y, dy, g);
  } else if (dresidual) dresidual.set(dy);
  const { n, c, inner } = layout(shape);
  const { at: [pdy, px, pg, pm, pi, pdx, pdg, pdb], done } = wasm.place([g, x, gamma, mean, invstd], [dx, dgamma, dbeta]);
  wasm.run('batchNormBackward', [pdy, px, pg, pm, pi, pdx, pdg, pdb, n, c, inner], PER_ELEMENT * x.length);
  done();
};

/** y = x · scale[c] + shift[c] along axis 1. */
export const channelAffine = (wasm: Wasm, x: Float32Array, shape: Shape, scale: Float32Array, shift: Float32Array, y: Float32Array): void => {
  const { n, c, inner } = layout(shape);
  const { at: [px, ps, pt, py], done } = wasm.place([x, scale, shift], [y]);
  wasm.run('channelAffine', [px, ps, pt, py, n, c, inner], PER_ELEMENT * x.length);
  done();
};
