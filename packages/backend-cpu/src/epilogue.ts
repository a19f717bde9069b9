/**
 * The fused epilogue of conv2d and batchNormTrain on the WebAssembly provider: y = act(y·scale[c] +
 * bias[c] + residual), in place over y [N, C, ...].
 */
import type { Shape } from '@residual/core';
import { simdBinary, simdRelu, unary } from './elementwise.js';
import { channelAffine } from './norm.js';
import type { Wasm } from './wasm.js';

/** What an op adds to its output before it is stored: a bias per channel, a residual, a ReLU. */
export interface Epilogue {
  readonly scale?: Float32Array;
  readonly bias?: Float32Array;
  readonly residual?: Float32Array;
  readonly relu?: boolean;
}

/** Applies `e` to y [N, C, ...] in place. */
export const applyEpilogue = (wasm: Wasm, y: Float32Array, shape: Shape, { scale, bias, residual, relu = false }: Epilogue): void => {
  if (scale || bias) channelAffine(wasm, y, shape, scale ?? new Float32Array(shape[1]).fill(1), bias ?? new Float32Array(shape[1]), y);
  if (residual && !simdBinary(wasm, 'add', y, residual, y)) for (let i = 0; i < y.length; i++) y[i] += residual[i];
  if (relu && !simdRelu(wasm, y, y)) unary('relu', y, y);
};
