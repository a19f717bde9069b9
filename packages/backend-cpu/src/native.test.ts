import {
  BatchNorm2d, Conv2d, conv2d, conv2dGeometry, convBn, dropout, localResponseNorm, manualSeed, maxPool2d, mul, noGrad, randn, runOp, setBackend,
  sum, tensor, type Tensor,
} from '@residual/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createCpuBackend } from './index.js';
import { geometryArray, loadOneDnn } from './native.js';

const native = loadOneDnn();
const required = process.env.RESIDUAL_REQUIRE_NATIVE === '1';

describe('provider selection', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('names the setting at fault', () => {
    process.env.RESIDUAL_CPU_PROVIDER = 'gpu';
    expect(() => createCpuBackend()).toThrow(/RESIDUAL_CPU_PROVIDER must be native, wasm or auto, got 'gpu'/);
    expect(() => createCpuBackend({ provider: 'fast' as 'wasm' })).toThrow(/provider option must be native, wasm or auto, got 'fast'/);
  });

  it('says which provider runs, in the device line and the provider field', () => {
    const wasm = createCpuBackend({ provider: 'wasm', threads: 1 });
    expect(wasm.provider).toBe('wasm');
    expect(wasm.device).toMatch(/^CPU \(WebAssembly SIMD/);
    const auto = createCpuBackend({ threads: 1 });
    if ('addon' in native) {
      expect(auto.provider).toBe('native');
      expect(auto.device).toMatch(/^CPU \(oneDNN \d+\.\d+\.\d+ .+, 1 thread\)$/);
    } else {
      // Without the addon, auto falls back and says what to install.
      expect(auto.provider).toBe('wasm');
      expect(auto.device).toContain('libdnnl-dev');
      expect(() => createCpuBackend({ provider: 'native' })).toThrow(/native provider was asked for.*libdnnl-dev/);
    }
  });

  it.runIf(required)('has the addon where CI requires it', () => {
    expect(native).toHaveProperty('addon');
  });
});

