/**
 * The backend the test files share. Without a WebGPU adapter it is null and the reason is printed,
 * so the GPU tests skip; with RESIDUAL_REQUIRE_WEBGPU=1 (CI on a GPU machine) that is an error.
 */
import { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions } from './backend.js';

/** What `open` gives, or null (reason printed) when this machine has no adapter. */
export const orSkip = async <T>(open: () => Promise<T>): Promise<T | null> => {
  try {
    return await open();
  } catch (e) {
    if (process.env.RESIDUAL_REQUIRE_WEBGPU === '1') throw e;
    console.warn(`skipping the WebGPU tests: ${(e as Error).message}`);
    return null;
  }
};

/** A fresh backend, or null (reason printed) when this machine has no adapter. */
export const openTestBackend = (options?: WebGpuBackendOptions): Promise<WebGpuBackend | null> => orSkip(() => createWebGpuBackend(options));
