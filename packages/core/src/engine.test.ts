import { beforeEach, describe, expect, it } from 'vitest';
import { add, exp, matmul, mul, reshape, sum, tensor, zeros } from './api.js';
import { customOp, getBackend, noGrad, runOp, setBackend, tidy, Tensor } from './engine.js';
import { createReferenceBackend } from './testing/reference-backend.js';

const live = () => getBackend().memory().liveBuffers;
const values = (t: Tensor) => Array.from(t.dataSync());

beforeEach(() => {
  setBackend(createReferenceBackend());
});

describe('tidy', () => {
  it('frees every intermediate and keeps what the function returns', () => {
    const x = tensor([1, 2, 3]);
    const before = live();
    const y = tidy(() => add(mul(x, 2), exp(x)));
    expect(live()).toBe(before + 1);
    expect(values(y)).toEqual([2 + Math.fround(Math.E), 4 + Math.fround(Math.exp(2)), 6 + Math.fround(Math.exp(3))].map(Math.fround));
  });

  it('keeps tensors returned inside objects and arrays, and kept ones', () => {
    const before = live();
    let kept: Tensor | undefined;
    const out = tidy(() => {
      kept = tensor([1]).keep();
      tensor([2]);
      return { a: [tensor([3])], b: new Map([['c', tensor([4])]]) };
    });
    expect(live()).toBe(before + 3);
    expect(values(out.a[0])).toEqual([3]);
    kept!.dispose();
    expect(live()).toBe(before + 2);
  });

  it('nests: the inner result belongs to the outer scope', () => {
    const before = live();
    tidy(() => {
      const inner = tidy(() => tensor([1, 2]));
      expect(inner.isDisposed).toBe(false);
    });
    expect(live()).toBe(before);
  });

  it('frees what it made when the function throws', () => {
    const before = live();
    expect(() =>
      tidy(() => {
        tensor([1, 2]);
        add(tensor([1, 2, 3]), tensor([1, 2]));
      }),
    ).toThrow(/binary/);
    expect(live()).toBe(before);
  });

  it('rejects async functions', () => {
    expect(() => tidy(async () => tensor([1]))).toThrow(/synchronous/);
  });

  it('supports `using`', () => {
    const before = live();
    {
      using t = tensor([1, 2, 3]);
      expect(t.size).toBe(3);
    }
    expect(live()).toBe(before);
  });
});

describe('reshape views', () => {
  it('share storage until the last view is gone', () => {
    const before = live();
    const x = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const v = reshape(x, [3, -1]);
    expect(v.shape).toEqual([3, 2]);
    expect(live()).toBe(before + 1);
    x.dispose();
    expect(values(v)).toEqual([1, 2, 3, 4, 5, 6]);
    v.dispose();
    expect(live()).toBe(before);
  });

  it('names both shapes when sizes differ', () => {
    expect(() => reshape(tensor([1, 2, 3]), [2, 2])).toThrow(/\[3\].*\[2, 2\]/);
  });

  it('refuses to read a disposed tensor', () => {
    const x = tensor([1]);
    x.dispose();
    expect(() => x.dataSync()).toThrow(/disposed/);
  });
});

