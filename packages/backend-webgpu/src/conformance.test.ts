import { setBackend } from '@residual/core';
import { conformanceCases } from '@residual/core/testing';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { openTestBackend } from './test-backend.js';

/** Case name -> why the WebGPU backend skips it. */
const SKIPS: Record<string, string> = {};

const backend = await openTestBackend();

describe.skipIf(!backend)('conformance kit on the WebGPU backend', () => {
  beforeAll(() => {
    setBackend(backend!);
  });
  afterAll(() => backend?.dispose());
  for (const c of conformanceCases({ skip: SKIPS })) {
    if (c.skip) it.skip(`${c.name} (skipped: ${c.skip})`, () => c.run());
    else it(c.name, () => c.run());
  }
});
