/**
 * Strided iteration, the one loop nest behind broadcasting, layout ops and reductions. Operands are
 * described by per-axis strides (0 along broadcast axes) and a base offset; axes that every operand
 * walks contiguously are merged first, so same-shape and scalar operands become a single flat run.
 */
import { stridesOf, type DataArray, type Shape } from '@residual/core';

/** Strides of `shape` read as broadcast to `out` (right-aligned; 0 along broadcast axes). */
export const broadcastStrides = (shape: Shape, out: Shape): number[] => {
  const own = stridesOf(shape);
  const off = out.length - shape.length;
  return out.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : own[i - off]));
};

/**
 * Visits `shape` in row-major order as runs along the innermost merged axis. For each run,
 * `run(offsets, n, inner)` gets every operand's offset at the run's start, the run length and every
 * operand's stride along the run. `offsets` is reused between calls: read it, do not keep it.
 */
export const forEachRun = (
  shape: Shape,
  strides: readonly (readonly number[])[],
  base: readonly number[],
  run: (offsets: number[], n: number, inner: number[]) => void,
): void => {
  const ops = strides.length;
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let ax = 0; ax < shape.length; ax++) {
    const d = shape[ax];
    if (d === 0) return;
    if (d === 1) continue;
    const last = dims.length - 1;
    // Merge into the previous axis when each operand steps over it as one longer axis.
    if (last >= 0 && st.every((s, k) => s[last] === strides[k][ax] * d)) {
      dims[last] *= d;
      for (let k = 0; k < ops; k++) st[k][last] = strides[k][ax];
    } else {
      dims.push(d);
      for (let k = 0; k < ops; k++) st[k].push(strides[k][ax]);
    }
  }
  const off = [...base];
  const r = dims.length;
  if (r === 0) {
    run(off, 1, st.map(() => 0));
    return;
  }
  const n = dims[r - 1];
  const inner = st.map((s) => s[r - 1]);
  const idx = new Array<number>(r - 1).fill(0);
  for (;;) {
    run(off, n, inner);
    let ax = r - 2;
    for (; ax >= 0; ax--) {
      for (let k = 0; k < ops; k++) off[k] += st[k][ax];
      if (++idx[ax] < dims[ax]) break;
      for (let k = 0; k < ops; k++) off[k] -= st[k][ax] * dims[ax];
      idx[ax] = 0;
    }
    if (ax < 0) return;
  }
};

/** Copies the elements of `shape` from `src` to `dst`, each addressed by its own offset and strides. */
export const copyStrided = (
  shape: Shape,
  src: DataArray, srcOffset: number, srcStrides: readonly number[],
  dst: DataArray, dstOffset: number, dstStrides: readonly number[],
): void => {
  forEachRun(shape, [srcStrides, dstStrides], [srcOffset, dstOffset], (o, n, s) => {
    const [is, os] = s;
    if (is === 1 && os === 1) dst.set(src.subarray(o[0], o[0] + n), o[1]);
    else for (let i = 0, a = o[0], b = o[1]; i < n; i++, a += is, b += os) dst[b] = src[a];
  });
};
