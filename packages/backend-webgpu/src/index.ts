/**
 * @residual/backend-webgpu: the residual op interface in WGSL over WebGPU — Dawn's `webgpu`
 * package in Node, `navigator.gpu` in browsers.
 */
import { createWebGpuBackend, type WebGpuBackend } from './backend.js';

export { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions } from './backend.js';
export { isWebGpuAvailable } from './gpu.js';
export type { GemmKernel } from './programs/gemm.js';
export type { GpuStorage, RuntimeCounters } from './runtime.js';

/** The entry point core's `useBackend('webgpu')` calls: the backend with default options. */
export const createBackend = (): Promise<WebGpuBackend> => createWebGpuBackend();
