// Where a ResNet training step spends its time on the CPU backend: milliseconds per step and calls
// per step of each op (kernel wall time, the calling thread's view), one JSON line per op, then the step.
//
//   node bench/cpu/profile.mjs [--model resnet20] [--batch 128] [--threads N] [--steps 4]
//
// Needs the built packages (`pnpm build`).
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { setBackend } from '@residual/core';
import { createCpuBackend } from '@residual/backend-cpu';
import * as resnet from '@residual/resnet';
import { positiveInts } from '../args.mjs';


const { values: opts } = parseArgs({
  options: {
    model: { type: 'string', default: 'resnet20' },
    batch: { type: 'string', default: '128' },
    threads: { type: 'string', default: process.env.RESIDUAL_THREADS ?? String(availableParallelism()) },
    steps: { type: 'string', default: '4' },
  },
});
const count = positiveInts(opts);
const [batch, threads, steps] = [count('batch'), count('threads'), count('steps')];

const backend = createCpuBackend({ threads });
const totals = new Map();
for (const [name, kernel] of Object.entries(backend.kernels)) {
  backend.kernels[name] = (...args) => {
    const start = performance.now();
    const out = kernel(...args);
    const t = totals.get(name) ?? { ms: 0, calls: 0 };
    t.ms += performance.now() - start;
    t.calls++;
    totals.set(name, t);
    return out;
  };
}
setBackend(backend);

const model = resnet.createModel(opts.model);
const size = opts.model.startsWith('resnet') && Number(opts.model.slice(6)) % 6 === 2 ? 32 : 224;
const classes = size === 32 ? 10 : 1000;
const trainer = new resnet.Trainer({ model, recipe: resnet.paperCifar, itersPerEpoch: 100, totalIterations: 1000 });
const images = Float32Array.from({ length: batch * 3 * size * size }, (_, i) => Math.sin(i) * 2);
const labels = Int32Array.from({ length: batch }, (_, i) => i % classes);
const data = { images, labels, shape: [batch, 3, size, size] };
for (let i = 0; i < 2; i++) await trainer.trainStep(data);
totals.clear();
const start = performance.now();
for (let i = 0; i < steps; i++) await trainer.trainStep(data);
const stepMs = (performance.now() - start) / steps;
const round = (v) => Math.round(v * 10) / 10;
for (const [op, t] of [...totals].sort((a, b) => b[1].ms - a[1].ms)) {
  console.log(JSON.stringify({ bench: 'profile', model: opts.model, batch, op, msPerStep: round(t.ms / steps), callsPerStep: t.calls / steps, share: Number((t.ms / steps / stepMs).toFixed(3)) }));
}
console.log(JSON.stringify({ bench: 'profile', model: opts.model, batch, op: 'step', msPerStep: round(stepMs), imagesPerSecond: round((batch * 1000) / stepMs), threads, device: backend.device }));
backend.dispose();
