/**
 * The kernels the native provider takes over from the WebAssembly one: convolutions (with their fused
 * epilogue), batch-norm (with its), and matmul. Each allocates its outputs like every kernel and
 * hands the addon the arrays themselves.
 */
import { sizeOf, stridesOf, type Kernels, type TensorSpec, type TensorView } from '@residual/core';
import type { CpuStorage } from './memory.js';
import { geometryArray, type OneDnn } from './native.js';
import { broadcastStrides, forEachRun } from './strided.js';

/** The op names the native provider implements. */
export type NativeOp = 'conv2d' | 'conv2dBackwardData' | 'conv2dBackwardFilter' | 'batchNormTrain' | 'batchNormBackward' | 'matmul';

const f32 = (v: TensorView<CpuStorage>): Float32Array => v.storage.data as Float32Array;
const opt = (v: TensorView<CpuStorage> | undefined): Float32Array | null => (v ? f32(v) : null);
/** N, C and the size of the trailing axes of an [N, C, ...] shape. */
const channels = (shape: readonly number[]) => ({ n: shape[0], c: shape[1], inner: sizeOf(shape.slice(2)) });

/** The native kernels over `addon`, allocating outputs with `alloc`. */
export const oneDnnKernels = (addon: OneDnn, alloc: (spec: TensorSpec) => CpuStorage): Pick<Kernels<CpuStorage>, NativeOp> => {
  const one = (spec: TensorSpec, write: (out: Float32Array) => void): CpuStorage[] => {
    const s = alloc(spec);
    if (s.data.length > 0) write(s.data as Float32Array);
    return [s];
  };
  return {
    conv2d: ({ x, w, bias, residual }, g, [o]) =>
      one(o, (y) => addon.conv2dForward(f32(x), f32(w), w.version, opt(bias), opt(residual), y, geometryArray(g), g.relu ?? false)),
    conv2dBackwardData: ({ dy, w }, g, [o]) => one(o, (dx) => addon.conv2dBackwardData(f32(dy), f32(w), w.version, dx, geometryArray(g))),
    conv2dBackwardFilter: ({ x, dy }, g, [o]) =>
      one(o, (dw) => (g.batch === 0 ? dw.fill(0) : addon.conv2dBackwardFilter(f32(x), f32(dy), dw, geometryArray(g)))),
    batchNormTrain: ({ x, gamma, beta, residual }, { eps, relu = false }, outs) => {
      const storages = outs.map(alloc);
      const [y, mean, invstd] = storages.map((s) => s.data as Float32Array);
      const { n, c, inner } = channels(x.shape);
      addon.batchNormTrain(f32(x), f32(gamma), f32(beta), opt(residual), y, mean, invstd, n, c, inner, eps, relu);
      return storages;
    },
    batchNormBackward: ({ dy, x, gamma, mean, invstd, y }, { relu = false }, outs) => {
      const storages = outs.map(alloc);
      const [dx, dgamma, dbeta, dresidual] = storages.map((s) => s.data as Float32Array);
      const { n, c, inner } = channels(x.shape);
      addon.batchNormBackward(
        f32(dy), f32(x), f32(gamma), f32(mean), f32(invstd), relu ? f32(y!) : null, dx, dgamma, dbeta, dresidual ?? null, n, c, inner,
      );
      return storages;
    },
    matmul: ({ a, b }, { transA, transB }, [o]) =>
      one(o, (out) => {
        const r = o.shape.length;
        const [m, n] = [o.shape[r - 2], o.shape[r - 1]];
        const k = transA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
        const batch = o.shape.slice(0, -2);
        const aStep = broadcastStrides(a.shape.slice(0, -2), batch).map((s) => s * m * k);
        const bStep = broadcastStrides(b.shape.slice(0, -2), batch).map((s) => s * k * n);
        forEachRun(batch, [aStep, bStep, stridesOf(batch).map((s) => s * m * n)], [0, 0, 0], (at, count, step) => {
          for (let t = 0; t < count; t++)
            addon.sgemm(transA, transB, m, n, k, f32(a), at[0] + t * step[0], f32(b), at[1] + t * step[1], out, at[2] + t * step[2]);
        });
      }),
  };
};
