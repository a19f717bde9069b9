/** The fused SGD step, in place, with PyTorch's `torch.optim.SGD` semantics. */
import type { SgdAttrs } from '@residual/core';

/**
 * d = g + wd·p; with momentum: buf = firstStep ? d : momentum·buf + (1 - dampening)·d and
 * d = nesterov ? d + momentum·buf : buf; then p -= lr·d. `buf` is untouched without momentum.
 */
export const sgdUpdate = (param: Float32Array, grad: Float32Array, buf: Float32Array, o: SgdAttrs): void => {
  const { lr, momentum, dampening, weightDecay, nesterov, firstStep } = o;
  const n = param.length;
  if (momentum === 0) {
    for (let i = 0; i < n; i++) param[i] -= lr * (grad[i] + weightDecay * param[i]);
    return;
  }
  for (let i = 0; i < n; i++) {
    const d = grad[i] + weightDecay * param[i];
    const b = firstStep ? d : momentum * buf[i] + (1 - dampening) * d;
    buf[i] = b;
    param[i] -= lr * (nesterov ? d + momentum * b : b);
  }
};
