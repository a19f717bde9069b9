import { nextVersion, philoxFill, type DType, type RandomAttrs, type Shape } from '@residual/core';
import { afterAll, describe, expect, it } from 'vitest';
import type { WebGpuBackend } from './backend.js';
import type { GpuStorage } from './runtime.js';
import { openTestBackend } from './test-backend.js';

const be = await openTestBackend();

const view = (storage: GpuStorage, shape: Shape, dtype: DType = 'f32') => ({ storage, shape, dtype, size: shape.reduce((a, b) => a * b, 1), version: nextVersion() });
const f32 = (shape: Shape) => ({ shape, dtype: 'f32' as const });
/** y = x + c for a [n] f32 tensor, through the binary kernel with a broadcast scalar. */
const addScalar = (b: WebGpuBackend, x: GpuStorage, n: number, c: number): GpuStorage => {
  const cs = b.upload(new Float32Array([c]));
  const [y] = b.kernels.binary({ a: view(x, [n]), b: view(cs, []) }, { fn: 'add' }, [f32([n])]);
  b.free(cs);
  return y;
};

describe.skipIf(!be)('the WebGPU backend', () => {
  const b = be!;
  const k = b?.kernels;
  afterAll(() => b?.dispose());

  it('stops growing its pool over 200 repeated op loops', async () => {
    const x = new Float32Array(64 * 32).map((_, i) => Math.sin(i));
    const w = new Float32Array(32 * 10).map((_, i) => Math.cos(i));
    const labels = new Int32Array(64).map((_, i) => i % 10);
    const step = async () => {
      const [xs, ws, ls] = [b.upload(x), b.upload(w), b.upload(labels)];
      const [logits] = k.matmul({ a: view(xs, [64, 32]), b: view(ws, [32, 10]) }, { transA: false, transB: false }, [f32([64, 10])]);
      const [act] = k.unary({ x: view(logits, [64, 10]) }, { fn: 'relu' }, [f32([64, 10])]);
      const [loss] = k.softmaxCrossEntropy({ logits: view(act, [64, 10]), labels: view(ls, [64], 'i32') }, { smoothing: 0.1 }, [f32([64])]);
      const [total] = k.reduce({ x: view(loss, [64]) }, { fn: 'mean', axes: [0] }, [f32([1])]);
      const value = (await b.download(total, 1, 'f32'))[0];
      for (const s of [xs, ws, ls, logits, act, loss, total]) b.free(s);
      return value;
    };
    const first = await step();
    for (let i = 0; i < 9; i++) await step();
    const warm = { held: b.memory().heldBytes, created: b.counters().buffersCreated, live: b.memory().liveBuffers };
    for (let i = 0; i < 190; i++) expect(await step()).toBe(first);
    expect(b.memory().heldBytes).toBe(warm.held);
    expect(b.counters().buffersCreated).toBe(warm.created);
    expect(b.memory().liveBuffers).toBe(warm.live);
  });

  it('batches many dispatches into one submit, and splits batches at maxDispatchesPerSubmit', async () => {
    const run = async (backend: WebGpuBackend) => {
      const before = backend.counters().submits;
      let y = backend.upload(new Float32Array([0, 0, 0]));
      for (let i = 0; i < 50; i++) {
        const next = addScalar(backend, y, 3, 1);
        backend.free(y);
        y = next;
      }
      expect([...(await backend.download(y, 3, 'f32'))]).toEqual([50, 50, 50]);
      backend.free(y);
      return backend.counters().submits - before;
    };
    expect(await run(b)).toBe(1);
    const small = (await openTestBackend({ maxDispatchesPerSubmit: 8 }))!;
    try {
      expect(await run(small)).toBe(Math.ceil(50 / 8));
    } finally {
      small.dispose();
    }
  });

  it('spills to a new submit when the uniform arena fills up', async () => {
    const big = (await openTestBackend({ maxDispatchesPerSubmit: 100_000 }))!;
    try {
      let y = big.upload(new Float32Array([1]));
      // 600 dispatches need more than the arena's 256 slots of 256 bytes.
      for (let i = 0; i < 600; i++) {
        const next = addScalar(big, y, 1, 0.5);
        big.free(y);
        y = next;
      }
      expect((await big.download(y, 1, 'f32'))[0]).toBe(301);
      expect(big.counters().submits).toBeGreaterThanOrEqual(3);
    } finally {
      big.dispose();
    }
  });

  it('never lets an upload overwrite a buffer that unsubmitted work still reads', async () => {
    const a = b.upload(new Float32Array([1, 2, 3, 4]));
    const [y] = k.unary({ x: view(a, [4]) }, { fn: 'neg' }, [f32([4])]);
    b.free(a);
    // Same size class as `a`: reusing its buffer would land this write before the negation runs.
    const other = b.upload(new Float32Array([9, 9, 9, 9]));
    expect([...(await b.download(y, 4, 'f32'))]).toEqual([-1, -2, -3, -4]);
    expect([...(await b.download(other, 4, 'f32'))]).toEqual([9, 9, 9, 9]);
    b.free(y);
    b.free(other);
  });

  it('folds dispatches of more than maxComputeWorkgroupsPerDimension workgroups into 2-D', async () => {
    // topk runs a workgroup per row: 70,000 rows exceed the 65,535 per dimension WebGPU guarantees.
    const rows = 70_000;
    const x = new Float32Array(rows * 3).map((_, i) => ((i * 7919) % 1000) / 7);
    const xs = b.upload(x);
    const [values, indices] = k.topk({ x: view(xs, [rows, 3]) }, { k: 1 }, [f32([rows, 1]), { shape: [rows, 1], dtype: 'i32' }]);
    const [got, at] = await Promise.all([b.download(values, rows, 'f32'), b.download(indices, rows, 'i32')]);
    for (const r of [0, 1, 65_534, 65_535, 65_536, rows - 1]) {
      const row = [...x.subarray(r * 3, r * 3 + 3)];
      const best = row.indexOf(Math.max(...row));
      expect([got[r], at[r]]).toEqual([row[best], best]);
    }
    expect(got.every((v, r) => v === Math.max(...x.subarray(r * 3, r * 3 + 3)))).toBe(true);
    for (const s of [xs, values, indices]) b.free(s);
  });

  it('reports memory truthfully: live bytes per size class, held bytes kept for reuse, the peak', () => {
    const before = b.memory();
    const s = b.upload(new Float32Array(1000)); // 4000 bytes -> the 4096-byte class
    const during = b.memory();
    expect(during.liveBytes - before.liveBytes).toBe(4096);
    expect(during.liveBuffers - before.liveBuffers).toBe(1);
    b.free(s);
    const after = b.memory();
    expect(after.liveBytes).toBe(before.liveBytes);
    expect(after.heldBytes).toBe(during.heldBytes);
    expect(after.peakBytes).toBeGreaterThanOrEqual(after.heldBytes);
  });

  it('allocates 0-size tensors and never dispatches for them', async () => {
    const [e] = k.fill({}, { shape: [0, 3], dtype: 'f32', value: 1 }, [f32([0, 3])]);
    const [r] = k.reduce({ x: view(e, [0, 3]) }, { fn: 'sum', axes: [0] }, [f32([1, 3])]);
    expect(await b.download(e, 0, 'f32')).toEqual(new Float32Array(0));
    expect([...(await b.download(r, 3, 'f32'))]).toEqual([0, 0, 0]);
    b.free(e);
    b.free(r);
  });

  it('names the op and the bytes when a tensor is too large for the device', () => {
    expect(() => k.fill({}, { shape: [2 ** 31], dtype: 'f32', value: 0 }, [f32([2 ** 31])])).toThrow(/webgpu fill: a tensor of 8589934592 bytes exceeds/);
  });

  it('rejects a double free', () => {
    const s = b.upload(new Float32Array(4));
    b.free(s);
    expect(() => b.free(s)).toThrow(/not live/);
  });

  it('draws randomFill within 1e-6 relative of philoxFill, element by element', async () => {
    const n = 200_003;
    const draws: [RandomAttrs['dist'], number, number][] = [
      ['uniform', 0, 1], ['uniform', -1, 1], ['uniform', -3, 5], ['uniform', 2, 7], ['normal', 0, 1], ['normal', 0, 0.02],
    ];
    for (const [dist, lo, hi] of draws) {
      const attrs: RandomAttrs = { shape: [n], dist, seed: [0x12345678, 0x9abcdef0], counter: [4294967000, 7], a: lo, b: hi };
      const [s] = k.randomFill({}, attrs, [f32([n])]);
      const got = await b.download(s, n, 'f32');
      b.free(s);
      const want = philoxFill(new Float32Array(n), dist, attrs.seed, attrs.counter, lo, hi);
      let worst = 0;
      for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.abs(want[i]));
      expect(worst, `${dist}(${lo}, ${hi})`).toBeLessThan(1e-6);
    }
  });
});

describe.skipIf(!be)('a disposed WebGPU backend', () => {
  it('refuses further use', async () => {
    const gone = (await openTestBackend())!;
    gone.dispose();
    expect(() => gone.upload(new Float32Array(1))).toThrow(/after dispose/);
  });
});
