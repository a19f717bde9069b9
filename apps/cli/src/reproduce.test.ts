/**
 * `residual reproduce` end to end through the built CLI, cut to two steps per network on CIFAR-format
 * files the test writes: the runs, the figure, the summary and its gaps, and Table 6's rows.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAIN, cli as cliOneThread, makeCifar } from './fixtures.test-support.js';

// Every core, as a user's reproduce run gets.
const cli = (args: string[]) => cliOneThread(args, { RESIDUAL_THREADS: String(availableParallelism()) });


beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`build the CLI first (pnpm build): ${MAIN} is missing`);
});

describe('reproduce', () => {
  // The tiny scale trains on 5,000 records and holds 1,000 out: the fixture has a few more.
  const data = makeCifar(6016);

  it('degradation: four runs, one figure with both panels, and the gaps of Figure 6', () => {
    const out = mkdtempSync(join(tmpdir(), 'residual-fig6-'));
    const r = cli(['reproduce', 'degradation', '--scale', 'tiny', '--iterations', '2', '--data', `cifar10:${data}`, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(Object.keys(s.summary)).toEqual(['plain20', 'plain56', 'resnet20', 'resnet56']);
    for (const m of Object.keys(s.summary)) {
      expect(existsSync(join(out, m, 'model.safetensors'))).toBe(true);
      expect(s.summary[m].testError).toBeGreaterThanOrEqual(0);
    }
    expect(s.gaps.plain56MinusPlain20).toBeCloseTo(s.summary.plain56.trainError - s.summary.plain20.trainError, 12);
    expect(s.gaps.plain56MinusResnet56).toBeCloseTo(s.summary.plain56.trainError - s.summary.resnet56.trainError, 12);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'))).toEqual(s);
    const svg = readFileSync(s.figure, 'utf8');
    expect(svg).toContain('plain networks');
    expect(svg).toContain('residual networks');
    // One recipe for all four: the same rate at the same step.
    const firstLr = (m: string) => JSON.parse(readFileSync(join(out, m, 'metrics.jsonl'), 'utf8').split('\n')[0]).lr;
    expect(new Set(['plain20', 'plain56', 'resnet20', 'resnet56'].map(firstLr)).size).toBe(1);
  }, 300_000);

  it("cifar: a row per network with its test error beside Table 6's", () => {
    const out = mkdtempSync(join(tmpdir(), 'residual-table6-'));
    const r = cli(['reproduce', 'cifar', '--models', 'resnet20,resnet32', '--scale', 'tiny', '--iterations', '2', '--data', `cifar10:${data}`, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.rows.map((x: { model: string }) => x.model)).toEqual(['resnet20', 'resnet32']);
    expect(s.rows.map((x: { paperTestError: number }) => x.paperTestError)).toEqual([8.75, 7.51]);
    for (const row of s.rows) expect(row.testError).toBeGreaterThanOrEqual(0);
    expect(readFileSync(join(out, 'table6.md'), 'utf8')).toMatch(/^\| model \| test error \(%\) \| paper \(Table 6\)/);
  }, 300_000);

  it('cifar names the flag at fault', () => {
    const r = cli(['reproduce', 'cifar', '--models', 'resnet21']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--models/);
    const d = cli(['reproduce', 'cifar', '--data', 'builtin:shapes']);
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(/--data builtin:shapes: reproduce cifar needs CIFAR-10 files/);
  });
});
