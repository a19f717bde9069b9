/**
 * conv2d's input gradient as implicit GEMM: rows are the input channels of one group, columns the
 * input pixels (n, ih, iw), depth the (k, r, s) taps. A tap contributes only where ih + pad - r·dil
 * lands on a multiple of the stride inside the output.
 */
import type { Conv2dGeometry } from '@residual/core';
import type { Program } from '../header.js';
import { convUniforms } from './conv2d.js';
import { gemmProgram, type GemmKernel } from './gemm.js';

/** The program of dx = conv2dBackwardData(dy, w) with geometry g on `kernel`. */
export const conv2dBackwardDataProgram = (g: Conv2dGeometry, kernel: GemmKernel): Program => {
  const unit = g.strideH === 1 && g.strideW === 1;
  return gemmProgram(
    {
      key: `conv2dBackwardData|${unit}`,
      batch: g.groups,
      rows: g.inChannels / g.groups,
      cols: g.batch * g.inH * g.inW,
      depth: (g.outChannels / g.groups) * g.kernelH * g.kernelW,
      inputs: [
        { name: 'dy', type: 'f32' },
        { name: 'w', type: 'f32' },
      ],
      output: { name: 'dx', type: 'f32' },
      uniforms: convUniforms(g),
      // With unit strides every tap lands on an output pixel, and the division (a loop over lanes on CPU drivers) goes.
      loaders: `struct Dep { kq: u32, rs: u32, dh: i32, dw: i32 }
fn depOf(g: u32, k: u32) -> Dep {
  let taps = u.kH * u.kW;
  let rs = k % taps;
  return Dep(k / taps, rs, i32((rs / u.kW) * u.dH), i32((rs % u.kW) * u.dW));
}
struct Col { img: u32, at: u32, hs: i32, ws: i32 }
fn colOf(g: u32, q: u32) -> Col {
  let plane = u.inH * u.inW;
  let at = q % plane;
  return Col(q / plane, at, i32(at / u.inW + u.pT), i32(at % u.inW + u.pL));
}
fn loadA(g: u32, c: u32, d: Dep) -> f32 { return w[((g * u.kg + d.kq) * u.cg + c) * u.kH * u.kW + d.rs]; }
fn loadB(g: u32, d: Dep, c: Col) -> f32 {
  let hs = c.hs - d.dh;
  let ws = c.ws - d.dw;
  if (hs < 0 || ws < 0) { return 0.0; }
${
  unit
    ? `  let oh = u32(hs);
  let ow = u32(ws);
  if (oh >= u.outH || ow >= u.outW) { return 0.0; }`
    : `  let oh = u32(hs) / u.sH;
  let ow = u32(ws) / u.sW;
  if (oh * u.sH != u32(hs) || ow * u.sW != u32(ws) || oh >= u.outH || ow >= u.outW) { return 0.0; }`
}
  return dy[((c.img * u.outC + g * u.kg + d.kq) * u.outH + oh) * u.outW + ow];
}
fn storeC(g: u32, c: u32, col: Col, v: f32) { dx[(col.img * u.inC + g * u.cg + c) * u.inH * u.inW + col.at] = v; }`,
      aRuns: 'k',
      bRuns: 'n',
    },
    kernel,
  );
};
