/**
 * Weights and inputs from a formula that the PyTorch side (scripts/make-golden.py) computes the same
 * way, so golden tests against torchvision need no committed weights: only the expected logits.
 */
import { tensor, type Module, type Tensor } from '@residual/core';

/** The formula of an entry as offset + scale·base (null: all zeros), so a large tensor decides it once. */
const affineOf = (key: string, shape: readonly number[]): [number, number] | null => {
  if (key.endsWith('num_batches_tracked')) return null;
  if (key.endsWith('running_mean')) return [0, 0.1];
  if (key.endsWith('running_var')) return [1, 0.5];
  if (key.endsWith('.weight') && shape.length >= 2) return [0, Math.sqrt(3 / shape.slice(1).reduce((a, b) => a * b, 1))];
  if (key.endsWith('.weight')) return [0.3, 0.1];
  return [0, 0.1];
};

/** The formula's value for element i of state-dict entry k (named `key`, of `shape`). */
export const goldenValue = (key: string, k: number, i: number, shape: readonly number[]): number => {
  const affine = affineOf(key, shape);
  return affine ? affine[0] + affine[1] * Math.sin(0.001 * i * (k + 1) + k) : 0;
};

/** The formula's state dict for a model (in its own key order, which is torchvision's). */
export const goldenStateDict = (model: Module): Map<string, Tensor> => {
  const out = new Map<string, Tensor>();
  [...model.stateDict()].forEach(([key, t], k) => {
    // goldenValue unrolled, into the tensor's own array type: VGG-16 has 138M weights.
    const values = new (t.dtype === 'i32' ? Int32Array : Float32Array)(t.size);
    const affine = affineOf(key, t.shape);
    if (affine) for (let i = 0; i < t.size; i++) values[i] = affine[0] + affine[1] * Math.sin(0.001 * i * (k + 1) + k);
    out.set(key, tensor(values, t.shape, t.dtype));
  });
  return out;
};

/** The formula's input: element i is sin(0.01 i). */
export const goldenInput = (shape: readonly number[]): Tensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(0.01 * i)), shape);
};
