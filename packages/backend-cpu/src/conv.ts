/**
 * 2-D convolution as GEMM, in WebAssembly: the kernels unfold input patches straight into the GEMM's
 * packed panels (implicit im2col), so no column matrix is ever stored, except for the data gradient
 * of strided convolutions. 3x3 stride-1 convolutions with enough channels run as Winograd F(2x2, 3x3)
 * or F(4x4, 3x3) instead (assembly/winograd.ts). Operands outside the WebAssembly memory are copied in,
 * results out (Wasm.place).
 */
import type { Conv2dGeometry } from '@residual/core';
import { GEOMETRY, type Wasm } from './wasm.js';

/** Multiply-adds of a convolution (the same for its two gradients). */
const macsOf = (g: Conv2dGeometry): number =>
  g.batch * g.outChannels * (g.inChannels / g.groups) * g.kernelH * g.kernelW * g.outH * g.outW;

/** Hands the geometry to the kernels, in the field order of assembly/kernels.ts. */
const setGeometry = (wasm: Wasm, g: Conv2dGeometry): void =>
  wasm.geometry([
    g.batch, g.inChannels, g.inH, g.inW, g.outChannels, g.kernelH, g.kernelW, g.strideH, g.strideW,
    g.padTop, g.padLeft, g.dilationH, g.dilationW, g.groups, g.outH, g.outW,
  ]);

/** Floats of V and M per Winograd block and thread (128 KiB: the best of 16-96 Ki floats measured at ResNet-20's shapes). */
const WINOGRAD_BLOCK = 32 * 1024;
/** The same for the filter gradient, whose GEMMs reduce over a block's tiles, so longer blocks pay (best of 32-256 Ki floats). */
const WINOGRAD_FILTER_BLOCK = 128 * 1024;

/**
 * Whether the conv runs as Winograd: 3x3 at stride 1, undilated and ungrouped, with enough channels
 * that the transforms cost less than they save. F(2x2, 3x3) measured against implicit GEMM at 2
 * threads: 1.3-2.8x faster from 8 to 512 channels (ResNet-20's and ResNet-50's shapes), 0.8-0.9x at
 * 3 input channels.
 */
const winogradFits = (g: Conv2dGeometry): boolean =>
  g.kernelH === 3 && g.kernelW === 3 && g.strideH === 1 && g.strideW === 1 && g.dilationH === 1 && g.dilationW === 1 &&
  g.groups === 1 && g.inChannels >= 8 && g.outChannels >= 8;

/**
 * Whether the filter gradient runs as Winograd too: its per-thread sums [points][K][C] are read and
 * written once per block, which stops paying once they outgrow the cache (F(2x2, 3x3): 1.2-2x
 * faster up to 256x256 channels, 0.5x at 512x512).
 */
const winogradFilterFits = (g: Conv2dGeometry): boolean => winogradFits(g) && g.inChannels * g.outChannels <= 256 * 256;

/**
 * Floats of Winograd scratch per thread for C input and K output channels and 16 or 36 transform
 * points: blocks of T tiles (a multiple of 8) with V [points][C][T] and M [points][Kp][T], each plane
 * 16 floats apart, and a stage of 64 or 160 floats.
 */
const winogradScratch = (c: number, k: number, points: number, block: number): number => {
  const kp = Math.ceil(k / 4) * 4;
  const tiles = Math.max(8, Math.floor(block / (points * (c + kp))) & ~7);
  return points * (c + kp) * tiles + 32 * points + (points === 16 ? 64 : 160);
};

/** The kernels' shape arguments of a Winograd conv, in their order. */
const winogradShape = (g: Conv2dGeometry): number[] =>
  [g.batch, g.inChannels, g.inH, g.inW, g.outChannels, g.outH, g.outW, g.padTop, g.padLeft];

/**
 * The forward conv by Winograd F(m x m, 3x3), m = 2 or 4 (assembly/winograd.ts): filter transform,
 * then the fused transforms and GEMMs. F(4x4, 3x3) runs where four tiles fill a vector (rows of 16k
 * outputs): 1.4-1.5x faster than F(2x2, 3x3) at ResNet-20's 32x32 and 16x16; elsewhere its scalar
 * edge paths make it slower (0.8x at 8x8).
 */
export const winogradConv2d = (
  wasm: Wasm, g: Conv2dGeometry, x: Float32Array, w: Float32Array, y: Float32Array, m: 2 | 4 = g.outW % 16 === 0 ? 4 : 2,
): void => {
  const { inChannels: c, outChannels: k } = g;
  const points = (m + 2) ** 2;
  const stride = winogradScratch(c, k, points, WINOGRAD_BLOCK);
  const { at: [px, pw, py, pu, scratch], done } = wasm.place([x, w], [y], points * Math.ceil(k / 4) * 4 * c, wasm.threads * stride);
  wasm.run('winogradFilter', [pw, pu, k, c, m], points * k * c);
  // points multiplies per m x m outputs where direct takes 9 per output.
  wasm.run(m === 4 ? 'winograd4Conv' : 'winogradConv', [px, pu, py, scratch, stride * 4, ...winogradShape(g)], (macsOf(g) * points) / (9 * m * m));
  done();
};

/**
 * The filter gradient by Winograd F(m x m, 3x3): each thread sums dU over its tiles, then the sums,
 * added in order, turn into dw. F(4x4, 3x3) runs where `winogradConv2d` would take it and its
 * per-thread sums (36·K·C floats) stay small: 1.2-1.4x faster than F(2x2, 3x3) up to 64x64
 * channels, 0.7x at 128x128.
 */
