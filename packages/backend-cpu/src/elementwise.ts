/**
 * Elementwise kernels: unary, binary and comparisons with NumPy broadcasting, where, and relu's
 * gradient. Large f32 operands of the common functions run as SIMD kernels on all threads (the
 * `simd*` functions); the rest, in TypeScript. Also dropout's masked scaling.
 */
import {
  addCounter, dropoutThreshold, philox4x32, stridesOf, type BinaryFn, type CompareFn, type DataArray, type DropoutAttrs, type Shape, type UnaryFn,
} from '@residual/core';
import { broadcastStrides, forEachRun } from './strided.js';
import type { Wasm } from './wasm.js';

/** Below this many elements the copies into and out of WebAssembly memory cost more than SIMD saves. */
const SIMD_MIN = 4096;
/** An element's share of the work measure that decides on threads (in multiply-adds, see Wasm.run). */
const ELEMENT_WORK = 16;
/** The binary functions with SIMD kernels, in the code order of assembly/elementwise.ts. */
const SIMD_BINARY: readonly BinaryFn[] = ['add', 'sub', 'mul', 'div', 'max', 'min'];

/**
 * out = fn(a, b) in SIMD when a is not broadcast, b is a's shape or a single element, all f32, and
 * large enough to pay for the copies. Returns false, doing nothing, otherwise.
 */
export const simdBinary = (wasm: Wasm, fn: BinaryFn, a: DataArray, b: DataArray, out: DataArray): boolean => {
  const code = SIMD_BINARY.indexOf(fn);
  const n = out.length;
  // Lengths say it all: an operand with out's element count is out's shape, laid out the same way.
  const scalar = b.length === 1;
  if (code < 0 || n < SIMD_MIN || a.length !== n || !(scalar || b.length === n)) return false;
  if (!(a instanceof Float32Array && b instanceof Float32Array && out instanceof Float32Array)) return false;
  const { at: [pa, pb, py], done } = wasm.place([a, b], [out]);
  wasm.run('binaryF32', [code, pa, pb, py, n, +scalar], n * ELEMENT_WORK);
  done();
  return true;
};

/** out = relu(x) in SIMD when x is f32 and large; false, doing nothing, otherwise. */
export const simdRelu = (wasm: Wasm, x: DataArray, out: DataArray): boolean => {
  const n = x.length;
  if (n < SIMD_MIN || !(x instanceof Float32Array && out instanceof Float32Array)) return false;
  const { at: [px, py], done } = wasm.place([x], [out]);
  wasm.run('reluF32', [px, py, n], n * ELEMENT_WORK);
  done();
  return true;
};

/** dx = dy where y > 0, else 0 (relu's gradient from its output). */
export const reluBackward = (wasm: Wasm, y: Float32Array, dy: Float32Array, dx: Float32Array): void => {
  const n = y.length;
  if (n < SIMD_MIN) {
    for (let i = 0; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
    return;
  }
  const { at: [py, pdy, pdx], done } = wasm.place([y, dy], [dx]);
  wasm.run('reluBackwardF32', [py, pdy, pdx, n], n * ELEMENT_WORK);
  done();
};

/** out[i] = fn(x[i]); `out` has x's length. */
export const unary = (fn: UnaryFn, x: DataArray, out: DataArray): void => {
  const n = x.length;
  switch (fn) {
    case 'neg': for (let i = 0; i < n; i++) out[i] = -x[i]; break;
    case 'abs': for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]); break;
    case 'exp': for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]); break;
    case 'log': for (let i = 0; i < n; i++) out[i] = Math.log(x[i]); break;
    case 'sqrt': for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]); break;
    case 'rsqrt': for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]); break;
    case 'reciprocal': for (let i = 0; i < n; i++) out[i] = 1 / x[i]; break;
    case 'square':
      if (out instanceof Int32Array) for (let i = 0; i < n; i++) out[i] = Math.imul(x[i], x[i]);
      else for (let i = 0; i < n; i++) out[i] = x[i] * x[i];
      break;
    // (v + |v|) / 2 is exact, keeps NaN and has no branch to mispredict on mixed signs (Math.max has one).
    case 'relu':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = (v + Math.abs(v)) * 0.5;
      }
      break;
    case 'sigmoid':
      // exp of a non-positive argument only, so neither tail overflows.
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const e = Math.exp(-Math.abs(v));
        out[i] = v >= 0 ? 1 / (1 + e) : e / (1 + e);
      }
      break;
    case 'tanh': for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]); break;
    case 'sign': for (let i = 0; i < n; i++) out[i] = Math.sign(x[i]); break;
    case 'floor': for (let i = 0; i < n; i++) out[i] = Math.floor(x[i]); break;
    case 'ceil': for (let i = 0; i < n; i++) out[i] = Math.ceil(x[i]); break;
    default: throw new Error(`cpu unary: unknown function '${fn as string}'`);
  }
};

