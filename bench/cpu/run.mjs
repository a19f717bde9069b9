// The CPU backend side by side with PyTorch on the CPU (and onnxruntime-node for ResNet-50 inference),
// same machine, same run, same thread count, for each CPU provider (native oneDNN where its addon is
// built, and WebAssembly). Prints one JSON line per figure, provider and peer:
// {"bench", "provider", "ours", "peer", "unit", "ratio", "oursPeakRssMB", "peerPeakRssMB", "threads", "device", "peerName"}.
//
//   node bench/cpu/run.mjs [--threads N] [--only resnet20,gemm1024,...] [--providers native,wasm] [--repeat R] [--no-peer]
//
// Every measurement runs in a process of its own, so its peak resident memory (the process's
// maxRSS, the runtime included) is that figure's alone. With --repeat, each figure is measured R
// times, every side in turn, and the best of each is kept: on a machine shared with other work that
// is the figure least disturbed by it. Peak memory is the smallest of the repeats' peaks.
// Needs the built packages (`pnpm build`). The peer is bench/cpu/peer.py, run by `python3` or by the
// interpreter $PYTHON names, with torch (and torchvision for ResNet-50); without them the figures'
// peer is null and a notice goes to stderr. onnxruntime-node is installed apart from the workspace by
// bench/cpu/install-peers.sh; it runs torchvision's ResNet-50 as exported to a temporary folder by
// export_onnx.py (same interpreter). Without either, its lines have peer null and peerName
// "onnxruntime-node", and a notice says why.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { positiveInts } from '../args.mjs';

const { values: opts } = parseArgs({
  options: {
    threads: { type: 'string', default: process.env.RESIDUAL_THREADS ?? String(availableParallelism()) },
    only: { type: 'string' },
    providers: { type: 'string', default: 'native,wasm' },
    repeat: { type: 'string', default: '1' },
    'no-peer': { type: 'boolean', default: false },
    // Internal: measure one figure in this process and print {value, peakRssMB, device} (see measure()).
    measure: { type: 'string' },
    side: { type: 'string' },
    model: { type: 'string' },
  },
});
const count = positiveInts(opts);
const threads = count('threads');
const repeat = count('repeat');
const python = process.env.PYTHON ?? 'python3';
const here = (file) => fileURLToPath(new URL(file, import.meta.url));
const peakRssMB = () => Math.round(process.resourceUsage().maxRSS / 1024);

/** Untimed inference calls before the timed ones, on every side (peer.py takes the same). */
const INFER_WARMUP = 3;

/** Seconds per call of `fn` (awaited), after `warmup` calls. */
const timeIt = async (fn, warmup, steps) => {
  for (let i = 0; i < warmup; i++) await fn();
  const start = performance.now();
  for (let i = 0; i < steps; i++) await fn();
  return (performance.now() - start) / 1000 / steps;
};

// --- one measurement, in this process -----------------------------------------------------------

