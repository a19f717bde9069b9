import { manualSeed, setBackend } from '@residual/core';
import { createCpuBackend } from '@residual/backend-cpu';
const resnet = await import('@residual/resnet').catch(() => import('../../packages/resnet/dist/index.js'));
const threads = Number(process.env.SOAK_THREADS ?? 2);
const batch = Number(process.env.SOAK_BATCH ?? 64);
const backend = setBackend(createCpuBackend({ threads }));
manualSeed(1);
const model = resnet.createModel('resnet20');
const trainer = new resnet.Trainer({ model, recipe: resnet.paperCifar, itersPerEpoch: 100, totalIterations: 100000 });
const images = Float32Array.from({ length: batch * 3 * 32 * 32 }, (_, i) => Math.sin(i) * 2);
const labels = Int32Array.from({ length: batch }, (_, i) => i % 10);
const data = { images, labels, shape: [batch, 3, 32, 32] };
const t0 = Date.now();
for (let i = 0; ; i++) {
  const r = await trainer.trainStep(data);
  console.log(`${i} ${((Date.now() - t0) / 1000).toFixed(1)}s ${JSON.stringify(r).slice(0, 80)}`);
}