export const winogradBackwardFilter = (
  wasm: Wasm, g: Conv2dGeometry, x: Float32Array, dy: Float32Array, dw: Float32Array,
  m: 2 | 4 = g.outW % 16 === 0 && g.inChannels * g.outChannels <= 64 * 64 ? 4 : 2,
): void => {
  const { inChannels: c, outChannels: k } = g;
  const points = (m + 2) ** 2;
  const stride = winogradScratch(c, k, points, WINOGRAD_FILTER_BLOCK);
  const part = points * k * c;
  const work = (macsOf(g) * points) / (9 * m * m);
  const nt = wasm.threadsFor(work);
  const { at: [px, pdy, pdw, parts, scratch], done } = wasm.place([x, dy], [dw], wasm.threads * part, wasm.threads * stride);
  wasm.run('winogradBackwardFilter', [px, pdy, parts, part * 4, scratch, stride * 4, ...winogradShape(g), m], work);
  wasm.run('winogradFilterGrad', [pdw, parts, part, nt, k, c, m], part * nt);
  done();
};

/** The forward conv as a GEMM with implicit im2col (any geometry). */
export const implicitConv2d = (wasm: Wasm, g: Conv2dGeometry, x: Float32Array, w: Float32Array, y: Float32Array): void => {
  const { at: [px, pw, py, scratch], done } = wasm.place([x, w], [y], wasm.threads * wasm.gemmScratch);
  setGeometry(wasm, g);
  wasm.run('conv2d', [GEOMETRY, px, pw, py, scratch, wasm.gemmScratch * 4], macsOf(g));
  done();
};

/** Runs the forward conv on (x, w) under geometry g: Winograd where it pays, else implicit GEMM. */
const forward = (wasm: Wasm, g: Conv2dGeometry, x: Float32Array, w: Float32Array, y: Float32Array): void =>
  (winogradFits(g) ? winogradConv2d : implicitConv2d)(wasm, g, x, w, y);

/** y [N,K,OH,OW] = conv(x [N,C,H,W], w [K,C/groups,R,S]). */
export const conv2d = (wasm: Wasm, x: Float32Array, w: Float32Array, y: Float32Array, g: Conv2dGeometry): void => {
  if (y.length > 0) forward(wasm, g, x, w, y);
};

/**
 * w [K, C/g, R, S] as the weights of the transposed convolution: [C, K/g, R, S], each kernel turned
 * by 180 degrees.
 */
const flipped = (w: Float32Array, g: Conv2dGeometry): Float32Array => {
  const cg = g.inChannels / g.groups;
  const kg = g.outChannels / g.groups;
  const taps = g.kernelH * g.kernelW;
  const out = new Float32Array(w.length);
  for (let grp = 0; grp < g.groups; grp++) {
    for (let k = 0; k < kg; k++) {
      for (let c = 0; c < cg; c++) {
        const src = ((grp * kg + k) * cg + c) * taps;
        const dst = ((grp * cg + c) * kg + k) * taps + taps - 1;
        for (let t = 0; t < taps; t++) out[dst - t] = w[src + t];
      }
    }
  }
  return out;
};

/**
 * dx [N,C,H,W] from dy [N,K,OH,OW] and w. At stride 1 this is a convolution of dy with the turned
 * weights (padding dilation·(R-1) - pad), which runs as fast as the forward pass; strided
 * convolutions multiply out each image's column matrix and fold it back.
 */
export const conv2dBackwardData = (wasm: Wasm, dy: Float32Array, w: Float32Array, dx: Float32Array, g: Conv2dGeometry): void => {
  if (dx.length === 0) return;
  if (g.strideH === 1 && g.strideW === 1) {
    const t: Conv2dGeometry = {
      ...g, inChannels: g.outChannels, inH: g.outH, inW: g.outW, outChannels: g.inChannels, outH: g.inH, outW: g.inW,
      padTop: g.dilationH * (g.kernelH - 1) - g.padTop, padLeft: g.dilationW * (g.kernelW - 1) - g.padLeft,
      padBottom: g.dilationH * (g.kernelH - 1) - g.padBottom, padRight: g.dilationW * (g.kernelW - 1) - g.padRight,
    };
    forward(wasm, t, dy, flipped(w, g), dx);
    return;
  }
  const stride = wasm.gemmScratch + (g.inChannels / g.groups) * g.kernelH * g.kernelW * g.outH * g.outW;
  const { at: [pdy, pw, pdx, scratch], done } = wasm.place([dy, w], [dx], wasm.threads * stride);
  setGeometry(wasm, g);
  wasm.run('conv2dBackwardData', [GEOMETRY, pdy, pw, pdx, scratch, stride * 4], macsOf(g));
  done();
};

/** dw [K,C/groups,R,S] = Σ over images of dy·colsᵀ: each thread sums its images, then the parts are added in order. */
export const conv2dBackwardFilter = (wasm: Wasm, x: Float32Array, dy: Float32Array, dw: Float32Array, g: Conv2dGeometry): void => {
  if (dw.length === 0) return;
  if (winogradFilterFits(g)) return winogradBackwardFilter(wasm, g, x, dy, dw);
  const macs = macsOf(g);
  const nt = wasm.threadsFor(macs);
  const { at: [px, pdy, pdw, parts, scratch], done } = wasm.place([x, dy], [dw], wasm.threads * dw.length, wasm.threads * wasm.gemmScratch);
  setGeometry(wasm, g);
  wasm.run('conv2dBackwardFilter', [GEOMETRY, px, pdy, parts, dw.length * 4, scratch, wasm.gemmScratch * 4], macs);
  wasm.run('sumParts', [pdw, parts, dw.length, dw.length, nt], dw.length * nt);
  done();
};
