/**
 * A float64 reference of every op of the interface, written from the definitions with plain loops
 * and index arithmetic. It shares no code with any backend: its only job is to be obviously right.
 * i32 tensors are carried as Float64Array holding integers.
 */
import { dropoutThreshold, type LocalResponseNormAttrs, type OpAttrs, type OpInputs, type OpName } from '../ops.js';
import { addCounter, philox4x32, philoxFill } from '../philox.js';

/** A float64 tensor of the reference. */
export interface RefTensor {
  readonly shape: number[];
  readonly data: Float64Array;
}

/** The inputs of op K with reference tensors in place of views. */
export type RefInputs<K extends OpName> = {
  [P in keyof OpInputs<K>]: OpInputs<K>[P] extends readonly unknown[] ? RefTensor[] : RefTensor;
};

/** The reference of op K: every output of the op, in its order (sgdUpdate: the new param and momentum). */
export type RefOp<K extends OpName> = (inputs: RefInputs<K>, attrs: OpAttrs<K>) => RefTensor[];

/** Element count of a shape. */
export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A reference tensor of `shape` holding `values` (or zeros). */
export const refTensor = (shape: readonly number[], values?: ArrayLike<number>): RefTensor => {
  const data = new Float64Array(numel(shape));
  if (values) {
    if (values.length !== data.length) throw new Error(`refTensor: ${values.length} values for shape [${shape.join(', ')}]`);
    data.set(values);
  }
  return { shape: [...shape], data };
};

/** The same elements under another shape of equal size (a reshape view, in the reference). */
export const refReshape = (t: RefTensor, shape: readonly number[]): RefTensor => refTensor(shape, t.data);

const stridesOf = (shape: readonly number[]): number[] => {
  const s: number[] = [];
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
};

/** The multi-index of flat position i in a row-major shape. */
const unravel = (i: number, shape: readonly number[]): number[] => {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
};

/** Flat position, in a tensor of `shape` broadcast to the output, of output multi-index `idx`. */
const broadcastFlat = (idx: readonly number[], shape: readonly number[]): number => {
  const off = idx.length - shape.length;
  let flat = 0;
  for (let d = 0; d < shape.length; d++) flat = flat * shape[d] + (shape[d] === 1 ? 0 : idx[off + d]);
  return flat;
};

const broadcastShape = (...shapes: (readonly number[])[]): number[] => {
  const r = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let d = 0; d < r; d++) {
    const dims = shapes.map((s) => s[s.length - r + d] ?? 1);
    const big = dims.find((x) => x !== 1) ?? 1;
    if (dims.some((x) => x !== 1 && x !== big)) throw new Error(`reference: cannot broadcast ${shapes.map((s) => `[${s}]`).join(' and ')}`);
    out.push(big);
  }
  return out;
};

/** Elementwise map over broadcast inputs. */
const zipWith = (ts: RefTensor[], f: (...v: number[]) => number): RefTensor => {
  const shape = broadcastShape(...ts.map((t) => t.shape));
  const out = refTensor(shape);
  for (let i = 0; i < out.data.length; i++) {
    const idx = unravel(i, shape);
    out.data[i] = f(...ts.map((t) => t.data[broadcastFlat(idx, t.shape)]));
  }
  return out;
};

const UNARY: Record<OpAttrs<'unary'>['fn'], (x: number) => number> = {
  neg: (x) => -x,
  abs: Math.abs,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  reciprocal: (x) => 1 / x,
  square: (x) => x * x,
  relu: (x) => (x > 0 ? x : 0),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  tanh: Math.tanh,
  sign: Math.sign,
  floor: Math.floor,
  ceil: Math.ceil,
};

const BINARY: Record<OpAttrs<'binary'>['fn'], (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  max: Math.max,
  min: Math.min,
  pow: Math.pow,
};

