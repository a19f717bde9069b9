import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Backend } from './backend.js';
import { currentBackend } from './engine.js';
import { useBackend } from './select.js';
import { createReferenceBackend } from './testing/reference-backend.js';

const fake = (name: string, extra: Partial<Backend> = {}) => ({ ...createReferenceBackend(), name, ...extra }) as Backend;
const modules = (webgpu: (() => Backend) | 'missing') => async (pkg: string) => {
  if (pkg.endsWith('cpu')) return { createBackend: () => fake('cpu') };
  if (webgpu === 'missing') throw Object.assign(new Error(`Cannot find package '${pkg}'`), { code: 'ERR_MODULE_NOT_FOUND' });
  return { createBackend: webgpu };
};

afterEach(() => {
  vi.restoreAllMocks();
  delete process.env.RESIDUAL_BACKEND;
});

describe('useBackend', () => {
  it('auto takes a hardware WebGPU adapter', async () => {
    const b = await useBackend('auto', { load: modules(() => fake('webgpu', { device: 'a GPU' })) });
    expect(b.name).toBe('webgpu');
    expect(currentBackend()).toBe(b);
  });

  it('auto passes over a software adapter and says so on stderr', async () => {
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    const disposed = vi.fn();
    const b = await useBackend('auto', { load: modules(() => fake('webgpu', { device: 'llvmpipe', software: true, dispose: disposed })) });
    expect(b.name).toBe('cpu');
    expect(disposed).toHaveBeenCalled();
    expect(err.mock.calls[0][0]).toMatch(/software renderer \(llvmpipe\); using the CPU backend/);
  });

  it('auto falls back to the CPU when WebGPU is not installed, naming why', async () => {
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    const b = await useBackend(undefined, { load: modules('missing') });
    expect(b.name).toBe('cpu');
    expect(err.mock.calls[0][0]).toMatch(/@residual\/backend-webgpu/);
  });

  it('names the package to install when an explicit backend is missing', async () => {
    await expect(useBackend('webgpu', { load: modules('missing') })).rejects.toThrow(/npm install @residual\/backend-webgpu/);
  });

  it('reads RESIDUAL_BACKEND and rejects unknown names by source', async () => {
    process.env.RESIDUAL_BACKEND = 'cpu';
    expect((await useBackend(undefined, { load: modules('missing') })).name).toBe('cpu');
    process.env.RESIDUAL_BACKEND = 'tpu';
    await expect(useBackend(undefined, { load: modules('missing') })).rejects.toThrow(/RESIDUAL_BACKEND: unknown backend 'tpu'/);
    await expect(useBackend('gpu' as never)).rejects.toThrow(/useBackend: unknown backend 'gpu'/);
  });
});
