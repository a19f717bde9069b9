import { conv2dGeometry, type Conv2dGeometry, type Conv2dOptions } from '@residual/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conv2d, conv2dBackwardData, conv2dBackwardFilter } from './conv.js';
import { matmul } from './gemm.js';
import { fmaSupported, Wasm } from './wasm.js';

/** Values in [-1, 1) from a fixed LCG. */
const rand = (n: number, seed: number): Float32Array => {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
};

const fma = fmaSupported();
const make = (threads: number) => new Wasm({ threads, fma, onGrow: () => {} });

/** Runs the three conv kernels on one runtime. */
const convs = (wasm: Wasm, x: Float32Array, w: Float32Array, dy: Float32Array, g: Conv2dGeometry) => {
  const y = new Float32Array(dy.length);
  const dx = new Float32Array(x.length);
  const dw = new Float32Array(w.length);
  conv2d(wasm, x, w, y, g);
  conv2dBackwardData(wasm, dy, w, dx, g);
  conv2dBackwardFilter(wasm, x, dy, dw, g);
  return { y, dx, dw };
};

// Each is above the size at which ops go parallel; batches of 5 split unevenly over 3 threads, batches
// of 2 make the threads split channels instead of images; stride 2 takes the column-matrix data gradient.
const CASES: [string, number[], number[], Conv2dOptions][] = [
  ['3x3 pad 1, 5 images', [5, 8, 20, 20], [12, 8, 3, 3], { padding: 1 }],
  ['3x3 pad 1, 2 images', [2, 16, 32, 32], [24, 16, 3, 3], { padding: 1 }],
  ['3x3 stride 2, 2 images', [2, 16, 33, 33], [20, 16, 3, 3], { padding: 1, stride: 2 }],
  ['1x1 grouped, 5 images', [5, 32, 24, 24], [48, 16, 1, 1], { groups: 2 }],
];

describe('worker threads', () => {
  const single = make(1);
  const pooled = make(3);
  beforeAll(() => pooled.start());
  afterAll(() => pooled.dispose());

  for (const [label, xs, ws, opts] of CASES) {
    it(`conv ${label}: 3 threads give the results of 1, bit for bit where no sum is split`, () => {
      const g = conv2dGeometry(xs, ws, opts);
      const x = rand(xs.reduce((a, b) => a * b), 1);
      const w = rand(ws.reduce((a, b) => a * b), 2);
      const dy = rand(g.batch * g.outChannels * g.outH * g.outW, 3);
      const one = convs(single, x, w, dy, g);
      const three = convs(pooled, x, w, dy, g);
      expect(three.y).toEqual(one.y);
      expect(three.dx).toEqual(one.dx);
      // The filter gradient sums each thread's images, then the parts in order: close to one thread's sum,
      // and the same on every run, whether the workers or the calling thread ran the slices.
      const scale = Math.max(...one.dw.map(Math.abs));
      three.dw.forEach((v, i) => expect(Math.abs(v - one.dw[i])).toBeLessThanOrEqual(1e-5 * scale));
      expect(convs(pooled, x, w, dy, g).dw).toEqual(three.dw);
      const unstarted = make(3);
      expect(convs(unstarted, x, w, dy, g).dw).toEqual(three.dw);
      unstarted.dispose();
    });
  }

  it('runs each job once when its wake-up comes late, as the memory grows (the race that hung long runs)', async () => {
    // The OS can pause the calling thread between publishing a job and notifying the workers: a worker
    // that found the job meanwhile has run it and sleeps again when the notify arrives. Force that
    // order by holding each notify until the job is done (or 100 ms passed). A worker that ran the job
    // again would leave PENDING (ctl[1] in wasm.ts) at -1 and hang the caller: undo that and count it.
    const wasm = make(2);
    await wasm.start();
    const notify = Atomics.notify;
    let reruns = 0;
    Atomics.notify = ((ctl: Int32Array, index: number, count?: number) => {
      const pending = () => Atomics.load(ctl, 1);
      for (const t = performance.now(); pending() > 0 && performance.now() - t < 100;);
      const woken = notify(ctl, index, count);
      for (const t = performance.now(); pending() === 0 && performance.now() - t < 50;);
      if (pending() < 0) {
        reruns++;
        Atomics.store(ctl, 1, 0);
      }
      return woken;
    }) as typeof Atomics.notify;
    try {
      // Each size needs more memory than the last: the workers keep running on the grown memory.
      for (const m of [128, 256, 512]) {
        const a = rand(m * 64, 6);
        const b = rand(64 * 256, 7);
        const [c1, c2] = [new Float32Array(m * 256), new Float32Array(m * 256)];
        matmul(single, a, [m, 64], false, b, [64, 256], false, c1, [m, 256]);
        matmul(wasm, a, [m, 64], false, b, [64, 256], false, c2, [m, 256]);
        expect(c2).toEqual(c1);
      }
    } finally {
      Atomics.notify = notify;
      wasm.dispose();
    }
    expect(reruns).toBe(0);
  });

  it('matmul splits rows or columns over the threads with the results of one', () => {
    for (const [m, n, k] of [[300, 100, 64], [70, 400, 50]]) {
      const a = rand(m * k, 4);
      const b = rand(k * n, 5);
      const [c1, c3] = [new Float32Array(m * n), new Float32Array(m * n)];
      matmul(single, a, [m, k], false, b, [k, n], false, c1, [m, n]);
      matmul(pooled, a, [m, k], false, b, [k, n], false, c3, [m, n]);
      expect(c3).toEqual(c1);
    }
  });
});
