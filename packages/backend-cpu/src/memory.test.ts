import { conv2dGeometry, nextVersion, OPS, type TensorView } from '@residual/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend, type CpuStorage } from './index.js';

describe('storage pool and memory()', () => {
  it('reuses a freed buffer of the same dtype and length, and reports bytes truthfully', () => {
    const cpu = createCpuBackend({ provider: 'wasm' });
    expect(cpu.memory()).toEqual({ liveBytes: 0, liveBuffers: 0, heldBytes: 0, peakBytes: 0 });
    const a = cpu.upload(new Float32Array([1, 2, 3]));
    const b = cpu.upload(new Int32Array([4, 5, 6]));
    expect(cpu.memory()).toEqual({ liveBytes: 24, liveBuffers: 2, heldBytes: 24, peakBytes: 24 });
    const buffer = a.data.buffer;
    cpu.free(a);
    expect(cpu.memory()).toEqual({ liveBytes: 12, liveBuffers: 1, heldBytes: 24, peakBytes: 24 });
    // Same length but the other dtype, then another length: neither may take the pooled f32 buffer.
    const c = cpu.upload(new Int32Array([7, 8, 9]));
    const d = cpu.upload(new Float32Array([1, 2]));
    expect(c.data.buffer).not.toBe(buffer);
    expect(d.data.buffer).not.toBe(buffer);
    expect(cpu.memory()).toEqual({ liveBytes: 32, liveBuffers: 3, heldBytes: 44, peakBytes: 44 });
    const e = cpu.upload(new Float32Array([7, 7, 7]));
    expect(e.data.buffer).toBe(buffer);
    expect(Array.from(e.data)).toEqual([7, 7, 7]);
    expect(cpu.memory()).toEqual({ liveBytes: 44, liveBuffers: 4, heldBytes: 44, peakBytes: 44 });
    for (const s of [b, c, d, e]) cpu.free(s);
    expect(cpu.memory()).toEqual({ liveBytes: 0, liveBuffers: 0, heldBytes: 44, peakBytes: 44 });
    cpu.dispose();
    expect(cpu.memory().heldBytes).toBe(0);
  });

  it('rejects a double free and reads of freed or mismatched storages', async () => {
    const cpu = createCpuBackend({ provider: 'wasm' });
    const s = cpu.upload(new Float32Array([1, 2]));
    expect(() => cpu.readSync!(s, 3, 'f32')).toThrow(/2 f32 elements, asked for 3 f32/);
    expect(() => cpu.readSync!(s, 2, 'i32')).toThrow(/asked for 2 i32/);
    const copy = await cpu.download(s, 2, 'f32');
    copy[0] = 9;
    expect(Array.from(cpu.readSync!(s, 2, 'f32'))).toEqual([1, 2]);
    cpu.free(s);
    expect(() => cpu.free(s)).toThrow(/already freed/);
    expect(() => cpu.readSync!(s, 2, 'f32')).toThrow(/freed/);
  });

  it('drops freed buffers beyond maxPooledBytes', () => {
    const cpu = createCpuBackend({ provider: 'wasm', maxPooledBytes: 16 });
    const [a, b] = [cpu.upload(new Float32Array(3)), cpu.upload(new Float32Array(3))];
    cpu.free(a);
    cpu.free(b);
    expect(cpu.memory()).toEqual({ liveBytes: 0, liveBuffers: 0, heldBytes: 12, peakBytes: 24 });
  });

  it('a training-like loop holds flat memory after its first step', () => {
    const cpu = createCpuBackend({ provider: 'wasm' });
    const view = (storage: CpuStorage, shape: number[]): TensorView<CpuStorage> => ({ storage, shape, dtype: 'f32', size: storage.data.length, version: nextVersion() });
    const g = conv2dGeometry([2, 3, 8, 8], [4, 3, 3, 3], { padding: 1 });
    const x = view(cpu.upload(new Float32Array(2 * 3 * 64).fill(0.5)), [2, 3, 8, 8]);
    const w = view(cpu.upload(new Float32Array(4 * 27).fill(0.1)), [4, 3, 3, 3]);
    const mom = view(cpu.upload(new Float32Array(4 * 27)), [4, 3, 3, 3]);
    const held: number[] = [];
    for (let step = 0; step < 4; step++) {
      const [y] = cpu.kernels.conv2d({ x, w }, g, OPS.conv2d.outputs({ x, w } as never, g));
      const yv = view(y, [2, 4, 8, 8]);
      const [r] = cpu.kernels.unary({ x: yv }, { fn: 'relu' }, [yv]);
      const [dw] = cpu.kernels.conv2dBackwardFilter({ x, dy: view(r, [2, 4, 8, 8]) }, g, OPS.conv2dBackwardFilter.outputs({ x, dy: yv } as never, g));
      cpu.kernels.sgdUpdate(
        { param: w, grad: view(dw, [4, 3, 3, 3]), momentum: mom },
        { lr: 0.01, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, firstStep: step === 0 },
        [],
      );
      for (const s of [y, r, dw]) cpu.free(s);
      held.push(cpu.memory().heldBytes);
      expect(cpu.memory().liveBuffers).toBe(3);
    }
    expect(new Set(held).size).toBe(1);
    expect(cpu.memory().peakBytes).toBe(held[0]);
  });

  it('keeps large storages in the WebAssembly memory, reuses their blocks and counts them once', () => {
    const cpu = createCpuBackend({ provider: 'wasm', threads: 1 });
    const n = 10_000;
    const a = cpu.upload(Float32Array.from({ length: n }, (_, i) => i));
    const b = cpu.upload(new Float32Array(n).fill(2));
    // Both live in the kernels' shared memory (a buffer object per size it grew to), where kernels read them in place.
    expect(a.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(b.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(b.data.byteOffset).toBeGreaterThanOrEqual(a.data.byteOffset + n * 4);
    const view = (storage: CpuStorage): TensorView<CpuStorage> => ({ storage, shape: [n], dtype: 'f32', size: n, version: nextVersion() });
    const [c] = cpu.kernels.binary({ a: view(a), b: view(b) }, { fn: 'mul' }, [{ shape: [n], dtype: 'f32' }]);
    expect(c.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Array.from(c.data.subarray(0, 4))).toEqual([0, 2, 4, 6]);
    expect(c.data[n - 1]).toBe(2 * (n - 1));
    const before = cpu.memory();
    expect(before.liveBytes).toBe(3 * n * 4);
    // Held = the WebAssembly memory (live storages inside it are not counted twice).
    expect(before.heldBytes % 65536).toBe(0);
    const offset = c.data.byteOffset;
    cpu.free(c);
    const d = cpu.upload(new Float32Array(n).fill(5));
    expect(d.data.byteOffset).toBe(offset);
    expect(cpu.memory().heldBytes).toBe(before.heldBytes);
    // After dispose a live storage still reads back, and freeing it later is harmless.
    cpu.dispose();
    expect(cpu.readSync!(a, n, 'f32')[n - 1]).toBe(n - 1);
    for (const s of [a, b, d]) cpu.free(s);
    expect(cpu.memory().liveBytes).toBe(0);
  });

  it('works where shared memories exist but the SharedArrayBuffer global does not (pages without cross-origin isolation)', () => {
    const global = globalThis as { SharedArrayBuffer?: unknown };
    const saved = global.SharedArrayBuffer;
    delete global.SharedArrayBuffer;
    try {
      const cpu = createCpuBackend({ provider: 'wasm', threads: 1 });
      const small = cpu.upload(new Float32Array([1, 2, 3]));
      const large = cpu.upload(new Float32Array(10_000).fill(1));
      cpu.free(small);
      cpu.free(large);
      cpu.dispose();
      expect(cpu.memory().liveBuffers).toBe(0);
    } finally {
      global.SharedArrayBuffer = saved;
    }
  });
});

