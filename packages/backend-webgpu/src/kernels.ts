/** The kernel table: thin wrappers that allocate outputs and dispatch the programs of `programs/`. */
import { sizeOf, type Kernels, type Shape, type TensorSpec, type TensorView } from '@residual/core';
import { batchNormProgram } from './programs/batch-norm.js';
import { conv2dBackwardDataProgram } from './programs/conv2d-backward-data.js';
import { conv2dBackwardFilterProgram, filterSplits } from './programs/conv2d-backward-filter.js';
import { conv2dProgram } from './programs/conv2d.js';
import { BINARY_EXPR, COMPARE_EXPR, elementwiseProgram, UNARY_EXPR, type ElementwiseSpec, type Operand } from './programs/elementwise.js';
import { matmulProgram } from './programs/matmul.js';
import { pool2dBackwardProgram } from './programs/pool2d-backward.js';
import { pool2dProgram } from './programs/pool2d.js';
import { randomProgram } from './programs/random.js';
import { reduceProgram } from './programs/reduce.js';
import { sgdProgram } from './programs/sgd.js';
import { softmaxCrossEntropyProgram } from './programs/softmax-cross-entropy.js';
import { topkProgram } from './programs/topk.js';
import type { GpuStorage, Runtime } from './runtime.js';
import { broadcastView, contiguous, permutedView, windowView, type View } from './views.js';

type Input = TensorView<GpuStorage>;

const f32 = (view: View): Operand => ({ type: 'f32', view });

/** A [C] vector (from offset `base` of its buffer) broadcast over axis 1 of `shape`. */
const channelView = (shape: Shape, base = 0): View => ({
  strides: broadcastView([shape[1], ...shape.slice(2).map(() => 1)], shape).strides,
  base,
});

