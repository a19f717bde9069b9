/** Max and average 2-D pooling forward, a thread per output; padded cells never win a max. */
import type { Pool2dGeometry } from '@residual/core';
import { groupsFor, type Program, type UniformField } from '../header.js';

const WG = 256;

/** The geometry as uniforms, shared with the backward program. */
export const poolUniforms = (g: Pool2dGeometry, size: number): UniformField[] =>
  Object.entries({
    size, inH: g.inH, inW: g.inW, outH: g.outH, outW: g.outW, kH: g.kernelH, kW: g.kernelW,
    sH: g.strideH, sW: g.strideW, pT: g.padTop, pL: g.padLeft, includePad: g.countIncludePad ? 1 : 0,
  }).map(([name, value]) => ({ name, type: 'u32', value }));

/**
 * WGSL `window(oh, ow) -> vec4<i32>`: the rows [x, y) and columns [z, w) of the input that window
 * (oh, ow) covers, clipped to the input. Shared with the backward program.
 */
export const WINDOW = `fn window(oh: u32, ow: u32) -> vec4<i32> {
  let h0 = i32(oh * u.sH) - i32(u.pT);
  let w0 = i32(ow * u.sW) - i32(u.pL);
  return vec4<i32>(max(h0, 0), min(h0 + i32(u.kH), i32(u.inH)), max(w0, 0), min(w0 + i32(u.kW), i32(u.inW)));
}
// PyTorch's divisor: the whole kernel with count_include_pad, else the cells inside the input.
fn divisor(b: vec4<i32>) -> f32 { return select(f32((b.y - b.x) * (b.w - b.z)), f32(u.kH * u.kW), u.includePad != 0u); }`;

/** The program of maxPool2d or avgPool2d with geometry g. */
export const pool2dProgram = (kind: 'max' | 'avg', g: Pool2dGeometry): Program => {
  const size = g.batch * g.channels * g.outH * g.outW;
  return {
    shaderKey: `pool2d|${kind}`,
    workgroupSize: WG,
    dispatch: groupsFor(size, WG),
    inputs: [{ name: 'x', type: 'f32' }],
    outputs: [{ name: 'y', type: 'f32' }],
    uniforms: poolUniforms(g, size),
    code: () => `${WINDOW}

fn run(group: u32, lid: u32) {
  let i = group * WG + lid;
  if (i >= u.size) { return; }
  let ow = i % u.outW;
  let t = i / u.outW;
  let plane = (t / u.outH) * u.inH * u.inW;
  let b = window(t % u.outH, ow);
  var acc = ${kind === 'max' ? 'lowest()' : '0.0'};
  for (var h = b.x; h < b.y; h++) {
    for (var w = b.z; w < b.w; w++) {
      let v = x[plane + u32(h) * u.inW + u32(w)];
      ${kind === 'max' ? 'acc = maxOf(acc, v);' : 'acc += v;'}
    }
  }
  y[i] = ${kind === 'max' ? 'acc' : 'acc / divisor(b)'};
}`,
  };
};
