import { setBackend } from '@residual/core';
import { conformanceCases } from '@residual/core/testing';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { WebGpuBackend } from './backend.js';
import { openTestBackend } from './test-backend.js';

const backend = await openTestBackend();

const suite = (title: string, b: WebGpuBackend | null, only?: RegExp) =>
  describe.skipIf(!b)(title, () => {
    beforeAll(() => {
      setBackend(b!);
    });
    afterAll(() => b?.dispose());
    // The whole kit, nothing skipped.
    for (const c of conformanceCases()) if (!only || only.test(c.name)) it(c.name, () => c.run());
  });

suite(`conformance kit on the WebGPU backend (${backend?.gemmKernel} GEMM)`, backend);

// Each device runs one GEMM kernel; the matmul and convolution cases (forward and gradients) run
// on the other one too, so that a machine with a CPU adapter checks the GPU kernel and vice versa.
const other = backend?.gemmKernel === 'shared-tiles' ? 'subgroup-strips' : 'shared-tiles';
const second = backend && (await openTestBackend({ gemmKernel: other }).catch((e: Error) => (console.warn(`skipping the ${other} GEMM cases: ${e.message}`), null)));
suite(`the GEMM-shaped cases on the ${other} kernel`, second ?? null, /matmul|conv|linear/i);