const COMPARE: Record<OpAttrs<'compare'>['fn'], (a: number, b: number) => boolean> = {
  eq: (a, b) => a === b,
  ne: (a, b) => a !== b,
  lt: (a, b) => a < b,
  le: (a, b) => a <= b,
  gt: (a, b) => a > b,
  ge: (a, b) => a >= b,
};

/** x[n, c, h, w] of an NCHW tensor, or undefined outside the spatial bounds (padding). */
const pixel = (x: RefTensor, n: number, c: number, h: number, w: number): number | undefined => {
  const [, C, H, W] = x.shape;
  if (h < 0 || h >= H || w < 0 || w >= W) return undefined;
  return x.data[((n * C + c) * H + h) * W + w];
};

const conv2d: RefOp<'conv2d'> = ({ x, w, scale, bias, residual }, g) => {
  const y = refTensor([g.batch, g.outChannels, g.outH, g.outW]);
  const plane = g.outH * g.outW;
  const kPerGroup = g.outChannels / g.groups;
  const cPerGroup = g.inChannels / g.groups;
  let o = 0;
  for (let n = 0; n < g.batch; n++)
    for (let k = 0; k < g.outChannels; k++)
      for (let oh = 0; oh < g.outH; oh++)
        for (let ow = 0; ow < g.outW; ow++, o++) {
          let acc = 0;
          const group = Math.floor(k / kPerGroup);
          for (let c = 0; c < cPerGroup; c++)
            for (let r = 0; r < g.kernelH; r++)
              for (let s = 0; s < g.kernelW; s++) {
                const v = pixel(x, n, group * cPerGroup + c, oh * g.strideH - g.padTop + r * g.dilationH, ow * g.strideW - g.padLeft + s * g.dilationW);
                if (v !== undefined) acc += v * w.data[((k * cPerGroup + c) * g.kernelH + r) * g.kernelW + s];
              }
          y.data[o] = scale ? acc * scale.data[k] : acc;
        }
  return [epilogue(y, (i) => (bias ? bias.data[Math.floor(i / plane) % g.outChannels] : 0), residual, g.relu)];
};

/** A fused epilogue in place: y[i] = act(y[i] + shift(i) + residual[i]), act = ReLU when `relu`. */
const epilogue = (y: RefTensor, shift: (i: number) => number, residual: RefTensor | undefined, relu = false): RefTensor => {
  for (let i = 0; i < y.data.length; i++) {
    const v = y.data[i] + shift(i) + (residual ? residual.data[i] : 0);
    y.data[i] = relu && !(v > 0) ? 0 : v;
  }
  return y;
};

/**
 * Visits every (input pixel, weight, output pixel) triple of a convolution that touches a real
 * input pixel: the adjoint ops below scatter along exactly the pairs the forward sum gathers.
 */
const forEachConvTap = (
  g: OpAttrs<'conv2d'>,
  visit: (xi: number, wi: number, yi: number) => void,
): void => {
  const kPerGroup = g.outChannels / g.groups;
  const cPerGroup = g.inChannels / g.groups;
  for (let n = 0; n < g.batch; n++)
    for (let k = 0; k < g.outChannels; k++)
      for (let oh = 0; oh < g.outH; oh++)
        for (let ow = 0; ow < g.outW; ow++)
          for (let c = 0; c < cPerGroup; c++)
            for (let r = 0; r < g.kernelH; r++)
              for (let s = 0; s < g.kernelW; s++) {
                const ih = oh * g.strideH - g.padTop + r * g.dilationH;
                const iw = ow * g.strideW - g.padLeft + s * g.dilationW;
                if (ih < 0 || ih >= g.inH || iw < 0 || iw >= g.inW) continue;
                const ci = Math.floor(k / kPerGroup) * cPerGroup + c;
                visit(
                  ((n * g.inChannels + ci) * g.inH + ih) * g.inW + iw,
                  ((k * cPerGroup + c) * g.kernelH + r) * g.kernelW + s,
                  ((n * g.outChannels + k) * g.outH + oh) * g.outW + ow,
                );
              }
};

