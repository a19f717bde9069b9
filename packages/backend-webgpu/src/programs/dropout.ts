/**
 * Dropout's masked scaling, matching core's keep rule element by element: an invocation per Philox
 * counter block, whose 4 words decide 4 elements (kept, times 1/(1-p), where a word reaches the
 * threshold; else times 0), as a uniform randomFill from the same key and counter draws them.
 */
import { dropoutThreshold, type DropoutAttrs } from '@residual/core';
import { groupsFor, type Program } from '../header.js';
import { PHILOX, philoxUniforms } from './random.js';

const WG = 256;

/** The program of `dropout` over `size` elements. */
export const dropoutProgram = (size: number, a: DropoutAttrs): Program => {
  const blocks = Math.ceil(size / 4);
  return {
    shaderKey: 'dropout',
    workgroupSize: WG,
    dispatch: groupsFor(blocks, WG),
    inputs: [{ name: 'x', type: 'f32' }],
    outputs: [{ name: 'y', type: 'f32' }],
    uniforms: [
      ...philoxUniforms(size, blocks, a.seed, a.counter),
      { name: 'threshold', type: 'u32', value: dropoutThreshold(a.p) },
      { name: 'scale', type: 'f32', value: 1 / (1 - a.p) },
    ],
    code: () => `${PHILOX}

fn run(group: u32, lid: u32) {
  let blk = group * WG + lid;
  if (blk >= u.blocks) { return; }
  let lo = counter(0u) + blk;
  let hi = counter(1u) + select(0u, 1u, lo < blk);
  let w = philox(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(seed(0u), seed(1u)));
  let first = blk * 4u;
  for (var j = 0u; j < 4u && first + j < u.size; j++) { y[first + j] = x[first + j] * select(0.0, u.scale, w[j] >= u.threshold); }
}`,
  };
};
