// The CPU backend side by side with PyTorch on the CPU (and onnxruntime-node for ResNet-50 inference),
// same machine, same run, same thread count. Prints one JSON line per figure and peer:
// {"bench", "ours", "peer", "unit", "ratio", "threads", "device", "peerName"}.
//
//   node bench/cpu/run.mjs [--threads N] [--only resnet20,gemm1024,...] [--repeat R] [--no-peer]
//
// With --repeat, each figure is measured R times, ours and the peer's in turn, and the best of each is
// kept: on a machine shared with other work that is the figure least disturbed by it.
// Needs the built packages (`pnpm build`, or `npx tsc -p tsconfig.build.json` in packages/core,
// packages/backend-cpu and packages/resnet). The peer is bench/cpu/peer.py, run by `python3` or by
// the interpreter $PYTHON names, with torch (and torchvision for ResNet-50); without them the
// figures' peer is null and a notice goes to stderr. onnxruntime-node is installed apart from the
// workspace by bench/cpu/install-peers.sh; it runs torchvision's ResNet-50 as exported to a temporary
// folder by export_onnx.py (same interpreter). Without either, its lines have peer null and
// peerName "onnxruntime-node", and a notice says why.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { matmul, noGrad, rand, setBackend, tensor, tidy } from '@residual/core';
import { createCpuBackend } from '@residual/backend-cpu';
import * as resnet from '@residual/resnet';
import { positiveInts } from '../args.mjs';


const { values: opts } = parseArgs({
  options: {
    threads: { type: 'string', default: process.env.RESIDUAL_THREADS ?? String(availableParallelism()) },
    only: { type: 'string' },
    repeat: { type: 'string', default: '1' },
    'no-peer': { type: 'boolean', default: false },
  },
});
const count = positiveInts(opts);
const threads = count('threads');
const repeat = count('repeat');
const backend = setBackend(createCpuBackend({ threads }));
const python = process.env.PYTHON ?? 'python3';
const peerScript = fileURLToPath(new URL('peer.py', import.meta.url));
let peerMissing = opts['no-peer'];

/** Runs one figure of peer.py; null (with a notice, once) when python3 or torch is missing. */
const peer = (args) => {
  if (peerMissing) return null;
  const run = spawnSync(python, [peerScript, '--threads', String(threads), ...args], { encoding: 'utf8' });
  const line = run.stdout?.trim().split('\n').pop();
  const result = run.status === 0 && line ? JSON.parse(line) : { error: run.error?.message ?? run.stderr?.trim().split('\n').pop() };
  if (result.error) {
    console.error(`bench/cpu: no peer figures (${python}: ${result.error}); set PYTHON to an interpreter with torch`);
    peerMissing = true;
    return null;
  }
  return result;
};

/** Seconds per call of `fn` (awaited), after `warmup` calls. */
const timeIt = async (fn, warmup, steps) => {
  for (let i = 0; i < warmup; i++) await fn();
  const start = performance.now();
  for (let i = 0; i < steps; i++) await fn();
  return (performance.now() - start) / 1000 / steps;
};

const train = (depth, batch, steps) => async () => {
  const model = resnet.createModel(`resnet${depth}`);
  const trainer = new resnet.Trainer({ model, recipe: resnet.paperCifar, itersPerEpoch: 100, totalIterations: 1000 });
  const images = Float32Array.from({ length: batch * 3 * 32 * 32 }, (_, i) => Math.sin(i) * 2);
  const labels = Int32Array.from({ length: batch }, (_, i) => i % 10);
  const data = { images, labels, shape: [batch, 3, 32, 32] };
  const seconds = await timeIt(() => trainer.trainStep(data), 2, steps);
  return batch / seconds;
};

const infer50 = (batch, steps) => async () => {
  const model = resnet.createModel('resnet50');
  model.eval();
  const x = rand([batch, 3, 224, 224], { seed: 1 });
  const seconds = await timeIt(async () => {
    const y = noGrad(() => tidy(() => model.forward(x)));
    await y.data();
    y.dispose();
  }, 1, steps);
  return batch / seconds;
};