/** Our side of figure `name` on `provider`: images/s or GFLOP/s. */
const ours = async (name, provider) => {
  const { matmul, noGrad, rand, setBackend, tensor, tidy } = await import('@residual/core');
  const { createCpuBackend } = await import('@residual/backend-cpu');
  const resnet = await import('@residual/resnet');
  const backend = setBackend(createCpuBackend({ threads, provider }));
  const train = async (depth, batch, steps) => {
    const model = resnet.createModel(`resnet${depth}`);
    const trainer = new resnet.Trainer({ model, recipe: resnet.paperCifar, itersPerEpoch: 100, totalIterations: 1000 });
    const images = Float32Array.from({ length: batch * 3 * 32 * 32 }, (_, i) => Math.sin(i) * 2);
    const labels = Int32Array.from({ length: batch }, (_, i) => i % 10);
    const data = { images, labels, shape: [batch, 3, 32, 32] };
    return batch / (await timeIt(() => trainer.trainStep(data), 2, steps));
  };
  const infer50 = async (batch, steps) => {
    const model = resnet.createModel('resnet50');
    model.eval();
    const x = rand([batch, 3, 224, 224], { seed: 1 });
    // Three untimed calls, as for the peers: the first folds batch-norm and builds primitives, the
    // second packs the weights that come again.
    const seconds = await timeIt(async () => {
      const y = noGrad(() => tidy(() => model.forward(x)));
      await y.data();
      y.dispose();
    }, INFER_WARMUP, steps);
    return batch / seconds;
  };
  const gemm = async (size, steps) => {
    const a = tensor(Float32Array.from({ length: size * size }, (_, i) => Math.sin(i)), [size, size]);
    const seconds = await timeIt(async () => {
      const c = matmul(a, a);
      await c.data();
      c.dispose();
    }, 1, steps);
    return (2 * size ** 3) / seconds / 1e9;
  };
  const run = { resnet20: () => train(20, 128, 5), resnet56: () => train(56, 128, 3), resnet50b1: () => infer50(1, 10), resnet50b16: () => infer50(16, 3), gemm1024: () => gemm(1024, 10), gemm2048: () => gemm(2048, 3) }[name];
  const value = await run();
  const device = backend.device;
  backend.dispose();
  return { value, device };
};

