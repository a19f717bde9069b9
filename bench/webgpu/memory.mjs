// 1,000 training steps on the WebGPU backend must hold flat GPU memory: after the first steps the
// buffer pool serves every allocation, so held and peak bytes and the count of GPU buffers ever
// created stop growing. Prints memory() every --every steps as JSON lines, then a summary line
// with the growth after the warm-up (all zero when memory is flat; the exit code says so too).
//   node bench/webgpu/memory.mjs [--steps=1000] [--every=100] [--model=small|resnet20] [--batch=8]
import { parseArgs } from 'node:util';
import { core, emit, openWebGpu, resnet } from './lib.mjs';
import { positiveInts } from '../args.mjs';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '1000' },
    every: { type: 'string', default: '100' },
    model: { type: 'string', default: 'small' },
    batch: { type: 'string', default: '8' },
  },
});
const count = positiveInts(values);
if (!['small', 'resnet20'].includes(values.model)) throw new Error(`--model must be small or resnet20, got '${values.model}'`);
const opts = { model: values.model, steps: count('steps'), every: count('every'), batch: count('batch') };
const { BatchNorm2d, Conv2d, Linear, Module, add, flatten, globalAvgPool2d, relu } = core;

/** conv-bn-relu, one residual block, global pooling and a classifier: every kernel a ResNet step uses. */
class SmallResNet extends Module {
  stem = this.registerModule('stem', new Conv2d(3, 8, 3, { padding: 1, bias: false }));
  bn0 = this.registerModule('bn0', new BatchNorm2d(8));
  conv1 = this.registerModule('conv1', new Conv2d(8, 8, 3, { padding: 1, bias: false }));
  bn1 = this.registerModule('bn1', new BatchNorm2d(8));
  fc = this.registerModule('fc', new Linear(8, 10));
  forward(x) {
    const h = relu(this.bn0.forward(this.stem.forward(x)));
    return this.fc.forward(flatten(globalAvgPool2d(relu(add(h, this.bn1.forward(this.conv1.forward(h)))))));
  }
}

const backend = await openWebGpu();
core.manualSeed(0);
const model = opts.model === 'resnet20' ? resnet.resnet20() : new SmallResNet();
const side = opts.model === 'resnet20' ? 32 : 16;
const trainer = new resnet.Trainer({ model, recipe: { ...resnet.paperCifar, lr: 0.01 }, itersPerEpoch: 100, totalIterations: opts.steps });
const n = opts.batch;
const batch = {
  images: Float32Array.from({ length: n * 3 * side * side }, (_, i) => Math.sin(i * 0.37)),
  labels: Int32Array.from({ length: n }, (_, i) => i % 10),
  shape: [n, 3, side, side],
};

const sample = (step, loss) => {
  const m = backend.memory();
  const c = backend.counters();
  const s = { bench: 'webgpu memory', device: backend.device, model: opts.model, step, loss, ...m, buffersCreated: c.buffersCreated, submits: c.submits, heapUsedBytes: process.memoryUsage().heapUsed };
  emit(s);
  return s;
};

const samples = [];
const t0 = performance.now();
for (let step = 1; step <= opts.steps; step++) {
  const { loss } = await trainer.trainStep(batch);
  if (step === 1 || step % opts.every === 0) samples.push(sample(step, loss));
}
// Growth from the first sample after the warm-up (the first `every` steps) to the last.
const first = samples.find((s) => s.step >= opts.every) ?? samples[0];
const last = samples.at(-1);
const growth = Object.fromEntries(['liveBytes', 'liveBuffers', 'heldBytes', 'peakBytes', 'buffersCreated'].map((k) => [k, last[k] - first[k]]));
const flat = Object.values(growth).every((g) => g === 0);
emit({ bench: 'webgpu memory summary', device: backend.device, model: opts.model, steps: opts.steps, from: first.step, seconds: (performance.now() - t0) / 1000, growth, flat });
backend.dispose();
process.exitCode = flat ? 0 : 1;
