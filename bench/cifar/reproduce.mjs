// Table 6 beside PyTorch: `residual reproduce cifar` and the PyTorch twin (torch_peer.py) on the same
// CIFAR-10 files with the same schedule, one after the other on this machine, and the paper's figure.
//
//   node bench/cifar/reproduce.mjs --data DIR [--model resnet20] [--scale small] [--iterations N]
//                                  [--backend cpu] [--threads 2]
//
// DIR holds CIFAR-10's binary files (data_batch_1.bin ... data_batch_5.bin and test_batch.bin).
// Prints one JSON line per model: both sides' test error (top-1 on test_batch.bin), held-out error
// and training seconds. The peer runs with `python3` or the interpreter $PYTHON names (torch).
// --scale small is 6,000 steps of 128 on 45,000 images (5,000 held out), about an hour for each side
// of ResNet-20 on 2 cores; tiny is 400 steps on 5,000 (drawn at random by ours, the first 5,000 by
// the peer), a check that both run rather than a figure.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { positiveInts } from '../args.mjs';

const { values: opts } = parseArgs({
  options: {
    data: { type: 'string' },
    model: { type: 'string', default: 'resnet20' },
    scale: { type: 'string', default: 'small' },
    iterations: { type: 'string' },
    backend: { type: 'string', default: 'cpu' },
    threads: { type: 'string', default: '2' },
  },
});
// The scales of `residual reproduce` (apps/cli/src/commands/reproduce.ts) that the peer must mirror.
const SCALES = { tiny: { iterations: 400, trainSubset: 5000, valSplit: 1000 }, small: { iterations: 6000, valSplit: 5000 } };
if (!opts.data) throw new Error('bench/cifar/reproduce: --data DIR (CIFAR-10 binary files) is required');
const scale = SCALES[opts.scale];
if (!scale) throw new Error(`bench/cifar/reproduce: --scale ${opts.scale} is not one of ${Object.keys(SCALES).join(', ')}`);
const count = positiveInts(opts);
const threads = count('threads');
const iterations = opts.iterations === undefined ? scale.iterations : count('iterations');
const cli = fileURLToPath(new URL('../../apps/cli/bin/residual.cjs', import.meta.url));
if (!existsSync(fileURLToPath(new URL('../../apps/cli/dist/main.js', import.meta.url)))) throw new Error('bench/cifar/reproduce: build the CLI first (npx turbo run build --filter=@residual/cli...)');

/** Runs a command to its end; its last stdout line as JSON, or an error naming the command and its last words. */
const run = (command, args, env = {}) => {
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const last = (r.stdout ?? '').trim().split('\n').pop();
  if (r.status !== 0) throw new Error(`bench/cifar/reproduce: ${command} ${args.join(' ')} failed (${r.status ?? r.error?.message})`);
  return JSON.parse(last);
};

const out = await mkdtemp(join(tmpdir(), 'residual-bench-cifar-'));
try {
  const ours = run(process.execPath, [cli, 'reproduce', 'cifar', '--models', opts.model, '--scale', opts.scale, '--iterations', String(iterations),
    '--data', `cifar10:${opts.data}`, '--backend', opts.backend, '--out', out, '--json'], { RESIDUAL_THREADS: String(threads) });
  const [row] = ours.rows;
  const python = process.env.PYTHON ?? 'python3';
  const peerArgs = [fileURLToPath(new URL('torch_peer.py', import.meta.url)), opts.data, '--model', opts.model, '--iterations', String(iterations),
    '--val-split', String(scale.valSplit), '--threads', String(threads), ...(scale.trainSubset ? ['--train-subset', String(scale.trainSubset)] : [])];
  const peer = run(python, peerArgs);
  console.log(JSON.stringify({
    bench: `cifar-table6-${opts.model}-${opts.scale}`,
    unit: 'test error (top-1 on test_batch.bin), fraction',
    ours: row.testError,
    peer: peer.testError,
    paper: row.paperTestError / 100,
    oursHeldOutError: row.valError,
    peerHeldOutError: 1 - peer.valAccuracy,
    oursTrainError: row.trainError,
    peerTrainError: peer.trainError,
    oursSeconds: row.seconds,
    peerSeconds: peer.seconds,
    iterations,
    backend: opts.backend,
    threads,
    peerVersion: peer.peer,
  }));
} finally {
  await rm(out, { recursive: true, force: true });
}
