// Elementwise f32 kernels with 128-bit SIMD: the large same-shape (or scalar) binary ops, relu and
// its gradient, which a ResNet step runs on every activation. Like every kernel here they take
// (..., tid, nt) and work on slice `tid` of `nt`.

import { cut } from './common';

/** Floats per slice unit: a 64-byte cache line, so two threads never write the same line. */
const LINE = 16;

/** Codes of the binary functions, in the order of src/elementwise.ts's SIMD_BINARY. */
const ADD = 0;
const SUB = 1;
const MUL = 2;
const DIV = 3;
const MAX = 4;
const MIN = 5;

// @ts-ignore: decorator
@inline function apply4(fn: i32, a: v128, b: v128): v128 {
  switch (fn) {
    case ADD: return f32x4.add(a, b);
    case SUB: return f32x4.sub(a, b);
    case MUL: return f32x4.mul(a, b);
    case DIV: return f32x4.div(a, b);
    case MAX: return f32x4.max(a, b);
    default: return f32x4.min(a, b);
  }
}

// @ts-ignore: decorator
@inline function apply1(fn: i32, a: f32, b: f32): f32 {
  switch (fn) {
    case ADD: return a + b;
    case SUB: return a - b;
    case MUL: return a * b;
    case DIV: return a / b;
    // f32.max/min propagate NaN, as f32x4's do and as PyTorch does.
    case MAX: return max(a, b);
    default: return min(a, b);
  }
}

/**
 * y[i] = fn(a[i], b[i]) for i < n, or fn(a[i], b[0]) when `bScalar` is 1. `fn` is one of the codes
 * above; y may be a.
 */
export function binaryF32(fn: i32, a: usize, b: usize, y: usize, n: i32, bScalar: i32, tid: i32, nt: i32): void {
  const start = cut(n, LINE, tid, nt);
  const end = cut(n, LINE, tid + 1, nt);
  const body = start + ((end - start) & ~3);
  if (bScalar) {
    const s = load<f32>(b);
    const sv = f32x4.splat(s);
    for (let i = start; i < body; i += 4) {
      const o = (<usize>i) << 2;
      v128.store(y + o, apply4(fn, v128.load(a + o), sv));
    }
    for (let i = body; i < end; i++) {
      const o = (<usize>i) << 2;
      store<f32>(y + o, apply1(fn, load<f32>(a + o), s));
    }
    return;
  }
  for (let i = start; i < body; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(y + o, apply4(fn, v128.load(a + o), v128.load(b + o)));
  }
  for (let i = body; i < end; i++) {
    const o = (<usize>i) << 2;
    store<f32>(y + o, apply1(fn, load<f32>(a + o), load<f32>(b + o)));
  }
}

/** y = max(x, 0) over n floats; NaN stays NaN. */
export function reluF32(x: usize, y: usize, n: i32, tid: i32, nt: i32): void {
  const start = cut(n, LINE, tid, nt);
  const end = cut(n, LINE, tid + 1, nt);
  const body = start + ((end - start) & ~3);
  const zero = f32x4.splat(0);
  for (let i = start; i < body; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(y + o, f32x4.max(v128.load(x + o), zero));
  }
  for (let i = body; i < end; i++) {
    const o = (<usize>i) << 2;
    store<f32>(y + o, apply1(MAX, load<f32>(x + o), 0));
  }
}

/** dx = dy where y > 0, else 0, over n floats (a NaN y masks its gradient, as `y > 0` is false). */
export function reluBackwardF32(y: usize, dy: usize, dx: usize, n: i32, tid: i32, nt: i32): void {
  const start = cut(n, LINE, tid, nt);
  const end = cut(n, LINE, tid + 1, nt);
  const body = start + ((end - start) & ~3);
  const zero = f32x4.splat(0);
  for (let i = start; i < body; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(dx + o, v128.and(v128.load(dy + o), f32x4.gt(v128.load(y + o), zero)));
  }
  for (let i = body; i < end; i++) {
    const o = (<usize>i) << 2;
    store<f32>(dx + o, load<f32>(y + o) > 0 ? load<f32>(dy + o) : 0);
  }
}
