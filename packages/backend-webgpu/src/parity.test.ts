import { createCpuBackend } from '@residual/backend-cpu';
import { crossEntropy, manualSeed, setBackend, SGD, tensor, tidy, type Backend } from '@residual/core';
import { resnet20 } from '@residual/resnet';
import { afterAll, describe, expect, it } from 'vitest';
import { openTestBackend } from './test-backend.js';

const be = await openTestBackend();

const BATCH = 8;
const STEPS = 3;
/**
 * Step-1 gradients compared, with the norm-wise relative difference allowed. Near the loss, f32
 * rounding is all that separates two backends. Early convolutions sit behind ~10^6 ReLUs, a few of
 * which get inputs within rounding of zero and so flip between backends: a float64 run with the
 * conv weights scaled by 1 + 2e-7 moves conv1's gradient by 1e-3 too, so those get 2e-2, which
 * still catches a wrong kernel (the README has the measurements).
 */
const WATCHED: [string, number][] = [
  ['conv1.weight', 2e-2],
  ['layer2.0.conv1.weight', 2e-2],
  ['layer3.2.bn2.weight', 1e-4],
  ['fc.weight', 1e-4],
  ['fc.bias', 1e-4],
];

/**
 * Losses of STEPS SGD steps of a seeded ResNet-20 on one fixed batch, and the watched gradients of
 * step 1. The rate is small (3e-3) because later losses inherit the ReLU flips above through the
 * updates, in proportion to the rate: at 3e-3 they move the loss by ~2e-5, at 0.1 by ~1e-3.
 */
const train = async <S>(backend: Backend<S>) => {
  setBackend(backend);
  manualSeed(2015);
  const model = resnet20();
  const opt = new SGD(model.parameters(), { lr: 3e-3, momentum: 0.9, weightDecay: 1e-4 });
  const x = tensor(Float32Array.from({ length: BATCH * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.37) + 0.1 * Math.cos(i * 0.011)), [BATCH, 3, 32, 32]);
  const y = tensor(Int32Array.from({ length: BATCH }, (_, i) => (i * 3) % 10), [BATCH], 'i32');
  const params = new Map(model.namedParameters());
  const losses: number[] = [];
  const grads: Float32Array[] = [];
  for (let step = 0; step < STEPS; step++) {
    const loss = tidy(() => {
      const l = crossEntropy(model.forward(x), y);
      l.backward();
      return l;
    });
    losses.push((await loss.data())[0]);
    loss.dispose();
    if (step === 0) for (const [name] of WATCHED) grads.push(Float32Array.from(await params.get(name)!.grad!.data()));
    opt.step();
    opt.zeroGrad();
  }
  model.dispose();
  x.dispose();
  y.dispose();
  return { losses, grads };
};

const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));

describe.skipIf(!be)('ResNet-20 training on WebGPU', () => {
  afterAll(() => be?.dispose());

  it(`gives the CPU backend's losses within 1e-4 (relative) over ${STEPS} steps of the same seed and batch, and its gradients`, async () => {
    const cpu = createCpuBackend();
    const want = await train(cpu);
    cpu.dispose();
    const got = await train(be!);
    // The model learns (so equal losses are not those of a frozen model) ...
    expect(want.losses[0] - want.losses[STEPS - 1]).toBeGreaterThan(0.05);
    // ... and both backends take the same path.
    want.losses.forEach((w, i) => expect(Math.abs(got.losses[i] - w) / w, `loss of step ${i + 1}`).toBeLessThan(1e-4));
    WATCHED.forEach(([name, tolerance], i) => {
      const [g, w] = [got.grads[i], want.grads[i]];
      expect(norm(w), name).toBeGreaterThan(0);
      expect(norm(g.map((v, j) => v - w[j])) / norm(w), name).toBeLessThan(tolerance);
    });
  });
});
