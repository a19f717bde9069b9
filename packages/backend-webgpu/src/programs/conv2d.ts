/**
 * conv2d forward as implicit GEMM: rows are the output channels of one group, columns the output
 * pixels (n, oh, ow), depth the (c, r, s) taps; the skeleton's batch index is the group. Channels
 * as rows keep the pixels, the long side, on the lanes, where consecutive columns store contiguously.
 *
 * The fused epilogue (a scale and a bias per output channel, a residual of the output's shape, a ReLU) is applied
 * in `storeC`, where each sum is final (the forward never splits its depth), so both GEMM kernels
 * get it and the output is written once.
 */
import type { Conv2dGeometry } from '@residual/core';
import type { Program, UniformField } from '../header.js';
import { gemmProgram, type GemmKernel } from './gemm.js';

/** The geometry as uniforms, shared by the three convolution programs. */
export const convUniforms = (g: Conv2dGeometry): UniformField[] =>
  Object.entries({
    inC: g.inChannels, inH: g.inH, inW: g.inW, outC: g.outChannels, kH: g.kernelH, kW: g.kernelW,
    sH: g.strideH, sW: g.strideW, pT: g.padTop, pL: g.padLeft, dH: g.dilationH, dW: g.dilationW,
    outH: g.outH, outW: g.outW, cg: g.inChannels / g.groups, kg: g.outChannels / g.groups,
  }).map(([name, value]) => ({ name, type: 'u32', value }));

/**
 * WGSL shared by the forward pass and the filter gradient, which read the same input taps: an
 * output pixel decoded once (`pixelOf`: its image, its place in the output plane, the input row and
 * column of its top-left tap), a tap (c, r, s) decoded once (`tapOf`: its index, the offset of
 * channel c of group g, its row and column shifts), and `tap(p, t)`, the input that pixel p reads
 * through tap t, 0 in the padding.
 */
export const INPUT_TAPS = `struct Pixel { img: u32, at: u32, ih: i32, iw: i32 }
fn pixelOf(p: u32) -> Pixel {
  let plane = u.outH * u.outW;
  let at = p % plane;
  return Pixel(p / plane, at, i32((at / u.outW) * u.sH) - i32(u.pT), i32((at % u.outW) * u.sW) - i32(u.pL));
}
struct Tap { k: u32, off: u32, dh: i32, dw: i32 }
fn tapOf(g: u32, k: u32) -> Tap {
  let rc = k / u.kW;
  return Tap(k, (g * u.cg + rc / u.kH) * u.inH * u.inW, i32((rc % u.kH) * u.dH), i32((k % u.kW) * u.dW));
}
fn tap(p: Pixel, t: Tap) -> f32 {
  let ih = p.ih + t.dh;
  let iw = p.iw + t.dw;
  if (ih < 0 || iw < 0 || ih >= i32(u.inH) || iw >= i32(u.inW)) { return 0.0; }
  return x[p.img * u.inC * u.inH * u.inW + t.off + u32(ih) * u.inW + u32(iw)];
}`;

/** What conv2d does to each output before storing it: which of ·scale[k], + bias[k], + residual, then a ReLU. */
export interface ConvEpilogue {
  readonly scale: boolean;
  readonly bias: boolean;
  readonly residual: boolean;
  readonly relu: boolean;
}

const PLAIN: ConvEpilogue = { scale: false, bias: false, residual: false, relu: false };

/**
 * The program of act(conv2d(x, w)·scale + bias + residual) with geometry g on `kernel`; inputs x, w,
 * then scale, bias and residual where given.
 */
export const conv2dProgram = (g: Conv2dGeometry, kernel: GemmKernel, e: ConvEpilogue = PLAIN): Program => {
  const sum = [e.scale ? 'v * scale[g * u.kg + m]' : 'v', ...(e.bias ? ['bias[g * u.kg + m]'] : []), ...(e.residual ? ['residual[at]'] : [])].join(' + ');
  return gemmProgram(
    {
      key: `conv2d|${e.scale}|${e.bias}|${e.residual}|${e.relu}`,
      batch: g.groups,
      rows: g.outChannels / g.groups,
      cols: g.batch * g.outH * g.outW,
      depth: (g.inChannels / g.groups) * g.kernelH * g.kernelW,
      inputs: [
        { name: 'x', type: 'f32' },
        { name: 'w', type: 'f32' },
        ...(e.scale ? [{ name: 'scale', type: 'f32' as const }] : []),
        ...(e.bias ? [{ name: 'bias', type: 'f32' as const }] : []),
        ...(e.residual ? [{ name: 'residual', type: 'f32' as const }] : []),
      ],
      output: { name: 'y', type: 'f32' },
      uniforms: convUniforms(g),
      loaders: `${INPUT_TAPS}
alias Dep = Tap;
alias Col = Pixel;
fn depOf(g: u32, k: u32) -> Tap { return tapOf(g, k); }
fn colOf(g: u32, p: u32) -> Pixel { return pixelOf(p); }
fn loadA(g: u32, m: u32, t: Tap) -> f32 { return w[(g * u.kg + m) * u.depth + t.k]; }
fn loadB(g: u32, t: Tap, p: Pixel) -> f32 { return tap(p, t); }
fn storeC(g: u32, m: u32, p: Pixel, v: f32) {
  let at = (p.img * u.outC + g * u.kg + m) * u.outH * u.outW + p.at;
  y[at] = ${e.relu ? `reluOf(${sum})` : sum};
}`,
      aRuns: 'k',
      bRuns: 'n',
    },
    kernel,
  );
};
