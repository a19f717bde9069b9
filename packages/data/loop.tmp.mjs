import { createLoader, openSource, scaleAugment } from './dist/index.js';
const source = await openSource(process.argv[2]);
for (const workers of [0, 0]) {
  const loader = await createLoader({ source, split: 'train', batchSize: 32, shuffle: true, transform: scaleAugment(), workers });
  await loader.ready();
  const t = performance.now(); const c0 = process.cpuUsage();
  let n = 0;
  for await (const b of loader) n += b.labels.length;
  const c = process.cpuUsage(c0);
  console.log('workers', workers, n, ((performance.now() - t) / n).toFixed(3), 'ms/img wall', ((c.user + c.system) / 1000 / n).toFixed(3), 'ms/img cpu');
  await loader.close();
}
