import { beforeEach, describe, expect, it } from 'vitest';
import { tensor } from './api.js';
import { setBackend, type Tensor } from './engine.js';
import { constant, cosine, multiStep, ReduceLROnPlateau, SGD, warmup } from './optim.js';
import { createReferenceBackend } from './testing/reference-backend.js';

beforeEach(() => {
  setBackend(createReferenceBackend());
});

const vals = (t: Tensor) => Array.from(t.dataSync());

/** Runs SGD on p with a fixed sequence of gradients and returns p after each step. */
const run = (opts: ConstructorParameters<typeof SGD>[1], grads: number[], p0 = 1) => {
  const p = tensor([p0]).requireGrad();
  const opt = new SGD([p], opts);
  return grads.map((g) => {
    p.grad = tensor([g]);
    opt.step();
    opt.zeroGrad();
    return vals(p)[0];
  });
};

describe('SGD', () => {
  it('plain: p -= lr * g', () => {
    expect(run({ lr: 0.5 }, [1, 2])).toEqual([0.5, -0.5]);
  });

  it('momentum and weight decay follow torch.optim.SGD step by step', () => {
    // hand computation: d = g + 0.1 p; buf = d (first) then 0.9 buf + d; p -= 0.1 buf
    let p = 1;
    let buf = 0;
    const want = [1, 1, 1].map((g, i) => {
      const d = g + 0.1 * p;
      buf = i === 0 ? d : 0.9 * buf + d;
      p -= 0.1 * buf;
      return p;
    });
    run({ lr: 0.1, momentum: 0.9, weightDecay: 0.1 }, [1, 1, 1]).forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
  });

  it('nesterov and dampening', () => {
    let p = 1;
    let buf = 0;
    const want = [1, -2, 3].map((g, i) => {
      buf = i === 0 ? g : 0.9 * buf + g;
      p -= 0.1 * (g + 0.9 * buf);
      return p;
    });
    run({ lr: 0.1, momentum: 0.9, nesterov: true }, [1, -2, 3]).forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    let q = 1;
    let b2 = 0;
    const want2 = [1, 1].map((g, i) => {
      b2 = i === 0 ? g : 0.5 * b2 + 0.7 * g;
      q -= 0.1 * b2;
      return q;
    });
    run({ lr: 0.1, momentum: 0.5, dampening: 0.3 }, [1, 1]).forEach((v, i) => expect(v).toBeCloseTo(want2[i], 6));
  });

  it('saves and restores momentum so a resumed run continues identically', async () => {
    const p = tensor([1, 2]).requireGrad();
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9 });
    p.grad = tensor([1, 1]);
    opt.step();
    const state = await opt.stateDict();
    const q = tensor(vals(p)).requireGrad();
    const opt2 = new SGD([q], { lr: 0.5, momentum: 0.9 });
    opt2.loadStateDict(state);
    expect(opt2.lr).toBe(0.1);
    p.grad = tensor([1, 1]);
    q.grad = tensor([1, 1]);
    opt.step();
    opt2.step();
    expect(vals(q)).toEqual(vals(p));
  });

  it('rejects bad hyper-parameters by name', () => {
    expect(() => new SGD([], { lr: -1 })).toThrow(/lr/);
    expect(() => new SGD([], { lr: 0.1, nesterov: true })).toThrow(/Nesterov/);
  });
});

describe('schedules', () => {
  it("multi-step: the paper's CIFAR schedule (0.1, /10 at 32k and 48k)", () => {
    const s = multiStep(0.1, [32000, 48000]);
    expect([s(0), s(31999)]).toEqual([0.1, 0.1]);
    expect(s(47999)).toBeCloseTo(0.01, 12);
    expect(s(63999)).toBeCloseTo(0.001, 12);
    expect(s(32000)).toBeCloseTo(0.01, 12);
    expect(s(48000)).toBeCloseTo(0.001, 12);
  });

  it('cosine annealing matches the closed form at quarter points', () => {
    const s = cosine(1, 100, 0.1);
    expect(s(0)).toBeCloseTo(1, 12);
    expect(s(50)).toBeCloseTo(0.55, 12);
    expect(s(25)).toBeCloseTo(0.1 + 0.9 * (1 + Math.SQRT1_2) / 2, 12);
    expect(s(100)).toBeCloseTo(0.1, 12);
    expect(s(150)).toBeCloseTo(0.1, 12);
  });

  it('linear warm-up ramps to the schedule', () => {
    const s = warmup(constant(0.1), 10, 0.1);
    expect(s(0)).toBeCloseTo(0.01, 12);
    expect(s(5)).toBeCloseTo(0.055, 12);
    expect(s(10)).toBe(0.1);
  });

  it('plateau divides by 10 after patience epochs without relative improvement', () => {
    const opt = { lr: 0.1 };
    const sched = new ReduceLROnPlateau(opt, { patience: 2 });
    for (const v of [1, 0.9, 0.89999, 0.9, 0.95]) sched.step(v);
    // 0.89999 is not a 1e-4 relative improvement on 0.9: bad epochs 1, 2, 3 -> reduce on the third
    expect(opt.lr).toBeCloseTo(0.01, 12);
    sched.step(0.5);
    expect(opt.lr).toBeCloseTo(0.01, 12);
  });
});
