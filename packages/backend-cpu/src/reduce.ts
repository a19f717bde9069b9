/** Reductions: sum/mean/max/min over an axis set, argmax, top-k. */
import { sizeOf, stridesOf, type DataArray, type ReduceFn, type Shape } from '@residual/core';
import { forEachRun } from './strided.js';

/**
 * Reduces x over `axes` into `out` (the reduced axes kept as size 1). Accumulates in float64 while
 * walking x in memory order, so a sum of n f32 values carries about n·2⁻⁵³ relative error.
 */
export const reduce = (fn: ReduceFn, x: DataArray, shape: Shape, axes: readonly number[], out: DataArray): void => {
  const acc = new Float64Array(out.length).fill(fn === 'max' ? -Infinity : fn === 'min' ? Infinity : 0);
  const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const outStrides = stridesOf(outShape).map((s, i) => (axes.includes(i) ? 0 : s));
  forEachRun(shape, [stridesOf(shape), outStrides], [0, 0], (o, n, s) => {
    const xi = o[0];
    const ai = o[1];
    const as = s[1];
    if (fn === 'sum' || fn === 'mean') {
      if (as === 0) {
        let t = 0;
        for (let i = 0; i < n; i++) t += x[xi + i];
        acc[ai] += t;
      } else for (let i = 0; i < n; i++) acc[ai + i * as] += x[xi + i];
    } else {
      // NaN wins, as in PyTorch: once an accumulator is NaN no comparison replaces it.
      const isMax = fn === 'max';
      for (let i = 0; i < n; i++) {
        const v = x[xi + i];
        const k = ai + i * as;
        if ((isMax ? v > acc[k] : v < acc[k]) || v !== v) acc[k] = v;
      }
    }
  });
  const scale = fn === 'mean' ? 1 / axes.reduce((p, a) => p * shape[a], 1) : 1;
  for (let i = 0; i < out.length; i++) out[i] = acc[i] * scale;
};

/** Index of the first maximum along `axis` (NaN counts as the maximum, as in PyTorch). */
export const argmax = (x: DataArray, shape: Shape, axis: number, out: Int32Array): void => {
  const n = shape[axis];
  const inner = sizeOf(shape.slice(axis + 1));
  const outer = sizeOf(shape.slice(0, axis));
  for (let p = 0; p < outer; p++) {
    const base = p * n * inner;
    for (let q = 0; q < inner; q++) {
      let best = x[base + q];
      let at = 0;
      for (let j = 1; j < n && best === best; j++) {
        const v = x[base + j * inner + q];
        if (v > best || v !== v) {
          best = v;
          at = j;
        }
      }
      out[p * inner + q] = at;
    }
  }
};

/** The k largest of each row of the last axis, descending; equal values keep index order, NaN is largest. */
export const topk = (x: DataArray, shape: Shape, k: number, values: DataArray, indices: Int32Array): void => {
  const n = shape.length === 0 ? 1 : shape[shape.length - 1];
  const rows = n === 0 ? 0 : x.length / n;
  const order = new Int32Array(n);
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((i, j) => {
      const u = x[base + i];
      const v = x[base + j];
      const un = u !== u;
      const vn = v !== v;
      if (un || vn) return un && vn ? i - j : un ? -1 : 1;
      return u > v ? -1 : u < v ? 1 : i - j;
    });
    for (let i = 0; i < k; i++) {
      indices[r * k + i] = order[i];
      values[r * k + i] = x[base + order[i]];
    }
  }
};
