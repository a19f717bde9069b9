/**
 * conv2d forward as implicit GEMM: rows are output pixels (n, oh, ow), columns the output channels
 * of one group, depth the (c, r, s) taps; the skeleton's batch index is the group.
 */
import type { Conv2dGeometry } from '@residual/core';
import type { Program, UniformField } from '../header.js';
import { gemmProgram } from './gemm.js';

/** The geometry as uniforms, shared by the three convolution programs. */
export const convUniforms = (g: Conv2dGeometry): UniformField[] =>
  Object.entries({
    inC: g.inChannels, inH: g.inH, inW: g.inW, outC: g.outChannels, kH: g.kernelH, kW: g.kernelW,
    sH: g.strideH, sW: g.strideW, pT: g.padTop, pL: g.padLeft, dH: g.dilationH, dW: g.dilationW,
    outH: g.outH, outW: g.outW, cg: g.inChannels / g.groups, kg: g.outChannels / g.groups,
  }).map(([name, value]) => ({ name, type: 'u32', value }));

/**
 * WGSL `tap(g, n, c, oh, ow, r, s)`: the input pixel tap (r, s) of output pixel (oh, ow) reads for
 * channel c of group g, or 0 in the padding. Shared with the filter gradient, which reads the same taps.
 */
export const INPUT_TAP = `fn tap(g: u32, n: u32, c: u32, oh: u32, ow: u32, r: u32, s: u32) -> f32 {
  let ih = i32(oh * u.sH + r * u.dH) - i32(u.pT);
  let iw = i32(ow * u.sW + s * u.dW) - i32(u.pL);
  if (ih < 0 || iw < 0 || ih >= i32(u.inH) || iw >= i32(u.inW)) { return 0.0; }
  return x[((n * u.inC + g * u.cg + c) * u.inH + u32(ih)) * u.inW + u32(iw)];
}`;

/** The program of conv2d(x, w) with geometry g. */
export const conv2dProgram = (g: Conv2dGeometry): Program =>
  gemmProgram({
    key: 'conv2d',
    batch: g.groups,
    rows: g.batch * g.outH * g.outW,
    cols: g.outChannels / g.groups,
    depth: (g.inChannels / g.groups) * g.kernelH * g.kernelW,
    inputs: [
      { name: 'x', type: 'f32' },
      { name: 'w', type: 'f32' },
    ],
    output: { name: 'y', type: 'f32' },
    uniforms: convUniforms(g),
    loaders: `${INPUT_TAP}
fn loadA(g: u32, m: u32, k: u32) -> f32 {
  let ow = m % u.outW;
  let t = m / u.outW;
  let s = k % u.kW;
  let rc = k / u.kW;
  return tap(g, t / u.outH, rc / u.kH, t % u.outH, ow, rc % u.kH, s);
}
fn loadB(g: u32, k: u32, n: u32) -> f32 { return w[(g * u.kg + n) * u.depth + k]; }
fn storeC(g: u32, m: u32, n: u32, v: f32) {
  let plane = u.outH * u.outW;
  y[((m / plane) * u.outC + g * u.kg + n) * plane + m % plane] = v;
}`,
    aRuns: 'm',
    bRuns: 'k',
  });
