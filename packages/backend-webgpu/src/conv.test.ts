import { conv2dGeometry, nextVersion, type Conv2dOptions } from '@residual/core';
import { expectClose, ref, Rng } from '@residual/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { filterSplits } from './programs/conv2d-backward-filter.js';
import type { GemmKernel } from './programs/gemm.js';
import { openTestBackend } from './test-backend.js';

const be = await openTestBackend();
const kernels: GemmKernel[] = ['shared-tiles', 'subgroup-strips'];

describe.skipIf(!be)('conv2dBackwardFilter with split-K', () => {
  afterAll(() => be?.dispose());

  const cases: [string, number[], number[], Conv2dOptions, number][] = [
    // [label, x shape, w shape, options, expected splits (the same on both kernels)]
    ['even chunks', [4, 8, 32, 32], [8, 8, 3, 3], { padding: 1 }, 4],
    ['uneven last chunk, grouped, strided', [5, 4, 51, 41], [6, 2, 3, 3], { padding: 1, stride: 2, groups: 2 }, 2],
  ];
  for (const kernel of kernels)
    for (const [label, xShape, wShape, opts, splits] of cases)
      it(`matches the float64 reference on ${kernel}: ${label}`, async () => {
        const b = await openTestBackend({ gemmKernel: kernel }).catch((e: Error) => e);
        if (b instanceof Error) {
          expect(kernel, b.message).toBe('subgroup-strips'); // the one kernel a device may lack
          return;
        }
        const g = conv2dGeometry(xShape, wShape, opts);
        expect(filterSplits(g, kernel)).toBe(splits);
        const rng = new Rng(label);
        const x = rng.uniform(xShape);
        const dy = rng.uniform([g.batch, g.outChannels, g.outH, g.outW]);
        const [want] = ref.conv2dBackwardFilter({ x, dy }, g);
        try {
          const up = (t: typeof x) => ({ storage: b!.upload(Float32Array.from(t.data)), shape: t.shape, dtype: 'f32' as const, size: t.data.length, version: nextVersion() });
          const [dw] = b!.kernels.conv2dBackwardFilter({ x: up(x), dy: up(dy) }, g, [{ shape: wShape, dtype: 'f32' }]);
          const data = await b!.download(dw, want.data.length, 'f32');
          expectClose(label, { shape: wShape, dtype: 'f32', data }, want, 'f32', { k: g.batch * g.outH * g.outW, scale: 1 });
        } finally {
          b!.dispose();
        }
      });
});
