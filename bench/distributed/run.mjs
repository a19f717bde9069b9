// Data-parallel scaling on this host: ResNet-20 training images/s (global batch 128) as 1 rank x 1
// thread, 2 ranks x 1 thread (Open MPI, mpirun) and 1 rank x 2 threads, in one run, one JSON line
// each, then the 2-rank / 1-rank ratio, for each CPU provider (--providers native,wasm). A fourth figure is this host's ceiling at the time: two
// independent processes (no MPI, no communication) of 64 images each, their images/s added up. Each figure is the best of --repeat runs (default 3), the
// configurations interleaved; gradientWaitShare is the share of rank 0's time spent after its own
// backward waiting for the summed gradients (communication, and waiting for a slower rank).
// Build first (pnpm build); needs Open MPI (apt-get install openmpi-bin libopenmpi-dev).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hasMpirun, mpiStatus, mpirunCommand } from '@residual/distributed';
import { positiveInts } from '../args.mjs';

const { values } = parseArgs({
  options: {
    repeat: { type: 'string', default: '3' }, steps: { type: 'string', default: '12' }, warmup: { type: 'string', default: '3' },
    // The CPU backend's providers to measure, each in its own round (RESIDUAL_CPU_PROVIDER for every process).
    providers: { type: 'string', default: 'native,wasm' },
  },
});
const int = positiveInts(values);
const [repeat, steps, warmup] = [int('repeat'), int('steps'), int('warmup')];
const worker = fileURLToPath(new URL('worker.mjs', import.meta.url));
const status = mpiStatus();
if (!status.available || !hasMpirun()) {
  console.error(`bench/distributed: ${status.available ? 'mpirun is not on the PATH' : status.reason}`);
  process.exit(1);
}

let provider = 'native';
const run = (ranks, threads) => {
  const argv = [worker, '128', String(warmup), String(steps)];
  const env = { ...process.env, RESIDUAL_THREADS: String(threads), RESIDUAL_CPU_PROVIDER: provider };
  const out = ranks === 1
    ? execFileSync(process.execPath, argv, { env, encoding: 'utf8' })
    : (() => {
      const { command, args, env: mpiEnv } = mpirunCommand(ranks, [process.execPath, ...argv], { threadsPerRank: threads });
      return execFileSync(command, args, { env: { ...mpiEnv, RESIDUAL_CPU_PROVIDER: provider }, encoding: 'utf8' });
    })();
  return JSON.parse(out.trim().split('\n').at(-1));
};

/** Two processes of half the batch each, side by side without MPI: what 2 ranks could reach at best. */
const independent = async () => {
  const env = { ...process.env, RESIDUAL_THREADS: '1', RESIDUAL_CPU_PROVIDER: provider };
  const outs = await Promise.all([0, 1].map(() => promisify(execFile)(process.execPath, [worker, '64', String(warmup), String(steps)], { env })));
  return outs.reduce((sum, { stdout }) => sum + JSON.parse(stdout.trim().split('\n').at(-1)).imagesPerSecond, 0);
};

const configs = [[1, 1], [2, 1], [1, 2]];
for (provider of values.providers.split(',')) {
  let ceiling = 0;
  const best = new Map(configs.map((c) => [c.join('x'), 0]));
  const all = new Map(configs.map((c) => [c.join('x'), []]));
  const waits = new Map(configs.map((c) => [c.join('x'), 0]));
  // Interleaved, so a busy spell on a shared machine hits every configuration alike.
  for (let r = 0; r < repeat; r++)
    for (const [ranks, threads] of configs) {
      const key = `${ranks}x${threads}`;
      const { imagesPerSecond: ips, gradientWait = 0 } = run(ranks, threads);
      all.get(key).push(Number(ips.toFixed(1)));
      if (ips > best.get(key)) [best, waits].forEach((m, i) => m.set(key, [ips, gradientWait][i]));
      if (ranks === 2) ceiling = Math.max(ceiling, await independent());
    }
  const cores = availableParallelism();
  for (const [ranks, threads] of configs) {
    const key = `${ranks}x${threads}`;
    console.log(JSON.stringify({ bench: 'distributed', model: 'resnet20', provider, figure: 'train images/s', globalBatch: 128, ranks, threadsPerRank: threads, cores, imagesPerSecond: Number(best.get(key).toFixed(1)), runs: all.get(key),
      ...(ranks > 1 ? { gradientWaitShare: Number(waits.get(key).toFixed(3)) } : {}) }));
  }
  console.log(JSON.stringify({ bench: 'distributed', model: 'resnet20', provider, figure: 'train images/s, 2 independent processes of 64 (no communication: the ceiling for 2 ranks)', imagesPerSecond: Number(ceiling.toFixed(1)) }));
  console.log(JSON.stringify({ bench: 'distributed', model: 'resnet20', provider, figure: '2 ranks / 1 rank, 1 thread each', ratio: Number((best.get('2x1') / best.get('1x1')).toFixed(3)) }));
}