/** One run of a binary function: out[o + i] = fn(a[ai + i*as], b[bi + i*bs]). */
const binaryRun = (
  fn: BinaryFn, a: DataArray, ai: number, as: number, b: DataArray, bi: number, bs: number, out: DataArray, o: number, n: number,
): void => {
  const end = o + n;
  switch (fn) {
    case 'add': for (; o < end; o++, ai += as, bi += bs) out[o] = a[ai] + b[bi]; break;
    case 'sub': for (; o < end; o++, ai += as, bi += bs) out[o] = a[ai] - b[bi]; break;
    case 'mul':
      // i32 products must wrap like int32 arithmetic; a float64 product loses the low bits.
      if (out instanceof Int32Array) for (; o < end; o++, ai += as, bi += bs) out[o] = Math.imul(a[ai], b[bi]);
      else for (; o < end; o++, ai += as, bi += bs) out[o] = a[ai] * b[bi];
      break;
    case 'div': for (; o < end; o++, ai += as, bi += bs) out[o] = a[ai] / b[bi]; break;
    case 'max': for (; o < end; o++, ai += as, bi += bs) out[o] = Math.max(a[ai], b[bi]); break;
    case 'min': for (; o < end; o++, ai += as, bi += bs) out[o] = Math.min(a[ai], b[bi]); break;
    case 'pow': for (; o < end; o++, ai += as, bi += bs) out[o] = a[ai] ** b[bi]; break;
    default: throw new Error(`cpu binary: unknown function '${fn as string}'`);
  }
};

/** One run of a comparison, writing 1 or 0; `+(boolean)` compiles without a branch, unlike `c ? 1 : 0`. */
const compareRun = (
  fn: CompareFn, a: DataArray, ai: number, as: number, b: DataArray, bi: number, bs: number, out: DataArray, o: number, n: number,
): void => {
  const end = o + n;
  switch (fn) {
    case 'eq': for (; o < end; o++, ai += as, bi += bs) out[o] = +(a[ai] === b[bi]); break;
    case 'ne': for (; o < end; o++, ai += as, bi += bs) out[o] = +(a[ai] !== b[bi]); break;
    case 'lt': for (; o < end; o++, ai += as, bi += bs) out[o] = +(a[ai] < b[bi]); break;
    case 'le': for (; o < end; o++, ai += as, bi += bs) out[o] = +(a[ai] <= b[bi]); break;
    case 'gt': for (; o < end; o++, ai += as, bi += bs) out[o] = +(a[ai] > b[bi]); break;
    case 'ge': for (; o < end; o++, ai += as, bi += bs) out[o] = +(a[ai] >= b[bi]); break;
    default: throw new Error(`cpu compare: unknown function '${fn as string}'`);
  }
};

type Run<F> = (fn: F, a: DataArray, ai: number, as: number, b: DataArray, bi: number, bs: number, out: DataArray, o: number, n: number) => void;

const broadcast2 = <F>(run: Run<F>, fn: F, a: DataArray, aShape: Shape, b: DataArray, bShape: Shape, out: DataArray, outShape: Shape): void => {
  const strides = [broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape), stridesOf(outShape)];
  forEachRun(outShape, strides, [0, 0, 0], (o, n, s) => run(fn, a, o[0], s[0], b, o[1], s[1], out, o[2], n));
};

/** out = fn(a, b) with a and b broadcast to `outShape`. */
export const binary = (fn: BinaryFn, a: DataArray, aShape: Shape, b: DataArray, bShape: Shape, out: DataArray, outShape: Shape): void =>
  broadcast2(binaryRun, fn, a, aShape, b, bShape, out, outShape);

/** out = fn(a, b) ? 1 : 0 with a and b broadcast to `outShape`. */
export const compare = (fn: CompareFn, a: DataArray, aShape: Shape, b: DataArray, bShape: Shape, out: DataArray, outShape: Shape): void =>
  broadcast2(compareRun, fn, a, aShape, b, bShape, out, outShape);

/** out = cond != 0 ? a : b, all three broadcast to `outShape`. */
export const where = (
  cond: Int32Array, condShape: Shape, a: DataArray, aShape: Shape, b: DataArray, bShape: Shape, out: DataArray, outShape: Shape,
): void => {
  const strides = [condShape, aShape, bShape].map((s) => broadcastStrides(s, outShape));
  strides.push(stridesOf(outShape));
  forEachRun(outShape, strides, [0, 0, 0, 0], (o, n, s) => {
    const [cs, as, bs] = s;
    for (let i = 0, c = o[0], ai = o[1], bi = o[2], k = o[3]; i < n; i++, c += cs, ai += as, bi += bs, k++) out[k] = cond[c] !== 0 ? a[ai] : b[bi];
  });
};

/**
 * y = x times dropout's mask (core's `DropoutAttrs`): 1/(1-p) where the Philox word of the element
 * reaches the threshold, else 0, four elements to a counter block as a uniform randomFill draws them.
 */
export const dropout = (x: Float32Array, y: Float32Array, { p, seed, counter }: DropoutAttrs): void => {
  const threshold = dropoutThreshold(p);
  const scale = 1 / (1 - p);
  const block = new Uint32Array(4);
  for (let i = 0; i < x.length; i += 4) {
    philox4x32(...addCounter(counter, i / 4), 0, 0, seed[0], seed[1], block);
    for (let j = 0; j < 4 && i + j < x.length; j++) y[i + j] = x[i + j] * (block[j] >= threshold ? scale : 0);
  }
};
