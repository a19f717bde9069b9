import { beforeEach, describe, expect, it } from 'vitest';
import { add, clone, crossEntropy, flatten, mul, rand, randn, sum, tensor, zeros } from './api.js';
import { customOp, getBackend, noGrad, setBackend, tidy, type Tensor } from './engine.js';
import { manualSeed } from './random.js';
import {
  AdaptiveAvgPool2d, BatchNorm2d, Conv2d, convBn, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, Module, ReLU, Sequential, StateDictError,
} from './nn.js';
import { SGD } from './optim.js';
import { createMetaBackend } from './meta.js';
import { createReferenceBackend } from './testing/reference-backend.js';

beforeEach(() => {
  setBackend(createReferenceBackend());
  manualSeed(7);
});

const vals = (t: Tensor) => Array.from(t.dataSync());

/** conv-bn-relu-pool-linear, the small CNN. */
class SmallCnn extends Module {
  conv1 = this.registerModule('conv1', new Conv2d(1, 4, 3, { padding: 1, bias: false }));
  bn1 = this.registerModule('bn1', new BatchNorm2d(4));
  relu = new ReLU();
  pool = new MaxPool2d({ kernelSize: 2 });
  fc = this.registerModule('fc', new Linear(4 * 3 * 3, 3));
  forward(x: Tensor): Tensor {
    return this.fc.forward(flatten(this.pool.forward(this.relu.forward(this.bn1.forward(this.conv1.forward(x))))));
  }
}

describe('Module', () => {
  it("names parameters and buffers as PyTorch does, in PyTorch's order", () => {
    const net = new Sequential(new Conv2d(3, 8, 3), new BatchNorm2d(8), new ReLU(), new Sequential(new Linear(8, 2)));
    expect([...net.stateDict().keys()]).toEqual([
      '0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '1.num_batches_tracked', '3.0.weight', '3.0.bias',
    ]);
    expect(net.parameters().every((p) => p.requiresGrad)).toBe(true);
    expect(net.numParameters()).toBe(8 * 3 * 9 + 8 + 8 + 8 + 16 + 2);
  });

  it('loads a state dict by name and reports every bad key', () => {
    const a = new SmallCnn();
    const b = new SmallCnn();
    b.loadStateDict(a.stateDict());
    expect(vals(b.conv1.weight)).toEqual(vals(a.conv1.weight));
    const dict = new Map(a.stateDict());
    dict.delete('fc.bias');
    dict.set('fc.extra', zeros([1]));
    dict.set('bn1.weight', zeros([5]));
    let err: StateDictError | undefined;
    try {
      b.loadStateDict(dict);
    } catch (e) {
      err = e as StateDictError;
    }
    expect(err).toBeInstanceOf(StateDictError);
    expect(err!.missing).toEqual(['fc.bias']);
    expect(err!.unexpected).toEqual(['fc.extra']);
    expect(err!.message).toMatch(/bn1\.weight \(expected f32\[4\], got f32\[5\]\)/);
    dict.set('bn1.weight', zeros([4]));
    expect(b.loadStateDict(dict, { strict: false })).toEqual({ missing: ['fc.bias'], unexpected: ['fc.extra'] });
    expect(vals(b.bn1.weight)).toEqual([0, 0, 0, 0]);
  });

  it('initialises Conv2d and Linear uniformly within 1/sqrt(fan_in), as PyTorch', () => {
    const conv = new Conv2d(16, 32, 3);
    const bound = 1 / Math.sqrt(16 * 9);
    const w = vals(conv.weight);
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(bound * 0.95);
  });

  it('names the layer when an input has the wrong width', () => {
    expect(() => new Linear(4, 2).forward(zeros([1, 5]))).toThrow(/Linear\(4, 2\).*5 features/);
    expect(() => new BatchNorm2d(3).forward(zeros([2, 4, 1, 1]))).toThrow(/BatchNorm2d\(3\).*4 channels/);
  });
});

