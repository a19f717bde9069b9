/** `probeWebGpu` answers what creating the backend would find, without creating a device here. */
import { describe, expect, it } from 'vitest';
import { createWebGpuBackend, probeWebGpu } from './index.js';

describe('probeWebGpu', () => {
  it('names the adapter the backend opens, and whether it is emulated', async () => {
    const probe = await probeWebGpu();
    if (!probe.available) {
      if (process.env.RESIDUAL_REQUIRE_WEBGPU === '1') throw new Error(`RESIDUAL_REQUIRE_WEBGPU=1 but the probe found none: ${probe.reason}`);
      await expect(createWebGpuBackend()).rejects.toThrow(/no WebGPU adapter|cannot load/);
      return;
    }
    const backend = await createWebGpuBackend();
    try {
      expect(probe.device).toBe(backend.device);
      expect(probe.software).toBe(backend.software);
    } finally {
      backend.dispose();
    }
  }, 60_000);

  it('says why when Dawn cannot find an adapter', async () => {
    // An unknown backend flag makes Dawn reject the request; the reason must reach the caller.
    const probe = await probeWebGpu('high-performance', ['backend=nonesuch']);
    expect(probe.available).toBe(false);
    if (!probe.available) expect(probe.reason).toMatch(/nonesuch/);
  }, 60_000);
});
