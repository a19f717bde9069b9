/** Test fixtures shared by the CLI's tests (not built or shipped). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built command's entry point: the tests run what users run. */
export const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** Runs `residual args` as a child process on the CPU backend with one thread, `env` added on top. */
export const cli = (args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, RESIDUAL_BACKEND: 'cpu', RESIDUAL_THREADS: '1', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** `cli` with `--json`: the parsed result, or an error with the command's stderr when it fails. */
export const json = (args: string[]) => {
  const r = cli([...args, '--json']);
  if (r.code !== 0) throw new Error(`residual ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
};

export /** A CIFAR-10 folder in the official binary layout, with `n` learnable records (the class sets the mean colour). */
const makeCifar = (n: number, seed = 1): string => {
  const dir = mkdtempSync(join(tmpdir(), 'residual-cifar-'));
  const rec = 3073;
  const bytes = new Uint8Array(n * rec);
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let r = 0; r < n; r++) {
    const label = r % 10;
    bytes[r * rec] = label;
    for (let p = 0; p < 3072; p++) bytes[r * rec + 1 + p] = Math.floor(label * 20 + rnd() * 60);
  }
  writeFileSync(join(dir, 'data_batch_1.bin'), bytes);
  writeFileSync(join(dir, 'test_batch.bin'), bytes.subarray(0, Math.min(n, 20) * rec));
  return dir;
};

