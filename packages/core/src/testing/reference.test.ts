import { describe, expect, it } from 'vitest';
import { conv2dGeometry, pool2dGeometry } from '../geometry.js';
import { philox4x32, philoxFill } from '../philox.js';
import { numericGrad, ref, refTensor, type RefTensor } from './reference.js';

const close = (t: RefTensor, want: number[], shape?: number[], digits = 9) => {
  if (shape) expect(t.shape).toEqual(shape);
  expect(t.data.length).toBe(want.length);
  t.data.forEach((v, i) => expect(v).toBeCloseTo(want[i], digits));
};

const seq = (shape: number[], f: (i: number) => number = (i) => i + 1) => refTensor(shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => f(i)));

describe('reference against hand-computed values', () => {
  const x = seq([1, 1, 3, 3]); // 1..9
  const w = seq([1, 1, 2, 2]); // 1..4

  it('conv2d: valid, padded+strided, dilated, grouped', () => {
    close(ref.conv2d({ x, w }, conv2dGeometry(x.shape, w.shape))[0], [37, 47, 67, 77], [1, 1, 2, 2]);
    close(ref.conv2d({ x, w }, conv2dGeometry(x.shape, w.shape, { stride: 2, padding: 1 }))[0], [4, 18, 36, 77], [1, 1, 2, 2]);
    close(ref.conv2d({ x, w }, conv2dGeometry(x.shape, w.shape, { dilation: 2 }))[0], [1 + 6 + 21 + 36], [1, 1, 1, 1]);
    const xg = refTensor([1, 2, 1, 1], [2, 3]);
    const wg = refTensor([2, 1, 1, 1], [10, 100]);
    close(ref.conv2d({ x: xg, w: wg }, conv2dGeometry(xg.shape, wg.shape, { groups: 2 }))[0], [20, 300]);
  });

  it('conv2d epilogue: bias per output channel, then the residual, then the ReLU', () => {
    const w2 = refTensor([2, 1, 2, 2], [1, 2, 3, 4, -1, -2, -3, -4]);
    const g = conv2dGeometry(x.shape, w2.shape);
    const bias = refTensor([2], [1, 100]);
    const residual = refTensor([1, 2, 2, 2], [0, 0, -100, 0, 0, 10, 0, 0]);
    close(ref.conv2d({ x, w: w2, bias }, g)[0], [38, 48, 68, 78, 63, 53, 33, 23]);
    close(ref.conv2d({ x, w: w2, residual }, { ...g, relu: true })[0], [37, 47, 0, 77, 0, 0, 0, 0]);
    close(ref.conv2d({ x, w: w2, bias, residual }, { ...g, relu: true })[0], [38, 48, 0, 78, 63, 63, 33, 23]);
    // scale multiplies the convolution before the bias: a folded batch-norm.
    close(ref.conv2d({ x, w: w2, scale: refTensor([2], [2, -1]), bias }, g)[0], [75, 95, 135, 155, 137, 147, 167, 177]);
  });

  it('batchNormTrain epilogue: residual added after the affine map, ReLU last', () => {
    const xs = refTensor([4, 1], [1, 2, 3, 4]);
    const s = 1 / Math.sqrt(1.25);
    const residual = refTensor([4, 1], [0, 0.5, 0, -10]);
    const [y] = ref.batchNormTrain({ x: xs, gamma: refTensor([1], [2]), beta: refTensor([1], [1]), residual }, { eps: 0, relu: true });
    close(y, [Math.max(1 - 3 * s, 0), Math.max(1.5 - s, 0), 1 + s, 0]);
  });

  it('pools: max ignores padding, avg with and without padded cells', () => {
    const g = pool2dGeometry(x.shape, { kernelSize: 2, stride: 2, padding: 1 });
    close(ref.maxPool2d({ x }, g)[0], [1, 3, 7, 9]);
    close(ref.avgPool2d({ x }, g)[0], [1 / 4, 5 / 4, 11 / 4, 28 / 4]);
    close(ref.avgPool2d({ x }, { ...g, countIncludePad: false })[0], [1, 2.5, 5.5, 7]);
    // ties: the gradient goes to the first maximum only
    const t = refTensor([1, 1, 1, 3], [5, 5, 1]);
    close(ref.maxPool2dBackward({ dy: refTensor([1, 1, 1, 1], [2]), x: t }, pool2dGeometry(t.shape, { kernelSize: [1, 3] }))[0], [2, 0, 0]);
  });

  it('batchNormTrain: biased variance, gamma and beta', () => {
    const [y, mean, invstd] = ref.batchNormTrain({ x: refTensor([4, 1], [1, 2, 3, 4]), gamma: refTensor([1], [2]), beta: refTensor([1], [1]) }, { eps: 0 });
    const s = 1 / Math.sqrt(1.25);
    close(mean, [2.5]);
    close(invstd, [s]);
    close(y, [1 - 3 * s, 1 - s, 1 + s, 1 + 3 * s]);
  });

  it('localResponseNorm: a window of size/2 channels before and (size-1)/2 after, zeros past the edges', () => {
    const t = refTensor([1, 3, 1, 1], [1, 2, 3]);
    // alpha/size = 1, beta = 1, k = 1: y_c = x_c / (1 + Σ x² over the window).
    close(ref.localResponseNorm({ x: t }, { size: 3, alpha: 3, beta: 1, k: 1 })[0], [1 / 6, 2 / 15, 3 / 14], [1, 3, 1, 1]);
    // An even size looks one channel further back than ahead (PyTorch pads size/2 before, (size-1)/2 after).
    close(ref.localResponseNorm({ x: t }, { size: 2, alpha: 2, beta: 1, k: 1 })[0], [1 / 2, 2 / 6, 3 / 14]);
    close(ref.localResponseNorm({ x: t }, { size: 1, alpha: 1, beta: 0.5, k: 2 })[0], [1 / Math.sqrt(3), 2 / Math.sqrt(6), 3 / Math.sqrt(11)]);
  });

  it('dropout keeps exactly where the uniform draw of the same key and counter is at least p (p·2^32 whole)', () => {
    const n = 4001;
    const ones = refTensor([n], new Float64Array(n).fill(1));
    for (const p of [0.25, 0.5]) {
      const attrs = { p, seed: [7, 9], counter: [0xfffffff0, 2] } as const;
      const u = philoxFill(new Float32Array(n), 'uniform', attrs.seed, attrs.counter, 0, 1);
      close(ref.dropout({ x: ones }, attrs)[0], Array.from(u, (v) => (v >= p ? 1 / (1 - p) : 0)), [n], 12);
    }
    close(ref.dropout({ x: refTensor([3], [1, -2, 3]) }, { p: 0, seed: [1, 1], counter: [0, 0] })[0], [1, -2, 3]);
  });

  it('softmaxCrossEntropy: plain, smoothed, huge logits, bad label', () => {
    const logits = refTensor([4, 2], [0, 0, 0, Math.log(3), 1e4, 0, 1, 2]);
    const labels = refTensor([4], [0, 1, 1, 2]);
    const plain = ref.softmaxCrossEntropy({ logits, labels }, { smoothing: 0 })[0].data;
    [Math.log(2), -Math.log(0.75), 1e4].forEach((v, i) => expect(plain[i]).toBeCloseTo(v, 12));
    const smoothed = ref.softmaxCrossEntropy({ logits, labels }, { smoothing: 0.1 })[0].data;
    expect(smoothed[1]).toBeCloseTo(-0.9 * Math.log(0.75) - 0.05 * (Math.log(0.25) + Math.log(0.75)), 12);
    expect(smoothed[3]).toBeNaN();
  });

  it('sgdUpdate: PyTorch formula over two steps', () => {
    const p0 = refTensor([1], [1]);
    const g = refTensor([1], [0.5]);
    const base = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0.1, nesterov: false };
    const [p1, m1] = ref.sgdUpdate({ param: p0, grad: g, momentum: refTensor([1], [123]) }, { ...base, firstStep: true });
    close(p1, [0.94]);
    close(m1, [0.6]);
    close(ref.sgdUpdate({ param: p1, grad: g, momentum: m1 }, { ...base, firstStep: false })[0], [0.8266]);
    close(ref.sgdUpdate({ param: p1, grad: g, momentum: m1 }, { ...base, dampening: 0.5, firstStep: false })[0], [0.8563]);
    close(ref.sgdUpdate({ param: p0, grad: g, momentum: m1 }, { ...base, nesterov: true, firstStep: true })[0], [0.886]);
    close(ref.sgdUpdate({ param: p0, grad: g, momentum: m1 }, { ...base, momentum: 0, firstStep: false })[0], [0.94]);
  });

  it('topk and argmax break ties toward the lower index', () => {
    const t = refTensor([2, 4], [1, 3, 3, 2, 0, 0, 0, 0]);
    const [v, i] = ref.topk({ x: t }, { k: 3 });
    close(v, [3, 3, 2, 0, 0, 0]);
    close(i, [1, 2, 3, 0, 1, 2]);
    close(ref.argmax({ x: t }, { axis: 1 })[0], [1, 0], [2, 1]);
  });

  it('matmul with transposes and broadcast batch', () => {
    const a = refTensor([1, 2, 2], [1, 2, 3, 4]);
    const b = refTensor([2, 2, 1], [1, 1, 0, 1]);
    close(ref.matmul({ a, b }, { transA: false, transB: false })[0], [3, 7, 2, 4], [2, 2, 1]);
    close(ref.matmul({ a, b }, { transA: true, transB: false })[0], [4, 6, 3, 4], [2, 2, 1]);
  });

  it('layout ops: permute, slice, pad, concat, broadcast', () => {
    const t = seq([2, 3]);
    close(ref.permute({ x: t }, { perm: [1, 0] })[0], [1, 4, 2, 5, 3, 6], [3, 2]);
    close(ref.slice({ x: t }, { begin: [1, 1], size: [1, 2] })[0], [5, 6], [1, 2]);
    close(ref.pad({ x: t }, { pads: [[0, 1], [1, 0]], value: -1 })[0], [-1, 1, 2, 3, -1, 4, 5, 6, -1, -1, -1, -1], [3, 4]);
    close(ref.concat({ xs: [t, seq([2, 1], (i) => 9 - i)] }, { axis: 1 })[0], [1, 2, 3, 9, 4, 5, 6, 8], [2, 4]);
    close(ref.broadcastTo({ x: seq([2, 1]) }, { shape: [3, 2, 2] })[0], [1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2]);
    close(ref.binary({ a: seq([3, 1]), b: seq([2]) }, { fn: 'sub' })[0], [0, -1, 1, 0, 2, 1], [3, 2]);
  });

  it('reduce keeps axes, mean divides by the reduced count, empty sums are 0', () => {
    const t = seq([2, 3, 2]);
    close(ref.reduce({ x: t }, { fn: 'sum', axes: [0, 2] })[0], [1 + 2 + 7 + 8, 3 + 4 + 9 + 10, 5 + 6 + 11 + 12], [1, 3, 1]);
    close(ref.reduce({ x: t }, { fn: 'mean', axes: [1] })[0], [3, 4, 9, 10], [2, 1, 2]);
    close(ref.reduce({ x: t }, { fn: 'min', axes: [0, 1, 2] })[0], [1], [1, 1, 1]);
    close(ref.reduce({ x: refTensor([2, 0]) }, { fn: 'sum', axes: [1] })[0], [0, 0], [2, 1]);
  });
});

