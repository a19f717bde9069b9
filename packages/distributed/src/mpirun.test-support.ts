/** Tests: runs a script of test/ as N ranks under mpirun and collects each rank's JSON lines. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { hasMpirun, mpirunCommand } from './launch.js';
import { mpiStatus } from './group.js';

const status = mpiStatus();
/** Why multi-rank tests cannot run here, or null when they can. */
export const mpiMissing: string | null = !status.available ? status.reason : !hasMpirun() ? 'mpirun is not on the PATH (apt-get install openmpi-bin)' : null;
if (mpiMissing && process.env.RESIDUAL_REQUIRE_MPI === '1') throw new Error(`RESIDUAL_REQUIRE_MPI=1 but ${mpiMissing}`);
if (mpiMissing) console.warn(`skipping the multi-rank tests: ${mpiMissing}`);

/** What a run of N ranks printed. */
export interface RanksResult {
  readonly code: number | null;
  /** Every JSON line of stdout, in order. */
  readonly lines: Record<string, unknown>[];
  readonly stderr: string;
}

/** Runs `test/<script>` as `np` ranks of one thread each; `mpirunArgs` go before the command. */
export const runRanks = (np: number, script: string, args: string[] = [], mpirunArgs: string[] = []): Promise<RanksResult> => {
  const file = fileURLToPath(new URL(`../test/${script}`, import.meta.url));
  const { command, args: mpiArgs, env } = mpirunCommand(np, [...mpirunArgs, process.execPath, file, ...args], { threadsPerRank: 1 });
  const child = spawn(command, mpiArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let pending = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const parts = pending.split('\n');
    pending = parts.pop()!;
    for (const p of parts) {
      if (!p.startsWith('{')) continue;
      const l = JSON.parse(p) as Record<string, unknown>;
      lines.push(l);
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, lines, stderr })));
};
