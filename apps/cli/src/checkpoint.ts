/**
 * Training checkpoints: the model's state dict, the optimizer's momentum, and a JSON record of the
 * trainer, data-loader position and run counters, in one safetensors file written atomically
 * (temp file, fsync, rename), so a kill at any moment leaves the previous checkpoint intact.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tensor, type Module } from '@residual/core';
import { openSafetensors, writeSafetensors } from '@residual/core/node';
import type { SafetensorsInput } from '@residual/core';
import type { TrainerState } from '@residual/resnet';

/** The checkpoint's file name inside a run folder. */
export const CHECKPOINT_FILE = 'checkpoint.safetensors';

/** What a run records besides tensors. */
export interface RunRecord {
  readonly trainer: Omit<TrainerState, 'optimizer'> & { optimizer: Omit<TrainerState['optimizer'], 'momentum'> };
  readonly loader: { epoch: number; position: number };
  /** Running sums of the epoch in progress, so a resumed epoch reports the same totals. */
  readonly epochStats: { loss: number; correct: number; images: number; steps: number };
  readonly elapsedSeconds: number;
  readonly options: Record<string, unknown>;
  /** Processes that trained (absent: 1); the loader position is per rank. */
  readonly worldSize?: number;
}

/** Writes `dir/checkpoint.safetensors` atomically. */
export const saveCheckpoint = async (dir: string, model: Module, state: TrainerState, record: Omit<RunRecord, 'trainer'>): Promise<void> => {
  const tensors: Record<string, SafetensorsInput> = {};
  for (const [k, t] of model.stateDict()) {
    const data = await t.data();
    tensors[`model.${k}`] = { data, shape: t.shape, dtype: t.dtype === 'i32' ? 'I64' : 'F32' };
  }
  state.optimizer.momentum.forEach((m, i) => {
    if (m) tensors[`optimizer.momentum.${i}`] = { data: m, shape: [m.length] };
  });
  const { optimizer, ...rest } = state;
  const run: RunRecord = { ...record, trainer: { ...rest, optimizer: { groups: optimizer.groups } } };
  await writeSafetensors(join(dir, CHECKPOINT_FILE), tensors, { residual: JSON.stringify(run) });
};

/** A loaded checkpoint: the model's tensors (uploaded), the trainer state and the run record. */
export interface LoadedCheckpoint {
  readonly model: Map<string, import('@residual/core').Tensor>;
  readonly trainer: TrainerState;
  readonly record: RunRecord;
}

/** Reads `dir/checkpoint.safetensors`, or returns null when the folder has none. */
export const loadCheckpoint = async (dir: string, parameterCount: number): Promise<LoadedCheckpoint | null> => {
  const path = join(dir, CHECKPOINT_FILE);
  if (!existsSync(path)) return null;
  const file = await openSafetensors(path);
  try {
    const meta = file.header.metadata.residual;
    if (!meta) throw new Error(`${path}: not a residual checkpoint (no 'residual' metadata)`);
    const record = JSON.parse(meta) as RunRecord;
    const model = new Map<string, import('@residual/core').Tensor>();
    const momentum: (Float32Array | null)[] = Array(parameterCount).fill(null);
    for await (const [name, t] of file.entries()) {
      if (name.startsWith('model.')) model.set(name.slice(6), tensor(t.data, t.shape, t.dtype));
      else if (name.startsWith('optimizer.momentum.')) {
        const i = Number(name.slice('optimizer.momentum.'.length));
        if (!(i >= 0 && i < parameterCount)) throw new Error(`${path}: tensor "${name}" has no parameter ${i} (the model has ${parameterCount})`);
        momentum[i] = t.data as Float32Array;
      }
    }
    const trainer: TrainerState = { ...record.trainer, optimizer: { groups: record.trainer.optimizer.groups, momentum } };
    return { model, trainer, record };
  } finally {
    await file.close();
  }
};
