/**
 * The float64 reference wrapped as a Backend, so core's own tests (engine, autograd, nn, optim) run
 * without any backend package. Slow by design; never for real work.
 */
import type { Backend } from '../backend.js';
import type { DataArray, DType, Kernels, OpName, TensorView } from '../ops.js';
import { ref, type RefTensor } from './reference.js';

/** A reference storage: float64 values (i32 tensors hold integers). */
export interface RefStorage {
  data: Float64Array;
}

const asRef = (v: TensorView<RefStorage>): RefTensor => ({ shape: [...v.shape], data: v.storage.data });

/** A backend computing every op with the float64 reference; outputs are rounded to their dtype like a real backend's. */
export const createReferenceBackend = (): Backend<RefStorage> => {
  let live = 0;
  let liveBytes = 0;
  let peak = 0;
  const make = (data: Float64Array): RefStorage => {
    live++;
    liveBytes += data.length * 4;
    peak = Math.max(peak, liveBytes);
    return { data };
  };
  const round = (data: Float64Array, dtype: DType) => data.map(dtype === 'i32' ? (x) => x | 0 : Math.fround);
  const kernel = (name: OpName) => (inputs: Record<string, TensorView<RefStorage> | readonly TensorView<RefStorage>[]>, attrs: unknown, outs: readonly { dtype: DType }[]) => {
    const refInputs = Object.fromEntries(
      Object.entries(inputs).map(([k, v]) => [k, Array.isArray(v) ? v.map(asRef) : asRef(v as TensorView<RefStorage>)]),
    );
    const results = (ref[name] as (i: unknown, a: unknown) => RefTensor[])(refInputs, attrs);
    if (name === 'sgdUpdate') {
      const { param, momentum } = inputs as { param: TensorView<RefStorage>; momentum: TensorView<RefStorage> };
      param.storage.data.set(round(results[0].data, 'f32'));
      if (results[1] && momentum.storage !== param.storage) momentum.storage.data.set(round(results[1].data, 'f32'));
      return [];
    }
    return outs.map((o, i) => make(round(results[i].data, o.dtype)));
  };
  const kernels = Object.fromEntries(Object.keys(ref).map((k) => [k, kernel(k as OpName)])) as unknown as Kernels<RefStorage>;
  return {
    name: 'reference',
    device: 'float64 reference (host)',
    upload: (data: DataArray) => make(Float64Array.from(data)),
    download: async (s, size, dtype) => (dtype === 'f32' ? Float32Array.from(s.data.subarray(0, size)) : Int32Array.from(s.data.subarray(0, size))),
    readSync: (s, size, dtype) => (dtype === 'f32' ? Float32Array.from(s.data.subarray(0, size)) : Int32Array.from(s.data.subarray(0, size))),
    free: (s) => {
      live--;
      liveBytes -= s.data.length * 4;
    },
    sync: async () => {},
    memory: () => ({ liveBytes, liveBuffers: live, heldBytes: liveBytes, peakBytes: peak }),
    dispose: () => {},
    kernels,
  };
};
