/**
 * 2-D convolution as GEMM: per image and group, the input patches are unfolded into a column matrix
 * [C/groups·R·S, OH·OW] (kept in a reused scratch array) and multiplied with the weights. A 1x1,
 * stride-1, unpadded convolution needs no unfolding: the image already is that matrix.
 */
import type { Conv2dGeometry } from '@residual/core';
import { gemm, type MatRef } from './gemm.js';
import type { CpuMemory } from './memory.js';

type Mem = Pick<CpuMemory, 'scratch'>;

/** The range [lo, hi) of output positions o whose input o·stride + shift falls inside [0, size). */
const validRange = (shift: number, stride: number, size: number, outSize: number): [number, number] => {
  const lo = Math.min(outSize, Math.max(0, Math.ceil(-shift / stride)));
  const hi = Math.max(lo, Math.min(outSize, Math.ceil((size - shift) / stride)));
  return [lo, hi];
};

/**
 * Moves one group of one image between x (at xOffset) and the column matrix: `unfold` writes every
 * column entry (zeros where the window hangs over the padding); otherwise columns are added back
 * into x (the transpose, for the data gradient).
 */
const im2col = (x: Float32Array, xOffset: number, col: Float32Array, g: Conv2dGeometry, unfold: boolean): void => {
  const { inH, inW, kernelH, kernelW, strideH, strideW, padTop, padLeft, dilationH, dilationW, outH, outW } = g;
  const channels = g.inChannels / g.groups;
  const plane = outH * outW;
  let row = 0;
  for (let c = 0; c < channels; c++) {
    const xc = xOffset + c * inH * inW;
    for (let r = 0; r < kernelH; r++) {
      const shiftH = r * dilationH - padTop;
      const [ohLo, ohHi] = validRange(shiftH, strideH, inH, outH);
      for (let s = 0; s < kernelW; s++, row++) {
        const shiftW = s * dilationW - padLeft;
        const [owLo, owHi] = validRange(shiftW, strideW, inW, outW);
        const base = row * plane;
        if (unfold) {
          col.fill(0, base, base + ohLo * outW);
          col.fill(0, base + ohHi * outW, base + plane);
        }
        for (let oh = ohLo; oh < ohHi; oh++) {
          const d = base + oh * outW;
          const src = xc + (oh * strideH + shiftH) * inW + shiftW;
          if (unfold) {
            col.fill(0, d, d + owLo);
            for (let ow = owLo; ow < owHi; ow++) col[d + ow] = x[src + ow * strideW];
            col.fill(0, d + owHi, d + outW);
          } else {
            for (let ow = owLo; ow < owHi; ow++) x[src + ow * strideW] += col[d + ow];
          }
        }
      }
    }
  }
};

const isPointwise = (g: Conv2dGeometry): boolean =>
  g.kernelH === 1 && g.kernelW === 1 && g.strideH === 1 && g.strideW === 1 &&
  g.padTop === 0 && g.padLeft === 0 && g.padBottom === 0 && g.padRight === 0;

/** Sizes shared by the three kernels: per-group channels, patch length, output plane, offsets. */
const dims = (g: Conv2dGeometry) => {
  const cg = g.inChannels / g.groups;
  const kg = g.outChannels / g.groups;
  const patch = cg * g.kernelH * g.kernelW;
  const plane = g.outH * g.outW;
  return {
    kg, patch, plane,
    xAt: (n: number, grp: number) => (n * g.inChannels + grp * cg) * g.inH * g.inW,
    yAt: (n: number, grp: number) => (n * g.outChannels + grp * kg) * plane,
    wAt: (grp: number) => grp * kg * patch,
  };
};

/** y [N,K,OH,OW] = conv(x [N,C,H,W], w [K,C/groups,R,S]). */
export const conv2d = (x: Float32Array, w: Float32Array, y: Float32Array, g: Conv2dGeometry, mem: Mem): void => {
  const { kg, patch, plane, xAt, yAt, wAt } = dims(g);
  const pointwise = isPointwise(g);
  const col = pointwise ? x : mem.scratch('conv.col', patch * plane);
  for (let n = 0; n < g.batch; n++) {
    for (let grp = 0; grp < g.groups; grp++) {
      if (!pointwise) im2col(x, xAt(n, grp), col, g, true);
      const cols: MatRef = { data: col, offset: pointwise ? xAt(n, grp) : 0, rowStride: plane, colStride: 1 };
      gemm(kg, plane, patch, { data: w, offset: wAt(grp), rowStride: patch, colStride: 1 }, cols, y, yAt(n, grp), false, mem);
    }
  }
};

/** dx [N,C,H,W] from dy [N,K,OH,OW] and w: wᵀ·dy per group, folded back onto the image. */
export const conv2dBackwardData = (dy: Float32Array, w: Float32Array, dx: Float32Array, g: Conv2dGeometry, mem: Mem): void => {
  const { kg, patch, plane, xAt, yAt, wAt } = dims(g);
  const pointwise = isPointwise(g);
  const col = pointwise ? dx : mem.scratch('conv.col', patch * plane);
  if (!pointwise) dx.fill(0);
  for (let n = 0; n < g.batch; n++) {
    for (let grp = 0; grp < g.groups; grp++) {
      const wt: MatRef = { data: w, offset: wAt(grp), rowStride: 1, colStride: patch };
      gemm(patch, plane, kg, wt, { data: dy, offset: yAt(n, grp), rowStride: plane, colStride: 1 }, col, pointwise ? xAt(n, grp) : 0, false, mem);
      if (!pointwise) im2col(dx, xAt(n, grp), col, g, false);
    }
  }
};

/** dw [K,C/groups,R,S] = Σ over images of dy·colsᵀ per group. */
export const conv2dBackwardFilter = (x: Float32Array, dy: Float32Array, dw: Float32Array, g: Conv2dGeometry, mem: Mem): void => {
  const { kg, patch, plane, xAt, yAt, wAt } = dims(g);
  const pointwise = isPointwise(g);
  const col = pointwise ? x : mem.scratch('conv.col', patch * plane);
  dw.fill(0);
  for (let n = 0; n < g.batch; n++) {
    for (let grp = 0; grp < g.groups; grp++) {
      if (!pointwise) im2col(x, xAt(n, grp), col, g, true);
      const colsT: MatRef = { data: col, offset: pointwise ? xAt(n, grp) : 0, rowStride: 1, colStride: plane };
      gemm(kg, patch, plane, { data: dy, offset: yAt(n, grp), rowStride: plane, colStride: 1 }, colsT, dw, wAt(grp), true, mem);
    }
  }
};
