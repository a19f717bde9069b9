import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { launchInfo, mpirunCommand } from './launch.js';
import { mpiMissing, runRanks } from './mpirun.test-support.js';

describe.skipIf(mpiMissing !== null)('collectives on 2 and 3 ranks (mpirun on this host)', () => {
  it.each([2, 3])('allReduce, broadcast, barrier on odd sizes and 100 MB buffers, %i ranks', async (np) => {
    const r = await runRanks(np, 'collectives.mjs');
    expect(r.code, r.stderr).toBe(0);
    expect(r.lines).toHaveLength(np);
    for (const line of r.lines) {
      expect(line.worldSize).toBe(np);
      expect(line.engine).toMatch(/MPI/);
      const checks = line.checks as Record<string, string>;
      expect(Object.keys(checks).length).toBeGreaterThan(25);
      for (const [name, result] of Object.entries(checks)) expect(`${name}: ${result}`).toBe(`${name}: ok`);
    }
    expect(r.lines.map((l) => l.rank).sort()).toEqual(Array.from({ length: np }, (_, i) => i));
  });

  it('ranks that reduce different sizes all get an error naming the sizes, not a hang', async () => {
    const r = await runRanks(3, 'mismatch.mjs');
    expect(r.code, r.stderr).toBe(0);
    expect(r.lines).toHaveLength(3);
    for (const l of r.lines) {
      expect(l.name).toBe('DistributedError');
      expect(l.error).toMatch(new RegExp(`^rank ${l.rank} of 3: collective #\\d+ differs across ranks: rank ${l.rank} called allReduce of ${10 + (l.rank as number)} float32`));
      expect(l.error).toContain('element counts across ranks range from 10 to 12');
    }
  });
});

describe('launchers', () => {
  it("reads the rank and size that mpirun, Slurm, PMI and torchrun set", () => {
    expect(launchInfo({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_LOCAL_SIZE: '2' })).toEqual({ rank: 1, worldSize: 4, localSize: 2, launcher: 'mpirun' });
    expect(launchInfo({ SLURM_PROCID: '3', SLURM_STEP_NUM_TASKS: '8' })).toMatchObject({ rank: 3, worldSize: 8, launcher: 'slurm' });
    expect(launchInfo({ PMI_RANK: '0', PMI_SIZE: '2' })).toMatchObject({ rank: 0, worldSize: 2, launcher: 'pmi' });
    expect(launchInfo({ RANK: '2', WORLD_SIZE: '3', LOCAL_WORLD_SIZE: '3' })).toEqual({ rank: 2, worldSize: 3, localSize: 3, launcher: 'torchrun' });
    expect(launchInfo({})).toBeNull();
  });

  it('mpirun for one host: N ranks, bound to cores of their own where they fit, else unbound and oversubscribed', () => {
    const cores = availableParallelism();
    const over = mpirunCommand(2, ['node', 'main.js'], { threadsPerRank: cores });
    expect(over.command).toBe('mpirun');
    expect(over.args.slice(0, 8)).toEqual(['-np', '2', '--oversubscribe', '--bind-to', 'none', '--mca', 'mpi_yield_when_idle', '1']);
    expect(over.args.slice(-2)).toEqual(['node', 'main.js']);
    expect(over.env.RESIDUAL_THREADS).toBe(String(cores));
    const fit = mpirunCommand(cores, ['node', 'main.js'], { threadsPerRank: 1 });
    expect(fit.args.slice(0, 9)).toEqual(['-np', String(cores), '--map-by', 'slot:PE=1', '--bind-to', 'core', '--mca', 'mpi_yield_when_idle', '1']);
    expect(mpirunCommand(1, ['x']).args.slice(0, 6)).toEqual(['-np', '1', '--map-by', `slot:PE=${cores}`, '--bind-to', 'core']);
  });
});
