/** 2-D max and average pooling, forward and backward; max pooling's in WebAssembly. */
import type { Pool2dGeometry } from '@residual/core';
import { GEOMETRY, type Wasm } from './wasm.js';

/**
 * Visits every output cell: `visit(xPlane, out, h0, h1, w0, w1)` gets the input plane's offset, the
 * output index and the window clipped to the input (padding is never read).
 */
const forEachWindow = (
  g: Pool2dGeometry,
  visit: (xPlane: number, out: number, h0: number, h1: number, w0: number, w1: number) => void,
): void => {
  const { inH, inW, kernelH, kernelW, strideH, strideW, padTop, padLeft, outH, outW } = g;
  for (let p = 0, out = 0; p < g.batch * g.channels; p++) {
    const xPlane = p * inH * inW;
    for (let oh = 0; oh < outH; oh++) {
      const hs = oh * strideH - padTop;
      const h0 = Math.max(hs, 0);
      const h1 = Math.min(hs + kernelH, inH);
      for (let ow = 0; ow < outW; ow++, out++) {
        const ws = ow * strideW - padLeft;
        visit(xPlane, out, h0, h1, Math.max(ws, 0), Math.min(ws + kernelW, inW));
      }
    }
  }
};

/** A 1x1 window (no padding, as a 1x1 kernel allows none) only subsamples: ResNet's option-A shortcut is such a pool. */
const isSample = (g: Pool2dGeometry): boolean => g.kernelH === 1 && g.kernelW === 1;

/** Hands a pool's geometry to the kernels of assembly/pool.ts, in their order. */
const setGeometry = (wasm: Wasm, g: Pool2dGeometry): void =>
  wasm.geometry([g.batch * g.channels, g.inH, g.inW, g.outH, g.outW, g.kernelH, g.kernelW, g.strideH, g.strideW, g.padTop, g.padLeft]);

/** Work per element of the memory-bound subsampling, against the multiply-adds that decide threading. */
const ELEMENT_WORK = 16;

/**
 * y = the first maximum of each window in row-major order, NaN winning (as PyTorch scans), by the
 * WebAssembly kernel (assembly/pool.ts): 5-7x faster than plain loops at ResNet-50's 3x3/2 stem pool.
 * A 1x1 pool copies every sH-th row's every sW-th element (`subsample`).
 */
export const maxPool2d = (wasm: Wasm, x: Float32Array, y: Float32Array, g: Pool2dGeometry): void => {
  if (y.length === 0) return;
  const { inW, kernelH, kernelW, strideW, padLeft, outW } = g;
  // The kernel's copy of an input row between its padding, with room for its vector reads.
  const row = Math.max(padLeft + inW, (outW - 1) * strideW + kernelW) + 8;
  const { at: [px, py, scratch], done } = wasm.place([x], [y], wasm.threads * row);
  setGeometry(wasm, g);
  if (isSample(g)) wasm.run('subsample', [GEOMETRY, px, py, 1], y.length * ELEMENT_WORK);
  else wasm.run('maxPool2d', [GEOMETRY, px, py, scratch, row * 4], y.length * kernelH * kernelW);
  done();
};

/**
 * Each dy goes to the first maximum of its window, added in output order (assembly/pool.ts); a 1x1
 * pool writes dy at its cells and zeros elsewhere in one pass.
 */
export const maxPool2dBackward = (wasm: Wasm, dy: Float32Array, x: Float32Array, dx: Float32Array, g: Pool2dGeometry): void => {
  if (dx.length === 0) return;
  const { at: [pdy, px, pdx], done } = wasm.place([dy, x], [dx]);
  setGeometry(wasm, g);
  if (isSample(g)) wasm.run('subsample', [GEOMETRY, pdx, pdy, 0], dx.length * ELEMENT_WORK);
  else wasm.run('maxPool2dBackward', [GEOMETRY, pdy, px, pdx], dy.length * g.kernelH * g.kernelW + dx.length);
  done();
};

/** The divisor of a window: the whole kernel when padding counts (windows never pass the padding), else the cells read. */
const divisor = (g: Pool2dGeometry, h0: number, h1: number, w0: number, w1: number): number =>
  g.countIncludePad ? g.kernelH * g.kernelW : (h1 - h0) * (w1 - w0);

/** y = the mean of each window, over the divisor `countIncludePad` selects. */
export const avgPool2d = (x: Float32Array, y: Float32Array, g: Pool2dGeometry): void =>
  forEachWindow(g, (xp, o, h0, h1, w0, w1) => {
    let s = 0;
    for (let h = h0; h < h1; h++) for (let i = xp + h * g.inW + w0, end = i - w0 + w1; i < end; i++) s += x[i];
    y[o] = s / divisor(g, h0, h1, w0, w1);
  });

/** Each dy spread evenly over the cells its window read. */
export const avgPool2dBackward = (dy: Float32Array, dx: Float32Array, g: Pool2dGeometry): void => {
  dx.fill(0);
  forEachWindow(g, (xp, o, h0, h1, w0, w1) => {
    const v = dy[o] / divisor(g, h0, h1, w0, w1);
    for (let h = h0; h < h1; h++) for (let i = xp + h * g.inW + w0, end = i - w0 + w1; i < end; i++) dx[i] += v;
  });
};
