/** The kernel table: thin wrappers that allocate outputs and dispatch the programs of `programs/`. */
import { sizeOf, type Kernels, type Pool2dGeometry, type Shape, type TensorSpec, type TensorView } from '@residual/core';
import type { Program } from './header.js';
import { batchNormFinishProgram, batchNormPartialProgram, batchNormProgram } from './programs/batch-norm.js';
import { conv2dBackwardDataProgram } from './programs/conv2d-backward-data.js';
import { conv2dBackwardFilterProgram, filterSplits } from './programs/conv2d-backward-filter.js';
import { conv2dProgram } from './programs/conv2d.js';
import { dropoutProgram } from './programs/dropout.js';
import { BINARY_EXPR, COMPARE_EXPR, UNARY_EXPR, type ElementwiseSpec, type Operand } from './programs/elementwise.js';
import { localResponseNormBackwardProgram } from './programs/local-response-norm-backward.js';
import { localResponseNormProgram } from './programs/local-response-norm.js';
import { matmulProgram } from './programs/matmul.js';
import { pool2dBackwardProgram } from './programs/pool2d-backward.js';
import { pool2dProgram } from './programs/pool2d.js';
import { randomProgram } from './programs/random.js';
import type { ReduceSpec } from './programs/reduce.js';
import { sgdProgram } from './programs/sgd.js';
import { softmaxCrossEntropyProgram } from './programs/softmax-cross-entropy.js';
import { topkProgram } from './programs/topk.js';
import type { Binding, GpuStorage, Runtime } from './runtime.js';
import { chunkItems, chunksOf, runChunk, runElementwise, runItems, runReduce, whole, type Part } from './split.js';
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
  const ew = (op: string, spec: ElementwiseSpec, inputs: readonly GpuStorage[], out: GpuStorage): void => runElementwise(rt, op, spec, inputs, out);
  const reduce = (op: string, spec: ReduceSpec, x: GpuStorage, y: GpuStorage): void => runReduce(rt, op, spec, whole(x), whole(y));
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
  /** A storage (or part of one) bound as it is in every chunk. */
  const fixed = (storage: GpuStorage | Binding): Part => ({ storage, item: 0 });
  /** Bytes per item of a tensor of `size` elements split into `count` items. */
  const per = (size: number, count: number): number => (count === 0 ? 0 : (size / count) * 4);
  /** A tensor whose leading axis is the batch of `batch` images, split by images. */
  const images = (t: Input, batch: number): Part => ({ storage: t.storage, item: per(t.size, batch) });
  /**
   * A convolution of a batch: the output and the `inputs` given as `images` split by images where too
   * large, the others (a filter, a bias) bound whole in every chunk.
   */
  const perImage = (op: string, batch: number, inputs: readonly Part[], o: TensorSpec, programOf: (n: number) => Program): GpuStorage => {
    const y = alloc(o, op);
    runItems(rt, op, batch, inputs, [{ storage: y, item: per(sizeOf(o.shape), batch) }], programOf);
    return y;
  };
  /** A pooling op (forward or backward) over the planes of its inputs, in chunks of planes where too large. */
  const pool = (op: string, g: Pool2dGeometry, xs: readonly Input[], o: TensorSpec, programOf: (g: Pool2dGeometry) => Program): GpuStorage => {
    const y = alloc(o, op);
    const planes = g.batch * g.channels;
    runItems(rt, op, planes, xs.map((t) => ({ storage: t.storage, item: per(t.size, planes) })), [{ storage: y, item: per(sizeOf(o.shape), planes) }], (n) =>
      programOf({ ...g, batch: n, channels: 1 }),
    );
    return y;
  };
  /** A per-row op over tensors whose leading axis is the row (logits [N, C], labels [N], ...), in chunks of rows where too large. */
  const perRow = (op: string, xs: readonly Input[], o: TensorSpec, programOf: (n: number) => Program): GpuStorage => {
    const y = alloc(o, op);
    const rows = xs[0].shape[0];
    runItems(rt, op, rows, xs.map((t) => ({ storage: t.storage, item: per(t.size, rows) })), [{ storage: y, item: per(sizeOf(o.shape), rows) }], programOf);
    return y;
  };
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
      reduce(`reduce(${fn})`, { fn, type: x.dtype, shape: x.shape, axes }, x.storage, y);
      return [y];
    },
    argmax: ({ x }, { axis }, [o]) => {
      const y = alloc(o, 'argmax');
      reduce('argmax', { fn: 'argmax', type: x.dtype, shape: x.shape, axes: [axis] }, x.storage, y);
      return [y];
    },
    topk: ({ x }, { k }, [vo, io]) => {
      const [values, indices] = [alloc(vo, 'topk'), alloc(io, 'topk')];
      const length = x.shape[x.shape.length - 1];
      const rows = length === 0 ? 0 : x.size / length;
      runItems(rt, 'topk', rows, [{ storage: x.storage, item: length * 4 }], [values, indices].map((storage) => ({ storage, item: k * 4 })), (n) =>
        topkProgram(x.dtype, n, length, k),
      );
      return [values, indices];
    },
    matmul: ({ a, b }, { transA, transB }, [o]) => {
      const op = 'matmul';
      const y = alloc(o, op);
      const [m, n] = o.shape.slice(-2);
      const depth = transA ? a.shape.at(-2)! : a.shape.at(-1)!;
      const batch = sizeOf(o.shape.slice(0, -2));
      const program = (aShape: Shape, bShape: Shape, outShape: Shape) => matmulProgram(aShape, bShape, transA, transB, outShape, rt.gemmKernel);
      const unsplit = program(a.shape, b.shape, o.shape);
      /** Rows of A (of every batch) against `cols` columns of B held in `rhs`, into `out` [batch·m, cols]. */
      const rowsOfA = (rhs: GpuStorage | Binding, cols: number, out: GpuStorage) =>
        runItems(rt, op, batch * m, [{ storage: a.storage, item: depth * 4 }, fixed(rhs)], [{ storage: out, item: cols * 4 }], (r) =>
          r === batch * m && cols === n ? unsplit : program([r, depth], transB ? [cols, depth] : [depth, cols], [r, cols]),
        );
      if (!transA && b.shape.length === 2 && (b.size * 4 <= rt.maxBinding || !transB)) rowsOfA(b.storage, n, y);
      else if (!transA && b.shape.length === 2) {
        // A Bᵀ wider than one binding (a classifier's weight: VGG-16's first is 411 MB) goes in blocks of
        // its rows, the output's columns: each block's product lands in a scratch, then in its columns of y.
        const block = chunkItems(n, [depth * 4], rt.maxBinding, rt.bindAlign);
        if (block === 0) throw new Error(`webgpu ${op}: cannot split B [${b.shape.join(', ')}]: one row exceeds the binding limit of ${rt.maxBinding} bytes`);
        for (let first = 0; first < n; first += block) {
          const cols = Math.min(block, n - first);
          const range = { storage: b.storage, offset: first * depth * 4, size: cols * depth * 4 };
          const aligned = range.offset % rt.bindAlign === 0;
          const rhs = aligned ? range : rt.alloc(range.size, op);
          if (!aligned) rt.copy(op, b.storage, rhs as GpuStorage, range.size, range.offset);
          const part = alloc({ shape: [batch * m, cols], dtype: 'f32' }, op);
          rowsOfA(rhs, cols, part);
          place(op, { shape: [batch * m, cols], dtype: 'f32', storage: part, size: batch * m * cols, version: 0 }, y, [batch * m, n], [0, first]);
          rt.free(part);
          if (!aligned) rt.free(rhs as GpuStorage);
        }
      } else if ([a, b].every((t) => t.shape.length === o.shape.length && t.shape.slice(0, -2).every((d, i) => d === o.shape[i]))) {
        // Whole matrices of unbroadcast batches.
        const parts = [a.storage, b.storage, y].map((storage, i) => ({ storage, item: per([a.size, b.size, m * n * batch][i], batch) }));
        runItems(rt, op, batch, parts.slice(0, 2), parts.slice(2), (r) => (r === batch ? unsplit : program([r, ...a.shape.slice(-2)], [r, ...b.shape.slice(-2)], [r, m, n])));
      } else rt.run(op, unsplit, [a.storage, b.storage], [y]);
      return [y];
    },
    conv2d: ({ x, w, scale, bias, residual }, { relu = false, ...g }, [o]) => {
      // The epilogue's operands split with the op: the residual by images like y, scale and bias bound whole like w.
      const inputs = [
        images(x, g.batch), fixed(w.storage), ...(scale ? [fixed(scale.storage)] : []), ...(bias ? [fixed(bias.storage)] : []),
        ...(residual ? [images(residual, g.batch)] : []),
      ];
      const epilogue = { scale: !!scale, bias: !!bias, residual: !!residual, relu };
      return [perImage('conv2d', g.batch, inputs, o, (n) => conv2dProgram({ ...g, batch: n }, rt.gemmKernel, epilogue))];
    },
    conv2dBackwardData: ({ dy, w }, g, [o]) => [
      perImage('conv2dBackwardData', g.batch, [images(dy, g.batch), fixed(w.storage)], o, (n) => conv2dBackwardDataProgram({ ...g, batch: n }, rt.gemmKernel)),
    ],
    conv2dBackwardFilter: ({ x, dy }, g, [o]) => {
      const op = 'conv2dBackwardFilter';
      const weights = sizeOf(o.shape);
      const parts = [x, dy].map((t) => ({ storage: t.storage, item: per(t.size, g.batch) }));
      const chunks = chunksOf(rt, op, g.batch, parts);
      const splits = chunks.map(({ n }) => filterSplits({ ...g, batch: n }, rt.gemmKernel));
      // Each chunk of the batch writes its split-K partial sums as rows of `partial`, which are then
      // summed. Rows a chunk binds apart start aligned, so they are padded, and so is dw (its padding
      // sums the rows' unwritten padding, and is never read).
      const stride = chunks.length === 1 ? weights : Math.ceil(weights / (rt.bindAlign / 4)) * (rt.bindAlign / 4);
      const dw = rt.alloc(stride * 4, op);
      if (chunks.length === 1 && splits[0] === 1) {
        rt.run(op, conv2dBackwardFilterProgram(g, 1, rt.gemmKernel), [x.storage, dy.storage], [dw]);
        return [dw];
      }
      const rows = splits.reduce((a, b) => a + b, 0);
      const partial = rt.alloc(rows * stride * 4, op);
      let row = 0;
      chunks.forEach(({ first, n }, j) => {
        const program = conv2dBackwardFilterProgram({ ...g, batch: n }, splits[j], rt.gemmKernel, stride);
        if (chunks.length === 1) rt.run(op, program, [x.storage, dy.storage], [partial]);
        else runChunk(rt, op, program, parts, [fixed({ storage: partial, offset: row * stride * 4, size: splits[j] * stride * 4 })], first, n);
        row += splits[j];
      });
      reduce(op, { fn: 'sum', type: 'f32', shape: [rows, stride], axes: [0] }, partial, dw);
      rt.free(partial);
      return [dw];
    },
    maxPool2d: ({ x }, g, [o]) => [pool('maxPool2d', g, [x], o, (n) => pool2dProgram('max', n))],
    maxPool2dBackward: ({ dy, x }, g, [o]) => [pool('maxPool2dBackward', g, [dy, x], o, (n) => pool2dBackwardProgram('max', n))],
    avgPool2d: ({ x }, g, [o]) => [pool('avgPool2d', g, [x], o, (n) => pool2dProgram('avg', n))],
    avgPool2dBackward: ({ dy }, g, [o]) => [pool('avgPool2dBackward', g, [dy], o, (n) => pool2dBackwardProgram('avg', n))],
    batchNormTrain: ({ x, gamma, beta, residual }, { eps, relu = false }, [yo, mo, io]) => {
      const op = 'batchNormTrain';
      const [n, c] = x.shape;
      const inner = x.size / (n * c);
      const [y, mean, invstd, scale] = [alloc(yo, op), alloc(mo, op), alloc(io, op), alloc(mo, op)];
      const xs = { storage: x.storage, item: per(x.size, n) };
      const chunks = chunksOf(rt, op, n, [xs]);
      if (chunks.length === 1) rt.run(op, batchNormProgram('forward', n, c, inner, eps), [x.storage, gamma.storage], [mean, invstd, scale]);
      else {
        // Two passes over the chunks, as the unsplit program makes over the whole: the mean, then squares about it.
        const part = alloc({ shape: [chunks.length, c], dtype: 'f32' }, op);
        const sums = (kind: 'sum' | 'sqdev') =>
          chunks.forEach(({ first, n: m }, j) =>
            runChunk(rt, op, batchNormPartialProgram(kind, m, c, inner, j), kind === 'sum' ? [xs] : [xs, fixed(mean)], [fixed(part)], first, m),
          );
        sums('sum');
        rt.run(op, batchNormFinishProgram('mean', chunks.length, c, n * inner), [part], [mean]);
        sums('sqdev');
        rt.run(op, batchNormFinishProgram('forward', chunks.length, c, n * inner, eps), [part, mean, gamma.storage], [invstd, scale]);
        rt.free(part);
      }
      // The normalising pass applies the epilogue as it writes y: act((x - mean)·scale + beta + residual).
      const [own, ch] = [contiguous(x.shape), channelView(x.shape)];
      const affine = `(v0 - v1) * v2 + v3${residual ? ' + v4' : ''}`;
      ew(
        op,
        { expr: relu ? `reluOf(${affine})` : affine, shape: x.shape, inputs: [own, ch, ch, ch, ...(residual ? [own] : [])].map(f32), out: { type: 'f32' } },
        [x.storage, mean, scale, beta.storage, ...(residual ? [residual.storage] : [])],
        y,
      );
      rt.free(scale);
      return [y, mean, invstd];
    },
    batchNormBackward: ({ dy, x, gamma, mean, invstd, y }, { relu = false, residual = false }, [dxo, go, bo, ro]) => {
      const op = 'batchNormBackward';
      const [n, c] = x.shape;
      const [dx, dgamma, dbeta, coef] = [alloc(dxo, op), alloc(go, op), alloc(bo, op), alloc({ shape: [3 * c], dtype: 'f32' }, op)];
      // The residual's gradient (dy masked by the ReLU) is written by the statistics pass, which reads that masked dy anyway.
      const dres = residual ? alloc(ro, op) : null;
      const e = { relu, residual };
      const inner = x.size / (n * c);
      const masks = relu ? [y!] : [];
      const parts = [dy, x].map((t) => images(t, n));
      const [maskParts, dresParts] = [masks.map((t) => images(t, n)), dres ? [{ storage: dres, item: per(x.size, n) }] : []];
      const chunks = chunksOf(rt, op, n, [...parts, ...maskParts, ...dresParts]);
      if (chunks.length === 1) {
        rt.run(op, batchNormProgram('backward', n, c, inner, 0, e), [dy, x, gamma, mean, invstd, ...masks].map((t) => t.storage), [dgamma, dbeta, coef, ...(dres ? [dres] : [])]);
      } else {
        const part = alloc({ shape: [chunks.length, 2, c], dtype: 'f32' }, op);
        chunks.forEach(({ first, n: m }, j) =>
          runChunk(rt, op, batchNormPartialProgram('grad', m, c, inner, j, e), [...parts, fixed(mean.storage), ...maskParts], [fixed(part), ...dresParts], first, m),
        );
        rt.run(op, batchNormFinishProgram('backward', chunks.length, c, n * inner), [part, gamma.storage, invstd.storage], [dgamma, dbeta, coef]);
        rt.free(part);
      }
      // dx from the masked dy: dres where it was written, else dy masked here by y (or dy itself without a ReLU).
      const masked = relu && !dres;
      const own = contiguous(x.shape);
      const views = [own, own, channelView(x.shape), channelView(x.shape, c), channelView(x.shape), channelView(x.shape, 2 * c), ...(masked ? [own] : [])];
      ew(
        op,
        { expr: `${masked ? 'reluGrad(v6, v0)' : 'v0'} * v2 + v3 * (v1 - v4) + v5`, shape: x.shape, inputs: views.map(f32), out: { type: 'f32' } },
        [relu && dres ? dres : dy.storage, x.storage, coef, coef, mean.storage, coef, ...(masked ? [y!.storage] : [])],
        dx,
      );
      rt.free(coef);
      return dres ? [dx, dgamma, dbeta, dres] : [dx, dgamma, dbeta];
    },
    reluBackward: ({ y, dy }, _, [o]) => {
      const dx = alloc(o, 'reluBackward');
      const inputs = [contiguous(y.shape), contiguous(dy.shape)].map(f32);
      ew('reluBackward', { expr: 'reluGrad(v0, v1)', shape: y.shape, inputs, out: { type: 'f32' } }, [y.storage, dy.storage], dx);
      return [dx];
    },
    localResponseNorm: ({ x }, attrs, [o]) => {
      const [n, c] = x.shape;
      return [perImage('localResponseNorm', n, [images(x, n)], o, (m) => localResponseNormProgram(m, c, sizeOf(x.shape.slice(2)), attrs))];
    },
    localResponseNormBackward: ({ x, dy }, attrs, [o]) => {
      const [n, c] = x.shape;
      const inner = sizeOf(x.shape.slice(2));
      return [perImage('localResponseNormBackward', n, [images(x, n), images(dy, n)], o, (m) => localResponseNormBackwardProgram(m, c, inner, attrs))];
    },
    dropout: ({ x }, attrs, [o]) => {
      const y = alloc(o, 'dropout');
      // Elements chunk in multiples of 64 (4-byte items at aligned offsets): a chunk starts on a whole Philox block.
      runItems(rt, 'dropout', x.size, [{ storage: x.storage, item: 4 }], [{ storage: y, item: 4 }], (n, first) => {
        const lo = attrs.counter[0] + first / 4;
        return dropoutProgram(n, { ...attrs, counter: [lo >>> 0, (attrs.counter[1] + Math.floor(lo / 2 ** 32)) >>> 0] });
      });
      return [y];
    },
    channelAffine: ({ x, scale, shift }, _, [o]) => {
      const y = alloc(o, 'channelAffine');
      const ch = channelView(x.shape);
      const inputs = [contiguous(x.shape), ch, ch].map(f32);
      ew('channelAffine', { expr: 'v0 * v1 + v2', shape: x.shape, inputs, out: { type: 'f32' } }, [x.storage, scale.storage, shift.storage], y);
      return [y];
    },
    softmaxCrossEntropy: ({ logits, labels }, { smoothing }, [o]) => [
      perRow('softmaxCrossEntropy', [logits, labels], o, (n) => softmaxCrossEntropyProgram('forward', n, logits.shape[1], smoothing)),
    ],
    softmaxCrossEntropyBackward: ({ logits, labels, dloss }, { smoothing }, [o]) => [
      perRow('softmaxCrossEntropyBackward', [logits, labels, dloss], o, (n) => softmaxCrossEntropyProgram('backward', n, logits.shape[1], smoothing)),
    ],
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
      const elements = (s: GpuStorage) => ({ storage: s, item: 4 });
      runItems(rt, 'sgdUpdate', param.size, [elements(grad.storage)], outs.map(elements), (n) => sgdProgram(n, attrs));
      return [];
    },
    randomFill: (_, attrs, [o]) => {
      const y = alloc(o, 'randomFill');
      // 4-byte items chunk in multiples of 64, so a chunk starts on a whole Philox block and draws from the counter advanced by the blocks before it.
      const per = attrs.dist === 'uniform' ? 4 : 2;
      runItems(rt, 'randomFill', sizeOf(o.shape), [], [{ storage: y, item: 4 }], (n, first) => {
        const lo = attrs.counter[0] + first / per;
        return randomProgram(n, { ...attrs, counter: [lo >>> 0, (attrs.counter[1] + Math.floor(lo / 2 ** 32)) >>> 0] });
      });
      return [y];
    },
  } satisfies Kernels<GpuStorage>;
  return kernels;
};
