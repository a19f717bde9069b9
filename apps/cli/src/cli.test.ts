/**
 * The `residual` command end to end, as a user runs it (the built dist, a child process), on data
 * and weights the tests make: CIFAR-format files, formula weights checked against torchvision's logits.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetaBackend, setBackend } from '@residual/core';
import { loadTensors, saveTensors, openSafetensors } from '@residual/core/node';
import { createCpuBackend } from '@residual/backend-cpu';
import { isWebGpuAvailable } from '@residual/backend-webgpu';
import { createModel, goldenInput, goldenStateDict } from '@residual/resnet';
import { MAIN, cli, json, makeCifar } from './fixtures.test-support.js';

const GOLDEN = fileURLToPath(new URL('../../../packages/resnet/src/golden/', import.meta.url));


const losses = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'step').map((m) => m.loss);

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`build the CLI first (pnpm build): ${MAIN} is missing`);
});

const webgpu = await isWebGpuAvailable();
if (!webgpu && process.env.RESIDUAL_REQUIRE_WEBGPU === '1') throw new Error('RESIDUAL_REQUIRE_WEBGPU=1 but no WebGPU adapter was found');

/** Formula weights and input of a golden model, written once for every backend (VGG-16's weights are 553 MB). */
const goldenFiles = new Map<string, Promise<string>>();
const writeGoldenFiles = async (name: string, inputShape: number[]): Promise<string> => {
  const dir = mkdtempSync(join(tmpdir(), 'residual-predict-'));
  // The keys and shapes come from a model on the meta backend: no weights are drawn only to be replaced.
  setBackend(createMetaBackend());
  const model = createModel(name);
  // A backend of its own, disposed after, so no model's weights stay pooled in this process.
  const host = setBackend(createCpuBackend());
  try {
    const weights = goldenStateDict(model);
    await saveTensors(join(dir, 'w.safetensors'), weights, { format: 'pt' });
    for (const t of weights.values()) t.dispose();
    await saveTensors(join(dir, 'in.safetensors'), { input: goldenInput(inputShape) });
  } finally {
    host.dispose();
  }
  return dir;
};
afterAll(async () => {
  for (const dir of goldenFiles.values()) rmSync(await dir, { recursive: true, force: true });
});

// The baselines of issue #14 (AlexNet as torchvision's and as its paper's, VGG-16 plain and with
// batch-norm) beside the ResNets: 1000 logits each, within 1e-3 of torchvision's.
describe.each([
  ['cpu', true],
  ['webgpu', webgpu],
] as const)('predict --tensor reproduces torchvision logits on the %s backend', (backend, available) => {
  it.skipIf(!available).each(['resnet20', 'resnet18', 'alexnet', 'alexnet_original', 'vgg16', 'vgg16_bn'])('%s', async (name) => {
    const golden = JSON.parse(readFileSync(join(GOLDEN, `${name}.json`), 'utf8'));
    if (!goldenFiles.has(name)) goldenFiles.set(name, writeGoldenFiles(name, golden.inputShape));
    const dir = await goldenFiles.get(name)!;
    const r = json(['predict', '--model', name, '--weights', join(dir, 'w.safetensors'), '--tensor', join(dir, 'in.safetensors'), '--output', join(dir, `out-${backend}.safetensors`), '--backend', backend]);
    expect(r.shape).toEqual(golden.shape);
    setBackend(createCpuBackend());
    const out = await loadTensors(join(dir, `out-${backend}.safetensors`));
    const got = await out.get('logits')!.data();
    const worst = Math.max(...Array.from(got, (v, i) => Math.abs(v - golden.logits[i])));
    expect(worst).toBeLessThan(1e-3);
  }, 240_000);
});

describe('train, eval, resume', () => {
  const data = makeCifar(96);
  const base = ['train', '--model', 'resnet20', '--data', `cifar10:${data}`, '--batch-size', '16', '--lr', '0.05', '--seed', '3', '--log-every', '1', '--workers', '0'];

  it('trains, writes metrics, weights and a checkpoint, and eval reads the weights', () => {
    const out = mkdtempSync(join(tmpdir(), 'residual-run-'));
    const r = json([...base, '--epochs', '1', '--out', out]);
    expect(r.steps).toBe(6);
    expect(r.epochs).toBe(1);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
    const epochs = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'epoch');
    expect(epochs).toHaveLength(1);
    expect(epochs[0]).toMatchObject({ epoch: 1, step: 6 });
    expect(typeof epochs[0].valAccuracy).toBe('number');
    const e = json(['eval', '--model', 'resnet20', '--weights', join(out, 'model.safetensors'), '--data', `cifar10:${data}`, '--split', 'test']);
    expect(e.images).toBe(20);
    expect(e.top1).toBeGreaterThanOrEqual(0);
    expect(e.top1).toBeLessThanOrEqual(e.top5);
    expect(e.loss).toBeGreaterThan(0);
  }, 300_000);

  it('resumed runs reproduce the uninterrupted losses exactly', () => {
    const whole = mkdtempSync(join(tmpdir(), 'residual-whole-'));
    json([...base, '--iterations', '8', '--out', whole]);
    const parts = mkdtempSync(join(tmpdir(), 'residual-parts-'));
    // stop after 3 steps (mid-epoch: 6 steps per epoch), then resume to the end
    json([...base, '--iterations', '8', '--out', parts, '--stop-after', '3']);
    expect(losses(parts)).toHaveLength(3);
    json([...base, '--iterations', '8', '--resume', parts]);
    expect(losses(parts)).toEqual(losses(whole));
  }, 300_000);

  it('a SIGKILL while a checkpoint is being written leaves the previous one loadable, and resume completes', async () => {
    const out = mkdtempSync(join(tmpdir(), 'residual-kill-'));
    const child = spawn(process.execPath, [MAIN, ...base, '--iterations', '8', '--checkpoint-every', '1', '--out', out], {
      env: { ...process.env, RESIDUAL_BACKEND: 'cpu', RESIDUAL_THREADS: '1', RESIDUAL_FAULT_RENAME_DELAY_MS: '1500' },
      stdio: 'ignore',
    });
    // wait until a checkpoint exists and the next one is half-written (its temp file is there)
    const deadline = Date.now() + 240_000;
    let killed = false;
    while (Date.now() < deadline && !killed) {
      await new Promise((r) => setTimeout(r, 50));
      const names = readdirSync(out);
      if (names.includes('checkpoint.safetensors') && names.some((n) => n.startsWith('.checkpoint.safetensors') && n.endsWith('.tmp'))) {
        child.kill('SIGKILL');
        killed = true;
      }
    }
    expect(killed).toBe(true);
    await new Promise((r) => child.once('exit', r));
    const file = await openSafetensors(join(out, 'checkpoint.safetensors'));
    const record = JSON.parse(file.header.metadata.residual);
    await file.close();
    expect(record.trainer.step).toBeGreaterThanOrEqual(1);
    const r = json([...base, '--iterations', '8', '--resume', out]);
    expect(r.steps).toBe(8);
  }, 300_000);

  it('--resume on a folder without a checkpoint starts from scratch with a notice', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'residual-new-')), 'run');
    const r = cli([...base, '--iterations', '1', '--resume', out, '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/no checkpoint .* starting from scratch/);
    expect(JSON.parse(r.stdout).steps).toBe(1);
  }, 120_000);
});

