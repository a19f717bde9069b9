/** Layout kernels, each one strided copy: permute, slice, pad, concat, broadcastTo. */
import { stridesOf, type DataArray, type Shape } from '@residual/core';
import { broadcastStrides, copyStrided } from './strided.js';

/** out = x with axes reordered: out axis i is x axis perm[i]. */
export const permute = (x: DataArray, shape: Shape, perm: readonly number[], out: DataArray): void => {
  const xs = stridesOf(shape);
  const outShape = perm.map((p) => shape[p]);
  copyStrided(outShape, x, 0, perm.map((p) => xs[p]), out, 0, stridesOf(outShape));
};

/** out = x[begin[i] : begin[i] + size[i]] on every axis. */
export const slice = (x: DataArray, shape: Shape, begin: readonly number[], size: readonly number[], out: DataArray): void => {
  const xs = stridesOf(shape);
  copyStrided(size, x, begin.reduce((o, b, i) => o + b * xs[i], 0), xs, out, 0, stridesOf(size));
};

/** out = x surrounded by `value`, pads[i] = [before, after]. */
export const pad = (x: DataArray, shape: Shape, pads: readonly (readonly [number, number])[], value: number, out: DataArray): void => {
  const os = stridesOf(shape.map((d, i) => d + pads[i][0] + pads[i][1]));
  out.fill(value);
  copyStrided(shape, x, 0, stridesOf(shape), out, pads.reduce((o, [p], i) => o + p * os[i], 0), os);
};

/** out = the inputs joined along `axis`. */
export const concat = (xs: readonly { data: DataArray; shape: Shape }[], axis: number, out: DataArray, outShape: Shape): void => {
  const os = stridesOf(outShape);
  let at = 0;
  for (const { data, shape } of xs) {
    copyStrided(shape, data, 0, stridesOf(shape), out, at * os[axis], os);
    at += shape[axis];
  }
};

/** out = x repeated along its broadcast axes. */
export const broadcastTo = (x: DataArray, shape: Shape, out: DataArray, outShape: Shape): void =>
  copyStrided(outShape, x, 0, broadcastStrides(shape, outShape), out, 0, stridesOf(outShape));
