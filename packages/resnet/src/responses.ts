/**
 * The paper's Figure 7: the standard deviation of each 3x3 layer's response — its output after
 * batch-norm, before the ReLU and the shortcut's addition — over a data set. Residual networks'
 * responses are smaller than plain ones', the paper's evidence that residual functions are closer to
 * zero than non-residual ones.
 */
import { BatchNorm2d, Conv2d, mul, noGrad, sum, tensor, tidy, type Module, type Tensor } from '@residual/core';
import type { BatchLike } from './trainer.js';

/** One 3x3 layer's response statistics. */
export interface LayerResponse {
  /** 1-based position among the network's 3x3 layers, in forward order (the paper's "layer index"). */
  readonly index: number;
  /** The batch-norm's name in the state dict, e.g. `layer1.0.bn2`. */
  readonly name: string;
  /** Standard deviation over every element of every image's response (population, float64 sums). */
  readonly std: number;
  /** Mean over the same elements. */
  readonly mean: number;
}

/**
 * The batch-norm layers that follow a 3x3 convolution, in forward order: a module's `convK` with a
 * 3x3 kernel and its sibling `bnK` (the CIFAR stem, both convolutions of a basic block, a bottleneck's
 * middle one), which is how every network of this package names them.
 */
export const responseLayers = (model: Module): [string, BatchNorm2d][] =>
  model.namedModules().flatMap(([prefix, m]) => {
    const children = new Map(m.namedChildren());
    return [...children].flatMap(([name, conv]) => {
      const k = /^conv(\d+)$/.exec(name)?.[1];
      const bn = k === undefined ? undefined : children.get(`bn${k}`);
      if (!(conv instanceof Conv2d) || !(bn instanceof BatchNorm2d)) return [];
      const [, , kh, kw] = conv.weight.shape;
      if (kh !== 3 || kw !== 3) return [];
      return [[prefix ? `${prefix}.bn${k}` : `bn${k}`, bn] as [string, BatchNorm2d]];
    });
  });

/**
 * Runs `model` in evaluation mode over `batches` and returns the response statistics of each 3x3
 * layer (see `responseLayers`). The model is left in evaluation mode, without the hooks.
 */
export const layerResponses = async (model: Module, batches: AsyncIterable<BatchLike> | Iterable<BatchLike>): Promise<LayerResponse[]> => {
  const layers = responseLayers(model);
  if (!layers.length) throw new Error('layerResponses: the model has no 3x3 convolution followed by batch-norm');
  const sums = layers.map(() => ({ s: 0, ss: 0, n: 0 }));
  model.eval();
  try {
    for await (const batch of batches) {
      const parts: Tensor[] = [];
      layers.forEach(([, bn], i) => {
        // The per-batch sums stay on the device; only two numbers per layer come back.
        bn.onResponse = (y) => {
          parts[2 * i] = sum(y).keep();
          parts[2 * i + 1] = sum(mul(y, y)).keep();
          sums[i].n += y.size;
        };
      });
      noGrad(() => tidy(() => void model.forward(tensor(batch.images, batch.shape))));
      const values = await Promise.all(parts.map((t) => t.data()));
      parts.forEach((t) => t.dispose());
      layers.forEach(([name], i) => {
        if (!values[2 * i]) throw new Error(`layerResponses: ${name} did not run in the model's forward`);
        sums[i].s += values[2 * i][0];
        sums[i].ss += values[2 * i + 1][0];
      });
    }
  } finally {
    for (const [, bn] of layers) bn.onResponse = null;
  }
  return layers.map(([name], i) => {
    const { s, ss, n } = sums[i];
    const mean = s / n;
    return { index: i + 1, name, mean, std: Math.sqrt(Math.max(ss / n - mean * mean, 0)) };
  });
};