describe.runIf('addon' in native)('the oneDNN provider', () => {
  const addon = 'addon' in native ? native.addon : null!;
  // Made only where the addon loads: describe's body runs even when it is skipped.
  const natBackend = 'addon' in native ? createCpuBackend({ provider: 'native', threads: 2 }) : null!;
  const wasmBackend = createCpuBackend({ provider: 'wasm', threads: 2 });
  const values = (t: Tensor) => Array.from(t.dataSync());
  const expectClose = (got: number[], want: number[], tol: number, what = '') => {
    expect(got.length).toBe(want.length);
    const worst = got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
    if (!(worst < tol)) throw new Error(`${what}: worst difference ${worst}, tolerance ${tol}`);
  };
  /** conv2d on the WebAssembly provider, from host copies: the independent answer. */
  const wasmConv = (x: number[], xs: number[], w: number[], ws: number[], opts: object) => {
    setBackend(wasmBackend);
    const y = values(conv2d(tensor(Float32Array.from(x), xs), tensor(Float32Array.from(w), ws), opts));
    setBackend(natBackend);
    return y;
  };

  it('runs the AVX kernels on blocked layouts, and Winograd where it pays', () => {
    const isa = addon.info().isa;
    const impl = (x: number[], w: number[], opts: object, pass: 0 | 1 | 2) => addon.convImpl(geometryArray(conv2dGeometry(x, w, opts)), pass);
    if (isa.startsWith('AVX-512')) {
      expect(impl([128, 32, 16, 16], [32, 32, 3, 3], { padding: 1 }, 0)).toMatch(/wino/);
      expect(impl([128, 16, 32, 32], [16, 16, 3, 3], { padding: 1 }, 0)).toMatch(/avx512/);
      expect(impl([128, 16, 32, 32], [16, 16, 3, 3], { padding: 1 }, 2)).toMatch(/wino/);
      expect(impl([1, 256, 56, 56], [64, 256, 1, 1], {}, 0)).toMatch(/avx512/);
    }
    expect(impl([2, 3, 9, 9], [4, 3, 3, 3], { padding: 1 }, 1)).not.toBe('');
  });

  it('never uses reordered weights after they change: in-place steps, new loads, freed and reused memory', () => {
    setBackend(natBackend);
    const xs = [2, 16, 8, 8];
    const ws = [32, 16, 3, 3];
    const opts = { padding: 1 };
    const x = randn(xs, { seed: 1 });
    const w = randn(ws, { seed: 2 });
    const hostX = values(x);
    const check = (what: string, wt: Tensor) => {
      const got = values(conv2d(x, wt, opts));
      expectClose(got, wasmConv(hostX, xs, values(wt), ws, opts), 1e-3, what);
    };
    check('first use', w);
    // An optimizer step writes w in place: same storage and address, new contents.
    const grad = randn(ws, { seed: 3 });
    const momentum = randn(ws, { seed: 4 });
    runOp('sgdUpdate', { param: w, grad, momentum }, { lr: 0.5, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true });
    check('after an in-place step', w);
    w.assign(randn(ws, { seed: 5 }));
    check('after assign', w);
    // Freed, and its memory taken by a new tensor of the same size: a new version, never the old entry.
    const fresh = Float32Array.from(values(randn(ws, { seed: 6 })));
    w.dispose();
    const w2 = tensor(fresh, ws);
    check('in reused memory', w2);
  });

  it('max-pools blocked activations as the WebAssembly provider does, NaN winning', () => {
    const shape = [2, 32, 9, 11];
    const data = Float32Array.from({ length: 2 * 32 * 9 * 11 }, (_, i) => (i % 37 === 5 ? NaN : Math.sin(i * 1.7)));
    const opts = { kernelSize: 3, stride: 2, padding: 1 };
    const pooled = (backend: typeof natBackend) => {
      setBackend(backend);
      // Through a 1x1 convolution by the identity, so the native provider holds it blocked.
      const eye = tensor(Float32Array.from({ length: 32 * 32 }, (_, i) => (i % 33 === 0 ? 1 : 0)), [32, 32, 1, 1]);
      return values(maxPool2d(conv2d(tensor(data, shape), eye), opts));
    };
    const got = pooled(natBackend);
    const want = pooled(wasmBackend);
    expect(got.map((v) => Number.isNaN(v))).toEqual(want.map((v) => Number.isNaN(v)));
    expect(want.some((v) => Number.isNaN(v))).toBe(true);
    expectClose(got.map((v) => (Number.isNaN(v) ? 0 : v)), want.map((v) => (Number.isNaN(v) ? 0 : v)), 1e-6, 'pooled');
  });

  it('normalises (LRN) and drops out blocked activations position by position, as the WebAssembly provider does', () => {
    const shape = [2, 32, 5, 7];
    const data = Float32Array.from({ length: 2 * 32 * 5 * 7 }, (_, i) => 3 * Math.sin(i * 1.3));
    const run = (backend: typeof natBackend) => {
      setBackend(backend);
      // A 1x1 convolution by the identity (exact), so the native provider holds the activation blocked.
      const eye = tensor(Float32Array.from({ length: 32 * 32 }, (_, i) => (i % 33 === 0 ? 1 : 0)), [32, 32, 1, 1]);
      const h = conv2d(tensor(data, shape), eye);
      return [values(localResponseNorm(h, 5, { alpha: 1, beta: 0.75, k: 2 })), values(dropout(h, 0.5, { seed: 3 }))];
    };
    const [lrn, dropped] = run(natBackend);
    expect(lrn).toEqual(run(wasmBackend)[0]);
    expect(dropped).toEqual(run(wasmBackend)[1]);
  });

  it('trains a residual block (fused epilogues, folded inference) to the WebAssembly provider\'s numbers', () => {
    const run = (backend: typeof natBackend) => {
      setBackend(backend);
      manualSeed(5);
      const conv1 = new Conv2d(16, 16, 3, { padding: 1, bias: false });
      const bn1 = new BatchNorm2d(16);
      const conv2 = new Conv2d(16, 16, 3, { padding: 1, bias: false });
      const bn2 = new BatchNorm2d(16);
      const x = randn([4, 16, 8, 8], { seed: 7 });
      const block = () => convBn(conv2, bn2, convBn(conv1, bn1, x, { relu: true }), { residual: x, relu: true });
      const y = block();
      sum(mul(y, randn(y.shape, { seed: 8 }))).backward();
      const grads = [conv1.weight, bn1.weight, bn1.bias, conv2.weight, bn2.weight, bn2.bias].map((p) => values(p.grad!));
      for (const m of [conv1, bn1, conv2, bn2]) m.eval();
      const inferred = values(noGrad(() => block()));
      return { y: values(y), grads, inferred };
    };
    const a = run(natBackend);
    const b = run(wasmBackend);
    expectClose(a.y, b.y, 1e-4, 'training output');
    a.grads.forEach((g, i) => expectClose(g, b.grads[i], 1e-3 * Math.max(...b.grads[i].map(Math.abs)) + 1e-6, `gradient ${i}`));
    expectClose(a.inferred, b.inferred, 1e-4, 'folded inference output');
  });
});
