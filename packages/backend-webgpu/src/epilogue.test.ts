import { conv2dGeometry, runOp, setBackend, tensor, type OpAttrs, type OpName } from '@residual/core';
import { expectClose, ref, refTensor, Rng, type RefTensor, type Tolerance } from '@residual/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import type { WebGpuBackend } from './backend.js';
import type { GemmKernel } from './programs/gemm.js';
import { openTestBackend } from './test-backend.js';

const be = await openTestBackend();

/** An op's outputs on `b` and the dispatches it recorded; inputs left undefined stay out. */
const dispatched = async <K extends OpName>(b: WebGpuBackend, op: K, inputs: Record<string, RefTensor | undefined>, attrs: OpAttrs<K>) => {
  setBackend(b);
  const given = Object.entries(inputs).flatMap(([k, t]) => (t ? [[k, tensor(Float32Array.from(t.data), t.shape)] as const] : []));
  const before = b.counters().dispatches;
  const outs = runOp(op, Object.fromEntries(given) as never, attrs);
  const dispatches = b.counters().dispatches - before;
  const data = await Promise.all(outs.map(async (t) => ({ shape: [...t.shape], dtype: t.dtype, data: await t.data() })));
  for (const t of [...outs, ...given.map(([, t]) => t)]) t.dispose();
  return { data, dispatches };
};

/** Runs `op` plain and with each epilogue: every variant records the plain op's dispatches and matches the float64 reference. */
const sameDispatches = async <K extends OpName>(
  b: WebGpuBackend,
  op: K,
  variants: Record<string, [Record<string, RefTensor | undefined>, OpAttrs<K>]>,
  tolerances: (want: RefTensor[]) => Tolerance[],
) => {
  const counts: Record<string, number> = {};
  for (const [name, [inputs, attrs]] of Object.entries(variants)) {
    const { data, dispatches } = await dispatched(b, op, inputs, attrs);
    const want = (ref[op] as (i: unknown, a: unknown) => RefTensor[])(inputs, attrs);
    expect(data.length, `${op} ${name}: outputs`).toBe(want.length);
    const tol = tolerances(want);
    want.forEach((w, i) => expectClose(`${op} ${name}, output ${i}`, data[i], w, 'f32', tol[i]));
    counts[name] = dispatches;
  }
  const plain = counts.plain;
  expect(plain).toBeGreaterThan(0);
  expect(counts).toEqual(Object.fromEntries(Object.keys(counts).map((k) => [k, plain])));
};

const maxAbs = (t?: RefTensor) => (t ? Math.max(...Array.from(t.data, Math.abs)) : 0);

describe.skipIf(!be)("the fused epilogues run inside their ops' own passes", () => {
  afterAll(() => be?.dispose());

  for (const kernel of ['shared-tiles', 'subgroup-strips'] as GemmKernel[])
    it(`conv2d with scale, bias, residual and ReLU: one dispatch, as the plain convolution, on ${kernel}`, async () => {
      const opened = kernel === be!.gemmKernel ? be : await openTestBackend({ gemmKernel: kernel }).catch((e: Error) => e);
      if (opened instanceof Error) {
        expect(kernel, opened.message).toBe('subgroup-strips'); // the one kernel a device may lack
        return;
      }
      const b = opened!;
      try {
        const rng = new Rng(`epilogue ${kernel}`);
        const g = conv2dGeometry([2, 16, 9, 9], [24, 16, 3, 3], { padding: 1 });
        const [x, w, scale, bias] = [rng.uniform([2, 16, 9, 9]), rng.uniform([24, 16, 3, 3]), rng.uniform([24], -2, 2), rng.uniform([24])];
        const residual = rng.uniform([2, 24, 9, 9], -2, 2);
        await sameDispatches(
          b,
          'conv2d',
          {
            // Two variants only: each is a pipeline, and lavapipe takes seconds to build one.
            plain: [{ x, w }, { ...g, relu: false }],
            'scale+bias+residual+relu': [{ x, w, scale, bias, residual }, { ...g, relu: true }],
          },
          () => [{ k: 16 * 9, scale: maxAbs(x) * maxAbs(w) * maxAbs(scale) + maxAbs(bias) + maxAbs(residual) }],
        );
      } finally {
        if (b !== be) b.dispose();
      }
    });

  const shape = [4, 8, 6, 6];
  const count = 4 * 6 * 6;
  const rng = new Rng('batch-norm epilogue');
  const [x, gamma, beta, residual] = [rng.uniform(shape, -2, 2), rng.uniform([8], 0.5, 2), rng.uniform([8]), rng.uniform(shape, -2, 2)];

  it('batchNormTrain with a residual and a ReLU: the dispatches of the plain batch-norm', () =>
    sameDispatches(
      be!,
      'batchNormTrain',
      {
        plain: [{ x, gamma, beta }, { eps: 1e-5 }],
        relu: [{ x, gamma, beta }, { eps: 1e-5, relu: true }],
        'residual+relu': [{ x, gamma, beta, residual }, { eps: 1e-5, relu: true }],
      },
      () => [{ k: count, scale: 3 }, { k: count, scale: maxAbs(x) }, { k: count }],
    ));

  it("batchNormBackward masking by y and returning the residual's gradient: the dispatches of the plain backward", () => {
    const f32 = (t: RefTensor) => refTensor(t.shape, Array.from(t.data, Math.fround));
    const [y, mean, invstd] = ref.batchNormTrain({ x, gamma, beta, residual }, { eps: 1e-5, relu: true }).map(f32);
    const inputs = { dy: rng.uniform(shape), x, gamma, mean, invstd };
    return sameDispatches(
      be!,
      'batchNormBackward',
      {
        plain: [inputs, {}],
        relu: [{ ...inputs, y }, { relu: true }],
        residual: [inputs, { residual: true }],
        'relu+residual': [{ ...inputs, y }, { relu: true, residual: true }],
      },
      (want) => want.map((w) => ({ k: count, scale: maxAbs(w) })),
    );
  });
});
