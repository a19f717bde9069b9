/** `createWebGpuBackend`: a device, its runtime and the kernel table, as a core `Backend`. */
import type { Backend, DataArray, DType } from '@residual/core';
import { requestGpu } from './gpu.js';
import { makeKernels } from './kernels.js';
import type { GemmKernel } from './programs/gemm.js';
import { Runtime, type GpuStorage, type RuntimeCounters, type RuntimeOptions } from './runtime.js';

/** Options of {@link createWebGpuBackend}. */
export interface WebGpuBackendOptions extends RuntimeOptions {
  /** Which adapter to ask for when there are several. Default 'high-performance'. */
  readonly powerPreference?: GPUPowerPreference;
  /** Flags for Dawn in Node (e.g. `backend=vulkan`, `adapter=NAME`); ignored in browsers. */
  readonly dawnFlags?: readonly string[];
}

/** The WebGPU backend: a core `Backend` plus counters of its runtime. */
export interface WebGpuBackend extends Backend<GpuStorage> {
  /** Submits, pipelines built and GPU buffers created so far (for tests and benchmarks). */
  counters(): RuntimeCounters;
  /** The GEMM kernel behind matmul and the convolutions on this device. */
  readonly gemmKernel: GemmKernel;
}

/**
 * Creates the WebGPU backend on the first adapter found; register it with `setBackend(...)`.
 * Rejects with a message naming what to install when this machine has no WebGPU adapter.
 */
export const createWebGpuBackend = async (options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> => {
  const rt = new Runtime(await requestGpu(options.powerPreference, options.dawnFlags), options);
  return {
    name: 'webgpu',
    device: rt.description,
    software: rt.software,
    upload: (data) => rt.upload(data),
    download: async (s: GpuStorage, size: number, dtype: DType): Promise<DataArray> => {
      const bytes = await rt.read(s, size * 4);
      return dtype === 'f32' ? new Float32Array(bytes) : new Int32Array(bytes);
    },
    free: (s) => rt.free(s),
    sync: () => rt.sync(),
    memory: () => rt.memory(),
    dispose: () => rt.dispose(),
    counters: () => rt.counters(),
    gemmKernel: rt.gemmKernel,
    kernels: makeKernels(rt),
  };
};
