/**
 * The kernels the native provider takes over from the WebAssembly one: convolutions (with their fused
 * epilogue), batch-norm (with its), and matmul. Each allocates its outputs like every kernel and
 * hands the addon the arrays themselves.
 */
import { sizeOf, stridesOf, type Kernels, type TensorSpec, type TensorView } from '@residual/core';
import { blockable, type Layouts } from './blocked.js';
import type { CpuStorage } from './memory.js';
import { geometryArray, type OneDnn } from './native.js';
import { broadcastStrides, forEachRun } from './strided.js';

/** The op names the native provider implements. */
export type NativeOp = 'conv2d' | 'conv2dBackwardData' | 'conv2dBackwardFilter' | 'batchNormTrain' | 'batchNormBackward' | 'matmul' | 'maxPool2d';

const f32 = (v: TensorView<CpuStorage>): Float32Array => v.storage.data as Float32Array;
const opt = (v: TensorView<CpuStorage> | undefined): Float32Array | null => (v ? f32(v) : null);
/** N, C and the size of the trailing axes of an [N, C, ...] shape. */
const channels = (shape: readonly number[]) => ({ n: shape[0], c: shape[1], inner: sizeOf(shape.slice(2)) });

/**
 * The native kernels over `addon`, allocating outputs with `alloc`. Activations (x, y, dy, dx,
 * residuals) are put in the layout native ops take for their shape first (`layouts.native`), and
 * outputs are made in it; weights and per-channel vectors are row-major.
 */
export const oneDnnKernels = (
  addon: OneDnn, alloc: (spec: TensorSpec) => CpuStorage, layouts: Layouts, wasm: Pick<Kernels<CpuStorage>, NativeOp>,
): Pick<Kernels<CpuStorage>, NativeOp> => {
  /** An activation input, in the native layout. */
  const act = (v: TensorView<CpuStorage>): Float32Array => (layouts.native(v), f32(v));
  /** Any other input, row-major. */
  const flat = (v: TensorView<CpuStorage>): Float32Array => (layouts.plain(v.storage), f32(v));
  /** A new output in the native layout for its shape. */
  const out = (spec: TensorSpec): CpuStorage => layouts.mark(alloc(spec), spec.shape);
  const one = (s: CpuStorage, write: (out: Float32Array) => void): CpuStorage[] => {
    if (s.data.length > 0) write(s.data as Float32Array);
    return [s];
  };
  /** Whether a batch-norm over `shape` runs on nChw16c (its x was put there). */
  const blockedBn = (x: TensorView<CpuStorage>) => x.storage.blocked !== undefined;
  return {
    conv2d: ({ x, w, scale, bias, residual }, g, [o]) => {
      const [xs, ws, s, b, r] = [act(x), flat(w), scale ? flat(scale) : null, bias ? flat(bias) : null, residual ? act(residual) : null];
      return one(out(o), (y) => addon.conv2dForward(xs, ws, w.version, s, scale?.version ?? 0, b, r, y, geometryArray(g), g.relu ?? false));
    },
    conv2dBackwardData: ({ dy, w }, g, [o]) => {
      const [d, ws] = [act(dy), flat(w)];
      return one(out(o), (dx) => addon.conv2dBackwardData(d, ws, w.version, dx, geometryArray(g)));
    },
    conv2dBackwardFilter: ({ x, dy }, g, [o]) => {
      const [xs, d] = [act(x), act(dy)];
      return one(alloc(o), (dw) => (g.batch === 0 ? dw.fill(0) : addon.conv2dBackwardFilter(xs, d, dw, geometryArray(g))));
    },
    batchNormTrain: ({ x, gamma, beta, residual }, { eps, relu = false }, outs) => {
      const [xs, r] = [act(x), residual ? act(residual) : null];
      const storages = [out(outs[0]), alloc(outs[1]), alloc(outs[2])];
      const [y, mean, invstd] = storages.map((s) => s.data as Float32Array);
      const { n, c, inner } = channels(x.shape);
      addon.batchNormTrain(xs, flat(gamma), flat(beta), r, y, mean, invstd, n, c, inner, eps, relu, blockedBn(x));
      return storages;
    },
    batchNormBackward: ({ dy, x, gamma, mean, invstd, y }, { relu = false }, outs) => {
      const [d, xs, ys] = [act(dy), act(x), relu ? act(y!) : null];
      const storages = outs.map((spec, i) => (i === 0 || i === 3 ? out(spec) : alloc(spec)));
      const [dx, dgamma, dbeta, dresidual] = storages.map((s) => s.data as Float32Array);
      const { n, c, inner } = channels(x.shape);
      addon.batchNormBackward(d, xs, flat(gamma), flat(mean), flat(invstd), ys, dx, dgamma, dbeta, dresidual ?? null, n, c, inner, blockedBn(x));
      return storages;
    },
    // Max-pool over a blocked activation where it is (ResNet-50's stem pool); others, row-major, on WebAssembly.
    maxPool2d: (inputs, g, outs) => {
      if (!blockable(inputs.x.shape) || !blockable(outs[0].shape)) {
        layouts.plain(inputs.x.storage);
        return wasm.maxPool2d(inputs, g, outs);
      }
      const x = act(inputs.x);
      return one(out(outs[0]), (y) =>
        addon.maxPool2d(x, y, g.batch, g.channels, g.inH, g.inW, g.outH, g.outW, g.kernelH, g.kernelW, g.strideH, g.strideW, g.padTop, g.padLeft));
    },
    matmul: ({ a, b }, { transA, transB }, [o]) =>
      one(alloc(o), (out) => {
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
