import { setBackend } from '@residual/core';
import { conformanceCases } from '@residual/core/testing';
import { beforeAll, describe, it } from 'vitest';
import { createCpuBackend } from './index.js';

/** Case name -> why the CPU backend skips it. Empty: the CPU passes the whole kit. */
const SKIPS: Record<string, string> = {};

describe('conformance kit on the CPU backend', () => {
  beforeAll(() => {
    setBackend(createCpuBackend());
  });
  for (const c of conformanceCases({ skip: SKIPS })) {
    if (c.skip) it.skip(`${c.name} (skipped: ${c.skip})`, () => c.run());
    else it(c.name, () => c.run());
  }
});
