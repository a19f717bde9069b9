/**
 * conv2d forward as implicit GEMM: rows are the output channels of one group, columns the output
 * pixels (n, oh, ow), depth the (c, r, s) taps; the skeleton's batch index is the group. Channels
 * as rows keep the pixels, the long side, on the lanes, where consecutive columns store contiguously.
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

/** The program of conv2d(x, w) with geometry g on `kernel`. */
export const conv2dProgram = (g: Conv2dGeometry, kernel: GemmKernel): Program =>
  gemmProgram(
    {
      key: 'conv2d',
      batch: g.groups,
      rows: g.outChannels / g.groups,
      cols: g.batch * g.outH * g.outW,
      depth: (g.inChannels / g.groups) * g.kernelH * g.kernelW,
      inputs: [
        { name: 'x', type: 'f32' },
        { name: 'w', type: 'f32' },
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
fn storeC(g: u32, m: u32, p: Pixel, v: f32) { y[(p.img * u.outC + g * u.kg + m) * u.outH * u.outW + p.at] = v; }`,
      aRuns: 'k',
      bRuns: 'n',
    },
    kernel,
  );
