/** Per-channel kernels over x [N, C, ...]: batch-norm training forward/backward and the affine map. */
import type { Shape } from '@residual/core';

/** N, C and the size of the trailing axes of an [N, C, ...] shape. */
const layout = (shape: Shape) => {
  const [n, c] = shape;
  return { n, c, inner: shape.slice(2).reduce((p, d) => p * d, 1) };
};

/**
 * y = (x - mean) · invstd · gamma + beta with batch statistics; invstd = 1/sqrt(biased var + eps).
 * Two passes in float64 (mean, then squared deviations), so large means do not cancel the variance.
 */
export const batchNormTrain = (
  x: Float32Array, shape: Shape, gamma: Float32Array, beta: Float32Array, eps: number,
  y: Float32Array, mean: Float32Array, invstd: Float32Array,
): void => {
  const { n, c, inner } = layout(shape);
  const count = n * inner;
  for (let ch = 0; ch < c; ch++) {
    let s = 0;
    for (let b = 0; b < n; b++) for (let i = (b * c + ch) * inner, end = i + inner; i < end; i++) s += x[i];
    const mu = s / count;
    let q = 0;
    for (let b = 0; b < n; b++) {
      for (let i = (b * c + ch) * inner, end = i + inner; i < end; i++) {
        const d = x[i] - mu;
        q += d * d;
      }
    }
    const is = 1 / Math.sqrt(q / count + eps);
    const scale = is * gamma[ch];
    const shift = beta[ch] - mu * scale;
    for (let b = 0; b < n; b++) for (let i = (b * c + ch) * inner, end = i + inner; i < end; i++) y[i] = x[i] * scale + shift;
    mean[ch] = mu;
    invstd[ch] = is;
  }
};

/**
 * The batch-norm gradient in closed form, with x̂ = (x - mean)·invstd and M values per channel:
 * dbeta = Σ dy, dgamma = Σ dy·x̂, dx = gamma·invstd·(dy - dbeta/M - x̂·dgamma/M).
 */
export const batchNormBackward = (
  dy: Float32Array, x: Float32Array, shape: Shape, gamma: Float32Array, mean: Float32Array, invstd: Float32Array,
  dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array,
): void => {
  const { n, c, inner } = layout(shape);
  const count = n * inner;
  for (let ch = 0; ch < c; ch++) {
    const mu = mean[ch];
    const is = invstd[ch];
    let sdy = 0;
    let sdyx = 0;
    for (let b = 0; b < n; b++) {
      for (let i = (b * c + ch) * inner, end = i + inner; i < end; i++) {
        sdy += dy[i];
        sdyx += dy[i] * (x[i] - mu);
      }
    }
    const dg = sdyx * is;
    const k = gamma[ch] * is;
    const meanDy = sdy / count;
    const xhatScale = (dg / count) * is;
    for (let b = 0; b < n; b++) {
      for (let i = (b * c + ch) * inner, end = i + inner; i < end; i++) dx[i] = k * (dy[i] - meanDy - (x[i] - mu) * xhatScale);
    }
    dgamma[ch] = dg;
    dbeta[ch] = sdy;
  }
};

/** y = x · scale[c] + shift[c] along axis 1. */
export const channelAffine = (x: Float32Array, shape: Shape, scale: Float32Array, shift: Float32Array, y: Float32Array): void => {
  const { n, c, inner } = layout(shape);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const k = scale[ch];
      const t = shift[ch];
      for (let i = (b * c + ch) * inner, end = i + inner; i < end; i++) y[i] = x[i] * k + t;
    }
  }
};
