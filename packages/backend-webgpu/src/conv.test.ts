import { conv2dGeometry, type Conv2dOptions } from '@residual/core';
import { expectClose, ref, Rng } from '@residual/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { filterSplits } from './programs/conv2d-backward-filter.js';
import { openTestBackend } from './test-backend.js';

const be = await openTestBackend();

describe.skipIf(!be)('conv2dBackwardFilter with split-K', () => {
  afterAll(() => be?.dispose());

  const cases: [string, number[], number[], Conv2dOptions, number][] = [
    // [label, x shape, w shape, options, expected splits]
    ['even chunks', [4, 8, 32, 32], [8, 8, 3, 3], { padding: 1 }, 4],
    ['uneven last chunk, grouped, strided', [5, 4, 51, 41], [6, 2, 3, 3], { padding: 1, stride: 2, groups: 2 }, 2],
  ];
  for (const [label, xShape, wShape, opts, splits] of cases)
    it(`matches the float64 reference: ${label}`, async () => {
      const g = conv2dGeometry(xShape, wShape, opts);
      expect(filterSplits(g)).toBe(splits);
      const rng = new Rng(label);
      const x = rng.uniform(xShape);
      const dy = rng.uniform([g.batch, g.outChannels, g.outH, g.outW]);
      const [want] = ref.conv2dBackwardFilter({ x, dy }, g);
      const b = be!;
      const up = (t: typeof x) => ({ storage: b.upload(Float32Array.from(t.data)), shape: t.shape, dtype: 'f32' as const, size: t.data.length });
      const [xs, dys] = [up(x), up(dy)];
      const [dw] = b.kernels.conv2dBackwardFilter({ x: xs, dy: dys }, g, [{ shape: wShape, dtype: 'f32' }]);
      const data = await b.download(dw, want.data.length, 'f32');
      expectClose(label, { shape: wShape, dtype: 'f32', data }, want, 'f32', { k: g.batch * g.outH * g.outW, scale: 1 });
      for (const s of [xs.storage, dys.storage, dw]) b.free(s);
    });
});
