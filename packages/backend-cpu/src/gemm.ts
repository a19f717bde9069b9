/** Batched matmul on the WebAssembly GEMM; operands outside the WebAssembly memory are copied in, products out. */
import { sizeOf, stridesOf, type Shape } from '@residual/core';
import { broadcastStrides, forEachRun } from './strided.js';
import type { Wasm } from './wasm.js';

/** Batched a [..., M, K] · b [..., K, N] (each optionally transposed) with broadcast batch axes. */
export const matmul = (
  wasm: Wasm, a: Float32Array, aShape: Shape, transA: boolean, b: Float32Array, bShape: Shape, transB: boolean,
  out: Float32Array, outShape: Shape,
): void => {
  if (out.length === 0) return;
  const r = outShape.length;
  const [m, n] = [outShape[r - 2], outShape[r - 1]];
  const k = transA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
  const batch = outShape.slice(0, -2);
  const { at: [ap, bp, cp, scratch], done } = wasm.place([a, b], [out], wasm.threads * wasm.gemmScratch);
  const [rsA, csA] = transA ? [1, m] : [k, 1];
  const [rsB, csB] = transB ? [1, k] : [n, 1];
  const product = (aAt: number, bAt: number, cAt: number, rows: number) =>
    wasm.run('matmul', [rows, n, k, ap + 4 * aAt, rsA, csA, bp + 4 * bAt, rsB, csB, cp + 4 * cAt, scratch, wasm.gemmScratch * 4], rows * n * k);
  const aStep = broadcastStrides(aShape.slice(0, -2), batch).map((s) => s * m * k);
  const bStep = broadcastStrides(bShape.slice(0, -2), batch).map((s) => s * k * n);
  // A shared b under an unbroadcast, untransposed a is one tall product: [batch·M, K] · [K, N].
  if (!transA && bStep.every((s) => s === 0) && a.length === sizeOf(batch) * m * k) product(0, 0, 0, sizeOf(batch) * m);
  else {
    forEachRun(batch, [aStep, bStep, stridesOf(batch).map((s) => s * m * n)], [0, 0, 0], (o, count, s) => {
      for (let t = 0; t < count; t++) product(o[0] + t * s[0], o[1] + t * s[1], o[2] + t * s[2], m);
    });
  }
  done();
};
