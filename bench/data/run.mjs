// The data pipeline side by side with PyTorch's DataLoader + torchvision (PIL), same files, same
// machine, same run, same number of worker processes/threads: JPEG decode + the paper's ImageNet
// augmentation (shorter side uniform in [256, 480], random 224 crop, flip, normalise) into batches.
// Prints one JSON line per figure: {"bench", "ours", "peer", "unit", "ratio", ...}.
//
//   node bench/data/run.mjs [--dir DIR] [--count 500] [--workers N] [--batch-size 32] [--epochs 2] [--repeat R] [--no-peer]
//
// The images (about 500x375 JPEGs) are drawn by peer.py into DIR (a temporary folder unless given,
// kept when given). Every epoch is timed from its first request to its last batch; the figure is the
// best epoch of each side (a first epoch pays for starting workers). With --repeat, ours and the
// peer's runs take turns R times: on a machine shared with other work, the best of each is the figure
// least disturbed by it. Images per CPU-second (all threads and worker processes, over whole runs)
// is printed too: unlike wall time, it does not depend on how much of a busy machine a side got. The peer runs with `python3` or the interpreter $PYTHON names, with torch and
// torchvision; without them its figure is null.
//
// sharp runs on libuv's thread pool, one per process and 4 threads unless UV_THREADPOOL_SIZE says
// otherwise; it must be set before the pool starts, so the bench restarts itself with one pool thread
// per worker: as many decoding threads as the peer has worker processes.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { positiveInts } from '../args.mjs';

const { values: opts } = parseArgs({
  options: {
    dir: { type: 'string' },
    count: { type: 'string', default: '500' },
    workers: { type: 'string', default: String(availableParallelism()) },
    'batch-size': { type: 'string', default: '32' },
    epochs: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '1' },
    'no-peer': { type: 'boolean', default: false },
  },
});
const count = positiveInts(opts);
const [images, workers, batchSize, epochs, repeat] = ['count', 'workers', 'batch-size', 'epochs', 'repeat'].map(count);
if (!process.env.UV_THREADPOOL_SIZE) {
  const env = { ...process.env, UV_THREADPOOL_SIZE: String(workers) };
  process.exit(spawnSync(process.execPath, process.argv.slice(1), { stdio: 'inherit', env }).status ?? 1);
}
// bench/package.json does not list @residual/data yet: fall back to the workspace's build of it.
const data = await import('@residual/data').catch(() => import('../../packages/data/dist/index.js'));

const python = process.env.PYTHON ?? 'python3';
const peerScript = fileURLToPath(new URL('peer.py', import.meta.url));
const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'residual-bench-data-')));

try {
  if (!existsSync(join(dir, 'train'))) {
    const made = spawnSync(python, [peerScript, 'make', dir, '--count', String(images)], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`bench/data: ${python} ${peerScript} make failed (it needs numpy and Pillow): ${made.stderr || made.error?.message}`);
  }

  const source = await data.openSource(`imagenet:${dir}`);
  const cpu = { ours: 0, peer: 0, oursImages: 0, peerImages: 0 };
  /** Ours: images/s of each epoch; worker threads decode with sharp. */
  const runOurs = async () => {
    const used = process.cpuUsage();
    const loader = await data.createLoader({ source, split: 'train', batchSize, shuffle: true, seed: 0, transform: data.scaleAugment(), workers, prefetch: 2 * workers });
    const rates = [];
    try {
      for (let e = 0; e < epochs; e++) {
        const start = performance.now();
        let n = 0;
        for await (const batch of loader) n += batch.labels.length;
        rates.push(n / ((performance.now() - start) / 1000));
        cpu.oursImages += n;
      }
    } finally {
      await loader.close();
    }
    const { user, system } = process.cpuUsage(used);
    cpu.ours += (user + system) / 1e6;
    return rates;
  };
  /** The peer's images/s of each epoch, or null (with a notice) without torch and torchvision. */
  const runPeer = () => {
    const run = spawnSync(python, [peerScript, 'bench', dir, '--workers', String(workers), '--batch-size', String(batchSize), '--epochs', String(epochs)], { encoding: 'utf8' });
    const lines = (run.stdout ?? '').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    if (run.status === 0 && lines.length > 1 && !lines[0].error) {
      const { images: n, cpuSeconds } = lines.pop();
      cpu.peer += cpuSeconds;
      cpu.peerImages += n;
      return lines.map((l) => l.imagesPerSecond);
    }
    console.error(`bench/data: no peer figure (${python}: ${lines[0]?.error ?? run.error?.message ?? run.stderr?.trim().split('\n').pop()}); set PYTHON to an interpreter with torch and torchvision`);
    return null;
  };
  const ours = [];
  let peer = opts['no-peer'] ? null : [];
  for (let r = 0; r < repeat; r++) {
    ours.push(...(await runOurs()));
    if (peer) {
      const rates = runPeer();
      peer = rates && [...peer, ...rates];
    }
  }

  const best = (xs) => Math.max(...xs);
  console.log(
    JSON.stringify({
      bench: 'decode+paper-augment',
      ours: best(ours),
      peer: peer && best(peer),
      unit: 'images/s',
      ratio: peer && best(ours) / best(peer),
      oursPerCpuSecond: cpu.oursImages / cpu.ours,
      peerPerCpuSecond: peer && cpu.peerImages / cpu.peer,
      cpuRatio: peer && cpu.oursImages / cpu.ours / (cpu.peerImages / cpu.peer),
      images: (await source.split('train')).labels.length,
      workers,
      batchSize,
      epochsOurs: ours.map(Math.round),
      epochsPeer: peer?.map(Math.round) ?? null,
      uvThreadpool: Number(process.env.UV_THREADPOOL_SIZE),
    }),
  );
} finally {
  if (!opts.dir) await rm(dir, { recursive: true, force: true });
}