/** The kernels of one runtime. */
export const makeKernels = (rt: Runtime): Kernels<GpuStorage> => {
  const alloc = (spec: TensorSpec, op: string): GpuStorage => rt.alloc(sizeOf(spec.shape) * 4, op);
  const ew = (op: string, spec: ElementwiseSpec, inputs: readonly GpuStorage[], out: GpuStorage): void =>
    rt.run(op, elementwiseProgram(spec), inputs, [out]);
  /** out = expr over the inputs broadcast to the output `o`. */
  const map = (op: string, expr: string, xs: readonly Input[], o: TensorSpec): GpuStorage[] => {
    const y = alloc(o, op);
    const inputs = xs.map((x): Operand => ({ type: x.dtype, view: broadcastView(x.shape, o.shape) }));
    ew(op, { expr, shape: o.shape, inputs, out: { type: o.dtype } }, xs.map((x) => x.storage), y);
    return [y];
  };
  /** out = x read through `view` over the output's shape (a gather: permute, slice, broadcast). */
  const gather = (op: string, x: Input, view: View, o: TensorSpec): GpuStorage[] => {
    const y = alloc(o, op);
    ew(op, { expr: 'v0', shape: o.shape, inputs: [{ type: x.dtype, view }], out: { type: o.dtype } }, [x.storage], y);
    return [y];
  };
  /** Writes all of x into the box of `into` (of shape `intoShape`) starting at `begin`. */
  const place = (op: string, x: Input, into: GpuStorage, intoShape: Shape, begin: readonly number[]): void =>
    ew(op, { expr: 'v0', shape: x.shape, inputs: [{ type: x.dtype, view: contiguous(x.shape) }], out: { type: x.dtype, view: windowView(intoShape, begin) } }, [x.storage], into);
  const fill = (op: string, o: TensorSpec, value: number): GpuStorage => {
    const y = alloc(o, op);
    ew(op, { expr: 'u.value', shape: o.shape, inputs: [], out: { type: o.dtype }, value }, [], y);
    return y;
  };
  const copy = (x: Input, o: TensorSpec, op: string): GpuStorage[] => {
    const y = alloc(o, op);
    rt.copy(op, x.storage, y, x.size * 4);
    return [y];
  };

  const kernels = {
    unary: ({ x }, { fn }, [o]) => map(`unary(${fn})`, (UNARY_EXPR[x.dtype] as Record<string, string>)[fn], [x], o),
    binary: ({ a, b }, { fn }, [o]) => map(`binary(${fn})`, BINARY_EXPR[a.dtype][fn], [a, b], o),
    compare: ({ a, b }, { fn }, [o]) => map(`compare(${fn})`, COMPARE_EXPR[fn], [a, b], o),
    where: ({ cond, a, b }, _, [o]) => map('where', 'select(v2, v1, v0 != 0i)', [cond, a, b], o),
    cast: ({ x }, { dtype }, [o]) =>
      dtype === x.dtype ? copy(x, o, 'cast') : map('cast', dtype === 'i32' ? 'select(i32(v0), 0i, isNanF(v0))' : 'f32(v0)', [x], o),
    copy: ({ x }, _, [o]) => copy(x, o, 'copy'),
    fill: (_, { value }, [o]) => [fill('fill', o, value)],
    reduce: ({ x }, { fn, axes }, [o]) => {
      const y = alloc(o, `reduce(${fn})`);
      rt.run(`reduce(${fn})`, reduceProgram({ fn, type: x.dtype, shape: x.shape, axes }), [x.storage], [y]);
      return [y];
    },
    argmax: ({ x }, { axis }, [o]) => {
      const y = alloc(o, 'argmax');
      rt.run('argmax', reduceProgram({ fn: 'argmax', type: x.dtype, shape: x.shape, axes: [axis] }), [x.storage], [y]);
      return [y];
    },
    topk: ({ x }, { k }, [vo, io]) => {
      const values = alloc(vo, 'topk');
      const indices = alloc(io, 'topk');
      const length = x.shape[x.shape.length - 1];
      rt.run('topk', topkProgram(x.dtype, length === 0 ? 0 : x.size / length, length, k), [x.storage], [values, indices]);
      return [values, indices];
    },
    matmul: ({ a, b }, { transA, transB }, [o]) => {
      const y = alloc(o, 'matmul');
      rt.run('matmul', matmulProgram(a.shape, b.shape, transA, transB, o.shape, rt.gemmKernel), [a.storage, b.storage], [y]);
      return [y];
    },
    conv2d: ({ x, w }, g, [o]) => {
      const y = alloc(o, 'conv2d');
      rt.run('conv2d', conv2dProgram(g, rt.gemmKernel), [x.storage, w.storage], [y]);
      return [y];
    },
    conv2dBackwardData: ({ dy, w }, g, [o]) => {
      const dx = alloc(o, 'conv2dBackwardData');
      rt.run('conv2dBackwardData', conv2dBackwardDataProgram(g, rt.gemmKernel), [dy.storage, w.storage], [dx]);
      return [dx];
    },
    conv2dBackwardFilter: ({ x, dy }, g, [o]) => {
      const op = 'conv2dBackwardFilter';
      const splits = filterSplits(g, rt.gemmKernel);
      const dw = alloc(o, op);
      if (splits === 1) {
        rt.run(op, conv2dBackwardFilterProgram(g, 1, rt.gemmKernel), [x.storage, dy.storage], [dw]);
        return [dw];
      }
      const partial = alloc({ shape: [splits, ...o.shape], dtype: 'f32' }, op);
      rt.run(op, conv2dBackwardFilterProgram(g, splits, rt.gemmKernel), [x.storage, dy.storage], [partial]);
      rt.run(op, reduceProgram({ fn: 'sum', type: 'f32', shape: [splits, sizeOf(o.shape)], axes: [0] }), [partial], [dw]);
      rt.free(partial);
      return [dw];
    },
    maxPool2d: ({ x }, g, [o]) => {
      const y = alloc(o, 'maxPool2d');
      rt.run('maxPool2d', pool2dProgram('max', g), [x.storage], [y]);
      return [y];
    },
    maxPool2dBackward: ({ dy, x }, g, [o]) => {
      const dx = alloc(o, 'maxPool2dBackward');
      rt.run('maxPool2dBackward', pool2dBackwardProgram('max', g), [dy.storage, x.storage], [dx]);
      return [dx];
    },
    avgPool2d: ({ x }, g, [o]) => {
      const y = alloc(o, 'avgPool2d');
      rt.run('avgPool2d', pool2dProgram('avg', g), [x.storage], [y]);
      return [y];
    },
    avgPool2dBackward: ({ dy }, g, [o]) => {
      const dx = alloc(o, 'avgPool2dBackward');
      rt.run('avgPool2dBackward', pool2dBackwardProgram('avg', g), [dy.storage], [dx]);
      return [dx];
    },
    batchNormTrain: ({ x, gamma, beta }, { eps }, [yo, mo, io]) => {
      const op = 'batchNormTrain';
      const [n, c] = x.shape;
      const [y, mean, invstd, scale] = [alloc(yo, op), alloc(mo, op), alloc(io, op), alloc(mo, op)];
      rt.run(op, batchNormProgram('forward', n, c, x.size / (n * c), eps), [x.storage, gamma.storage], [mean, invstd, scale]);
      const ch = channelView(x.shape);
      ew(
        op,
        { expr: '(v0 - v1) * v2 + v3', shape: x.shape, inputs: [contiguous(x.shape), ch, ch, ch].map(f32), out: { type: 'f32' } },
        [x.storage, mean, scale, beta.storage],
        y,
      );
      rt.free(scale);
      return [y, mean, invstd];
    },
    batchNormBackward: ({ dy, x, gamma, mean, invstd }, _, [dxo, go, bo]) => {
      const op = 'batchNormBackward';
      const [n, c] = x.shape;
      const [dx, dgamma, dbeta, coef] = [alloc(dxo, op), alloc(go, op), alloc(bo, op), alloc({ shape: [3 * c], dtype: 'f32' }, op)];
      const stats = [dy, x, gamma, mean, invstd].map((t) => t.storage);
      rt.run(op, batchNormProgram('backward', n, c, x.size / (n * c)), stats, [dgamma, dbeta, coef]);
      const own = contiguous(x.shape);
      const views = [own, own, channelView(x.shape), channelView(x.shape, c), channelView(x.shape), channelView(x.shape, 2 * c)];
      ew(
        op,
        { expr: 'v0 * v2 + v3 * (v1 - v4) + v5', shape: x.shape, inputs: views.map(f32), out: { type: 'f32' } },
        [dy.storage, x.storage, coef, coef, mean.storage, coef],
        dx,
      );
      rt.free(coef);
      return [dx, dgamma, dbeta];
    },
    reluBackward: ({ y, dy }, _, [o]) => {
      const dx = alloc(o, 'reluBackward');
      const inputs = [contiguous(y.shape), contiguous(dy.shape)].map(f32);
      ew('reluBackward', { expr: 'select(0.0, v1, v0 > 0.0)', shape: y.shape, inputs, out: { type: 'f32' } }, [y.storage, dy.storage], dx);
      return [dx];
    },
    channelAffine: ({ x, scale, shift }, _, [o]) => {
      const y = alloc(o, 'channelAffine');
      const ch = channelView(x.shape);
      const inputs = [contiguous(x.shape), ch, ch].map(f32);
      ew('channelAffine', { expr: 'v0 * v1 + v2', shape: x.shape, inputs, out: { type: 'f32' } }, [x.storage, scale.storage, shift.storage], y);
      return [y];
    },
    softmaxCrossEntropy: ({ logits, labels }, { smoothing }, [o]) => {
      const y = alloc(o, 'softmaxCrossEntropy');
      const [n, c] = logits.shape;
      rt.run('softmaxCrossEntropy', softmaxCrossEntropyProgram('forward', n, c, smoothing), [logits.storage, labels.storage], [y]);
      return [y];
    },
    softmaxCrossEntropyBackward: ({ logits, labels, dloss }, { smoothing }, [o]) => {
      const y = alloc(o, 'softmaxCrossEntropyBackward');
      const [n, c] = logits.shape;
      rt.run('softmaxCrossEntropyBackward', softmaxCrossEntropyProgram('backward', n, c, smoothing), [logits.storage, labels.storage, dloss.storage], [y]);
      return [y];
    },
    permute: ({ x }, { perm }, [o]) => gather('permute', x, permutedView(x.shape, perm), o),
    slice: ({ x }, { begin }, [o]) => gather('slice', x, windowView(x.shape, begin), o),
    pad: ({ x }, { pads, value }, [o]) => {
      const y = fill('pad', o, value);
      place('pad', x, y, o.shape, pads.map(([before]) => before));
      return [y];
    },
    concat: ({ xs }, { axis }, [o]) => {
      const y = alloc(o, 'concat');
      let at = 0;
      for (const x of xs) {
        place('concat', x, y, o.shape, o.shape.map((_, i) => (i === axis ? at : 0)));
        at += x.shape[axis];
      }
      return [y];
    },
    broadcastTo: ({ x }, _, [o]) => gather('broadcastTo', x, broadcastView(x.shape, o.shape), o),
    sgdUpdate: ({ param, grad, momentum }, attrs) => {
      const outs = attrs.momentum !== 0 ? [param.storage, momentum.storage] : [param.storage];
      rt.run('sgdUpdate', sgdProgram(param.size, attrs), [grad.storage], outs);
      return [];
    },
    randomFill: (_, attrs, [o]) => {
      const y = alloc(o, 'randomFill');
      rt.run('randomFill', randomProgram(sizeOf(o.shape), attrs), [], [y]);
      return [y];
    },
  } satisfies Kernels<GpuStorage>;
  return kernels;
};
