// One rank of the scaling benchmark: ResNet-20 training steps on synthetic CIFAR-sized batches
// (the global batch split among the ranks), timed after warm-up; rank 0 prints images/s.
// argv: globalBatch, warmup, steps. Under mpirun it trains data-parallel; run alone, as one process.
import { manualSeed, setBackend } from '@residual/core';
import { createCpuBackend } from '@residual/backend-cpu';
import { DataParallel, finalize, init, launchInfo } from '@residual/distributed';
import { paperCifar, resnet20, Trainer } from '@residual/resnet';

const [globalBatch, warmup, steps] = process.argv.slice(2).map(Number);
const group = launchInfo() ? init() : null;
const ranks = group?.worldSize ?? 1;
setBackend(createCpuBackend());
manualSeed(1);
const model = resnet20();
const replicas = group ? new DataParallel(group, model) : undefined;
// Time this rank spends waiting for gradients after its own backward: communication plus waiting
// for a slower rank.
let waited = 0;
if (replicas) {
  const endStep = replicas.endStep.bind(replicas);
  replicas.endStep = async (metrics) => {
    const t = performance.now();
    const r = await endStep(metrics);
    waited += performance.now() - t;
    return r;
  };
}
const trainer = new Trainer({ model, recipe: { ...paperCifar, lr: 0.01 }, itersPerEpoch: 100, totalIterations: 1000, replicas });
await trainer.start();
const n = globalBatch / ranks;
let s = 1 + (group?.rank ?? 0);
const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
const batch = { images: Float32Array.from({ length: n * 3 * 32 * 32 }, rnd), labels: Int32Array.from({ length: n }, (_, i) => i % 10), shape: [n, 3, 32, 32] };
for (let i = 0; i < warmup; i++) await trainer.trainStep(batch);
await group?.barrier();
waited = 0;
const started = performance.now();
for (let i = 0; i < steps; i++) await trainer.trainStep(batch);
await group?.barrier();
const seconds = (performance.now() - started) / 1000;
if (!group || group.rank === 0) console.log(JSON.stringify({ imagesPerSecond: (steps * globalBatch) / seconds, gradientWait: waited / 1000 / seconds }));
replicas?.dispose();
finalize();