/** onnxruntime-node's ResNet-50 (exported to `model`) at `batch`, sessions set up as a user would for `threads` cores. */
const ort = async (batch, steps, model) => {
  const runtime = createRequire(new URL('.peers/package.json', import.meta.url))('onnxruntime-node');
  const session = await runtime.InferenceSession.create(model, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const images = new runtime.Tensor('float32', Float32Array.from({ length: batch * 3 * 224 * 224 }, (_, i) => Math.sin(i)), [batch, 3, 224, 224]);
  const seconds = await timeIt(() => session.run({ [session.inputNames[0]]: images }), INFER_WARMUP, steps);
  await session.release();
  return { value: batch / seconds, device: `onnxruntime-node ${runtime.env.versions.node}` };
};

if (opts.measure) {
  const name = opts.measure;
  const result = opts.side === 'ort' ? await ort(name === 'resnet50b1' ? 1 : 16, name === 'resnet50b1' ? 10 : 3, opts.model) : await ours(name, opts.side);
  console.log(JSON.stringify({ ...result, peakRssMB: peakRssMB() }));
  process.exit(0);
}

// --- the run: every side of every figure in child processes -------------------------------------

/** Runs this script as a child measuring one side; its JSON result, or null with the reason. */
const child = (name, side, extra = []) => {
  const run = spawnSync(process.execPath, [here('run.mjs'), '--measure', name, '--side', side, '--threads', String(threads), ...extra], { encoding: 'utf8' });
  const line = run.stdout?.trim().split('\n').pop();
  if (run.status === 0 && line) return JSON.parse(line);
  return { error: (run.stderr || run.error?.message || '').trim().split('\n').filter(Boolean).pop() ?? `exit ${run.status}` };
};

let peerMissing = opts['no-peer'];
/** One figure of peer.py; null (with a notice, once) when python3 or torch is missing. */
const peer = (args) => {
  if (peerMissing) return null;
  const run = spawnSync(python, [here('peer.py'), '--threads', String(threads), ...args], { encoding: 'utf8' });
  const line = run.stdout?.trim().split('\n').pop();
  const result = run.status === 0 && line ? JSON.parse(line) : { error: run.error?.message ?? run.stderr?.trim().split('\n').pop() };
  if (result.error) {
    console.error(`bench/cpu: no peer figures (${python}: ${result.error}); set PYTHON to an interpreter with torch`);
    peerMissing = true;
    return null;
  }
  return result;
};

/** The exported ResNet-50 for onnxruntime-node, made on first use; null (with a notice) when it or the runtime is missing. */
let ortModel = opts['no-peer'] ? null : undefined;
const ortModelPath = () => {
  if (ortModel !== undefined) return ortModel;
  const skip = (why) => {
    console.error(`bench/cpu: no onnxruntime-node figures (${why})`);
    return (ortModel = null);
  };
  try {
    createRequire(new URL('.peers/package.json', import.meta.url)).resolve('onnxruntime-node');
  } catch {
    return skip('not installed; install it with bash bench/cpu/install-peers.sh');
  }
  const dir = mkdtempSync(join(tmpdir(), 'residual-bench-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const model = join(dir, 'resnet50.onnx');
  const run = spawnSync(python, [here('export_onnx.py'), model], { encoding: 'utf8' });
  if (run.status !== 0) return skip(`${python} could not export the model: ${run.error?.message ?? run.stderr.trim().split('\n').pop()}; set PYTHON to an interpreter with torch and torchvision`);
  return (ortModel = model);
};

const BENCHES = [
  { name: 'resnet20', bench: 'resnet20 train step, batch 128', unit: 'images/s', peer: ['--bench', 'train', '--depth', '20', '--steps', '5'] },
  { name: 'resnet56', bench: 'resnet56 train step, batch 128', unit: 'images/s', peer: ['--bench', 'train', '--depth', '56', '--steps', '3'] },
  { name: 'resnet50b1', bench: 'resnet50 inference, batch 1', unit: 'images/s', peer: ['--bench', 'infer50', '--batch', '1', '--steps', '10'], ort: true },
  { name: 'resnet50b16', bench: 'resnet50 inference, batch 16', unit: 'images/s', peer: ['--bench', 'infer50', '--batch', '16', '--steps', '3'], ort: true },
  { name: 'gemm1024', bench: 'sgemm 1024x1024x1024', unit: 'GFLOP/s', peer: ['--bench', 'gemm', '--size', '1024', '--steps', '10'] },
  { name: 'gemm2048', bench: 'sgemm 2048x2048x2048', unit: 'GFLOP/s', peer: ['--bench', 'gemm', '--size', '2048', '--steps', '3'] },
];

const only = opts.only?.split(',');
const unknown = only?.filter((n) => !BENCHES.some((b) => b.name === n)) ?? [];
if (unknown.length) throw new Error(`--only: unknown bench ${unknown.join(', ')} (known: ${BENCHES.map((b) => b.name).join(', ')})`);
const providers = opts.providers.split(',');
const badProvider = providers.find((p) => !['native', 'wasm'].includes(p));
if (badProvider) throw new Error(`--providers: unknown provider '${badProvider}' (known: native, wasm)`);

/** Keeps the best value and the smallest peak of two results of one side. */
const better = (p, q) => {
  if (!q || q.error) return p ?? q;
  if (!p || p.error) return q;
  return { ...(q.value > p.value ? q : p), peakRssMB: Math.min(p.peakRssMB, q.peakRssMB) };
};
const round = (v) => (v == null ? null : Math.round(v * 100) / 100);

for (const b of BENCHES.filter((x) => !only || only.includes(x.name))) {
  const best = Object.fromEntries(providers.map((p) => [p, null]));
  let py = null;
  let onnx = null;
  for (let r = 0; r < repeat; r++) {
    for (const p of providers) best[p] = better(best[p], child(b.name, p));
    py = better(py, peer(b.peer));
    const model = b.ort ? ortModelPath() : null;
    if (model) onnx = better(onnx, child(b.name, 'ort', ['--model', model]));
  }
  for (const p of providers) {
    const o = best[p];
    if (o.error) {
      console.error(`bench/cpu: ${b.name} on the ${p} provider failed: ${o.error}`);
      continue;
    }
    const line = (q, name) => console.log(JSON.stringify({
      bench: b.bench, provider: p, ours: round(o.value), peer: round(q?.value), unit: b.unit, ratio: q ? round(o.value / q.value) : null,
      oursPeakRssMB: o.peakRssMB, peerPeakRssMB: q?.peakRssMB ?? null, threads, device: o.device, peerName: q ? q.peer ?? q.device : name,
    }));
    line(py, null);
    if (b.ort) line(onnx && !onnx.error ? onnx : null, 'onnxruntime-node');
  }
}
