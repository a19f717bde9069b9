/**
 * Local response normalisation across channels, forward and backward, in TypeScript (no kernel of
 * either provider has it: AlexNet's two layers of it cost little beside its convolutions). Sums and
 * powers are float64; each window is summed afresh rather than slid, so nothing cancels.
 */
import { sizeOf, type LocalResponseNormAttrs, type Shape } from '@residual/core';

/**
 * Runs `visit(base, s)` for every image of x [N, C, ...]: `base` is its first element, and `s` holds
 * each of its elements' scale k + alpha/size·Σ x² over channels c - floor(size/2) .. c + floor((size-1)/2).
 */
const forEachImage = (x: Float32Array, shape: Shape, a: LocalResponseNormAttrs, visit: (base: number, s: Float64Array) => void): void => {
  const [n, c] = shape;
  const inner = sizeOf(shape.slice(2));
  const [before, after] = [Math.floor(a.size / 2), Math.floor((a.size - 1) / 2)];
  const coef = a.alpha / a.size;
  const s = new Float64Array(c * inner);
  for (let b = 0; b < n; b++) {
    const base = b * c * inner;
    s.fill(0);
    for (let ch = 0; ch < c; ch++)
      for (let q = Math.max(0, ch - before); q <= Math.min(c - 1, ch + after); q++)
        for (let j = 0, at = base + q * inner, to = ch * inner; j < inner; j++) s[to + j] += x[at + j] * x[at + j];
    for (let i = 0; i < s.length; i++) s[i] = a.k + coef * s[i];
    visit(base, s);
  }
};

/** y = x·s^-beta. */
export const localResponseNorm = (x: Float32Array, shape: Shape, a: LocalResponseNormAttrs, y: Float32Array): void =>
  forEachImage(x, shape, a, (base, s) => {
    for (let i = 0; i < s.length; i++) y[base + i] = x[base + i] * s[i] ** -a.beta;
  });

/**
 * dx_j = dy_j·s_j^-beta - (2·alpha·beta/size)·x_j·Σ dy_c·x_c·s_c^(-beta-1), the sum over the channels c
 * whose window holds j: c from j - floor((size-1)/2) to j + floor(size/2), the window reversed.
 */
export const localResponseNormBackward = (x: Float32Array, dy: Float32Array, shape: Shape, a: LocalResponseNormAttrs, dx: Float32Array): void => {
  const c = shape[1];
  const inner = c === 0 ? 0 : sizeOf(shape.slice(2));
  const [before, after] = [Math.floor(a.size / 2), Math.floor((a.size - 1) / 2)];
  const coef = (2 * a.alpha * a.beta) / a.size;
  const t = new Float64Array(c * inner);
  forEachImage(x, shape, a, (base, s) => {
    for (let i = 0; i < s.length; i++) {
      const power = s[i] ** -a.beta;
      t[i] = (dy[base + i] * x[base + i] * power) / s[i];
      s[i] = power;
    }
    for (let ch = 0; ch < c; ch++)
      for (let j = 0, at = ch * inner; j < inner; j++) {
        let sum = 0;
        for (let q = Math.max(0, ch - after); q <= Math.min(c - 1, ch + before); q++) sum += t[q * inner + j];
        dx[base + at + j] = dy[base + at + j] * s[at + j] - coef * x[base + at + j] * sum;
      }
  });
};
