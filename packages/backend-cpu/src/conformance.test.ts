import { setBackend } from '@residual/core';
import { conformanceCases } from '@residual/core/testing';
import { beforeAll, describe, it } from 'vitest';
import { createCpuBackend, type CpuBackendOptions } from './index.js';
import { loadOneDnn } from './native.js';
import { fmaSupported } from './wasm.js';

// Every provider and kernel build answers to the kit: the WebAssembly provider with fused multiply-add
// (where the engine has relaxed SIMD) and with plain SIMD, and the native oneDNN provider where its
// addon was built. CI sets RESIDUAL_REQUIRE_NATIVE=1, so a missing addon fails there instead of skipping.
const variants: [string, CpuBackendOptions][] = [
  ...(fmaSupported() ? [['WebAssembly, FMA kernels', { provider: 'wasm', fma: true }] as [string, CpuBackendOptions]] : []),
  ['WebAssembly, plain SIMD kernels', { provider: 'wasm', fma: false }],
];
const native = loadOneDnn();
if ('addon' in native || process.env.RESIDUAL_REQUIRE_NATIVE === '1') variants.push(['native oneDNN', { provider: 'native' }]);

for (const [label, options] of variants) {
  describe(`conformance kit on the CPU backend, ${label}`, () => {
    beforeAll(() => {
      setBackend(createCpuBackend(options));
    });
    // The whole kit, nothing skipped.
    for (const c of conformanceCases()) it(c.name, () => c.run());
  });
}
