/** Strided views: how an operand of an elementwise program maps the iteration shape onto its buffer. */
import { stridesOf, type Shape } from '@residual/core';

/** Element (i0, ..., ir) of the iteration shape lives at `base + Σ ik · strides[k]`. */
export interface View {
  readonly strides: readonly number[];
  readonly base: number;
}

/** A row-major tensor read in its own order. */
export const contiguous = (shape: Shape): View => ({ strides: stridesOf(shape), base: 0 });

/** A tensor of `shape` broadcast (NumPy rules) to `outShape`: broadcast axes get stride 0. */
export const broadcastView = (shape: Shape, outShape: Shape): View => {
  const own = stridesOf(shape);
  const off = outShape.length - shape.length;
  return { strides: outShape.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : own[i - off])), base: 0 };
};

/** A tensor of `shape` read with its axes in the order `perm`. */
export const permutedView = (shape: Shape, perm: readonly number[]): View => {
  const own = stridesOf(shape);
  return { strides: perm.map((p) => own[p]), base: 0 };
};

/** The box of a tensor of `shape` that starts at `begin` (a slice to read, or a region to write). */
export const windowView = (shape: Shape, begin: readonly number[]): View => {
  const own = stridesOf(shape);
  return { strides: own, base: begin.reduce((acc, b, i) => acc + b * own[i], 0) };
};

/** How a program indexes a view: its own position ('c'), one fixed element ('z'), or strides ('s'). */
export type Access = 'c' | 'z' | 's';

/** The cheapest access that reads `view` over `shape` correctly (size-1 axes never move). */
export const accessOf = (view: View, shape: Shape): Access => {
  if (shape.every((d, i) => d === 1 || view.strides[i] === 0)) return 'z';
  const own = stridesOf(shape);
  if (view.base === 0 && shape.every((d, i) => d === 1 || view.strides[i] === own[i])) return 'c';
  return 's';
};

/**
 * The same iteration over fewer axes: size-1 axes dropped, and neighbours merged wherever every view
 * steps across them as across one axis. Strided indexing pays a division per axis, so a per-channel
 * view over [N, C, H, W] is read as [N, C, H·W], a contiguous one as a single axis.
 */
export const collapse = (shape: Shape, views: readonly View[]): { shape: number[]; views: View[] } => {
  const axes = shape.map((_, d) => d).filter((d) => shape[d] !== 1);
  const out: number[] = [];
  const strides: number[][] = views.map(() => []);
  for (const d of axes) {
    const last = out.length - 1;
    if (last >= 0 && views.every((v, k) => strides[k][last] === v.strides[d] * shape[d])) {
      out[last] *= shape[d];
      views.forEach((v, k) => (strides[k][last] = v.strides[d]));
    } else {
      out.push(shape[d]);
      views.forEach((v, k) => strides[k].push(v.strides[d]));
    }
  }
  return { shape: out, views: views.map((v, k) => ({ strides: strides[k], base: v.base })) };
};
