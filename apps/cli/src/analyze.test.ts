/**
 * `residual analyze responses` end to end through the built CLI: Figure 7's per-layer statistics of
 * two networks on CIFAR-format files the test writes, checked against the library's own pass.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { setBackend } from '@residual/core';
import { saveTensors } from '@residual/core/node';
import { createCpuBackend } from '@residual/backend-cpu';
import { createModel, goldenStateDict } from '@residual/resnet';
import { MAIN, cli, makeCifar } from './fixtures.test-support.js';


beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`build the CLI first (pnpm build): ${MAIN} is missing`);
});

describe('analyze responses', () => {
  it('gives every 3x3 layer of each network, sorted too, and draws both panels', async () => {
    setBackend(createCpuBackend({ threads: 1 }));
    const dir = mkdtempSync(join(tmpdir(), 'residual-analyze-'));
    const data = makeCifar(24);
    for (const name of ['plain20', 'resnet20']) await saveTensors(join(dir, `${name}.safetensors`), goldenStateDict(createModel(name)), { format: 'pt' });
    const svg = join(dir, 'fig7.svg');
    const r = cli(['analyze', 'responses', '--model', 'plain20,resnet20', '--weights', `${join(dir, 'plain20.safetensors')},${join(dir, 'resnet20.safetensors')}`,
      '--data', `cifar10:${data}`, '--batch-size', '8', '--workers', '0', '--out', svg, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.runs.map((x: { label: string }) => x.label)).toEqual(['plain20', 'resnet20']);
    for (const run of out.runs) {
      expect(run.layers).toHaveLength(19);
      expect(run.layers[0].name).toBe('bn1');
      expect(run.layers.at(-1).name).toBe('layer3.2.bn2');
      const stds = run.layers.map((l: { std: number }) => l.std);
      for (const s of stds) expect(s).toBeGreaterThan(0);
      expect(run.sorted).toEqual([...stds].sort((a, b) => b - a));
    }
    // The stem's response does not depend on the shortcuts: plain and residual agree there.
    expect(out.runs[0].layers[0].std).toBeCloseTo(out.runs[1].layers[0].std, 5);
    expect(readFileSync(svg, 'utf8')).toMatch(/^<svg[\s\S]*layer index \(sorted by magnitude\)/);
  }, 120_000);

  it('names the flag when the lists do not pair up', () => {
    const r = cli(['analyze', 'responses', '--model', 'plain20,resnet20', '--weights', 'a.safetensors', '--data', 'builtin:shapes']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--weights names 1 files for 2 --model names/);
  });
});