describe('BatchNorm2d', () => {
  it('updates running statistics with momentum and the unbiased variance, then uses them in eval', () => {
    const bn = new BatchNorm2d(1, { momentum: 0.1 });
    const x = tensor([1, 2, 3, 6], [4, 1, 1, 1]);
    bn.forward(x);
    // batch mean 3, biased var 3.5, unbiased var 14/3
    expect(vals(bn.runningMean)[0]).toBeCloseTo(0.3, 6);
    expect(vals(bn.runningVar)[0]).toBeCloseTo(0.9 + 0.1 * (14 / 3), 5);
    expect(vals(bn.numBatchesTracked)).toEqual([1]);
    bn.eval();
    const y = bn.forward(tensor([1], [1, 1, 1, 1]));
    expect(vals(y)[0]).toBeCloseTo((1 - 0.3) / Math.sqrt(0.9 + 0.1 * (14 / 3) + 1e-5), 5);
  });
});

describe('convBn', () => {
  /** A conv-bn pair with non-trivial statistics, its input, and the unfolded eval-mode output to compare with. */
  const pair = () => {
    const conv = new Conv2d(3, 4, 3, { padding: 1, bias: true });
    const bn = new BatchNorm2d(4);
    bn.runningMean.assign(tensor([0.1, -0.2, 0.3, 0]));
    bn.runningVar.assign(tensor([0.5, 2, 1, 0.25]));
    bn.weight.assign(tensor([1.5, 0.5, -1, 2]));
    bn.bias.assign(tensor([0, 1, -1, 0.5]));
    conv.eval();
    bn.eval();
    return { conv, bn, x: randn([2, 3, 5, 5]), residual: randn([2, 4, 5, 5]) };
  };
  const unfolded = (conv: Conv2d, bn: BatchNorm2d, x: Tensor, residual?: Tensor) => bn.forward(conv.forward(x), { residual, relu: true });
  const folded = (conv: Conv2d, bn: BatchNorm2d, x: Tensor, residual?: Tensor) => noGrad(() => convBn(conv, bn, x, { residual, relu: true }));
  const expectSame = (a: Tensor, b: Tensor) => vals(a).forEach((v, i) => expect(v).toBeCloseTo(vals(b)[i], 5));

  it('folds the batch-norm into the convolution at inference, epilogue included', () => {
    const { conv, bn, x, residual } = pair();
    expectSame(folded(conv, bn, x, residual), noGrad(() => unfolded(conv, bn, x, residual)));
  });

  it('never serves a stale fold: every source tensor changing in place is seen', () => {
    const { conv, bn, x } = pair();
    folded(conv, bn, x);
    const writes: [string, () => void][] = [
      ['conv weight (optimizer step)', () => new SGD([conv.weight], { lr: 0.5 }).step()],
      ['conv bias (load)', () => conv.bias!.assign(tensor([1, 2, 3, 4]))],
      ['bn weight', () => bn.weight.assign(tensor([2, 2, 2, 2]))],
      ['bn bias', () => bn.bias.assign(tensor([0.5, 0.5, 0.5, 0.5]))],
      ['running mean', () => bn.runningMean.assign(tensor([1, 1, 1, 1]))],
      ['running var', () => bn.runningVar.assign(tensor([3, 3, 3, 3]))],
      ['whole state dict', () => conv.loadStateDict(new Conv2d(3, 4, 3, { padding: 1 }).stateDict())],
    ];
    conv.weight.grad = randn(conv.weight.shape).keep();
    for (const [what, write] of writes) {
      write();
      const want = noGrad(() => unfolded(conv, bn, x));
      const got = folded(conv, bn, x);
      try {
        expectSame(got, want);
      } catch (e) {
        throw new Error(`after a write to the ${what}: ${(e as Error).message}`);
      }
    }
  });

  it('reuses the fold while nothing changed, and frees it with clearCaches', () => {
    const { conv, bn, x } = pair();
    folded(conv, bn, x);
    const held = getBackend().memory().liveBuffers;
    folded(conv, bn, x).dispose();
    expect(getBackend().memory().liveBuffers).toBe(held);
    conv.clearCaches();
    expect(getBackend().memory().liveBuffers).toBe(held - 2);
  });

  it('runs unfolded in training and when gradients are on, so they reach the batch-norm', () => {
    const { conv, bn, x } = pair();
    const y = convBn(conv, bn, x, { relu: true });
    sum(y).backward();
    expect(bn.weight.grad).not.toBeNull();
    expect(conv.weight.grad).not.toBeNull();
  });
});

