import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { noGrad, setBackend } from '@residual/core';
import { createReferenceBackend } from '@residual/core/testing';
import { goldenInput, goldenStateDict } from './golden.js';
import { createModel } from './models.js';

interface Golden {
  model: string;
  inputShape: number[];
  logits: number[];
  shape: number[];
  made_by: string;
}

const golden = (name: string): Golden => JSON.parse(readFileSync(new URL(`./golden/${name}.json`, import.meta.url), 'utf8'));

// Expected logits were written by torchvision (and a PyTorch definition of the CIFAR ResNet-20) from the
// same formula weights: scripts/make-golden.py. The float64 reference backend checks the network
// definitions themselves; the CLI's tests check the CPU (and WebGPU) backends through `predict`, and
// the baselines (alexnet, vgg16, ...) only there: 61-138M weights are too many for the reference.
describe('eval-mode logits equal torchvision', () => {
  it.each(['resnet20', 'resnet18', 'resnet50'])('%s', async (name) => {
    setBackend(createReferenceBackend());
    const g = golden(name);
    const model = createModel(name);
    model.loadStateDict(goldenStateDict(model));
    model.eval();
    const logits = noGrad(() => model.forward(goldenInput(g.inputShape)));
    expect(logits.shape).toEqual(g.shape);
    const got = await logits.data();
    let worst = 0;
    got.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - g.logits[i]))));
    expect(worst).toBeLessThan(1e-3);
  }, 120_000);
});
