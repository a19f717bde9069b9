/**
 * `residual train` across processes: joining the MPI job a launcher started (mpirun, Slurm, the MPI
 * operator), and `--nproc N`, which runs mpirun for the user on this host.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import type { ProcessGroup } from '@residual/distributed';
import { UsageError } from './options.js';

type Distributed = typeof import('@residual/distributed');

/** The package, loaded on first need (single-process runs never load it). */
export const distributed = (): Promise<Distributed> => import('@residual/distributed');

/**
 * Joins the MPI job when a launcher started this process as one of several; null otherwise. Sets
 * each rank's CPU threads to its share of this host's cores unless RESIDUAL_THREADS says, so call it
 * before the backend is made. A rank stopped by its launcher because another died says which.
 */
export const joinJob = async (timeoutSeconds?: number): Promise<ProcessGroup | null> => {
  const dist = await distributed();
  const launch = dist.launchInfo();
  if (!launch || launch.worldSize < 2) return null;
  if (launch.launcher === 'torchrun')
    throw new UsageError(`RANK and WORLD_SIZE are set (torchrun-style), but residual trains across processes on MPI: ` +
      `run \`mpirun -np ${launch.worldSize} residual train ...\` or \`residual train --nproc ${launch.worldSize} ...\``);
  const status = dist.mpiStatus();
  if (!status.available) throw new Error(`launched as rank ${launch.rank} of ${launch.worldSize}, but ${status.reason}`);
  process.env.RESIDUAL_THREADS ??= String(Math.max(1, Math.floor(availableParallelism() / (launch.localSize ?? launch.worldSize))));
  const group = dist.init({ timeoutSeconds });
  // mpirun stops the other ranks when one dies: say which one before going.
  process.once('SIGTERM', () => {
    const lost = group.lostPeers();
    process.stderr.write(`residual: rank ${group.rank} of ${group.worldSize}: stopped by the launcher` +
      (lost.length ? `; lost ${lost.map((p) => `rank ${p.rank} (pid ${p.pid} on ${p.host})`).join(', ')}: its process is gone\n` : '\n'));
    process.exit(143);
  });
  return group;
};

/**
 * `--nproc N`: runs this same command as N ranks under mpirun on this host (without --nproc) and
 * resolves with mpirun's exit code.
 */
export const runWithMpirun = async (np: number, argv: readonly string[]): Promise<number> => {
  const dist = await distributed();
  if (!dist.hasMpirun()) throw new UsageError(`--nproc needs Open MPI's mpirun: ${dist.INSTALL_HINT}`);
  const status = dist.mpiStatus();
  if (!status.available) throw new UsageError(`--nproc: ${status.reason}`);
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--nproc') i++;
    else if (!argv[i].startsWith('--nproc=')) rest.push(argv[i]);
  }
  const threads = process.env.RESIDUAL_THREADS ? Number(process.env.RESIDUAL_THREADS) : undefined;
  const { command, args, env } = dist.mpirunCommand(np, [process.execPath, ...process.execArgv, process.argv[1], ...rest], { threadsPerRank: threads });
  const child = spawn(command, args, { stdio: 'inherit', env });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
};