describe('training', () => {
  it('a small CNN (conv-bn-relu-pool-linear) drives the loss on a fixed batch below a tenth of its start', () => {
    const net = new SmallCnn();
    const x = randn([6, 1, 6, 6]);
    const labels = tensor([0, 1, 2, 0, 1, 2], [6], 'i32');
    const opt = new SGD(net.parameters(), { lr: 0.1, momentum: 0.9 });
    const losses: number[] = [];
    for (let step = 0; step < 60; step++) {
      const loss = tidy(() => {
        const l = crossEntropy(net.forward(x), labels);
        l.backward();
        return l;
      });
      losses.push(vals(loss)[0]);
      loss.dispose();
      opt.step();
      opt.zeroGrad();
    }
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] / 10);
  });

  it('AdaptiveAvgPool2d and Flatten give [N, C]', () => {
    const y = new Sequential(new AdaptiveAvgPool2d(1), new Flatten()).forward(rand([2, 3, 4, 4]));
    expect(y.shape).toEqual([2, 3]);
    expect(getBackend().name).toBe('reference');
  });

  it('a module built on the meta backend becomes a real one by loading a state dict on the active backend', () => {
    const reference = getBackend();
    setBackend(createMetaBackend());
    const net = new Sequential(new Linear(3, 2), new BatchNorm2d(2));
    setBackend(reference);
    net.loadStateDict({
      '0.weight': tensor([1, 0, 0, 0, 1, 0], [2, 3]), '0.bias': tensor([1, -1]),
      '1.weight': tensor([2, 3]), '1.bias': tensor([0, 1]), '1.running_mean': zeros([2]), '1.running_var': tensor([1, 1]),
      '1.num_batches_tracked': zeros([], 'i32'),
    });
    net.eval();
    vals(net.forward(tensor([5, 6, 7], [1, 3]))).forEach((v, i) => expect(v).toBeCloseTo([12 / Math.sqrt(1 + 1e-5), 1 + 15 / Math.sqrt(1 + 1e-5)][i], 4));
    expect(net.parameters().every((p) => p.dataSync().length === p.size)).toBe(true);
  });

  it("AdaptiveAvgPool2d to other sizes: PyTorch's overlapping windows, and repeats when growing", () => {
    // 1 x 1 x 3 x 4 -> 2 x 3: rows {0,1} and {1,2}; columns {0,1}, {1,2}, {2,3}.
    const x = tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [1, 1, 3, 4]);
    const y = new AdaptiveAvgPool2d([2, 3]).forward(x);
    expect(y.shape).toEqual([1, 1, 2, 3]);
    vals(y).forEach((v, i) => expect(v).toBeCloseTo([3.5, 4.5, 5.5, 7.5, 8.5, 9.5][i], 5));
    vals(new AdaptiveAvgPool2d([2, 2]).forward(tensor([1, 2], [1, 1, 1, 2]))).forEach((v, i) => expect(v).toBeCloseTo([1, 2, 1, 2][i], 6));
    expect(new AdaptiveAvgPool2d([3, 4]).forward(x)).toBe(x);
  });

  it('LocalResponseNorm has no state and divides by the scale of PyTorch, alpha over size', () => {
    const lrn = new LocalResponseNorm(2, { alpha: 2, beta: 1, k: 1 });
    expect(lrn.stateDict().size).toBe(0);
    vals(lrn.forward(tensor([1, 2, 3], [1, 3, 1]))).forEach((v, i) => expect(v).toBeCloseTo([1 / 2, 2 / 6, 3 / 14][i], 6));
  });

  it('Dropout masks in training (a new mask each call, reproducible from the seed) and passes through in eval', () => {
    const drop = new Dropout(0.5);
    const x = tensor(Array.from({ length: 64 }, (_, i) => i + 1), [64]);
    manualSeed(11);
    const first = vals(drop.forward(x));
    const second = vals(drop.forward(x));
    expect(first.every((v, i) => v === 0 || v === 2 * (i + 1))).toBe(true);
    expect(first.filter((v) => v === 0).length).toBeGreaterThan(16);
    expect(first.filter((v) => v === 0).length).toBeLessThan(48);
    expect(second).not.toEqual(first);
    manualSeed(11);
    expect(vals(drop.forward(x))).toEqual(first);
    drop.eval();
    expect(drop.forward(x)).toBe(x);
    expect(() => new Dropout(1.5)).toThrow('p must be in [0, 1]');
  });

  it('Dropout sends the gradient through the mask of the forward', () => {
    const x = tensor(Array.from({ length: 40 }, (_, i) => i - 20.5), [40]).requireGrad();
    const y = new Dropout(0.25).forward(x);
    sum(y).backward();
    const kept = vals(y).map((v) => (v !== 0 ? 1 : 0));
    vals(x.grad!).forEach((g, i) => expect(g).toBeCloseTo(kept[i] / 0.75, 6));
  });
});

