import { describe, expect, it } from 'vitest';
import { manualSeed, setBackend } from '@residual/core';
import { createReferenceBackend } from '@residual/core/testing';
import { CifarResNet } from './models.js';
import { paperCifar, paperCifar110, scaleRecipe, scheduleOf } from './recipes.js';
import { Trainer, type BatchLike } from './trainer.js';

const batchOf = (seed: number): BatchLike => {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
  const n = 4;
  const images = Float32Array.from({ length: n * 3 * 6 * 6 }, rnd);
  return { images, labels: Int32Array.from([0, 1, 2, 1]), shape: [n, 3, 6, 6] };
};

const fresh = () => {
  setBackend(createReferenceBackend());
  manualSeed(3);
  const model = new CifarResNet(1, { numClasses: 3 });
  return new Trainer({ model, recipe: { ...paperCifar, lr: 0.05 }, itersPerEpoch: 10, totalIterations: 100 });
};

describe('Trainer', () => {
  it('lowers the loss on a fixed batch', async () => {
    const t = fresh();
    const b = batchOf(1);
    const first = await t.trainStep(b);
    let last = first;
    for (let i = 0; i < 15; i++) last = await t.trainStep(b);
    expect(last.loss).toBeLessThan(first.loss * 0.5);
    expect(t.step).toBe(16);
  });

  it('continues exactly from a saved state', async () => {
    const a = fresh();
    for (let i = 0; i < 3; i++) await a.trainStep(batchOf(i));
    const state = await a.state();
    const weights = new Map([...a.model.stateDict()].map(([k, v]) => [k, v.dataSync().slice()]));
    const wantLosses = [];
    for (let i = 3; i < 6; i++) wantLosses.push((await a.trainStep(batchOf(i))).loss);

    const b = fresh();
    const { tensor } = await import('@residual/core');
    b.model.loadStateDict(new Map([...b.model.stateDict()].map(([k, v]) => [k, tensor(weights.get(k)!, v.shape, v.dtype)])));
    b.load(state);
    const gotLosses = [];
    for (let i = 3; i < 6; i++) gotLosses.push((await b.trainStep(batchOf(i))).loss);
    expect(gotLosses).toEqual(wantLosses);
  });

  it("uses ResNet-110's 0.01 warm-up until the training error is below 80%", async () => {
    setBackend(createReferenceBackend());
    const t = new Trainer({ model: new CifarResNet(1, { numClasses: 3 }), recipe: paperCifar110, itersPerEpoch: 10, totalIterations: 100 });
    expect(t.currentLr()).toBe(0.01);
    t.warmupDone = true;
    expect(t.currentLr()).toBe(0.1);
  });
});

describe('recipes', () => {
  it("the paper's CIFAR schedule: 0.1, 0.01 from 32k, 0.001 from 48k", () => {
    const s = scheduleOf(paperCifar, 391, 64000);
    expect(s(31999)).toBe(0.1);
    expect(s(32000)).toBeCloseTo(0.01, 12);
    expect(s(48000)).toBeCloseTo(0.001, 12);
  });

  it('scales milestones with the run length', () => {
    const r = scaleRecipe(paperCifar, 6400);
    expect(r.schedule).toMatchObject({ milestones: [3200, 4800] });
    expect(r.iterations).toBe(6400);
  });
});
