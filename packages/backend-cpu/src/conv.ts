/**
 * 2-D convolution as GEMM, in WebAssembly: the kernels unfold input patches straight into the GEMM's
 * packed panels (implicit im2col), so no column matrix is ever stored, except for the data gradient
 * of strided convolutions. Operands are copied into the arena, results copied out.
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

/** Runs the forward kernel on (x, w) under geometry g, with `w` already at its address. */
const forward = (wasm: Wasm, g: Conv2dGeometry, x: Float32Array, wLength: number, write: (at: number) => void, y: Float32Array): void => {
  const [px, pw, py, scratch] = wasm.reserve(x.length, wLength, y.length, wasm.threads * wasm.gemmScratch);
  wasm.write(px, x);
  write(pw);
  setGeometry(wasm, g);
  wasm.run('conv2d', [GEOMETRY, px, pw, py, scratch, wasm.gemmScratch * 4], macsOf(g));
  wasm.read(py, y);
};

/** y [N,K,OH,OW] = conv(x [N,C,H,W], w [K,C/groups,R,S]). */
export const conv2d = (wasm: Wasm, x: Float32Array, w: Float32Array, y: Float32Array, g: Conv2dGeometry): void => {
  if (y.length > 0) forward(wasm, g, x, w.length, (at) => wasm.write(at, w), y);
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
    forward(wasm, t, dy, w.length, (at) => wasm.write(at, flipped(w, g)), dx);
    return;
  }
  const stride = wasm.gemmScratch + (g.inChannels / g.groups) * g.kernelH * g.kernelW * g.outH * g.outW;
  const [pdy, pw, pdx, scratch] = wasm.reserve(dy.length, w.length, dx.length, wasm.threads * stride);
  wasm.write(pdy, dy);
  wasm.write(pw, w);
  setGeometry(wasm, g);
  wasm.run('conv2dBackwardData', [GEOMETRY, pdy, pw, pdx, scratch, stride * 4], macsOf(g));
  wasm.read(pdx, dx);
};

/** dw [K,C/groups,R,S] = Σ over images of dy·colsᵀ: each thread sums its images, then the parts are added in order. */
export const conv2dBackwardFilter = (wasm: Wasm, x: Float32Array, dy: Float32Array, dw: Float32Array, g: Conv2dGeometry): void => {
  if (dw.length === 0) return;
  const macs = macsOf(g);
  const nt = wasm.threadsFor(macs);
  const [px, pdy, pdw, parts, scratch] = wasm.reserve(x.length, dy.length, dw.length, wasm.threads * dw.length, wasm.threads * wasm.gemmScratch);
  wasm.write(px, x);
  wasm.write(pdy, dy);
  setGeometry(wasm, g);
  wasm.run('conv2dBackwardFilter', [GEOMETRY, px, pdy, parts, dw.length * 4, scratch, wasm.gemmScratch * 4], macs);
  wasm.run('sumParts', [pdw, parts, dw.length, dw.length, nt], dw.length * nt);
  wasm.read(pdw, dw);
};
