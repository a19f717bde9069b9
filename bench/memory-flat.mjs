// A 10,000-step forward/backward/update loop of a small CNN (conv-bn-relu-pool-linear) on the CPU
// backend: device memory (the backend's live and held bytes) and the JS heap must stay flat.
// Prints one JSON line per checkpoint and a summary line with the growth from step 1,000 to the end.
import { Module, Conv2d, BatchNorm2d, Linear, SGD, crossEntropy, flatten, maxPool2d, relu, randn, tensor, tidy, setBackend, manualSeed } from '@residual/core';
import { createCpuBackend } from '@residual/backend-cpu';

const steps = Number(process.env.STEPS ?? 10_000);
const backend = setBackend(createCpuBackend());
manualSeed(0);

class SmallCnn extends Module {
  conv = this.registerModule('conv', new Conv2d(3, 8, 3, { padding: 1, bias: false }));
  bn = this.registerModule('bn', new BatchNorm2d(8));
  fc = this.registerModule('fc', new Linear(8 * 4 * 4, 10));
  forward(x) {
    return this.fc.forward(flatten(maxPool2d(relu(this.bn.forward(this.conv.forward(x))), { kernelSize: 2 })));
  }
}

const net = new SmallCnn();
const opt = new SGD(net.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
const x = randn([16, 3, 8, 8]).keep();
const y = tensor(Array.from({ length: 16 }, (_, i) => i % 10), [16], 'i32').keep();
const samples = [];
const t0 = performance.now();
for (let step = 1; step <= steps; step++) {
  tidy(() => crossEntropy(net.forward(x), y).backward());
  opt.step();
  opt.zeroGrad();
  if (step % 1000 === 0 || step === 1) {
    global.gc?.();
    const m = backend.memory();
    const s = { bench: 'memory-flat', step, liveBytes: m.liveBytes, liveBuffers: m.liveBuffers, heldBytes: m.heldBytes, heapUsedBytes: process.memoryUsage().heapUsed, rssBytes: process.memoryUsage().rss };
    samples.push(s);
    console.log(JSON.stringify(s));
  }
}
const first = samples.find((s) => s.step === 1000) ?? samples[0];
const last = samples.at(-1);
console.log(JSON.stringify({
  bench: 'memory-flat-summary', steps, seconds: (performance.now() - t0) / 1000,
  liveBytesGrowth: last.liveBytes - first.liveBytes, heldBytesGrowth: last.heldBytes - first.heldBytes,
  liveBuffersGrowth: last.liveBuffers - first.liveBuffers, heapUsedGrowthBytes: last.heapUsedBytes - first.heapUsedBytes,
  note: 'device (backend) memory must not grow at all; heap growth after GC should stay near zero',
}));
