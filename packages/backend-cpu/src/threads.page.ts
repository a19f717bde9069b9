/**
 * What src/threads.browser.test.ts runs in Chromium: a small network's forward pass on a CPU backend
 * made in the page, with what the backend says of its threads. Served from source by Vite, not built.
 */
import { conv2d, globalAvgPool2d, matmul, maxPool2d, randn, setBackend, tidy } from '@residual/core';
import { createCpuBackend, type CpuBackendOptions } from './index.js';

/** Runs the forward on a new backend of `options` and disposes it. */
export const forward = async (options: CpuBackendOptions) => {
  const backend = createCpuBackend(options);
  setBackend(backend);
  // Started first, so every large op below is split over the workers, not run by this thread alone.
  const running = await backend.ready();
  // Each conv is above the size at which ops go parallel: a Winograd 3x3, then a strided one (a GEMM).
  const logits = tidy(() => {
    const x = randn([2, 16, 32, 32], { seed: 1 });
    const h = conv2d(x, randn([32, 16, 3, 3], { seed: 2, std: 0.1 }), { padding: 1, relu: true });
    const p = maxPool2d(h, { kernelSize: 2 });
    const h2 = conv2d(p, randn([64, 32, 3, 3], { seed: 3, std: 0.1 }), { padding: 1, stride: 2, relu: true });
    return matmul(globalAvgPool2d(h2), randn([64, 10], { seed: 4 }));
  });
  const values = Array.from(await logits.data());
  logits.dispose();
  backend.dispose();
  return { threads: backend.threads, running, device: backend.device, logits: values };
};
