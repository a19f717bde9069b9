/**
 * The meta backend: tensors with shapes and dtypes but no data (PyTorch's "meta" device). Every op
 * runs its declaration (so shapes are checked) and nothing else; for counting parameters and FLOPs
 * of networks too large to run, and for dry-running shape checks.
 */
import type { Backend } from './backend.js';
import { OP_NAMES, type Kernels, type OpName, type TensorSpec } from './ops.js';

/** Called by the meta backend for every op it runs, with the op's attributes and output specs. */
export type MetaObserver = (op: OpName, inputs: Record<string, unknown>, attrs: unknown, outputs: readonly TensorSpec[]) => void;

/** A backend that computes shapes only; `observe` sees every op (e.g. to count multiply-adds). */
export const createMetaBackend = (observe?: MetaObserver): Backend<null> => {
  const kernels = Object.fromEntries(
    OP_NAMES.map((name) => [name, (inputs: Record<string, unknown>, attrs: unknown, outputs: readonly TensorSpec[]) => {
      observe?.(name, inputs, attrs, outputs);
      return outputs.map(() => null);
    }]),
  ) as unknown as Kernels<null>;
  const noData = () => {
    throw new Error('meta tensors hold no data: they only have shapes');
  };
  return {
    name: 'meta',
    device: 'meta (shapes only)',
    upload: () => null,
    download: async () => noData(),
    readSync: () => noData(),
    free: () => {},
    sync: async () => {},
    memory: () => ({ liveBytes: 0, liveBuffers: 0, heldBytes: 0, peakBytes: 0 }),
    dispose: () => {},
    kernels,
  };
};
