// How many dispatches (compute passes over device memory) the WebGPU backend records for a ResNet-20
// training step and for an eval forward, in total and by op: counts, not timings, so any adapter
// gives the same figures. Each is the second call of its kind, so the pool, the momentum buffers and
// the inference weights (batch-norm folded into the convolutions) are already in place.
//   node bench/webgpu/dispatches.mjs [--batch=8]
import { parseArgs } from 'node:util';
import { core, emit, openWebGpu, resnet } from './lib.mjs';
import { positiveInts } from '../args.mjs';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '8' } } });
const n = positiveInts(values)('batch');
const { crossEntropy, manualSeed, noGrad, setBackend, SGD, tensor, tidy } = core;

const backend = await openWebGpu();
// Every kernel wrapped, so each dispatch is charged to the op that recorded it.
const byOp = new Map();
const kernels = Object.fromEntries(
  Object.entries(backend.kernels).map(([op, kernel]) => [
    op,
    (...args) => {
      const before = backend.counters().dispatches;
      const out = kernel(...args);
      byOp.set(op, (byOp.get(op) ?? 0) + backend.counters().dispatches - before);
      return out;
    },
  ]),
);
setBackend({ ...backend, kernels });

/** Dispatches and submits of one call of `work`, by op. */
const count = async (bench, work) => {
  byOp.clear();
  const [d, s] = [backend.counters().dispatches, backend.counters().submits];
  await work();
  await backend.sync();
  const ops = Object.fromEntries([...byOp].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]));
  emit({ bench, value: backend.counters().dispatches - d, unit: 'dispatches', submits: backend.counters().submits - s, batch: n, ops, device: backend.device });
};

manualSeed(0);
const model = resnet.resnet20();
const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
const x = tensor(Float32Array.from({ length: n * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.37)), [n, 3, 32, 32]);
const y = tensor(Int32Array.from({ length: n }, (_, i) => i % 10), [n], 'i32');

const step = async () => {
  const loss = tidy(() => {
    const l = crossEntropy(model.forward(x), y);
    l.backward();
    return l;
  });
  opt.step();
  opt.zeroGrad();
  await loss.data();
  loss.dispose();
};
await step();
await count('resnet20 train step', step);

model.eval();
const forward = async () => {
  const logits = noGrad(() => model.forward(x));
  await logits.data();
  logits.dispose();
};
await forward();
await count('resnet20 eval forward', forward);
