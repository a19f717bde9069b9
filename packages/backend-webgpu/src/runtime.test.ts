import { afterAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend } from './backend.js';
import { requestGpu } from './gpu.js';
import type { Program } from './header.js';
import type { GemmKernel } from './programs/gemm.js';
import { Runtime } from './runtime.js';
import { orSkip } from './test-backend.js';

const runtime = async () => new Runtime(await requestGpu());
const probe = await orSkip(runtime);
afterAll(() => probe?.dispose());

const isNode = typeof (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu === 'undefined';

describe.skipIf(!isNode)('without an adapter', () => {
  it('says what to install', async () => {
    // Dawn finds no adapter of this name, as on a machine with no Vulkan driver at all.
    await expect(createWebGpuBackend({ dawnFlags: ['adapter=no adapter has this name'] })).rejects.toThrow(/no WebGPU adapter found.*Vulkan.*lavapipe/s);
  });
});

describe.skipIf(!probe)('GPU errors', () => {
  it('reports device loss on the next read instead of hanging', async () => {
    const rt = await runtime();
    const s = rt.upload(new Float32Array([1, 2]));
    rt.device.destroy();
    await expect(rt.read(s, 8)).rejects.toThrow(/device lost/);
    expect(() => rt.upload(new Float32Array(1))).toThrow(/device lost/);
  });

  it('names a program that does not build, with its source', async () => {
    const rt = await runtime();
    const broken: Program = {
      shaderKey: 'broken-on-purpose',
      workgroupSize: 64,
      dispatch: 1,
      inputs: [],
      outputs: [{ name: 'y', type: 'f32' }],
      uniforms: [],
      code: () => 'fn run(group: u32, lid: u32) { y[0] = undefinedName; }',
    };
    rt.run('test', broken, [], [rt.alloc(4, 'test')]);
    await expect(rt.sync()).rejects.toThrow(/program 'broken-on-purpose' does not build.*undefinedName/s);
    rt.dispose();
  });

  it('refuses a GEMM kernel it does not have, naming it', async () => {
    await expect(createWebGpuBackend({ gemmKernel: 'im2col' as GemmKernel })).rejects.toThrow(/unknown gemmKernel 'im2col'/);
  });

  it('builds one pipeline per shaderKey', () => {
    const rt = probe!;
    const program = (dispatch: number): Program => ({
      shaderKey: 'count-me',
      workgroupSize: 64,
      dispatch,
      inputs: [],
      outputs: [{ name: 'y', type: 'f32' }],
      uniforms: [],
      code: () => 'fn run(group: u32, lid: u32) { y[group * WG + lid] = 1.0; }',
    });
    const y = rt.alloc(4 * 64 * 3, 'test');
    const before = rt.counters().pipelines;
    for (const n of [1, 2, 3]) rt.run('test', program(n), [], [y]);
    expect(rt.counters().pipelines - before).toBe(1);
    rt.free(y);
  });
});
