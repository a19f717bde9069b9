import { conv2d, getBackend, matmul, relu, tensor, useBackend } from '@residual/core';
import { afterAll, describe, expect, it } from 'vitest';
import { orSkip } from './test-backend.js';

const backend = await orSkip(() => useBackend('webgpu', { load: (p) => import(p) }));

describe.skipIf(!backend)("core's useBackend('webgpu')", () => {
  afterAll(() => backend?.dispose());

  it('loads this package and runs ops through the core API', async () => {
    expect(getBackend().name).toBe('webgpu');
    const a = tensor([1, 2, 3, 4], [2, 2]);
    expect([...(await matmul(a, a).data())]).toEqual([7, 10, 15, 22]);
    const x = tensor([1, -2, 3, -4, 5, -6, 7, -8, 9], [1, 1, 3, 3]);
    const w = tensor([1, 0, 0, 1], [1, 1, 2, 2]);
    // Each output adds the top-left and bottom-right of its 2x2 window, then ReLU.
    expect([...(await relu(conv2d(x, w)).data())]).toEqual([6, 0, 0, 14]);
  });
});
