import { setBackend } from '@residual/core';
import { conformanceCases } from '@residual/core/testing';
import { beforeAll, describe, it } from 'vitest';
import { createCpuBackend } from './index.js';
import { fmaSupported } from './wasm.js';

// Both kernel builds answer to the kit: fused multiply-add (where the engine has relaxed SIMD) and plain SIMD.
const variants = fmaSupported() ? [true, false] : [false];

for (const fma of variants) {
  describe(`conformance kit on the CPU backend, ${fma ? 'FMA' : 'plain SIMD'} kernels`, () => {
    beforeAll(() => {
      setBackend(createCpuBackend({ fma }));
    });
    // The whole kit, nothing skipped.
    for (const c of conformanceCases()) it(c.name, () => c.run());
  });
}