/** The cells of pooling window (oh, ow) that lie inside the input, as [h, w] pairs. */
const windowCells = (g: OpAttrs<'maxPool2d'>, oh: number, ow: number): [number, number][] => {
  const cells: [number, number][] = [];
  for (let r = 0; r < g.kernelH; r++)
    for (let s = 0; s < g.kernelW; s++) {
      const h = oh * g.strideH - g.padTop + r;
      const w = ow * g.strideW - g.padLeft + s;
      if (h >= 0 && h < g.inH && w >= 0 && w < g.inW) cells.push([h, w]);
    }
  return cells;
};

/** Calls visit(plane offset of x, flat index of y, window cells) for every pooling output. */
const forEachWindow = (g: OpAttrs<'maxPool2d'>, visit: (plane: number, yi: number, cells: [number, number][]) => void): void => {
  let yi = 0;
  for (let nc = 0; nc < g.batch * g.channels; nc++)
    for (let oh = 0; oh < g.outH; oh++)
      for (let ow = 0; ow < g.outW; ow++, yi++) visit(nc * g.inH * g.inW, yi, windowCells(g, oh, ow));
};

/** Index within `cells` of the first maximum (row-major window order). */
const firstMax = (x: RefTensor, plane: number, cells: [number, number][], inW: number): number => {
  let best = 0;
  cells.forEach(([h, w], i) => {
    const [bh, bw] = cells[best];
    if (x.data[plane + h * inW + w] > x.data[plane + bh * inW + bw]) best = i;
  });
  return best;
};

const avgDivisor = (g: OpAttrs<'avgPool2d'>, cells: number) => (g.countIncludePad ? g.kernelH * g.kernelW : cells);

/** Channel c of every position of x [N, C, ...] (the batch-norm / affine grouping). */
const channelOf = (x: RefTensor, i: number): number => {
  const inner = numel(x.shape.slice(2));
  return Math.floor(i / inner) % x.shape[1];
};

/** Per-row log-softmax of logits [N, C], from the log-sum-exp shifted by the row max. */
const logSoftmaxRows = (logits: RefTensor): Float64Array => {
  const [n, c] = logits.shape;
  const out = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    const row = logits.data.subarray(i * c, (i + 1) * c);
    const m = Math.max(...row);
    let s = 0;
    for (const v of row) s += Math.exp(v - m);
    const lse = m + Math.log(s);
    for (let j = 0; j < c; j++) out[i * c + j] = row[j] - lse;
  }
  return out;
};

/** Visits every element of x [N, C, ...] with its flat index i and the flat index of channel q at its place. */
const forEachChannelPlace = (x: RefTensor, visit: (i: number, c: number, at: (q: number) => number) => void): void => {
  const [n, channels] = x.shape;
  const inner = numel(x.shape.slice(2));
  for (let b = 0; b < n; b++)
    for (let c = 0; c < channels; c++)
      for (let j = 0; j < inner; j++) visit((b * channels + c) * inner + j, c, (q) => (b * channels + q) * inner + j);
};

/** The channels whose squares scale channel c in local response normalisation, clipped to [0, C). */
const lrnWindow = (size: number, c: number, channels: number): number[] => {
  const out: number[] = [];
  for (let q = c - Math.floor(size / 2); q <= c + Math.floor((size - 1) / 2); q++) if (q >= 0 && q < channels) out.push(q);
  return out;
};

/** s = k + alpha/size · Σ x² over each element's channel window: the divisor of LRN before its power. */
const lrnScale = (x: RefTensor, { size, alpha, k }: LocalResponseNormAttrs): Float64Array => {
  const s = new Float64Array(x.data.length);
  forEachChannelPlace(x, (i, c, at) => {
    let sum = 0;
    for (const q of lrnWindow(size, c, x.shape[1])) sum += x.data[at(q)] ** 2;
    s[i] = k + (alpha / size) * sum;
  });
  return s;
};

