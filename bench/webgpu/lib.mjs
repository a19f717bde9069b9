// What the WebGPU benchmarks share: the built workspace packages, the backends, timing, and the
// one-JSON-line-per-figure output.
import * as core from '@residual/core';
import { createCpuBackend } from '@residual/backend-cpu';
import { createWebGpuBackend } from '@residual/backend-webgpu';
import * as resnet from '@residual/resnet';

export { core, resnet };

/** The WebGPU backend on the adapter at hand (with its default GEMM kernel unless one is named), registered with core. */
export const openWebGpu = async (gemmKernel) => core.setBackend(await createWebGpuBackend(gemmKernel ? { gemmKernel } : {}));

/** The CPU backend (the peer of the same run), registered with core. */
export const openCpu = () => core.setBackend(createCpuBackend());

/** Prints one figure as a JSON line. */
export const emit = (fields) => console.log(JSON.stringify(fields));

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/**
 * Median seconds per call of `work` (which queues device work) over `samples` samples, after one
 * untimed call (pipeline builds, pool warm-up). A sample repeats `work` until it lasts `minMs`, so
 * fast devices are timed over many calls and slow ones over one.
 */
export const secondsPer = async (backend, work, { samples = 5, minMs = 200 } = {}) => {
  const run = async (reps) => {
    const t = performance.now();
    for (let i = 0; i < reps; i++) await work();
    await backend.sync();
    return (performance.now() - t) / 1000;
  };
  const first = await run(1);
  const reps = Math.max(1, Math.ceil(minMs / 1000 / Math.max(first, 1e-4)));
  const times = [];
  for (let s = 0; s < samples; s++) times.push((await run(reps)) / reps);
  return median(times);
};
