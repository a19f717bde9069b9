import { describe, expect, it } from 'vitest';
import { mpiMissing, runRanks } from './mpirun.test-support.js';

type Line = { rank: number; step: number; hash: string; loss?: number; images?: number };

describe.skipIf(mpiMissing !== null)('DataParallel under mpirun', () => {
  it.each([
    [2, 'per-rank batch-norm', 0, 1],
    [3, 'per-rank batch-norm', 0, 1],
    [2, 'sync batch-norm', 1, 1],
    [3, 'sync batch-norm', 1, 1],
    [3, 'per-rank batch-norm, gradients reduced after backward', 0, 0],
  ])('%i ranks, %s: every rank holds bitwise-identical weights and buffers after every step', async (np, _name, syncBn, overlap) => {
    const steps = 4;
    const r = await runRanks(np, 'train.mjs', [String(syncBn), String(overlap), String(steps)]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.lines as unknown as Line[];
    expect(lines).toHaveLength(np * (steps + 1));
    for (let step = 0; step <= steps; step++) {
      const at = lines.filter((l) => l.step === step);
      expect(at.map((l) => l.rank).sort()).toEqual(Array.from({ length: np }, (_, i) => i));
      // Different seeds per rank: from step 0 on, rank 0's weights are everyone's.
      expect(new Set(at.map((l) => l.hash)).size, `step ${step}`).toBe(1);
      if (step === 0) continue;
      expect(new Set(at.map((l) => l.loss)).size).toBe(1);
      // Ranks hold 3, 4, 5 images: the step counts the global batch.
      expect(at[0].images).toBe(Array.from({ length: np }, (_, k) => 3 + k).reduce((a, b) => a + b));
    }
    expect(new Set(lines.map((l) => l.hash)).size).toBe(steps + 1);
  });

  it('a rank that dies makes the others give up at their collective timeout, naming it', async () => {
    // --enable-recovery keeps mpirun from stopping the job itself, as some launchers do (it then
    // exits 0 whatever its ranks did, so the ranks' own lines are what count).
    const r = await runRanks(3, 'lost-rank.mjs', ['3'], ['--enable-recovery']);
    const lines = r.lines as { rank: number; name: string; error: string }[];
    expect(lines.map((l) => l.rank).sort()).toEqual([0, 1]);
    for (const l of lines) {
      expect(l.name).toBe('DistributedError');
      expect(l.error).toMatch(new RegExp(`^rank ${l.rank} of 3: lost rank 2 \\(pid \\d+ on .+\\): its process is gone \\(killed or crashed\\) while this rank waited in allReduce of 1000 float32`));
    }
  });
});
