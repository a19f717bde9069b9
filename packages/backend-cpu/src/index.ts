/**
 * @residual/backend-cpu: every op of the residual op interface on the CPU. Tensors are typed arrays;
 * GEMM and convolutions run as WebAssembly SIMD kernels on all cores, the other ops in TypeScript.
 * In Node, where the oneDNN addon was built at install, the native provider runs convolutions,
 * batch-norm and matmul instead, on the same arrays.
 */
import { philoxFill, sizeOf, type Backend, type DataArray, type Kernels, type TensorSpec, type TensorView } from '@residual/core';
import { conv2d, conv2dBackwardData, conv2dBackwardFilter } from './conv.js';
import { binary, compare, dropout, reluBackward, simdBinary, simdRelu, unary, where } from './elementwise.js';
import { matmul } from './gemm.js';
import { broadcastTo, concat, pad, permute, slice } from './layout.js';
import { softmaxCrossEntropy, softmaxCrossEntropyBackward } from './loss.js';
import { localResponseNorm, localResponseNormBackward } from './lrn.js';
import { CpuMemory, type CpuStorage } from './memory.js';
import { batchNormBackward, batchNormTrain, channelAffine } from './norm.js';
import { avgPool2d, avgPool2dBackward, maxPool2d, maxPool2dBackward } from './pool.js';
import { argmax, reduce, topk } from './reduce.js';
import { Layouts, withLayouts } from './blocked.js';
import { loadOneDnn, NATIVE_HINT, type OneDnn } from './native.js';
import { oneDnnKernels } from './onednn.js';
import { sgdUpdate } from './sgd.js';
import { defaultThreads, fmaSupported, singleThreadReason, Wasm } from './wasm.js';

export type { CpuStorage } from './memory.js';

/** Which kernels run the heavy ops: oneDNN in native code, or WebAssembly SIMD. */
export type CpuProvider = 'native' | 'wasm';

/** Whether the native provider can run here: the library's version and instruction set, or why not and what to install. */
export const nativeProvider = (): { available: true; version: string; isa: string } | { available: false; reason: string; install: string } => {
  const native = loadOneDnn();
  if ('missing' in native) return { available: false, reason: native.missing, install: NATIVE_HINT };
  const { version, isa } = native.addon.info();
  return { available: true, version, isa };
};

/** The CPU backend, which also says which provider runs its heavy ops and on how many threads. */
export type CpuBackend = Backend<CpuStorage> & {
  readonly provider: CpuProvider;
  /** Threads that large ops are split over, the calling one included (also said in `device`). */
  readonly threads: number;
  /**
   * Starts the WebAssembly provider's worker threads, which otherwise start on the first large op
   * and run none of the ops before they are up, and resolves to the number of threads that then run
   * ops: `threads`, or 1 when the workers could not start (said in a warning).
   */
  ready(): Promise<number>;
};

/** Options of {@link createCpuBackend}. */
export interface CpuBackendOptions {
  /**
   * Freed buffers are pooled for reuse up to this many bytes; beyond it they are left to the garbage
   * collector. Default: unlimited, which keeps a training loop (same sizes every step) allocation-free.
   */
  readonly maxPooledBytes?: number;
  /**
   * Threads that GEMM, convolutions and batch-norm are split over, this one included. Default: the
   * `RESIDUAL_THREADS` environment variable, else every core (`os.availableParallelism()`, in a
   * browser `navigator.hardwareConcurrency`). A browser page that is not cross-origin isolated
   * runs one thread whatever is asked, and `device` says why.
   */
  readonly threads?: number;
  /**
   * `false` forces the plain SIMD kernels where relaxed-SIMD fused multiply-add is available.
   * Default: the `RESIDUAL_WASM_FMA` environment variable (`0` or `1`), else true.
   */
  readonly fma?: boolean;
  /**
   * `native`: convolutions, batch-norm and matmul on oneDNN (an error when the addon is missing);
   * `wasm`: everything on WebAssembly; `auto`: native where it loads. Default: the
   * `RESIDUAL_CPU_PROVIDER` environment variable, else `auto`.
   */
  readonly provider?: CpuProvider | 'auto';
}

