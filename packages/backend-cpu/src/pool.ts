/** 2-D max and average pooling, forward and backward. */
import type { Pool2dGeometry } from '@residual/core';

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
 * y = the maximum of each window, NaN winning (as in PyTorch): plain loops, as the forward pass
 * needs no position (a callback per window cost 8x).
 */
export const maxPool2d = (x: Float32Array, y: Float32Array, g: Pool2dGeometry): void => {
  if (isSample(g)) return subsample(x, y, g, true);
  const { inH, inW, kernelH, kernelW, strideH, strideW, padTop, padLeft, outH, outW } = g;
  for (let p = 0, out = 0; p < g.batch * g.channels; p++) {
    const plane = p * inH * inW;
    for (let oh = 0; oh < outH; oh++) {
      const hs = oh * strideH - padTop;
      const h0 = Math.max(hs, 0), h1 = Math.min(hs + kernelH, inH);
      for (let ow = 0; ow < outW; ow++, out++) {
        const ws = ow * strideW - padLeft;
        const w0 = Math.max(ws, 0), w1 = Math.min(ws + kernelW, inW);
        let best = -Infinity;
        for (let h = h0; h < h1; h++) {
          for (let i = plane + h * inW + w0, end = i - w0 + w1; i < end; i++) {
            const v = x[i];
            // A NaN, once taken, stays: nothing compares greater than it.
            if (v > best || v !== v) best = v;
          }
        }
        y[out] = best;
      }
    }
  }
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