describe('BatchNorm2d with crossReplicaSum (sync batch-norm)', () => {
  // One process: the sum across replicas is the identity, so the composed path must give the fused op's results.
  const identity = (t: Tensor) => customOp('identity', { x: t }, () => [clone(t)], (_c, [dy]) => ({ x: dy }))[0];

  it('gives the fused batch-norm outputs, gradients and running statistics', () => {
    const run = (sync: boolean) => {
      manualSeed(3);
      const bn = new BatchNorm2d(3);
      if (sync) bn.crossReplicaSum = identity;
      noGrad(() => {
        bn.weight.assign(tensor([0.5, 1, 2]));
        bn.bias.assign(tensor([0.1, -0.2, 0.3]));
      });
      const x = add(mul(randn([4, 3, 5, 5], { seed: 11 }), 3), 1).requireGrad();
      const residual = randn([4, 3, 5, 5], { seed: 12 });
      const y = bn.forward(x, { residual, relu: true });
      sum(mul(y, randn([4, 3, 5, 5], { seed: 13 }))).backward();
      return { y: vals(y), dx: vals(x.grad!), dw: vals(bn.weight.grad!), db: vals(bn.bias.grad!), rm: vals(bn.runningMean), rv: vals(bn.runningVar) };
    };
    const fused = run(false);
    const sync = run(true);
    for (const k of Object.keys(fused) as (keyof typeof fused)[])
      sync[k].forEach((v, i) => expect(v, `${k}[${i}]`).toBeCloseTo(fused[k][i], 4));
  });

  it('sums through the given function, counting every replica (two replicas holding the same batch)', () => {
    // Doubling every sum is what two replicas with identical batches produce: the statistics, and so
    // the output, stay those of one batch; the unbiased running variance uses the count 2n.
    const twice = (t: Tensor) => customOp('twice', { x: t }, () => [mul(t, 2)], (_c, [dy]) => ({ x: mul(dy!, 2) }))[0];
    const x = randn([2, 2, 3, 3], { seed: 5 });
    const one = new BatchNorm2d(2);
    const two = new BatchNorm2d(2);
    two.crossReplicaSum = twice;
    const a = vals(one.forward(x));
    const b = vals(two.forward(x));
    b.forEach((v, i) => expect(v).toBeCloseTo(a[i], 5));
    const n = 18;
    const rvOne = vals(one.runningVar).map((v) => ((v - 0.9) / 0.1) * ((n - 1) / n));
    const rvTwo = vals(two.runningVar).map((v) => ((v - 0.9) / 0.1) * ((2 * n - 1) / (2 * n)));
    rvTwo.forEach((v, i) => expect(v).toBeCloseTo(rvOne[i], 5));
  });
});
