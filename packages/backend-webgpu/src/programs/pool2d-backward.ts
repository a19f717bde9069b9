/**
 * Max and average 2-D pooling backward, gathered: a thread per input cell sums the gradient of
 * every window that covers it, so overlapping windows need no atomics. A max window passes its
 * gradient to its first maximum (row-major, as PyTorch), found again from x.
 */
import type { Pool2dGeometry } from '@residual/core';
import { groupsFor, type Program } from '../header.js';
import { poolUniforms, WINDOW } from './pool2d.js';

const WG = 256;

/** The program of maxPool2dBackward (inputs dy, x) or avgPool2dBackward (input dy) with geometry g. */
export const pool2dBackwardProgram = (kind: 'max' | 'avg', g: Pool2dGeometry): Program => {
  const size = g.batch * g.channels * g.inH * g.inW;
  const share =
    kind === 'max'
      ? `var bv = 0.0;
      var at = -1;
      for (var h = b.x; h < b.y; h++) {
        for (var w = b.z; w < b.w; w++) {
          let v = x[plane + u32(h) * u.inW + u32(w)];
          if (at < 0 || v > bv) { bv = v; at = h * i32(u.inW) + w; }
        }
      }
      if (at == i32(ih * u.inW + iw)) { acc += g; }`
      : 'acc += g / divisor(b);';
  return {
    shaderKey: `pool2dBackward|${kind}`,
    workgroupSize: WG,
    dispatch: groupsFor(size, WG),
    inputs: kind === 'max' ? [{ name: 'dy', type: 'f32' }, { name: 'x', type: 'f32' }] : [{ name: 'dy', type: 'f32' }],
    outputs: [{ name: 'dx', type: 'f32' }],
    uniforms: poolUniforms(g, size),
    code: () => `${WINDOW}

fn run(group: u32, lid: u32) {
  let i = group * WG + lid;
  if (i >= u.size) { return; }
  let iw = i % u.inW;
  let t = i / u.inW;
  let ih = t % u.inH;
  let nc = t / u.inH;
  let plane = nc * u.inH * u.inW;
  // Windows (oh, ow) with oh·stride - pad <= ih < oh·stride - pad + kernel.
  let hs = ih + u.pT;
  let ws = iw + u.pL;
  let oh0 = select(0u, (hs + 1u - u.kH + u.sH - 1u) / u.sH, hs + 1u >= u.kH);
  let ow0 = select(0u, (ws + 1u - u.kW + u.sW - 1u) / u.sW, ws + 1u >= u.kW);
  let oh1 = min(hs / u.sH + 1u, u.outH);
  let ow1 = min(ws / u.sW + 1u, u.outW);
  var acc = 0.0;
  for (var oh = oh0; oh < oh1; oh++) {
    for (var ow = ow0; ow < ow1; ow++) {
      let g = dy[(nc * u.outH + oh) * u.outW + ow];
      let b = window(oh, ow);
      ${share}
    }
  }
  dx[i] = acc;
}`,
  };
};
