/** 2-D max and average pooling, forward and backward; max pooling's forward pass in WebAssembly. */
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

/** Offset of the first maximum of a window (NaN wins, as in PyTorch); windows are never empty. */
const firstMax = (x: Float32Array, xPlane: number, inW: number, h0: number, h1: number, w0: number, w1: number): number => {
  let at = xPlane + h0 * inW + w0;
  let best = x[at];
  for (let h = h0; h < h1 && best === best; h++) {
    for (let i = xPlane + h * inW + w0, end = i - w0 + w1; i < end; i++) {
      const v = x[i];
      if (v > best || v !== v) {
        best = v;
        at = i;
        if (v !== v) break;
      }
    }
  }
  return at;
};

/**
 * A 1x1 window (no padding, as a 1x1 kernel allows none) only subsamples: copies each output cell
 * from (`forward`) or to its one input cell. ResNet's option-A shortcut is such a pool.
 */
const subsample = (x: Float32Array, y: Float32Array, g: Pool2dGeometry, forward: boolean): void => {
  const { inH, inW, strideH, strideW, outH, outW } = g;
  for (let p = 0, yi = 0; p < g.batch * g.channels; p++) {
    for (let oh = 0; oh < outH; oh++) {
      let xi = (p * inH + oh * strideH) * inW;
      if (forward) for (let ow = 0; ow < outW; ow++, yi++, xi += strideW) y[yi] = x[xi];
      else for (let ow = 0; ow < outW; ow++, yi++, xi += strideW) x[xi] = y[yi];
    }
  }
};
const isSample = (g: Pool2dGeometry): boolean => g.kernelH === 1 && g.kernelW === 1;

/**
 * y = the first maximum of each window in row-major order, NaN winning (as PyTorch scans), by the
 * WebAssembly kernel (assembly/pool.ts): 5-7x faster than plain loops at ResNet-50's 3x3/2 stem pool.
 */
export const maxPool2d = (wasm: Wasm, x: Float32Array, y: Float32Array, g: Pool2dGeometry): void => {
  if (isSample(g)) return subsample(x, y, g, true);
  const { inH, inW, kernelH, kernelW, strideH, strideW, padTop, padLeft, outH, outW } = g;
  // The kernel's copy of an input row between its padding, with room for its vector reads.
  const row = Math.max(padLeft + inW, (outW - 1) * strideW + kernelW) + 8;
  const { at: [px, py, scratch], done } = wasm.place([x], [y], wasm.threads * row);
  wasm.geometry([g.batch * g.channels, inH, inW, outH, outW, kernelH, kernelW, strideH, strideW, padTop, padLeft]);
  wasm.run('maxPool2d', [GEOMETRY, px, py, scratch, row * 4], y.length * kernelH * kernelW);
  done();
};

/** Each dy goes to the first maximum of its window. */
export const maxPool2dBackward = (dy: Float32Array, x: Float32Array, dx: Float32Array, g: Pool2dGeometry): void => {
  dx.fill(0);
  // Strides of at least 1 never land two 1x1 windows on one cell, so no sum is needed.
  if (isSample(g)) subsample(dx, dy, g, false);
  else forEachWindow(g, (xp, o, h0, h1, w0, w1) => (dx[firstMax(x, xp, g.inW, h0, h1, w0, w1)] += dy[o]));
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
