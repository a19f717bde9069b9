// Run by the tests under mpirun: a small ResNet trained data-parallel through the Trainer; after
// every step each rank prints a hash of its whole state dict (parameters and buffers, bit for bit).
// argv: syncBn (0|1), overlap (0|1), steps.
import { createHash } from 'node:crypto';
import { manualSeed, setBackend } from '@residual/core';
import { createCpuBackend } from '@residual/backend-cpu';
import { CifarResNet, paperCifar, Trainer } from '@residual/resnet';
import { DataParallel, finalize, init, syncBatchNorm } from '../dist/index.js';

const [syncBn, overlap, steps] = process.argv.slice(2).map(Number);
const group = init({ timeoutSeconds: 30 });
setBackend(createCpuBackend({ threads: 1 }));
manualSeed(100 + group.rank); // different initial weights on every rank: start() must make them rank 0's
const model = new CifarResNet(1, { numClasses: 5 });
if (syncBn) syncBatchNorm(model, group);
const replicas = new DataParallel(group, model, { overlap: overlap === 1, bucketBytes: 16 << 10 });
const trainer = new Trainer({ model, recipe: { ...paperCifar, lr: 0.05 }, itersPerEpoch: 10, totalIterations: 100, replicas });
await trainer.start();

const hash = () => {
  const h = createHash('sha256');
  for (const [name, t] of model.stateDict()) h.update(name).update(new Uint8Array(t.dataSync().buffer));
  return h.digest('hex').slice(0, 16);
};
// Each rank's own images (odd sizes: 3, 4, 5 per rank), labels in [0, 5).
const batch = (step) => {
  const n = 3 + group.rank;
  let s = 7 + step * 31 + group.rank * 1009;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
  return { images: Float32Array.from({ length: n * 3 * 8 * 8 }, rnd), labels: Int32Array.from({ length: n }, (_, i) => (i + step + group.rank) % 5), shape: [n, 3, 8, 8] };
};
console.log(JSON.stringify({ rank: group.rank, step: 0, hash: hash() }));
for (let step = 1; step <= steps; step++) {
  const r = await trainer.trainStep(batch(step));
  console.log(JSON.stringify({ rank: group.rank, step, hash: hash(), loss: r.loss, images: r.images }));
}
replicas.dispose();
finalize();
