// The WebGPU backend's figures on the adapter at hand, one JSON line each: GEMM GFLOP/s at 1024²
// and 2048², conv2d forward / backward-data / backward-filter GFLOP/s at ResNet-20 and ResNet-50
// layer shapes, and a ResNet-20 training step in images/s. With --peer, the CPU backend's GEMM and
// training step are measured in the same run and the ratio printed beside them.
//   node bench/webgpu/run.mjs [--only=gemm,conv,step] [--peer] [--kernel=shared-tiles|subgroup-strips]
//                             [--r50-batch=8] [--step-batch=128] [--samples=5]
// Run against the built packages (pnpm build).
import { parseArgs } from 'node:util';
import { core, emit, openCpu, openWebGpu, resnet, secondsPer } from './lib.mjs';
import { positiveInts } from '../args.mjs';

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'gemm,conv,step' },
    peer: { type: 'boolean', default: false },
    kernel: { type: 'string' },
    'r50-batch': { type: 'string', default: '8' },
    'step-batch': { type: 'string', default: '128' },
    samples: { type: 'string', default: '5' },
  },
});
const count = positiveInts(values);
const opts = { ...values, 'r50-batch': count('r50-batch'), 'step-batch': count('step-batch'), samples: count('samples') };
const only = new Set(opts.only.split(','));
for (const name of only) if (!['gemm', 'conv', 'step'].includes(name)) throw new Error(`--only: unknown figure '${name}' (gemm, conv, step)`);
const { conv2d, conv2dGeometry, matmul, randn, runOp } = core;

/** GFLOP/s of an n×n by n×n matmul on the registered backend. */
const gemm = async (backend, n) => {
  const a = randn([n, n]).keep();
  const b = randn([n, n]).keep();
  const s = await secondsPer(backend, () => matmul(a, b).dispose(), { samples: opts.samples });
  a.dispose();
  b.dispose();
  return (2 * n ** 3) / s / 1e9;
};

// [label, input NCHW, weight OIHW, options]: the distinct 3×3 and 1×1 convolutions of each network.
const R50 = opts['r50-batch'];
const CONVS = [
  ['resnet20 conv1', [128, 3, 32, 32], [16, 3, 3, 3], { padding: 1 }],
  ['resnet20 stage1 3x3', [128, 16, 32, 32], [16, 16, 3, 3], { padding: 1 }],
  ['resnet20 stage2 3x3', [128, 32, 16, 16], [32, 32, 3, 3], { padding: 1 }],
  ['resnet20 stage2 3x3/2', [128, 16, 32, 32], [32, 16, 3, 3], { padding: 1, stride: 2 }],
  ['resnet20 stage3 3x3', [128, 64, 8, 8], [64, 64, 3, 3], { padding: 1 }],
  ['resnet50 conv1 7x7/2', [R50, 3, 224, 224], [64, 3, 7, 7], { padding: 3, stride: 2 }],
  ['resnet50 layer1 1x1 256->64', [R50, 256, 56, 56], [64, 256, 1, 1], {}],
  ['resnet50 layer1 3x3', [R50, 64, 56, 56], [64, 64, 3, 3], { padding: 1 }],
  ['resnet50 layer1 1x1 64->256', [R50, 64, 56, 56], [256, 64, 1, 1], {}],
  ['resnet50 layer2 3x3', [R50, 128, 28, 28], [128, 128, 3, 3], { padding: 1 }],
  ['resnet50 layer3 3x3', [R50, 256, 14, 14], [256, 256, 3, 3], { padding: 1 }],
  ['resnet50 layer3 1x1 1024->256', [R50, 1024, 14, 14], [256, 1024, 1, 1], {}],
  ['resnet50 layer4 3x3', [R50, 512, 7, 7], [512, 512, 3, 3], { padding: 1 }],
];

/** GFLOP/s of each pass of one convolution on the registered backend. */
const convPasses = async (backend, xShape, wShape, options) => {
  const g = conv2dGeometry(xShape, wShape, options);
  const x = randn(xShape).keep();
  const w = randn(wShape).keep();
  const dy = randn([g.batch, g.outChannels, g.outH, g.outW]).keep();
  const flop = 2 * g.batch * g.outH * g.outW * g.outChannels * (g.inChannels / g.groups) * g.kernelH * g.kernelW;
  const passes = {
    forward: () => conv2d(x, w, options).dispose(),
    backwardData: () => runOp('conv2dBackwardData', { dy, w }, g)[0].dispose(),
    backwardFilter: () => runOp('conv2dBackwardFilter', { x, dy }, g)[0].dispose(),
  };
  const out = {};
  for (const [pass, work] of Object.entries(passes)) out[pass] = flop / (await secondsPer(backend, work, { samples: opts.samples })) / 1e9;
  for (const t of [x, w, dy]) t.dispose();
  return out;
};

/** Images/s of ResNet-20 training steps (the paper's CIFAR recipe) on one fixed batch. */
const trainStep = async (backend, n) => {
  core.manualSeed(0);
  const trainer = new resnet.Trainer({ model: resnet.resnet20(), recipe: resnet.paperCifar, itersPerEpoch: 390, totalIterations: 64000 });
  const images = Float32Array.from({ length: n * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.37));
  const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
  const data = { images, labels, shape: [n, 3, 32, 32] };
  const s = await secondsPer(backend, () => trainer.trainStep(data), { samples: opts.samples, minMs: 0 });
  return n / s;
};

const webgpu = await openWebGpu(opts.kernel);
const device = webgpu.device;
const cpu = opts.peer ? openCpu() : null;
core.setBackend(webgpu);
const withPeer = async (fields, measure) => {
  const value = await measure(webgpu);
  let peer = {};
  if (cpu) {
    core.setBackend(cpu);
    const peerValue = await measure(cpu);
    core.setBackend(webgpu);
    peer = { peer: { device: cpu.device, value: peerValue }, ratio: value / peerValue };
  }
  emit({ bench: fields.bench, value, ...fields, device, ...peer });
};

if (only.has('gemm'))
  for (const n of [1024, 2048])
    await withPeer({ bench: `gemm ${n}x${n}x${n}`, unit: 'GFLOP/s', kernel: webgpu.gemmKernel }, (b) => gemm(b, n));

if (only.has('conv'))
  for (const [label, xShape, wShape, options] of CONVS) {
    const r = await convPasses(webgpu, xShape, wShape, options);
    for (const [pass, value] of Object.entries(r))
      emit({ bench: `conv2d ${pass} ${label}`, value, unit: 'GFLOP/s', kernel: webgpu.gemmKernel, device, x: xShape, w: wShape });
  }

if (only.has('step'))
  await withPeer({ bench: `resnet20 train step batch ${opts['step-batch']}`, unit: 'images/s', kernel: webgpu.gemmKernel }, (b) => trainStep(b, opts['step-batch']));

webgpu.dispose();
cpu?.dispose();
