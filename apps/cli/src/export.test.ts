/**
 * `residual export` against an independent runtime: onnxruntime-node, installed apart from the
 * workspace by bench/cpu/install-peers.sh, runs the exported files on the inputs `residual predict`
 * ran on, and the logits must agree within 1e-4. Without onnxruntime-node these tests skip;
 * RESIDUAL_REQUIRE_ONNX=1 (CI) makes that a failure. The formula weights have batch-norm statistics
 * far from the identity, so a wrong fold shows.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, json } from './fixtures.test-support.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { noGrad, setBackend } from '@residual/core';
import { loadTensors, saveTensors } from '@residual/core/node';
import { createCpuBackend } from '@residual/backend-cpu';
import { BasicBlock, Bottleneck, CifarResNet, createModel, exportOnnx, goldenInput, goldenStateDict, ResNet, type OnnxExportOptions } from '@residual/resnet';

const PEERS = new URL('../../../bench/cpu/.peers/package.json', import.meta.url);

/** The part of onnxruntime-node's API used here. */
interface OrtTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}
interface Ort {
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
  InferenceSession: {
    create(model: string | Uint8Array, options: { intraOpNumThreads: number; interOpNumThreads: number }): Promise<{
      run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
      release(): Promise<void>;
    }>;
  };
}

const loadOrt = (): Ort | null => {
  try {
    return createRequire(PEERS)('onnxruntime-node') as Ort;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return null;
    throw e;
  }
};
const ort = loadOrt();
if (!ort && process.env.RESIDUAL_REQUIRE_ONNX === '1') throw new Error('RESIDUAL_REQUIRE_ONNX=1 but onnxruntime-node is not installed (bash bench/cpu/install-peers.sh)');


const maxAbsDiff = (a: Float32Array, b: Float32Array) => {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
};

/** onnxruntime's logits for `input` [n, ...] from a model file or bytes, on one thread. */
const runOrt = async (model: string | Uint8Array, input: Float32Array, shape: number[]) => {
  const session = await ort!.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const { logits } = await session.run({ input: new ort!.Tensor('float32', input, shape) });
  await session.release();
  return logits;
};

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`build the CLI first (pnpm build): ${MAIN} is missing`);
  setBackend(createCpuBackend());
});

describe.skipIf(!ort)('residual export runs in onnxruntime-node as residual predict does', () => {
  it.each([['resnet20', 32, 10], ['resnet18', 224, 1000], ['resnet50', 224, 1000]] as const)('%s, batch-norm folded and kept, batch 1, 2 and dynamic', async (name, size, classes) => {
    const dir = mkdtempSync(join(tmpdir(), 'residual-export-'));
    try {
      const weights = join(dir, 'w.safetensors');
      await saveTensors(weights, goldenStateDict(createModel(name)), { format: 'pt' });
      const ours = new Map<number, { input: Float32Array; logits: Float32Array }>();
      for (const n of [1, 2]) {
        const x = goldenInput([n, 3, size, size]);
        await saveTensors(join(dir, `in${n}.safetensors`), { input: x });
        json(['predict', '--model', name, '--weights', weights, '--tensor', join(dir, `in${n}.safetensors`), '--output', join(dir, `out${n}.safetensors`)]);
        const logits = (await loadTensors(join(dir, `out${n}.safetensors`))).get('logits')!;
        ours.set(n, { input: (await x.data()) as Float32Array, logits: (await logits.data()) as Float32Array });
      }
      for (const fold of [true, false]) {
        for (const batch of [1, 2, 'dynamic'] as const) {
          const file = join(dir, 'model.onnx');
          const flags = [...(batch === 'dynamic' ? ['--dynamic-batch'] : ['--batch-size', String(batch)]), ...(fold ? [] : ['--no-fold-bn'])];
          const r = json(['export', '--model', name, '--weights', weights, '--out', file, ...flags]);
          expect(r).toMatchObject({ foldBatchNorm: fold, opset: 17, input: [batch === 'dynamic' ? 'batch' : batch, 3, size, size] });
          for (const n of batch === 'dynamic' ? [1, 2] : [batch]) {
            const { input, logits } = ours.get(n)!;
            const got = await runOrt(file, input, [n, 3, size, size]);
            expect(got.dims).toEqual([n, classes]);
            expect(maxAbsDiff(got.data, logits)).toBeLessThan(1e-4);
          }
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);

  it.each([
    ['CIFAR with option B projections', () => new CifarResNet(2, { shortcut: 'B' }), 32, { foldBatchNorm: false }],
    ['plain CIFAR', () => createModel('plain20'), 32, {}],
    ['bottlenecks with option A (odd sizes to subsample), groups and the paper stride', () =>
      new ResNet(Bottleneck, [1, 1, 1, 1], { shortcut: 'A', groups: 2, widthPerGroup: 32, bottleneckStride: 'v1', numClasses: 7 }), 57, { opset: 13 }],
    ['basic blocks with option C', () => new ResNet(BasicBlock, [1, 2, 1, 1], { shortcut: 'C', numClasses: 3 }), 64, { foldBatchNorm: false }],
  ] as const)('exportOnnx: %s', async (_, build, size, options: OnnxExportOptions) => {
    const model = build();
    model.loadStateDict(goldenStateDict(model));
    model.eval();
    const x = goldenInput([2, 3, size, size]);
    const ours = (await noGrad(() => model.forward(x)).data()) as Float32Array;
    const got = await runOrt(await exportOnnx(model, { ...options, batch: 2, imageSize: size }), (await x.data()) as Float32Array, [2, 3, size, size]);
    expect(maxAbsDiff(got.data, ours)).toBeLessThan(1e-4);
  }, 120_000);
});

describe('residual export options', () => {
  it('--batch-size and --dynamic-batch exclude each other; an unknown opset names the ones there are', () => {
    const run = (args: string[]) => spawnSync(process.execPath, [MAIN, 'export', '--model', 'resnet20', '--weights', 'w.safetensors', '--out', 'm.onnx', ...args], { encoding: 'utf8' });
    const both = run(['--batch-size', '2', '--dynamic-batch']);
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/--batch-size and --dynamic-batch/);
    const opset = run(['--opset', '11']);
    expect(opset.status).toBe(2);
    expect(opset.stderr).toMatch(/--opset: must be one of 13, 14, 15, 16, 17/);
  });
});
