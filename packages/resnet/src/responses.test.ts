import { describe, expect, it } from 'vitest';
import { noGrad, relu, setBackend, tensor } from '@residual/core';
import { createReferenceBackend } from '@residual/core/testing';
import { goldenStateDict } from './golden.js';
import { CifarResNet, createModel } from './models.js';
import { layerResponses, responseLayers } from './responses.js';

describe('responseLayers: the 3x3 layers of Figure 7, in forward order', () => {
  it.each([
    ['resnet20', 19],
    ['plain56', 55],
    ['resnet56', 55],
    ['resnet110', 109],
    ['resnet18', 16], // the 7x7 stem is not a 3x3 layer
    ['resnet50', 16], // a bottleneck's middle convolution only
  ])('%s has %i', (name, count) => {
    setBackend(createReferenceBackend());
    const names = responseLayers(createModel(name)).map(([n]) => n);
    expect(names).toHaveLength(count);
    if (name === 'resnet50') expect(names.slice(0, 2)).toEqual(['layer1.0.bn2', 'layer1.1.bn2']);
    else if (name === 'resnet18') expect(names.slice(0, 2)).toEqual(['layer1.0.bn1', 'layer1.0.bn2']);
    else expect(names.slice(0, 3)).toEqual(['bn1', 'layer1.0.bn1', 'layer1.0.bn2']);
  });
});

describe('layerResponses', () => {
  const images = (seed: number, n: number) => Float32Array.from({ length: n * 3 * 32 * 32 }, (_, i) => Math.sin(0.013 * i + seed));
  const batches = [
    { images: images(0, 2), labels: Int32Array.of(0, 1), shape: [2, 3, 32, 32] },
    { images: images(1, 3), labels: Int32Array.of(2, 3, 4), shape: [3, 3, 32, 32] },
  ];
  const stats = (chunks: Float32Array[]) => {
    let s = 0, ss = 0, n = 0;
    for (const c of chunks) for (const v of c) (s += v), (ss += v * v), n++;
    const mean = s / n;
    return { mean, std: Math.sqrt(ss / n - mean * mean) };
  };

  it('matches the responses computed layer by layer, and leaves the logits unchanged', async () => {
    setBackend(createReferenceBackend());
    const model = createModel('resnet20') as CifarResNet;
    model.loadStateDict(goldenStateDict(model));
    model.eval();
    const logitsBefore = await Promise.all(batches.map((b) => noGrad(() => model.forward(tensor(b.images, b.shape))).data()));
    const r = await layerResponses(model, batches);
    expect(r.map((l) => l.index)).toEqual(Array.from({ length: 19 }, (_, i) => i + 1));
    // By hand: the stem's bn1(conv1(x)), and the first block's bn1(conv1(relu(stem))).
    const stem: Float32Array[] = [];
    const block: Float32Array[] = [];
    for (const b of batches)
      noGrad(() => {
        const y = model.bn1.forward(model.conv1.forward(tensor(b.images, b.shape)));
        stem.push(y.dataSync() as Float32Array);
        const blk = model.layer1.layers[0] as unknown as { conv1: typeof model.conv1; bn1: typeof model.bn1 };
        block.push(blk.bn1.forward(blk.conv1.forward(relu(y))).dataSync() as Float32Array);
      });
    for (const [got, want] of [[r[0], stats(stem)], [r[1], stats(block)]] as const) {
      expect(got.std).toBeGreaterThan(0.05);
      expect(Math.abs(got.std - want.std) / want.std).toBeLessThan(1e-7);
      expect(Math.abs(got.mean - want.mean)).toBeLessThan(1e-7 * want.std);
    }
    const logitsAfter = await Promise.all(batches.map((b) => noGrad(() => model.forward(tensor(b.images, b.shape))).data()));
    expect(logitsAfter).toEqual(logitsBefore);
    expect(responseLayers(model).every(([, bn]) => bn.onResponse === null)).toBe(true);
  }, 120_000);
});
