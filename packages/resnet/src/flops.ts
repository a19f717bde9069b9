/** Parameter and multiply-add counts, computed on the meta backend (shapes only, no arithmetic). */
import { createMetaBackend, currentBackend, noGrad, setBackend, zeros, type Module, type Conv2dGeometry, type TensorSpec } from '@residual/core';

/** What `profile` measures for one forward pass. */
export interface Profile {
  /** Trainable parameters. */
  readonly parameters: number;
  /** Multiply-adds of convolutions and fully connected layers (how Table 1 counts "FLOPs"). */
  readonly multiplyAdds: number;
}

/**
 * Builds a network with `build` on the meta backend and runs one evaluation-mode forward pass of
 * `inputShape`, counting parameters and multiply-adds. Nothing is allocated, so ResNet-152 costs nothing.
 */
export const profile = (build: () => Module, inputShape: readonly number[]): Profile => {
  let multiplyAdds = 0;
  const meta = createMetaBackend((op, _inputs, attrs, outputs: readonly TensorSpec[]) => {
    if (op === 'conv2d') {
      const g = attrs as Conv2dGeometry;
      multiplyAdds += g.batch * g.outChannels * g.outH * g.outW * (g.inChannels / g.groups) * g.kernelH * g.kernelW;
    } else if (op === 'matmul') {
      const { transA } = attrs as { transA: boolean };
      const a = (_inputs as { a: TensorSpec }).a.shape;
      const k = transA ? a[a.length - 2] : a[a.length - 1];
      multiplyAdds += outputs[0].shape.reduce((x, y) => x * y, 1) * k;
    }
  });
  const previous = currentBackend();
  setBackend(meta);
  try {
    const net = build();
    net.eval();
    noGrad(() => net.forward(zeros(inputShape)));
    return { parameters: net.numParameters(), multiplyAdds };
  } finally {
    if (previous) setBackend(previous);
    else setBackend(null as never);
  }
};
