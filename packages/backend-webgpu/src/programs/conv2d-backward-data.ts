/**
 * conv2d's input gradient as implicit GEMM: rows are input pixels (n, ih, iw), columns the input
 * channels of one group, depth the (k, r, s) taps. A tap contributes only where ih + pad - r·dil
 * lands on a multiple of the stride inside the output.
 */
import type { Conv2dGeometry } from '@residual/core';
import type { Program } from '../header.js';
import { convUniforms } from './conv2d.js';
import { gemmProgram } from './gemm.js';

/** The program of dx = conv2dBackwardData(dy, w) with geometry g. */
export const conv2dBackwardDataProgram = (g: Conv2dGeometry): Program =>
  gemmProgram({
    key: 'conv2dBackwardData',
    batch: g.groups,
    rows: g.batch * g.inH * g.inW,
    cols: g.inChannels / g.groups,
    depth: (g.outChannels / g.groups) * g.kernelH * g.kernelW,
    inputs: [
      { name: 'dy', type: 'f32' },
      { name: 'w', type: 'f32' },
    ],
    output: { name: 'dx', type: 'f32' },
    uniforms: convUniforms(g),
    loaders: `fn loadA(g: u32, m: u32, k: u32) -> f32 {
  let iw = m % u.inW;
  let t = m / u.inW;
  let ih = t % u.inH;
  let n = t / u.inH;
  let s = k % u.kW;
  let t2 = k / u.kW;
  let r = t2 % u.kH;
  let kq = t2 / u.kH;
  let hs = i32(ih + u.pT) - i32(r * u.dH);
  let ws = i32(iw + u.pL) - i32(s * u.dW);
  if (hs < 0 || ws < 0) { return 0.0; }
  let oh = u32(hs) / u.sH;
  let ow = u32(ws) / u.sW;
  if (oh * u.sH != u32(hs) || ow * u.sW != u32(ws) || oh >= u.outH || ow >= u.outW) { return 0.0; }
  return dy[((n * u.outC + g * u.kg + kq) * u.outH + oh) * u.outW + ow];
}
fn loadB(g: u32, k: u32, c: u32) -> f32 {
  let taps = u.kH * u.kW;
  return w[((g * u.kg + k / taps) * u.cg + c) * taps + k % taps];
}
fn storeC(g: u32, m: u32, c: u32, v: f32) {
  let plane = u.inH * u.inW;
  dx[((m / plane) * u.inC + g * u.cg + c) * plane + m % plane] = v;
}`,
    aRuns: 'm',
    bRuns: 'k',
  });
