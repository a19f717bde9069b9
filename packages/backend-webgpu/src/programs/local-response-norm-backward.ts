/**
 * The input gradient of local response normalisation, a thread per element j:
 * dx_j = dy_j·s_j^-beta - (2·alpha·beta/size)·x_j·Σ dy_c·x_c·s_c^(-beta-1), the sum over the channels c
 * whose window holds j (c from j - after to j + before: the forward's window reversed), each s_c
 * recomputed from x.
 */
import type { LocalResponseNormAttrs } from '@residual/core';
import { groupsFor, type Program } from '../header.js';
import { LRN_SCALE, lrnUniforms } from './local-response-norm.js';

const WG = 256;

/** The backward program over `images` images of [channels, inner]. */
export const localResponseNormBackwardProgram = (images: number, channels: number, inner: number, a: LocalResponseNormAttrs): Program => ({
  shaderKey: 'localResponseNormBackward',
  workgroupSize: WG,
  dispatch: groupsFor(images * channels * inner, WG),
  inputs: [{ name: 'x', type: 'f32' }, { name: 'dy', type: 'f32' }],
  outputs: [{ name: 'dx', type: 'f32' }],
  uniforms: [...lrnUniforms(images, channels, inner, a), { name: 'coef2', type: 'f32', value: (2 * a.alpha * a.beta) / a.size }],
  code: () => `${LRN_SCALE}

fn run(group: u32, lid: u32) {
  let i = group * WG + lid;
  if (i >= u.size) { return; }
  let j = i % u.inner;
  let c = (i / u.inner) % u.channels;
  let base = i - c * u.inner - j;
  let lo = u32(max(i32(c) - i32(u.after), 0));
  let hi = min(c + u.before, u.channels - 1u);
  var sum = 0.0;
  for (var q = lo; q <= hi; q++) {
    let at = base + q * u.inner + j;
    let s = scaleAt(base, q, j);
    sum = fma(dy[at] * x[at], pow(s, -u.beta) / s, sum);
  }
  dx[i] = dy[i] * pow(scaleAt(base, c, j), -u.beta) - u.coef2 * x[i] * sum;
}`,
});
