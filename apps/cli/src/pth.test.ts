/**
 * PyTorch checkpoints through the command (the built dist, a child process): a torchvision model
 * saved by torch.save gives the very logits of the same weights as safetensors written by Python,
 * and hostile checkpoints are refused by name. The torchvision files are made at test time by
 * scripts/make-pth.py with Debian's python3-torch; without it those tests skip, unless
 * RESIDUAL_REQUIRE_TORCH=1 (CI) makes that an error.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setBackend } from '@residual/core';
import { openSafetensors } from '@residual/core/node';
import { createCpuBackend } from '@residual/backend-cpu';
import { MAIN, cli, json } from './fixtures.test-support.js';

const MAKE_PTH = fileURLToPath(new URL('../../../scripts/make-pth.py', import.meta.url));
const FIXTURES = fileURLToPath(new URL('../../../packages/core/src/io/pth-fixtures/', import.meta.url));


const python = process.env.RESIDUAL_PYTHON ?? '/usr/bin/python3';
const torch = spawnSync(python, ['-c', 'import torch, torchvision']).status === 0;
if (!torch && process.env.RESIDUAL_REQUIRE_TORCH === '1')
  throw new Error(`RESIDUAL_REQUIRE_TORCH=1 but ${python} cannot import torch and torchvision (Debian: python3-torch, python3-torchvision)`);

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`build the CLI first (pnpm build): ${MAIN} is missing`);
  setBackend(createCpuBackend());
});

/** Every tensor of a safetensors file as it reads back: dtype as stored, shape, and the bytes of its values. */
const readBack = async (path: string) => {
  const file = await openSafetensors(path);
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  for await (const [name, t] of file.entries()) out.set(name, { dtype: t.sourceDtype, shape: t.shape, bytes: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength) });
  await file.close();
  return out;
};

describe.skipIf(!torch)('a torchvision resnet50 saved by torch.save (needs python3-torch and python3-torchvision)', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'residual-pth-'));
    const made = spawnSync(python, [MAKE_PTH, 'torchvision', 'resnet50', dir], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`make-pth.py torchvision resnet50 failed: ${made.stderr}`);
  }, 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true })); // 300 MB of resnet50 weights

  it('predict --weights f.pth gives bit for bit the logits of the same weights as safetensors, and torchvision\'s within rounding', async () => {
    const predict = (weights: string, out: string) =>
      json(['predict', '--model', 'resnet50', '--weights', join(dir, weights), '--tensor', join(dir, 'input.safetensors'), '--output', join(dir, out)]);
    expect(predict('resnet50.pth', 'from-pth.safetensors').shape).toEqual([1, 1000]);
    predict('resnet50.safetensors', 'from-safetensors.safetensors');
    const fromPth = (await readBack(join(dir, 'from-pth.safetensors'))).get('logits')!;
    expect(fromPth.bytes.equals((await readBack(join(dir, 'from-safetensors.safetensors'))).get('logits')!.bytes)).toBe(true);

    const logits = new Float32Array(fromPth.bytes.buffer, fromPth.bytes.byteOffset, 1000);
    const reference = JSON.parse(readFileSync(join(dir, 'logits.json'), 'utf8')) as number[];
    const scale = Math.max(...reference.map(Math.abs));
    const worst = Math.max(...reference.map((v, i) => Math.abs(v - logits[i])));
    expect(worst).toBeLessThan(1e-5 * scale); // random weights give logits in the hundreds
  }, 120_000);

  it('weights convert writes the tensors Python wrote as safetensors, bit for bit', async () => {
    expect(json(['weights', 'convert', join(dir, 'resnet50.pth'), join(dir, 'converted.safetensors')]).tensors).toBe(320);
    const [converted, reference] = [await readBack(join(dir, 'converted.safetensors')), await readBack(join(dir, 'resnet50.safetensors'))];
    expect([...converted.keys()].sort()).toEqual([...reference.keys()].sort());
    for (const [name, t] of reference) {
      const c = converted.get(name)!;
      expect({ dtype: c.dtype, shape: c.shape, same: c.bytes.equals(t.bytes) }, name).toEqual({ dtype: t.dtype, shape: t.shape, same: true });
    }
  }, 60_000);
});

describe('checkpoints torch.save wrote, and hostile ones, through the command', () => {
  it('weights inspect lists a .pth with the dtypes as stored', () => {
    const r = json(['weights', 'inspect', join(FIXTURES, 'state-dict.pth')]);
    expect(r.format).toBe('pth');
    expect(r.tensors.find((t: { name: string }) => t.name === '1.num_batches_tracked')).toEqual({ name: '1.num_batches_tracked', dtype: 'I64', shape: [] });
    expect(r.tensors.map((t: { name: string }) => t.name)).toEqual(JSON.parse(readFileSync(join(FIXTURES, 'expected.json'), 'utf8'))['state-dict.pth'].keys);
  });

  it.each([
    ['system.pth', 'refused global posix.system'],
    ['inst.pth', 'refused opcode INST (0x69)'],
  ])('predict --weights %s exits 2 naming what it refused, and runs nothing', (name, refused) => {
    const marker = join(mkdtempSync(join(tmpdir(), 'residual-pth-')), 'ran');
    const r = cli(['predict', '--model', 'resnet18', '--weights', join(FIXTURES, name), 'x.png'], { RESIDUAL_PTH_MARKER: marker });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${name}: ${name.replace('.pth', '')}/data.pkl`);
    expect(r.stderr).toContain(refused);
    expect(existsSync(marker)).toBe(false);
  });

  it('weights convert refuses a hostile checkpoint and writes nothing', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'residual-pth-')), 'out.safetensors');
    const r = cli(['weights', 'convert', join(FIXTURES, 'system.pth'), out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('refused global posix.system');
    expect(existsSync(out)).toBe(false);
  });
});
