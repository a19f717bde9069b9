/**
 * `residual train` across processes, as users run it: `--nproc N` (mpirun on this host), checked
 * against one process on the same global batch, through a SIGKILL of one rank, and resumed on
 * another number of ranks. RESIDUAL_REQUIRE_MPI=1 (CI) turns a missing MPI into a failure.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hasMpirun, mpiStatus } from '@residual/distributed';
import { makeCifar } from './fixtures.test-support.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const env = { ...process.env, RESIDUAL_BACKEND: 'cpu', RESIDUAL_THREADS: '1' };
const status = mpiStatus();
const missing = !status.available ? status.reason : !hasMpirun() ? 'mpirun is not on the PATH' : null;
if (missing && process.env.RESIDUAL_REQUIRE_MPI === '1') throw new Error(`RESIDUAL_REQUIRE_MPI=1 but ${missing}`);
if (missing) console.warn(`skipping the multi-process CLI tests: ${missing}`);

const train = (args: string[]) => {
  const r = spawnSync(process.execPath, [MAIN, 'train', ...args, '--json'], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`residual train ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout);
};
const metrics = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const losses = (dir: string) => metrics(dir).filter((m) => m.type === 'step').map((m) => m.loss as number);
const worst = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]) / Math.abs(v)));
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `residual-${name}-`));

describe.skipIf(missing !== null)('train --nproc (Open MPI on this host)', () => {
  // A small learning rate keeps 20 steps of float32 training from amplifying rounding past 1e-4:
  // one process alone on 1 and on 2 threads already differs by 1e-3 within 10 steps at lr 0.05.
  it.each([
    ['builtin:shapes', ['--data', 'builtin:shapes', '--train-subset', '2560', '--lr', '0.002']],
    // The fixture's classes differ by their mean colour, so gradients are larger: a smaller rate.
    ['CIFAR-10 files', ['--data', `cifar10:${makeCifar(2560)}`, '--lr', '0.0005']],
  ])('on %s, 2 ranks x 64 with --sync-bn take the steps of 1 process x 128 (losses within 1e-4 for 20 steps)', (_name, data) => {
    const common = [...data, '--iterations', '20', '--batch-size', '128', '--seed', '3', '--log-every', '1', '--workers', '0'];
    const one = tmp('one');
    train([...common, '--out', one]);
    const two = tmp('two');
    const r = train([...common, '--out', two, '--nproc', '2', '--sync-bn']);
    expect(r).toMatchObject({ steps: 20, worldSize: 2 });
    const [a, b] = [losses(one), losses(two)];
    expect(a).toHaveLength(20);
    expect(b).toHaveLength(20);
    expect(worst(a, b)).toBeLessThan(1e-4);
    // Control: with batch-norm per rank (statistics of 64 images) the very first loss already differs.
    const perRank = tmp('per-rank');
    train([...common, '--iterations', '1', '--out', perRank, '--nproc', '2']);
    expect(Math.abs(losses(perRank)[0] - a[0]) / a[0]).toBeGreaterThan(1e-4);
  }, 300_000);

  it('resumes a run of 2 ranks on 3 and continues the steps of one process', () => {
    const common = ['--data', 'builtin:shapes', '--train-subset', '480', '--iterations', '8', '--batch-size', '48', '--lr', '0.002', '--seed', '5', '--log-every', '1', '--workers', '0'];
    const one = tmp('one');
    train([...common, '--out', one]);
    const run = tmp('resumed');
    expect(train([...common, '--out', run, '--nproc', '2', '--sync-bn', '--stop-after', '4'])).toMatchObject({ steps: 4, interrupted: true });
    expect(train([...common, '--resume', run, '--nproc', '3', '--sync-bn'])).toMatchObject({ steps: 8, worldSize: 3 });
    expect(metrics(run).filter((m) => m.type === 'step').map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(worst(losses(one), losses(run))).toBeLessThan(1e-4);
  }, 300_000);

  it('kill -9 of one rank: the other exits non-zero naming it, the checkpoint is intact, and --resume finishes', async () => {
    const out = tmp('killed');
    const args = ['--data', 'builtin:shapes', '--train-subset', '1280', '--iterations', '20', '--batch-size', '64', '--log-every', '1', '--checkpoint-every', '2', '--workers', '0', '--out', out];
    const child = spawn(process.execPath, [MAIN, 'train', ...args, '--nproc', '2'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Wait for a few steps and a checkpoint, then SIGKILL one of mpirun's two ranks.
    while (!(existsSync(join(out, 'checkpoint.safetensors')) && losses(out).length >= 5)) await new Promise((r) => setTimeout(r, 200));
    const mpirun = spawnSync('pgrep', ['-P', String(child.pid), 'mpirun'], { encoding: 'utf8' }).stdout.trim();
    const ranks = spawnSync('pgrep', ['-P', mpirun], { encoding: 'utf8' }).stdout.trim().split('\n').map(Number);
    expect(ranks).toHaveLength(2);
    const victim = ranks[1];
    process.kill(victim, 'SIGKILL');
    const code = await exited;
    expect(code).not.toBe(0);
    expect(stderr).toMatch(new RegExp(`rank \\d of 2: .*lost rank \\d \\(pid ${victim} on [^)]+\\): its process is gone`));
    const before = losses(out).length;
    const r = train([...args.filter((a) => a !== '--out' && a !== out), '--resume', out, '--nproc', '2']);
    expect(r).toMatchObject({ steps: 20, worldSize: 2, interrupted: false });
    expect(metrics(out).filter((m) => m.type === 'step').at(-1).step).toBe(20);
    expect(losses(out).length).toBeGreaterThan(before);
  }, 300_000);
});