const validLabel = (label: number, classes: number) => Number.isInteger(label) && label >= 0 && label < classes;

/** The float64 reference of every op, keyed like the op table. */
export const ref: { readonly [K in OpName]: RefOp<K> } = {
  unary: ({ x }, { fn }) => [zipWith([x], UNARY[fn])],
  binary: ({ a, b }, { fn }) => [zipWith([a, b], BINARY[fn])],
  compare: ({ a, b }, { fn }) => [zipWith([a, b], (p, q) => (COMPARE[fn](p, q) ? 1 : 0))],
  where: ({ cond, a, b }) => [zipWith([cond, a, b], (c, p, q) => (c !== 0 ? p : q))],
  cast: ({ x }, { dtype }) => [zipWith([x], dtype === 'i32' ? Math.trunc : (v) => v)],
  copy: ({ x }) => [refTensor(x.shape, x.data)],
  fill: (_, { shape, value }) => [refTensor(shape, new Float64Array(numel(shape)).fill(value))],

  reduce: ({ x }, { fn, axes }) => {
    const outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const init = fn === 'max' ? -Infinity : fn === 'min' ? Infinity : 0;
    const out = refTensor(outShape, new Float64Array(numel(outShape)).fill(init));
    for (let i = 0; i < x.data.length; i++) {
      const o = broadcastFlat(unravel(i, x.shape), outShape);
      const v = x.data[i];
      out.data[o] = fn === 'max' ? Math.max(out.data[o], v) : fn === 'min' ? Math.min(out.data[o], v) : out.data[o] + v;
    }
    if (fn === 'mean') {
      const count = numel(axes.map((a) => x.shape[a]));
      for (let o = 0; o < out.data.length; o++) out.data[o] /= count;
    }
    return [out];
  },

  argmax: ({ x }, { axis }) => {
    const outShape = x.shape.map((d, i) => (i === axis ? 1 : d));
    const out = refTensor(outShape);
    const st = stridesOf(x.shape);
    for (let o = 0; o < out.data.length; o++) {
      const base = broadcastFlat(unravel(o, outShape), x.shape);
      let best = 0;
      for (let j = 1; j < x.shape[axis]; j++) if (x.data[base + j * st[axis]] > x.data[base + best * st[axis]]) best = j;
      out.data[o] = best;
    }
    return [out];
  },

  topk: ({ x }, { k }) => {
    const last = x.shape[x.shape.length - 1];
    const rows = last === 0 ? numel(x.shape.slice(0, -1)) : x.data.length / last;
    const shape = [...x.shape.slice(0, -1), k];
    const values = refTensor(shape);
    const indices = refTensor(shape);
    for (let r = 0; r < rows; r++) {
      const order = Array.from({ length: last }, (_, j) => j);
      order.sort((p, q) => x.data[r * last + q] - x.data[r * last + p] || p - q);
      for (let j = 0; j < k; j++) {
        values.data[r * k + j] = x.data[r * last + order[j]];
        indices.data[r * k + j] = order[j];
      }
    }
    return [values, indices];
  },

  matmul: ({ a, b }, { transA, transB }) => {
    const [ar, ac] = a.shape.slice(-2);
    const [br, bc] = b.shape.slice(-2);
    const [m, kk] = transA ? [ac, ar] : [ar, ac];
    const n = transB ? br : bc;
    const batch = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const out = refTensor([...batch, m, n]);
    const aBatch = a.shape.slice(0, -2);
    const bBatch = b.shape.slice(0, -2);
    const ea = (base: number, i: number, j: number) => a.data[base + (transA ? j * ac + i : i * ac + j)];
    const eb = (base: number, i: number, j: number) => b.data[base + (transB ? j * bc + i : i * bc + j)];
    for (let t = 0; t < numel(batch); t++) {
      const idx = unravel(t, batch);
      const baseA = broadcastFlat(idx, aBatch) * ar * ac;
      const baseB = broadcastFlat(idx, bBatch) * br * bc;
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let p = 0; p < kk; p++) acc += ea(baseA, i, p) * eb(baseB, p, j);
          out.data[(t * m + i) * n + j] = acc;
        }
    }
    return [out];
  },

  conv2d,
  conv2dBackwardData: ({ dy, w }, g) => {
    const dx = refTensor([g.batch, g.inChannels, g.inH, g.inW]);
    forEachConvTap(g, (xi, wi, yi) => (dx.data[xi] += dy.data[yi] * w.data[wi]));
    return [dx];
  },
  conv2dBackwardFilter: ({ x, dy }, g) => {
    const dw = refTensor([g.outChannels, g.inChannels / g.groups, g.kernelH, g.kernelW]);
    forEachConvTap(g, (xi, wi, yi) => (dw.data[wi] += dy.data[yi] * x.data[xi]));
    return [dw];
  },

  maxPool2d: ({ x }, g) => {
    const y = refTensor([g.batch, g.channels, g.outH, g.outW]);
    forEachWindow(g, (plane, yi, cells) => (y.data[yi] = Math.max(...cells.map(([h, w]) => x.data[plane + h * g.inW + w]))));
    return [y];
  },
  maxPool2dBackward: ({ dy, x }, g) => {
    const dx = refTensor(x.shape);
    forEachWindow(g, (plane, yi, cells) => {
      const [h, w] = cells[firstMax(x, plane, cells, g.inW)];
      dx.data[plane + h * g.inW + w] += dy.data[yi];
    });
    return [dx];
  },
  avgPool2d: ({ x }, g) => {
    const y = refTensor([g.batch, g.channels, g.outH, g.outW]);
    forEachWindow(g, (plane, yi, cells) => {
      let s = 0;
      for (const [h, w] of cells) s += x.data[plane + h * g.inW + w];
      y.data[yi] = s / avgDivisor(g, cells.length);
    });
    return [y];
  },
  avgPool2dBackward: ({ dy }, g) => {
    const dx = refTensor([g.batch, g.channels, g.inH, g.inW]);
    forEachWindow(g, (plane, yi, cells) => {
      for (const [h, w] of cells) dx.data[plane + h * g.inW + w] += dy.data[yi] / avgDivisor(g, cells.length);
    });
    return [dx];
  },

  batchNormTrain: ({ x, gamma, beta, residual }, { eps, relu }) => {
    const c = x.shape[1];
    const count = x.data.length / c;
    const mean = refTensor([c]);
    const variance = refTensor([c]);
    for (let i = 0; i < x.data.length; i++) mean.data[channelOf(x, i)] += x.data[i] / count;
    for (let i = 0; i < x.data.length; i++) variance.data[channelOf(x, i)] += (x.data[i] - mean.data[channelOf(x, i)]) ** 2 / count;
    const invstd = refTensor([c], variance.data.map((v) => 1 / Math.sqrt(v + eps)));
    const y = refTensor(x.shape);
    for (let i = 0; i < x.data.length; i++) {
      const ch = channelOf(x, i);
      y.data[i] = (x.data[i] - mean.data[ch]) * invstd.data[ch] * gamma.data[ch];
    }
    return [epilogue(y, (i) => beta.data[channelOf(x, i)], residual, relu), mean, invstd];
  },
  batchNormBackward: ({ dy: dout, x, gamma, mean, invstd, y }, { relu, residual }) => {
    // out = act(gamma * xhat + beta + residual) with xhat = (x - mean) * invstd, where mean and invstd
    // depend on x; dy is the gradient at gamma * xhat + beta: dout where the ReLU passed, else 0.
    const dy = relu ? zipWith([y!, dout], (v, d) => (v > 0 ? d : 0)) : dout;
    const c = x.shape[1];
    const count = x.data.length / c;
    const xhat = x.data.map((v, i) => (v - mean.data[channelOf(x, i)]) * invstd.data[channelOf(x, i)]);
    const dgamma = refTensor([c]);
    const dbeta = refTensor([c]);
    for (let i = 0; i < x.data.length; i++) {
      dgamma.data[channelOf(x, i)] += dy.data[i] * xhat[i];
      dbeta.data[channelOf(x, i)] += dy.data[i];
    }
    const dx = refTensor(x.shape);
    for (let i = 0; i < x.data.length; i++) {
      const ch = channelOf(x, i);
      dx.data[i] = gamma.data[ch] * invstd.data[ch] * (dy.data[i] - dbeta.data[ch] / count - xhat[i] * dgamma.data[ch] / count);
    }
    return [dx, dgamma, dbeta, ...(residual ? [refTensor(dy.shape, dy.data)] : [])];
  },
  reluBackward: ({ y, dy }) => [zipWith([y, dy], (v, d) => (v > 0 ? d : 0))],
  localResponseNorm: ({ x }, a) => {
    const s = lrnScale(x, a);
    return [refTensor(x.shape, x.data.map((v, i) => v / s[i] ** a.beta))];
  },
  localResponseNormBackward: ({ x, dy }, a) => {
    // y_c = x_c·s_c^-beta with s_c = k + alpha/size·Σ_q x_q² over c's window: dy_c reaches x_c through the
    // power, and every x_q of the window through s_c (d s_c / d x_q = 2·alpha/size·x_q).
    const s = lrnScale(x, a);
    const dx = refTensor(x.shape);
    forEachChannelPlace(x, (i, c, at) => {
      dx.data[i] += dy.data[i] * s[i] ** -a.beta;
      const through = dy.data[i] * x.data[i] * -a.beta * s[i] ** (-a.beta - 1) * ((2 * a.alpha) / a.size);
      for (const q of lrnWindow(a.size, c, x.shape[1])) dx.data[at(q)] += through * x.data[at(q)];
    });
    return [dx];
  },
  dropout: ({ x }, { p, seed, counter }) => {
    const threshold = dropoutThreshold(p);
    const block = new Uint32Array(4);
    const y = refTensor(x.shape);
    for (let i = 0; i < x.data.length; i++) {
      if (i % 4 === 0) philox4x32(...addCounter(counter, i / 4), 0, 0, seed[0], seed[1], block);
      y.data[i] = x.data[i] * (block[i % 4] >= threshold ? 1 / (1 - p) : 0);
    }
    return [y];
  },
  channelAffine: ({ x, scale, shift }) => [
    refTensor(x.shape, x.data.map((v, i) => v * scale.data[channelOf(x, i)] + shift.data[channelOf(x, i)])),
  ],

  softmaxCrossEntropy: ({ logits, labels }, { smoothing }) => {
    const [n, c] = logits.shape;
    const logp = logSoftmaxRows(logits);
    const loss = refTensor([n]);
    for (let i = 0; i < n; i++) {
      const label = labels.data[i];
      let sumLogp = 0;
      for (let j = 0; j < c; j++) sumLogp += logp[i * c + j];
      loss.data[i] = validLabel(label, c) ? -(1 - smoothing) * logp[i * c + label] - (smoothing / c) * sumLogp : NaN;
    }
    return [loss];
  },
  softmaxCrossEntropyBackward: ({ logits, labels, dloss }, { smoothing }) => {
    const [n, c] = logits.shape;
    const logp = logSoftmaxRows(logits);
    const d = refTensor(logits.shape);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < c; j++) {
        const target = (j === labels.data[i] ? 1 - smoothing : 0) + smoothing / c;
        d.data[i * c + j] = dloss.data[i] * (Math.exp(logp[i * c + j]) - target);
      }
    return [d];
  },

  permute: ({ x }, { perm }) => {
    const shape = perm.map((p) => x.shape[p]);
    const st = stridesOf(x.shape);
    const out = refTensor(shape);
    for (let i = 0; i < out.data.length; i++) {
      const idx = unravel(i, shape);
      out.data[i] = x.data[idx.reduce((acc, v, d) => acc + v * st[perm[d]], 0)];
    }
    return [out];
  },
  slice: ({ x }, { begin, size }) => {
    const st = stridesOf(x.shape);
    const out = refTensor([...size]);
    for (let i = 0; i < out.data.length; i++) {
      const idx = unravel(i, size);
      out.data[i] = x.data[idx.reduce((acc, v, d) => acc + (v + begin[d]) * st[d], 0)];
    }
    return [out];
  },
  pad: ({ x }, { pads, value }) => {
    const shape = x.shape.map((d, i) => d + pads[i][0] + pads[i][1]);
    const st = stridesOf(x.shape);
    const out = refTensor(shape);
    for (let i = 0; i < out.data.length; i++) {
      const src = unravel(i, shape).map((v, d) => v - pads[d][0]);
      out.data[i] = src.every((v, d) => v >= 0 && v < x.shape[d]) ? x.data[src.reduce((acc, v, d) => acc + v * st[d], 0)] : value;
    }
    return [out];
  },
  concat: ({ xs }, { axis }) => {
    const shape = xs[0].shape.map((d, i) => (i === axis ? xs.reduce((s, t) => s + t.shape[axis], 0) : d));
    const out = refTensor(shape);
    for (let i = 0; i < out.data.length; i++) {
      const idx = unravel(i, shape);
      let part = 0;
      while (idx[axis] >= xs[part].shape[axis]) idx[axis] -= xs[part++].shape[axis];
      const st = stridesOf(xs[part].shape);
      out.data[i] = xs[part].data[idx.reduce((acc, v, d) => acc + v * st[d], 0)];
    }
    return [out];
  },
  broadcastTo: ({ x }, { shape }) => [zipWith([x, refTensor(shape)], (v) => v)],

  sgdUpdate: ({ param, grad, momentum }, { lr, momentum: mu, dampening, weightDecay, nesterov, firstStep }) => {
    // torch.optim.SGD: d = g + wd·p; buf = first ? d : mu·buf + (1 - dampening)·d; step = nesterov ? d + mu·buf : buf.
    const p = refTensor(param.shape, param.data);
    const buf = refTensor(momentum.shape, momentum.data);
    for (let i = 0; i < p.data.length; i++) {
      let d = grad.data[i] + weightDecay * p.data[i];
      if (mu !== 0) {
        buf.data[i] = firstStep ? d : mu * buf.data[i] + (1 - dampening) * d;
        d = nesterov ? d + mu * buf.data[i] : buf.data[i];
      }
      p.data[i] -= lr * d;
    }
    return [p, buf];
  },
  randomFill: (_, { shape, dist, seed, counter, a, b }) => [
    refTensor(shape, philoxFill(new Float32Array(numel(shape)), dist, seed, counter, a, b)),
  ],
};

/**
 * The gradient of sum(w ⊙ f(x)) with respect to x by central differences in float64 (error
 * O(h²) plus ~1e-16/h of rounding), the numeric side of every gradient check.
 */
export const numericGrad = (f: (x: RefTensor) => RefTensor, x: RefTensor, w: Float64Array, h = 1e-4): RefTensor => {
  const g = refTensor(x.shape);
  const probe = refTensor(x.shape, x.data);
  const loss = () => f(probe).data.reduce((s, v, i) => s + v * w[i], 0);
  for (let i = 0; i < x.data.length; i++) {
    probe.data[i] = x.data[i] + h;
    const up = loss();
    probe.data[i] = x.data[i] - h;
    g.data[i] = (up - loss()) / (2 * h);
    probe.data[i] = x.data[i];
  }
  return g;
};