/** onnxruntime-node and the exported model, made on first use; null (with a notice) when either is missing. */
let ortPeer = opts['no-peer'] ? null : undefined;
const loadOrt = () => {
  const skip = (why) => {
    console.error(`bench/cpu: no onnxruntime-node figures (${why})`);
    return null;
  };
  let ort;
  try {
    ort = createRequire(new URL('.peers/package.json', import.meta.url))('onnxruntime-node');
  } catch (e) {
    return skip(`${e.code === 'MODULE_NOT_FOUND' ? 'not installed' : e.message}; install it with bash bench/cpu/install-peers.sh`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'residual-bench-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const model = join(dir, 'resnet50.onnx');
  const run = spawnSync(python, [fileURLToPath(new URL('export_onnx.py', import.meta.url)), model], { encoding: 'utf8' });
  if (run.status !== 0) {
    const why = run.error?.message ?? run.stderr.trim().split('\n').pop();
    return skip(`${python} could not export the model: ${why}; set PYTHON to an interpreter with torch and torchvision`);
  }
  return { ort, model };
};

/** Images/s of ResNet-50 in onnxruntime-node, sessions set up as a user would for `threads` cores. */
const ortInfer50 = (batch, steps) => async () => {
  if (ortPeer === undefined) ortPeer = loadOrt();
  if (!ortPeer) return null;
  const { ort, model } = ortPeer;
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
  });
  const images = new ort.Tensor('float32', Float32Array.from({ length: batch * 3 * 224 * 224 }, (_, i) => Math.sin(i)), [batch, 3, 224, 224]);
  const seconds = await timeIt(() => session.run({ [session.inputNames[0]]: images }), 1, steps);
  await session.release();
  return { value: batch / seconds, peer: `onnxruntime-node ${ort.env.versions.node}` };
};

const gemm = (size, steps) => async () => {
  const a = tensor(Float32Array.from({ length: size * size }, (_, i) => Math.sin(i)), [size, size]);
  const seconds = await timeIt(async () => {
    const c = matmul(a, a);
    await c.data();
    c.dispose();
  }, 1, steps);
  return (2 * size ** 3) / seconds / 1e9;
};

const BENCHES = [
  { name: 'resnet20', bench: 'resnet20 train step, batch 128', unit: 'images/s', ours: train(20, 128, 5), peer: ['--bench', 'train', '--depth', '20', '--steps', '5'] },
  { name: 'resnet56', bench: 'resnet56 train step, batch 128', unit: 'images/s', ours: train(56, 128, 3), peer: ['--bench', 'train', '--depth', '56', '--steps', '3'] },
  { name: 'resnet50b1', bench: 'resnet50 inference, batch 1', unit: 'images/s', ours: infer50(1, 10), peer: ['--bench', 'infer50', '--batch', '1', '--steps', '10'], ort: ortInfer50(1, 10) },
  { name: 'resnet50b16', bench: 'resnet50 inference, batch 16', unit: 'images/s', ours: infer50(16, 3), peer: ['--bench', 'infer50', '--batch', '16', '--steps', '3'], ort: ortInfer50(16, 3) },
  { name: 'gemm1024', bench: 'sgemm 1024x1024x1024', unit: 'GFLOP/s', ours: gemm(1024, 10), peer: ['--bench', 'gemm', '--size', '1024', '--steps', '10'] },
  { name: 'gemm2048', bench: 'sgemm 2048x2048x2048', unit: 'GFLOP/s', ours: gemm(2048, 3), peer: ['--bench', 'gemm', '--size', '2048', '--steps', '3'] },
];

const only = opts.only?.split(',');
const unknown = only?.filter((n) => !BENCHES.some((b) => b.name === n)) ?? [];
if (unknown.length) throw new Error(`--only: unknown bench ${unknown.join(', ')} (known: ${BENCHES.map((b) => b.name).join(', ')})`);
const better = (p, q) => (q && (!p || q.value > p.value) ? q : p);
for (const b of BENCHES.filter((x) => !only || only.includes(x.name))) {
  let ours = 0;
  let p = null;
  let o = null;
  for (let r = 0; r < repeat; r++) {
    ours = Math.max(ours, await b.ours());
    p = better(p, peer(b.peer));
    if (b.ort) o = better(o, await b.ort());
  }
  const round = (v) => Math.round(v * 100) / 100;
  const line = (q, name) => console.log(JSON.stringify({
    bench: b.bench, ours: round(ours), peer: q && round(q.value), unit: b.unit, ratio: q && round(ours / q.value),
    threads, device: backend.device, peerName: q?.peer ?? name,
  }));
  line(p, null);
  if (b.ort) line(o, 'onnxruntime-node');
}
backend.dispose();