describe('autograd', () => {
  it('accumulates gradients of a shared input over two paths', () => {
    const x = tensor([1, 2, 3]).requireGrad();
    const loss = sum(add(mul(x, x), mul(x, 3)));
    loss.backward();
    expect(values(x.grad!)).toEqual([5, 7, 9]);
    // a second backward adds into .grad, as in PyTorch
    sum(mul(x, 2)).backward();
    expect(values(x.grad!)).toEqual([7, 9, 11]);
  });

  it('flows through reshape views and matmul', () => {
    const a = tensor([1, 2, 3, 4], [2, 2]).requireGrad();
    const b = tensor([[1, 0], [2, 1]]);
    sum(reshape(matmul(a, b), [4])).backward();
    // d/dA sum(A·B) = 1·Bᵀ: every row is the row sums of B
    expect(values(a.grad!)).toEqual([1, 3, 1, 3]);
  });

  it('records nothing under noGrad', () => {
    const x = tensor([1, 2]).requireGrad();
    const y = noGrad(() => mul(x, 2));
    expect(y.requiresGrad).toBe(false);
    expect(() => sum(y).backward()).toThrow(/does not require gradients/);
  });

  it('keeps tensors a graph needs after tidy disposes them, and frees them after backward', () => {
    const x = tensor([0.5, -1, 2]).requireGrad();
    const before = live();
    const loss = tidy(() => sum(exp(mul(x, 2))));
    expect(live()).toBeGreaterThan(before + 1); // intermediates held for backward
    loss.backward();
    loss.dispose();
    expect(live()).toBe(before + 1); // only x.grad remains
    expect(values(x.grad!)).toEqual([0.5, -1, 2].map((v) => Math.fround(2 * Math.fround(Math.exp(2 * v)))));
  });

  it('releases a graph that is dropped without backward', () => {
    const x = tensor([1, 2, 3]).requireGrad();
    const before = live();
    tidy(() => {
      sum(exp(mul(x, 2)));
    });
    expect(live()).toBe(before);
  });

  it('holds flat memory over many steps', () => {
    const w = zeros([4, 3]).requireGrad();
    const x = tensor(Array.from({ length: 8 }, (_, i) => i / 8), [2, 4]);
    const counts: number[] = [];
    for (let step = 0; step < 30; step++) {
      tidy(() => {
        const loss = sum(mul(matmul(x, w), 0.1));
        loss.backward();
      });
      w.grad?.dispose();
      w.grad = null;
      counts.push(live());
    }
    expect(new Set(counts.slice(2)).size).toBe(1);
  });

  it('needs an explicit gradient for a non-scalar output', () => {
    const x = tensor([1, 2]).requireGrad();
    expect(() => mul(x, 2).backward()).toThrow(/non-scalar/);
    mul(x, 2).backward(tensor([1, 10]));
    expect(values(x.grad!)).toEqual([2, 20]);
  });

  it('refuses gradients on i32 tensors', () => {
    expect(() => tensor([1], [1], 'i32').requireGrad()).toThrow(/f32/);
  });
});

describe('gradient hooks', () => {
  it('run once per leaf with its complete gradient, while the rest of the backward pass is still to run', () => {
    const w1 = tensor([1, 2]).requireGrad();
    const w2 = tensor([3, 4]).requireGrad();
    const seen: [string, number[], boolean][] = [];
    w1.onGradReady((t) => seen.push(['w1', values(t.grad!), true]));
    // w2 is used twice (its gradient has two parts) and sits nearer the loss than w1, whose
    // gradient does not exist yet when w2's is complete.
    const remove = w2.onGradReady((t) => seen.push(['w2', values(t.grad!), w1.grad === null]));
    sum(mul(mul(mul(w1, 2), w2), w2)).backward();
    // L = Σ 2·w1·w2²: d/dw2 = 4·w1·w2 = [12, 32]; d/dw1 = 2·w2² = [18, 32]
    expect(seen).toEqual([['w2', [12, 32], true], ['w1', [18, 32], true]]);
    remove();
    sum(mul(w2, 1)).backward();
    expect(seen).toHaveLength(2);
  });
});

describe('customOp', () => {
  it('records a step outside the op interface with its own gradient rule', () => {
    const x = tensor([1, 2, 3]).requireGrad();
    // "times ten", with a rule that says so: the chain rule goes through it.
    const [y] = customOp('timesTen', { x }, () => [mul(x, 10)], (_ctx, [dy]) => ({ x: mul(dy!, 10) }));
    sum(mul(y, y)).backward();
    expect(values(y)).toEqual([10, 20, 30]);
    expect(values(x.grad!)).toEqual([200, 400, 600]);
    expect(() => customOp('same', { x }, () => [x], () => ({}))).toThrow(/new tensors/);
  });
});

describe('dispatch errors', () => {
  it('names the op and both shapes on a broadcast mismatch', () => {
    expect(() => add(tensor([1, 2, 3]), tensor([1, 2]))).toThrow(/binary\(add\).*\[3\].*\[2\]/);
  });

  it('tells what to do when no backend is selected', async () => {
    const { setBackend: set } = await import('./engine.js');
    set(null as never);
    expect(() => tensor([1])).toThrow(/useBackend/);
  });
});

describe('versions', () => {
  it('number every storage once, follow in-place writes, and are shared by views', () => {
    const a = tensor([1, 2, 3, 4]);
    const b = tensor([1, 2, 3, 4]);
    expect(a.version).not.toBe(b.version);
    const view = reshape(a, [2, 2]);
    expect(view.version).toBe(a.version);
    const before = a.version;
    a.assign(tensor([5, 6, 7, 8]));
    expect(a.version).toBeGreaterThan(before);
    const m = zeros([4]);
    const [p, mv] = [a.version, m.version];
    runOp('sgdUpdate', { param: a, grad: b, momentum: m }, { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true });
    expect(a.version).toBeGreaterThan(p);
    expect(m.version).toBeGreaterThan(mv);
    expect(b.version).toBeLessThan(p);
  });
});
