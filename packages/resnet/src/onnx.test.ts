/**
 * The ONNX exporter. Its graphs are read back here with its own schema; where Debian's python3-onnx
 * is installed, the ONNX project's checker reads every variant with the official schema and checks
 * it against the operators' definitions, with strict shape inference through the whole graph
 * (RESIDUAL_REQUIRE_ONNX=1, set by CI, makes a missing checker a failure). Outputs against
 * onnxruntime-node: apps/cli's export tests.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { manualSeed, setBackend } from '@residual/core';
import { createReferenceBackend } from '@residual/core/testing';
import { BasicBlock, Bottleneck, CifarResNet, createModel, ResNet } from './models.js';
import { exportOnnx, type OnnxExportOptions } from './onnx.js';
import { ModelProto } from './onnx-proto.js';

// Debian's interpreter: python3-onnx installs there, whatever python3 comes first on the PATH.
const PYTHON = '/usr/bin/python3';
const CHECKER = fileURLToPath(new URL('../../../scripts/check-onnx.py', import.meta.url));
const checkerMissing = spawnSync(PYTHON, ['-c', 'import onnx']).status !== 0;
if (checkerMissing && process.env.RESIDUAL_REQUIRE_ONNX === '1')
  throw new Error(`RESIDUAL_REQUIRE_ONNX=1 but ${PYTHON} cannot import onnx (apt-get install python3-onnx)`);

interface Decoded {
  ir_version: number;
  opset_import: { version: number }[];
  graph: {
    node: { op_type: string; name: string }[];
    initializer: { name: string; dims: number[] }[];
    input: { name: string; type: { tensor_type: { shape: { dim: { dim_value?: number; dim_param?: string }[] } } } }[];
    output: Decoded['graph']['input'];
  };
}
const decode = (bytes: Uint8Array) => ModelProto.toObject(ModelProto.decode(bytes), { longs: Number }) as Decoded;
const ops = (m: Decoded) => {
  const counts: Record<string, number> = {};
  for (const n of m.graph.node) counts[n.op_type] = (counts[n.op_type] ?? 0) + 1;
  return counts;
};
const dims = (v: Decoded['graph']['input'][number]) => v.type.tensor_type.shape.dim.map((d) => d.dim_param ?? d.dim_value);

beforeAll(() => {
  setBackend(createReferenceBackend());
  manualSeed(0);
});

describe('exportOnnx writes the network of the paper', () => {
  it('resnet20: 19 convolutions and fc (6n+2 = 20 layers), 9 additions, option A twice; batch-norm folded or kept', async () => {
    const model = createModel('resnet20');
    const body = { Conv: 19, Relu: 19, Add: 9, Slice: 2, Pad: 2, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 };
    expect(ops(decode(await exportOnnx(model)))).toEqual(body);
    const kept = decode(await exportOnnx(model, { foldBatchNorm: false }));
    expect(ops(kept)).toEqual({ ...body, BatchNormalization: 19 });
    // Unfolded, the initializers are the state dict less num_batches_tracked, under the same names.
    const stateKeys = [...model.stateDict().keys()].filter((k) => !k.endsWith('num_batches_tracked'));
    const initializers = kept.graph.initializer.filter((t) => !t.name.includes('.shortcut.'));
    expect(initializers.map((t) => t.name).sort()).toEqual(stateKeys.sort());
    expect(initializers.find((t) => t.name === 'layer3.2.conv2.weight')!.dims).toEqual([64, 64, 3, 3]);
  });

  it('plain20 has no shortcut; resnet18 has a max-pool and three projections (the shape changes thrice)', async () => {
    expect(ops(decode(await exportOnnx(createModel('plain20'))))).toEqual({ Conv: 19, Relu: 19, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 });
    const r18 = new ResNet(BasicBlock, [2, 2, 2, 2], { numClasses: 5 });
    expect(ops(decode(await exportOnnx(r18)))).toEqual({ Conv: 20, Relu: 17, MaxPool: 1, Add: 8, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 });
  });

  it('declares input [N, 3, H, W] and logits [N, classes], N fixed or symbolic, and the opset with its IR version', async () => {
    const model = createModel('resnet20');
    const fixed = decode(await exportOnnx(model, { batch: 4, imageSize: [40, 48], opset: 13 }));
    expect(fixed.graph.input.map((v) => [v.name, dims(v)])).toEqual([['input', [4, 3, 40, 48]]]);
    expect(fixed.graph.output.map((v) => [v.name, dims(v)])).toEqual([['logits', [4, 10]]]);
    expect([fixed.opset_import[0].version, fixed.ir_version]).toEqual([13, 7]);
    const dynamic = decode(await exportOnnx(model, { batch: 'dynamic' }));
    expect(dims(dynamic.graph.input[0])).toEqual(['batch', 3, 32, 32]);
    expect(dims(dynamic.graph.output[0])).toEqual(['batch', 10]);
    expect([dynamic.opset_import[0].version, dynamic.ir_version]).toEqual([17, 8]);
  });

  it('rejects an opset or a batch size it cannot write', async () => {
    const model = createModel('resnet20');
    await expect(exportOnnx(model, { opset: 18 })).rejects.toThrow(/opset 18 is not supported/);
    await expect(exportOnnx(model, { batch: 0 })).rejects.toThrow(/batch must be/);
  });
});

describe.skipIf(checkerMissing)("the ONNX project's checker", () => {
  it('accepts every variant and reads the same graph', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'residual-onnx-'));
    const variants: [string, () => ResNet | CifarResNet, OnnxExportOptions, (string | number)[]][] = [
      ['resnet20', () => createModel('resnet20'), { batch: 'dynamic' }, ['batch', 10]],
      ['resnet20-kept-opset13', () => createModel('resnet20'), { foldBatchNorm: false, batch: 2, opset: 13 }, [2, 10]],
      ['plain20', () => createModel('plain20'), {}, [1, 10]],
      ['cifar-option-b', () => new CifarResNet(1, { shortcut: 'B' }), { foldBatchNorm: false }, [1, 10]],
      // Option A around a bottleneck: zero channels with stride 1 (64 -> 256) and with stride 2; grouped 3x3s; the paper's stride.
      ['bottleneck-option-a', () => new ResNet(Bottleneck, [1, 1, 1, 1], { shortcut: 'A', groups: 2, widthPerGroup: 32, bottleneckStride: 'v1', numClasses: 7 }),
        { foldBatchNorm: false, batch: 'dynamic', imageSize: 64 }, ['batch', 7]],
      ['basic-option-c', () => new ResNet(BasicBlock, [1, 1, 1, 1], { shortcut: 'C', numClasses: 3 }), { imageSize: [64, 96], opset: 15 }, [1, 3]],
    ];
    const expected = [];
    for (const [name, build, options, logits] of variants) {
      const bytes = await exportOnnx(build(), options);
      writeFileSync(join(dir, `${name}.onnx`), bytes);
      expected.push({ file: join(dir, `${name}.onnx`), ops: ops(decode(bytes)), output: { logits } });
    }
    const r = spawnSync(PYTHON, [CHECKER, ...expected.map((e) => e.file)], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const read = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(read).toMatchObject(expected);
  }, 120_000);
});
