/**
 * @residual/backend-webgpu: the residual op interface in WGSL over WebGPU — Dawn's `webgpu`
 * package in Node, `navigator.gpu` in browsers.
 */
import { createWebGpuBackend, type WebGpuBackend } from './backend.js';
import { probeWebGpu, type WebGpuProbe } from './gpu.js';

export { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions } from './backend.js';
export { describeAdapter, isSoftwareAdapter, isWebGpuAvailable, probeWebGpu, type WebGpuProbe } from './gpu.js';
export type { GemmKernel } from './programs/gemm.js';
export type { GpuStorage, RuntimeCounters } from './runtime.js';

/** The entry point core's `useBackend('webgpu')` calls: the backend with default options. */
export const createBackend = (): Promise<WebGpuBackend> => createWebGpuBackend();

/** What core's `useBackend('auto')` asks before creating anything: is there an adapter, and is it a real GPU? */
export const probeBackend = (): Promise<WebGpuProbe> => probeWebGpu();
