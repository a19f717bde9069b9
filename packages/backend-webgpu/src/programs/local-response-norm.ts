/**
 * Local response normalisation across channels, a thread per element of x viewed as
 * [images, channels, inner]: y = x·s^-beta with s = k + alpha/size·Σ x² over channels
 * c - before .. c + after (before = floor(size/2), after = floor((size-1)/2)), clipped to the tensor.
 */
import type { LocalResponseNormAttrs } from '@residual/core';
import { groupsFor, type Program, type UniformField } from '../header.js';

const WG = 256;

/** The geometry and attributes as uniforms, shared with the backward program. */
export const lrnUniforms = (images: number, channels: number, inner: number, a: LocalResponseNormAttrs): UniformField[] => [
  ...Object.entries({ size: images * channels * inner, channels, inner, before: Math.floor(a.size / 2), after: Math.floor((a.size - 1) / 2) })
    .map(([name, value]) => ({ name, type: 'u32' as const, value })),
  { name: 'coef', type: 'f32', value: a.alpha / a.size },
  { name: 'k', type: 'f32', value: a.k },
  { name: 'beta', type: 'f32', value: a.beta },
];

/**
 * WGSL `scaleAt(base, c, j) -> f32`: s of channel c at position j of the image starting at element
 * `base` of x. Shared with the backward program.
 */
export const LRN_SCALE = `fn scaleAt(base: u32, c: u32, j: u32) -> f32 {
  let lo = u32(max(i32(c) - i32(u.before), 0));
  let hi = min(c + u.after, u.channels - 1u);
  var s = 0.0;
  for (var q = lo; q <= hi; q++) {
    let v = x[base + q * u.inner + j];
    s = fma(v, v, s);
  }
  return fma(u.coef, s, u.k);
}`;

/** The forward program over `images` images of [channels, inner]. */
export const localResponseNormProgram = (images: number, channels: number, inner: number, a: LocalResponseNormAttrs): Program => {
  const uniforms = lrnUniforms(images, channels, inner, a);
  return {
    shaderKey: 'localResponseNorm',
    workgroupSize: WG,
    dispatch: groupsFor(images * channels * inner, WG),
    inputs: [{ name: 'x', type: 'f32' }],
    outputs: [{ name: 'y', type: 'f32' }],
    uniforms,
    code: () => `${LRN_SCALE}

fn run(group: u32, lid: u32) {
  let i = group * WG + lid;
  if (i >= u.size) { return; }
  let j = i % u.inner;
  let t = i / u.inner;
  let c = t % u.channels;
  y[i] = x[i] * pow(scaleAt(i - c * u.inner - j, c, j), -u.beta);
}`,
  };
};