const env = (name: string): string | undefined => (typeof process === 'undefined' ? undefined : process.env[name]);

/** The thread count of the options or the environment, checked; one, with the reason, where no worker can share the memory. */
const threadsOf = (options: CpuBackendOptions): { threads: number; note: string } => {
  const raw = env('RESIDUAL_THREADS');
  const [n, source] = options.threads !== undefined ? [options.threads, 'threads option'] : raw ? [Number(raw), 'RESIDUAL_THREADS'] : [defaultThreads(), ''];
  if (!Number.isInteger(n) || n < 1) throw new Error(`cpu backend: ${source} must be a positive integer, got '${options.threads ?? raw}'`);
  const why = singleThreadReason();
  return why ? { threads: 1, note: `; no worker threads: ${why}` } : { threads: n, note: '' };
};

/** Whether to use the FMA kernels: asked for (option or environment) and supported. */
const fmaOf = (options: CpuBackendOptions): boolean => {
  const raw = env('RESIDUAL_WASM_FMA');
  if (raw !== undefined && raw !== '0' && raw !== '1') throw new Error(`cpu backend: RESIDUAL_WASM_FMA must be 0 or 1, got '${raw}'`);
  return (options.fma ?? raw !== '0') && fmaSupported();
};

/** The provider asked for (option or environment), resolved against what loads here. */
const providerOf = (options: CpuBackendOptions): { addon: OneDnn | null; note: string } => {
  const raw = env('RESIDUAL_CPU_PROVIDER');
  const asked = options.provider ?? (raw || 'auto');
  if (!['auto', 'native', 'wasm'].includes(asked))
    throw new Error(`cpu backend: ${options.provider ? 'provider option' : 'RESIDUAL_CPU_PROVIDER'} must be native, wasm or auto, got '${asked}'`);
  if (asked === 'wasm') return { addon: null, note: '' };
  const native = loadOneDnn();
  if ('addon' in native) return { addon: native.addon, note: '' };
  if (asked === 'native') throw new Error(`cpu backend: the native provider was asked for, but ${native.missing}; ${NATIVE_HINT}`);
  // Outside Node there is nothing to install that would bring the native provider: no note.
  if (typeof process === 'undefined') return { addon: null, note: '' };
  return { addon: null, note: `; oneDNN provider off, ${native.missing}: ${NATIVE_HINT}` };
};

