// Where a ResNet training step (or, with --infer, an inference) spends its time on the CPU backend:
// milliseconds per step and calls per step of each op, one JSON line per op, then the step. `ms` is
// kernel wall time (the calling thread's view); `cpuMs` is the process's CPU time in the kernel, all
// threads: on a machine shared with other work it moves less than wall time does.
//
//   node bench/cpu/profile.mjs [--model resnet20] [--batch 128] [--threads N] [--steps 4] [--provider native|wasm] [--infer]
//
// Needs the built packages (`pnpm build`).
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { noGrad, rand, setBackend, tidy } from '@residual/core';
import { createCpuBackend } from '@residual/backend-cpu';
import * as resnet from '@residual/resnet';
import { positiveInts } from '../args.mjs';


const { values: opts } = parseArgs({
  options: {
    model: { type: 'string', default: 'resnet20' },
    batch: { type: 'string', default: '128' },
    threads: { type: 'string', default: process.env.RESIDUAL_THREADS ?? String(availableParallelism()) },
    steps: { type: 'string', default: '4' },
    provider: { type: 'string' },
    infer: { type: 'boolean', default: false },
  },
});
const count = positiveInts(opts);
const [batch, threads, steps] = [count('batch'), count('threads'), count('steps')];

const backend = createCpuBackend({ threads, provider: opts.provider });
const totals = new Map();
for (const [name, kernel] of Object.entries(backend.kernels)) {
  backend.kernels[name] = (...args) => {
    const start = performance.now();
    const cpu = process.cpuUsage();
    const out = kernel(...args);
    const used = process.cpuUsage(cpu);
    const t = totals.get(name) ?? { ms: 0, cpuMs: 0, calls: 0 };
    t.ms += performance.now() - start;
    t.cpuMs += (used.user + used.system) / 1000;
    t.calls++;
    totals.set(name, t);
    return out;
  };
}
setBackend(backend);

const model = resnet.createModel(opts.model);
const size = resnet.isCifarModel(opts.model) ? 32 : 224;
const classes = size === 32 ? 10 : 1000;
const trainer = new resnet.Trainer({ model, recipe: resnet.paperCifar, itersPerEpoch: 100, totalIterations: 1000 });
const images = Float32Array.from({ length: batch * 3 * size * size }, (_, i) => Math.sin(i) * 2);
const labels = Int32Array.from({ length: batch }, (_, i) => i % classes);
const data = { images, labels, shape: [batch, 3, size, size] };
const x = rand([batch, 3, size, size], { seed: 1 });
if (opts.infer) model.eval();
const step = async () => {
  if (!opts.infer) return trainer.trainStep(data);
  const y = noGrad(() => tidy(() => model.forward(x)));
  await y.data();
  y.dispose();
};
for (let i = 0; i < 2; i++) await step();
totals.clear();
const start = performance.now();
const cpu = process.cpuUsage();
for (let i = 0; i < steps; i++) await step();
const used = process.cpuUsage(cpu);
const stepMs = (performance.now() - start) / steps;
const round = (v) => Math.round(v * 10) / 10;
const mode = opts.infer ? 'infer' : 'train';
for (const [op, t] of [...totals].sort((a, b) => b[1].ms - a[1].ms)) {
  console.log(JSON.stringify({
    bench: 'profile', model: opts.model, mode, batch, op, msPerStep: round(t.ms / steps), cpuMsPerStep: round(t.cpuMs / steps), callsPerStep: t.calls / steps,
    share: Number((t.ms / steps / stepMs).toFixed(3)),
  }));
}
console.log(JSON.stringify({
  bench: 'profile', model: opts.model, mode, batch, op: 'step', msPerStep: round(stepMs), cpuMsPerStep: round((used.user + used.system) / 1000 / steps),
  imagesPerSecond: round((batch * 1000) / stepMs), threads, device: backend.device,
}));
backend.dispose();