describe('reference backward ops agree with finite differences of the forward ops', () => {
  let s = 7;
  const rnd = (shape: number[]) => seq(shape, () => ((s = (s * 48271) % 2147483647) / 2147483647) * 2 - 1);

  it('conv2d backward data and filter (strided, padded, dilated, grouped)', () => {
    const x = rnd([2, 4, 6, 5]);
    const w = rnd([6, 2, 3, 2]);
    const g = conv2dGeometry(x.shape, w.shape, { stride: [2, 1], padding: [1, 2], dilation: [1, 2], groups: 2 });
    const dy = rnd([2, 6, g.outH, g.outW]);
    close(ref.conv2dBackwardData({ dy, w }, g)[0], [...numericGrad((t) => ref.conv2d({ x: t, w }, g)[0], x, dy.data).data], undefined, 6);
    close(ref.conv2dBackwardFilter({ x, dy }, g)[0], [...numericGrad((t) => ref.conv2d({ x, w: t }, g)[0], w, dy.data).data], undefined, 6);
  });

  it('pool backward ops', () => {
    const x = rnd([1, 2, 5, 5]);
    const g = pool2dGeometry(x.shape, { kernelSize: 3, stride: 2, padding: 1, countIncludePad: false });
    const dy = rnd([1, 2, g.outH, g.outW]);
    close(ref.maxPool2dBackward({ dy, x }, g)[0], [...numericGrad((t) => ref.maxPool2d({ x: t }, g)[0], x, dy.data).data], undefined, 6);
    close(ref.avgPool2dBackward({ dy }, g)[0], [...numericGrad((t) => ref.avgPool2d({ x: t }, g)[0], x, dy.data).data], undefined, 6);
  });

  it('localResponseNormBackward, odd and even window sizes', () => {
    const x = rnd([2, 5, 2, 3]);
    const dy = rnd([2, 5, 2, 3]);
    for (const a of [{ size: 3, alpha: 0.7, beta: 0.75, k: 2 }, { size: 4, alpha: 2, beta: 1.5, k: 1 }]) {
      const want = numericGrad((t) => ref.localResponseNorm({ x: t }, a)[0], x, dy.data);
      close(ref.localResponseNormBackward({ x, dy }, a)[0], [...want.data], undefined, 6);
    }
  });

  it('batchNormBackward and softmaxCrossEntropyBackward', () => {
    const x = rnd([3, 2, 2]);
    const gamma = rnd([2]);
    const beta = rnd([2]);
    const dy = rnd([3, 2, 2]);
    const [, mean, invstd] = ref.batchNormTrain({ x, gamma, beta }, { eps: 1e-3 });
    const [dx, dgamma, dbeta] = ref.batchNormBackward({ dy, x, gamma, mean, invstd }, {});
    const y = (xx: RefTensor, gg: RefTensor, bb: RefTensor) => ref.batchNormTrain({ x: xx, gamma: gg, beta: bb }, { eps: 1e-3 })[0];
    close(dx, [...numericGrad((t) => y(t, gamma, beta), x, dy.data).data], undefined, 6);
    close(dgamma, [...numericGrad((t) => y(x, t, beta), gamma, dy.data).data], undefined, 6);
    close(dbeta, [...numericGrad((t) => y(x, gamma, t), beta, dy.data).data], undefined, 6);

    // The fused epilogue: act(bn(x) + residual); the residual's gradient is dy through the mask.
    const residual = rnd([3, 2, 2]);
    const fused = (xx: RefTensor, gg: RefTensor, bb: RefTensor, rr: RefTensor) =>
      ref.batchNormTrain({ x: xx, gamma: gg, beta: bb, residual: rr }, { eps: 1e-3, relu: true })[0];
    const out = fused(x, gamma, beta, residual);
    const grads = ref.batchNormBackward({ dy, x, gamma, mean, invstd, y: out }, { relu: true, residual: true });
    expect(grads).toHaveLength(4);
    close(grads[0], [...numericGrad((t) => fused(t, gamma, beta, residual), x, dy.data).data], undefined, 6);
    close(grads[1], [...numericGrad((t) => fused(x, t, beta, residual), gamma, dy.data).data], undefined, 6);
    close(grads[2], [...numericGrad((t) => fused(x, gamma, t, residual), beta, dy.data).data], undefined, 6);
    close(grads[3], [...numericGrad((t) => fused(x, gamma, beta, t), residual, dy.data).data], undefined, 6);

    const logits = rnd([3, 4]);
    const labels = refTensor([3], [2, 0, 3]);
    const dloss = rnd([3]);
    const d = ref.softmaxCrossEntropyBackward({ logits, labels, dloss }, { smoothing: 0.2 })[0];
    close(d, [...numericGrad((t) => ref.softmaxCrossEntropy({ logits: t, labels }, { smoothing: 0.2 })[0], logits, dloss.data).data], undefined, 6);
  });
});

it('philox4x32-10 matches the Random123 known-answer vectors', () => {
  const hex = (v: ArrayLike<number>) => Array.from(v, (x) => x.toString(16).padStart(8, '0')).join(' ');
  expect(hex(philox4x32(0, 0, 0, 0, 0, 0))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
  const f = 0xffffffff;
  expect(hex(philox4x32(f, f, f, f, f, f))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
  expect(hex(philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0))).toBe('d16cfe09 94fdcceb 5001e420 24126ea1');
});
