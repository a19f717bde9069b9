/**
 * Weights and inputs from a formula that the PyTorch side (scripts/make-golden.py) computes the same
 * way, so golden tests against torchvision need no committed weights: only the expected logits.
 */
import { tensor, type Module, type Tensor } from '@residual/core';

/** The formula's value for element i of state-dict entry k (named `key`, of `shape`). */
export const goldenValue = (key: string, k: number, i: number, shape: readonly number[]): number => {
  const base = Math.sin(0.001 * i * (k + 1) + k);
  if (key.endsWith('num_batches_tracked')) return 0;
  if (key.endsWith('running_mean')) return 0.1 * base;
  if (key.endsWith('running_var')) return 1 + 0.5 * base;
  if (key.endsWith('.weight') && shape.length >= 2) return base * Math.sqrt(3 / shape.slice(1).reduce((a, b) => a * b, 1));
  if (key.endsWith('.weight')) return 0.3 + 0.1 * base;
  return 0.1 * base;
};

/** The formula's state dict for a model (in its own key order, which is torchvision's). */
export const goldenStateDict = (model: Module): Map<string, Tensor> => {
  const out = new Map<string, Tensor>();
  [...model.stateDict()].forEach(([key, t], k) => {
    const values = Float64Array.from({ length: t.size }, (_, i) => goldenValue(key, k, i, t.shape));
    out.set(key, tensor(t.dtype === 'i32' ? Int32Array.from(values) : Float32Array.from(values), t.shape, t.dtype));
  });
  return out;
};

/** The formula's input: element i is sin(0.01 i). */
export const goldenInput = (shape: readonly number[]): Tensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(0.01 * i)), shape);
};
