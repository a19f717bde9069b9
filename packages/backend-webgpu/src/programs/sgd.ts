/**
 * Fused SGD step in place, PyTorch's torch.optim.SGD: d = grad + wd·param; with momentum,
 * buf = first ? d : mu·buf + (1 - dampening)·d and d = nesterov ? d + mu·buf : buf; param -= lr·d.
 * Without momentum the buffer is not bound at all (callers may pass any tensor, even param, for it).
 */
import type { SgdAttrs } from '@residual/core';
import { groupsFor, type Program } from '../header.js';

const WG = 256;

/** The program of one SGD step over `size` elements. */
export const sgdProgram = (size: number, a: SgdAttrs): Program => {
  const withMomentum = a.momentum !== 0;
  return {
    shaderKey: `sgd|${withMomentum}`,
    workgroupSize: WG,
    dispatch: groupsFor(size, WG),
    inputs: [{ name: 'grad', type: 'f32' }],
    outputs: withMomentum ? [{ name: 'param', type: 'f32' }, { name: 'buf', type: 'f32' }] : [{ name: 'param', type: 'f32' }],
    uniforms: [
      { name: 'size', type: 'u32', value: size },
      { name: 'lr', type: 'f32', value: a.lr },
      { name: 'mu', type: 'f32', value: a.momentum },
      { name: 'dampening', type: 'f32', value: a.dampening },
      { name: 'wd', type: 'f32', value: a.weightDecay },
      { name: 'nesterov', type: 'u32', value: a.nesterov ? 1 : 0 },
      { name: 'first', type: 'u32', value: a.firstStep ? 1 : 0 },
    ],
    code: () => `fn run(group: u32, lid: u32) {
  let i = group * WG + lid;
  if (i >= u.size) { return; }
  var d = grad[i] + u.wd * param[i];
${
  withMomentum
    ? `  let m = select(u.mu * buf[i] + (1.0 - u.dampening) * d, d, u.first != 0u);
  buf[i] = m;
  d = select(m, d + u.mu * m, u.nesterov != 0u);`
    : ''
}
  param[i] = param[i] - u.lr * d;
}`,
  };
};