/** Creates a CPU backend; register it with `setBackend(createCpuBackend())`. */
export const createCpuBackend = (options: CpuBackendOptions = {}): CpuBackend => {
  const { threads, note: threadNote } = threadsOf(options);
  const fma = fmaOf(options);
  const { addon, note: providerNote } = providerOf(options);
  addon?.setThreads(threads);
  // The kernels' memory and threads, made on first use and dropped by dispose(); large tensors live there.
  let instance: Wasm | null = null;
  const wasm = (): Wasm => (instance ??= new Wasm({ threads, fma, onGrow: (bytes) => mem.holdWasm(bytes) }));
  const mem = new CpuMemory(options.maxPooledBytes, {
    allocate: (dtype, length) => wasm().allocate(dtype, length),
    release: (data) => instance?.release(data),
  });
  const alloc = (spec: TensorSpec): CpuStorage => mem.alloc(spec.dtype, sizeOf(spec.shape));
  // Under the native provider, activations stay in oneDNN's blocked layout between native ops.
  const layouts = addon ? new Layouts(addon, mem) : null;
  const f32 = (v: TensorView<CpuStorage>) => v.storage.data as Float32Array;
  const i32 = (v: TensorView<CpuStorage>) => v.storage.data as Int32Array;
  /** Allocates the op's only output, lets `write` fill its array, and returns it. */
  const one = <A extends DataArray = Float32Array>(spec: TensorSpec, write: (out: A) => void): CpuStorage[] => {
    const s = alloc(spec);
    write(s.data as A);
    return [s];
  };

  const kernels = {
    unary: ({ x }, { fn }, [o]) =>
      one<DataArray>(o, (y) => (fn === 'relu' && simdRelu(wasm(), x.storage.data, y)) || unary(fn, x.storage.data, y)),
    binary: ({ a, b }, { fn }, [o]) =>
      one<DataArray>(o, (y) => simdBinary(wasm(), fn, a.storage.data, b.storage.data, y) || binary(fn, a.storage.data, a.shape, b.storage.data, b.shape, y, o.shape)),
    compare: ({ a, b }, { fn }, [o]) => one<DataArray>(o, (y) => compare(fn, a.storage.data, a.shape, b.storage.data, b.shape, y, o.shape)),
    where: ({ cond, a, b }, _, [o]) =>
      one<DataArray>(o, (y) => where(i32(cond), cond.shape, a.storage.data, a.shape, b.storage.data, b.shape, y, o.shape)),
    // Int32Array stores truncate toward zero, as a PyTorch f32 -> i32 cast does.
    cast: ({ x }, _, [o]) => one<DataArray>(o, (y) => y.set(x.storage.data)),
    copy: ({ x }, _, [o]) => one<DataArray>(o, (y) => y.set(x.storage.data)),
    fill: (_, { value }, [o]) => one<DataArray>(o, (y) => y.fill(value)),
    reduce: ({ x }, { fn, axes }, [o]) => one<DataArray>(o, (y) => reduce(fn, x.storage.data, x.shape, axes, y)),
    argmax: ({ x }, { axis }, [o]) => one<Int32Array>(o, (y) => argmax(x.storage.data, x.shape, axis, y)),
    topk: ({ x }, { k }, [vo, io]) => {
      const [values, indices] = [alloc(vo), alloc(io)];
      topk(x.storage.data, x.shape, k, values.data, indices.data as Int32Array);
      return [values, indices];
    },
    matmul: ({ a, b }, { transA, transB }, [o]) => one(o, (y) => matmul(wasm(), f32(a), a.shape, transA, f32(b), b.shape, transB, y, o.shape)),
    conv2d: ({ x, w, scale, bias, residual }, g, [o]) =>
      one(o, (y) =>
        conv2d(
          wasm(), f32(x), f32(w), y, g,
          { scale: scale && f32(scale), bias: bias && f32(bias), residual: residual && f32(residual), relu: g.relu },
          { owner: w.storage, version: w.version },
        ),
      ),
    conv2dBackwardData: ({ dy, w }, g, [o]) => one(o, (dx) => conv2dBackwardData(wasm(), f32(dy), f32(w), dx, g)),
    conv2dBackwardFilter: ({ x, dy }, g, [o]) => one(o, (dw) => conv2dBackwardFilter(wasm(), f32(x), f32(dy), dw, g)),
    maxPool2d: ({ x }, g, [o]) => one(o, (y) => maxPool2d(wasm(), f32(x), y, g)),
    maxPool2dBackward: ({ dy, x }, g, [o]) => one(o, (dx) => maxPool2dBackward(wasm(), f32(dy), f32(x), dx, g)),
    avgPool2d: ({ x }, g, [o]) => one(o, (y) => avgPool2d(f32(x), y, g)),
    avgPool2dBackward: ({ dy }, g, [o]) => one(o, (dx) => avgPool2dBackward(f32(dy), dx, g)),
    batchNormTrain: ({ x, gamma, beta, residual }, { eps, relu }, outs) => {
      const [y, mean, invstd] = outs.map(alloc);
      batchNormTrain(
        wasm(), f32(x), x.shape, f32(gamma), f32(beta), eps, y.data as Float32Array, mean.data as Float32Array, invstd.data as Float32Array,
        { residual: residual && f32(residual), relu },
      );
      return [y, mean, invstd];
    },
    batchNormBackward: ({ dy, x, gamma, mean, invstd, y }, { relu }, outs) => {
      const storages = outs.map(alloc);
      const [dx, dgamma, dbeta, dresidual] = storages.map((s) => s.data as Float32Array);
      batchNormBackward(wasm(), f32(dy), f32(x), x.shape, f32(gamma), f32(mean), f32(invstd), dx, dgamma, dbeta, { y: relu ? f32(y!) : undefined, dresidual });
      return storages;
    },
    reluBackward: ({ y, dy }, _, [o]) => one(o, (dx) => reluBackward(wasm(), f32(y), f32(dy), dx)),
    localResponseNorm: ({ x }, attrs, [o]) => one(o, (y) => localResponseNorm(f32(x), x.shape, attrs, y)),
    localResponseNormBackward: ({ x, dy }, attrs, [o]) => one(o, (dx) => localResponseNormBackward(f32(x), f32(dy), x.shape, attrs, dx)),
    dropout: ({ x }, attrs, [o]) => one(o, (y) => dropout(f32(x), y, attrs)),
    channelAffine: ({ x, scale, shift }, _, [o]) => one(o, (y) => channelAffine(wasm(), f32(x), x.shape, f32(scale), f32(shift), y)),
    softmaxCrossEntropy: ({ logits, labels }, { smoothing }, [o]) =>
      one(o, (loss) => softmaxCrossEntropy(f32(logits), i32(labels), logits.shape[1], smoothing, loss)),
    softmaxCrossEntropyBackward: ({ logits, labels, dloss }, { smoothing }, [o]) =>
      one(o, (d) => softmaxCrossEntropyBackward(f32(logits), i32(labels), f32(dloss), logits.shape[1], smoothing, d)),
    permute: ({ x }, { perm }, [o]) => one<DataArray>(o, (y) => permute(x.storage.data, x.shape, perm, y)),
    slice: ({ x }, { begin, size }, [o]) => one<DataArray>(o, (y) => slice(x.storage.data, x.shape, begin, size, y)),
    pad: ({ x }, { pads, value }, [o]) => one<DataArray>(o, (y) => pad(x.storage.data, x.shape, pads, value, y)),
    concat: ({ xs }, { axis }, [o]) =>
      one<DataArray>(o, (y) => concat(xs.map((t) => ({ data: t.storage.data, shape: t.shape })), axis, y, o.shape)),
    broadcastTo: ({ x }, _, [o]) => one<DataArray>(o, (y) => broadcastTo(x.storage.data, x.shape, y, o.shape)),
    sgdUpdate: ({ param, grad, momentum }, attrs) => {
      sgdUpdate(f32(param), f32(grad), f32(momentum), attrs);
      return [];
    },
    randomFill: (_, { dist, seed, counter, a, b }, [o]) => one(o, (y) => philoxFill(y, dist, seed, counter, a, b)),
  } satisfies Kernels<CpuStorage>;
  if (addon) Object.assign(kernels, oneDnnKernels(addon, alloc, layouts!, { ...kernels }));

  const read = (s: CpuStorage, size: number, dtype: 'f32' | 'i32'): DataArray => {
    if (s.freed) throw new Error('cpu backend: reading a storage that was freed');
    layouts?.plain(s);
    if (s.data.length !== size || (dtype === 'f32') !== (s.data instanceof Float32Array))
      throw new Error(`cpu backend: storage holds ${s.data.length} ${s.data instanceof Float32Array ? 'f32' : 'i32'} elements, asked for ${size} ${dtype}`);
    return s.data.slice();
  };

  return {
    name: 'cpu',
    device: addon
      ? `CPU (oneDNN ${addon.info().version} ${addon.info().isa}, ${threads} thread${threads === 1 ? '' : 's'})`
      : `CPU (WebAssembly SIMD${fma ? ' + FMA' : ''}, ${threads} thread${threads === 1 ? '' : 's'}${threadNote}${providerNote})`,
    provider: addon ? 'native' : 'wasm',
    threads,
    // The native provider's OpenMP threads need no start; its WebAssembly ops share the workers.
    ready: () => wasm().start(),
    upload: (data) => mem.upload(data),
    download: async (s, size, dtype) => read(s, size, dtype),
    readSync: read,
    free: (s) => mem.free(s),
    sync: async () => {},
    memory: () => mem.info(),
    dispose: () => {
      instance?.dispose();
      instance = null;
      mem.clear();
    },
    kernels: layouts ? withLayouts(kernels, layouts) : kernels,
  };
};

/** The entry point `useBackend('cpu')` from `@residual/core` looks for: a CPU backend with default options. */
export const createBackend = (): CpuBackend => createCpuBackend();