describe('options and config files', () => {
  it('rejects an unknown config key, naming it and the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'residual-cfg-'));
    writeFileSync(join(dir, 'run.json'), JSON.stringify({ model: 'resnet20', batchSise: 3 }));
    const r = cli(['train', '--config', join(dir, 'run.json')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/run\.json: unknown key 'batchSise'/);
  });

  it('names the flag of a bad value, and the config key when it comes from the file', () => {
    const r = cli(['train', '--batch-size', 'many']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--batch-size/);
    const dir = mkdtempSync(join(tmpdir(), 'residual-cfg-'));
    writeFileSync(join(dir, 'run.json'), JSON.stringify({ lr: -1 }));
    const c = cli(['train', '--config', join(dir, 'run.json')]);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/run\.json: key 'lr'/);
  });

  it('a flag overrides the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'residual-cfg-'));
    writeFileSync(join(dir, 'run.json'), JSON.stringify({ model: 'nonsense' }));
    const r = cli(['train', '--config', join(dir, 'run.json'), '--model', 'resnet20', '--epochs', '1', '--iterations', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--epochs and --iterations/); // model validated fine: the flag won
  });

  it('an unknown model lists the known ones', () => {
    const r = cli(['train', '--model', 'resnet21']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--model.*resnet20/);
    expect(r.stderr).toMatch(/--model.*alexnet.*vgg16_bn/);
  });

  it('export says it writes only the ResNets as ONNX', () => {
    const r = cli(['export', '--model', 'vgg16', '--weights', 'vgg16.safetensors', '--out', 'vgg16.onnx']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('export writes the ResNets as ONNX; vgg16 is not one of them');
  });

  it('devices lists the CPU backend with a passing self-check, and which provider runs it', () => {
    const d = json(['devices']);
    const cpu = d.find((x: { backend: string }) => x.backend === 'cpu');
    expect(cpu).toMatchObject({ available: true, selfCheck: 'ok' });
    // The native provider runs where it loads; elsewhere the WebAssembly one, with what to install.
    if (cpu.native.available) expect(cpu).toMatchObject({ provider: 'native', device: expect.stringMatching(/oneDNN/) });
    else expect(cpu).toMatchObject({ provider: 'wasm', native: { install: expect.stringMatching(/libdnnl-dev/) } });
    if (process.env.RESIDUAL_REQUIRE_NATIVE === '1') expect(cpu.provider).toBe('native');
  }, 60_000);

  it('weights inspect lists tensors with torchvision dtypes', async () => {
    setBackend(createCpuBackend());
    const dir = mkdtempSync(join(tmpdir(), 'residual-w-'));
    const model = createModel('resnet20');
    await saveTensors(join(dir, 'w.safetensors'), model.stateDict());
    const r = json(['weights', 'inspect', join(dir, 'w.safetensors')]);
    expect(r.tensors.find((t: { name: string }) => t.name === 'bn1.num_batches_tracked')).toMatchObject({ dtype: 'I64', shape: [] });
    expect(r.tensors).toHaveLength(model.stateDict().size);
  });
});

describe('backend auto', () => {
  it('settles on a backend without Dawn printing on the terminal', async () => {
    const { probeWebGpu } = await import('@residual/backend-webgpu');
    const probe = await probeWebGpu();
    const out = mkdtempSync(join(tmpdir(), 'residual-auto-'));
    const r = cli(['train', '--iterations', '1', '--batch-size', '8', '--out', out], { RESIDUAL_BACKEND: '' });
    expect(r.code, r.stderr).toBe(0);
    // Dawn's own notes (lavapipe draws "... artificially reduced ...") start with a severity and a colon.
    const printed = `${r.stdout}\n${r.stderr}`;
    expect(printed).not.toMatch(/^(Warning|Error|Info): /m);
    const chosen = probe.available && !probe.software ? 'webgpu' : 'cpu';
    expect(printed).toContain(`backend ${chosen} (`);
    if (probe.available && probe.software) expect(r.stderr).toContain(`software renderer (${probe.device}); using the CPU backend`);
  }, 120_000);
});
