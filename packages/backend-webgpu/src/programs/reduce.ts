/**
 * Reductions over any set of axes (sum, mean, max, min) and argmax. The input is read as
 * [kept axes..., reduced axes...] through strides, so output o reduces positions o·count .. o·count +
 * count - 1 of that order. Few long reductions get a workgroup each (tree in shared memory); many
 * short ones get a thread each.
 */
import { sizeOf, stridesOf, type ReduceFn, type Shape } from '@residual/core';
import { groupsFor, type Program, type WgslScalar } from '../header.js';
import { collapse } from '../views.js';

/** One reduction of a tensor of `shape` and element `type` over sorted `axes`. */
export interface ReduceSpec {
  readonly fn: ReduceFn | 'argmax';
  readonly type: WgslScalar;
  readonly shape: Shape;
  readonly axes: readonly number[];
  /** What 'mean' divides the sum by (default: the count of reduced elements). */
  readonly divisor?: number;
  /** Elements of the input's (output's) binding before its first element (default 0). */
  readonly xBase?: number;
  readonly yBase?: number;
}

const WG = 256;

/** How each reduction starts, takes one value `v` at position `r`, merges two partials, and ends. */
const STEPS = {
  sum: { init: 'T(0)', take: 'acc += v;', merge: 'sv[lid] += sv[lid + s];' },
  mean: { init: 'T(0)', take: 'acc += v;', merge: 'sv[lid] += sv[lid + s];' },
  max: { init: 'lowest()', take: 'acc = maxOf(acc, v);', merge: 'sv[lid] = maxOf(sv[lid], sv[lid + s]);' },
  min: { init: 'highest()', take: 'acc = minOf(acc, v);', merge: 'sv[lid] = minOf(sv[lid], sv[lid + s]);' },
  argmax: {
    init: 'lowest()',
    take: 'if (at == NONE || ranksBefore(v, r, acc, at)) { acc = v; at = r; }',
    merge: `let ov = sv[lid + s];
      let oi = si[lid + s];
      if (oi != NONE && (si[lid] == NONE || ranksBefore(ov, oi, sv[lid], si[lid]))) { sv[lid] = ov; si[lid] = oi; }`,
  },
} as const;

/** The program of one reduction. */
export const reduceProgram = ({ fn, type, shape, axes, divisor, xBase = 0, yBase = 0 }: ReduceSpec): Program => {
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const order = [...kept, ...axes];
  const own = stridesOf(shape);
  const outputs = sizeOf(kept.map((a) => shape[a]));
  const count = sizeOf(axes.map((a) => shape[a]));
  const perThread = count <= 256 || outputs >= 16384;
  const step = STEPS[fn];
  const arg = fn === 'argmax';
  // The reference's argmax keeps index 0 when x[0] is NaN (nothing compares greater); elsewhere NaN ranks last.
  const result = (acc: string, at: string) =>
    arg ? `select(i32(${at}), 0i, isNan(x[u.xBase + stridedOffset(base, 0u)]))` : fn === 'mean' ? `${acc} / f32(u.divisor)` : acc;
  // The same walk over fewer axes, each of which costs the index a division.
  const read = collapse(order.map((a) => shape[a]), [{ strides: order.map((a) => own[a]), base: 0 }]);
  const body = perThread
    ? `fn run(group: u32, lid: u32) {
  let o = group * WG + lid;
  if (o >= u.outputs) { return; }
  let base = o * u.count;
  var acc = ${step.init};
  var at = NONE;
  for (var r = 0u; r < u.count; r++) {
    let v = x[u.xBase + stridedOffset(base + r, 0u)];
    ${step.take}
  }
  y[u.yBase + o] = ${result('acc', 'at')};
}`
    : `var<workgroup> sv: array<T, WG>;
var<workgroup> si: array<u32, WG>;
fn run(group: u32, lid: u32) {
  let base = group * u.count;
  var acc = ${step.init};
  var at = NONE;
  for (var r = lid; r < u.count; r += WG) {
    let v = x[u.xBase + stridedOffset(base + r, 0u)];
    ${step.take}
  }
  sv[lid] = acc;
  si[lid] = at;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      ${step.merge}
    }
    workgroupBarrier();
  }
  if (lid == 0u) { y[u.yBase + group] = ${result('sv[0]', 'si[0]')}; }
}`;
  return {
    shaderKey: `reduce|${fn}|${type}|${read.shape.length}|${perThread ? 'thread' : 'group'}`,
    workgroupSize: WG,
    dispatch: perThread ? groupsFor(outputs, WG) : outputs,
    inputs: [{ name: 'x', type }],
    outputs: [{ name: 'y', type: arg ? 'i32' : type }],
    uniforms: [
      { name: 'outputs', type: 'u32', value: outputs },
      { name: 'count', type: 'u32', value: count },
      { name: 'divisor', type: 'u32', value: divisor ?? count },
      { name: 'xBase', type: 'u32', value: xBase },
      { name: 'yBase', type: 'u32', value: yBase },
      { name: 'shape', type: 'u32', value: read.shape },
      { name: 'strides', type: 'u32', value: read.views[0].strides },
    ],
    scalar: type,
    code: () => `const NONE = 0xffffffffu;\n${body}`,
  };
};
