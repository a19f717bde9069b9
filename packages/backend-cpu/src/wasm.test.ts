import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createCpuBackend } from './index.js';
import { fmaSupported } from './wasm.js';

describe('WebAssembly kernels and their options', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('ships the binaries that assembly/kernels.ts compiles to', () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const check = spawnSync(process.execPath, ['scripts/build-wasm.mjs', '--check'], { cwd: root, encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('takes the thread count and the FMA switch from options, then the environment', () => {
    process.env.RESIDUAL_THREADS = '3';
    process.env.RESIDUAL_WASM_FMA = '0';
    process.env.RESIDUAL_CPU_PROVIDER = 'wasm';
    expect(createCpuBackend().device).toBe('CPU (WebAssembly SIMD, 3 threads)');
    expect(createCpuBackend({ threads: 1, fma: true }).device).toBe(`CPU (WebAssembly SIMD${fmaSupported() ? ' + FMA' : ''}, 1 thread)`);
    delete process.env.RESIDUAL_THREADS;
    expect(createCpuBackend().device).toMatch(new RegExp(`, ${availableParallelism()} threads?\\)$`));
  });

  it('says how many threads run its ops once ready() has started the workers', async () => {
    const three = createCpuBackend({ threads: 3, provider: 'wasm' });
    const one = createCpuBackend({ threads: 1, provider: 'wasm' });
    expect([three.threads, one.threads]).toEqual([3, 1]);
    await expect(three.ready()).resolves.toBe(3);
    await expect(one.ready()).resolves.toBe(1);
    three.dispose();
    one.dispose();
  });

  it('names the setting at fault', () => {
    process.env.RESIDUAL_THREADS = 'many';
    expect(() => createCpuBackend()).toThrow(/RESIDUAL_THREADS must be a positive integer, got 'many'/);
    expect(() => createCpuBackend({ threads: 0 })).toThrow(/threads option must be a positive integer, got '0'/);
    delete process.env.RESIDUAL_THREADS;
    process.env.RESIDUAL_WASM_FMA = 'yes';
    expect(() => createCpuBackend()).toThrow(/RESIDUAL_WASM_FMA must be 0 or 1, got 'yes'/);
  });
});
