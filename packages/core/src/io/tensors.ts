/** Tensors <-> weights files: state dicts in the formats torchvision weights are shared in. */
import { tensor } from '../api.js';
import type { Tensor } from '../engine.js';
import type { SafetensorsInput } from './safetensors.js';
import type { WeightsFile } from './weights.js';

/**
 * Reads every tensor of a host to safetensors inputs. i32 tensors are written as I64, as PyTorch
 * stores integer buffers (`num_batches_tracked`), unless `int64` is false.
 */
export const tensorsToSafetensors = async (
  tensors: ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>, { int64 = true } = {},
): Promise<Record<string, SafetensorsInput>> => {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const out: Record<string, SafetensorsInput> = {};
  for (const [name, t] of entries) {
    const data = await t.data();
    out[name] = { data, shape: t.shape, dtype: t.dtype === 'i32' ? (int64 ? 'I64' : 'I32') : 'F32' };
  }
  return out;
};

/** Uploads every tensor of an open weights file (safetensors or `.pth`) to the active backend, in file order. */
export const tensorsFromSafetensors = async (file: WeightsFile): Promise<Map<string, Tensor>> => {
  const out = new Map<string, Tensor>();
  for await (const [name, t] of file.entries()) out.set(name, tensor(t.data, t.shape, t.dtype));
  return out;
};
