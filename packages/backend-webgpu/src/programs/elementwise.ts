/**
 * The one elementwise template: out = expr(v0, v1, ...) over an iteration shape, each operand read
 * through its own strided view (broadcast, permuted, sliced) and the output written contiguously or
 * into a window of a larger tensor. Unary, binary, compare, where, cast, fill, every layout op and
 * the per-channel affine maps are instances of it.
 */
import { sizeOf, type Shape } from '@residual/core';
import { groupsFor, type Program, type UniformField, type WgslScalar } from '../header.js';
import { accessOf, collapse, contiguous, type Access, type View } from '../views.js';

/** An operand: its element type and how it is read. */
export interface Operand {
  readonly type: WgslScalar;
  readonly view: View;
}

/** One elementwise map. */
export interface ElementwiseSpec {
  /** A WGSL expression over the operand values `v0`, `v1`, ... and the uniform `u.value`. */
  readonly expr: string;
  /** The iteration shape (the output's shape, or the part of it written). */
  readonly shape: Shape;
  readonly inputs: readonly Operand[];
  readonly out: { readonly type: WgslScalar; readonly view?: View };
  /** A constant the expression reads as `u.value`, of the output's type. */
  readonly value?: number;
  /** Element type of the shared helpers (`isNan`, `maxOf`, ...): the operands' value type. */
  readonly scalar?: WgslScalar;
}

const WG = 256;

/** f32 helpers the expressions may call (WGSL's `pow` is undefined for negative bases). */
const HELPERS = `fn sigmoidOf(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}
// tanh saturates to +-1 in f32 long before |v| = 10; clamping keeps drivers' exp-based tanh finite.
fn tanhOf(v: f32) -> f32 { return select(tanh(clamp(v, -10.0, 10.0)), v, isNanF(v)); }
fn powF(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (b == 2.0) { return a * a; }
  let m = pow(abs(a), b);
  if (!(a < 0.0)) { return m; }
  if (floor(b) != b) { return nan(); }
  return select(m, -m, fract(b * 0.5) != 0.0);
}
// Integer power by squaring (wrapping like i32 products); negative exponents truncate 1/a^|b| to 0 unless |a| = 1.
fn powI(a: i32, b: i32) -> i32 {
  if (b < 0) { return select(select(0i, select(1i, -1i, (b & 1) != 0), a == -1i), 1i, a == 1i); }
  var r = 1i;
  var base = a;
  var e = b;
  loop {
    if (e == 0) { break; }
    if ((e & 1) != 0) { r *= base; }
    base *= base;
    e >>= 1u;
  }
  return r;
}`;

const index = (a: Access, k: number): string => (a === 'c' ? 'i + u.lead' : a === 'z' ? `bases(${k}u)` : `at${k}`);

/** WGSL placing element i in every strided operand: one walk over the axes, shared by all of them. */
const stridedOffsets = (access: readonly Access[], rank: number): string => {
  const ks = access.flatMap((a, k) => (a === 's' ? [k] : []));
  if (!ks.length) return '';
  return `${ks.map((k) => `  var at${k} = bases(${k}u);`).join('\n')}
  var rem = u.first + i;
  for (var d = ${rank}u; d > 0u; d--) {
    let n = shape(d - 1u);
    let c = rem % n;
    rem /= n;
${ks.map((k) => `    at${k} += c * strides(${k * rank}u + d - 1u);`).join('\n')}
  }
`;
};

/** The map's iteration with its axes merged, and how each operand (inputs, then output) is indexed. */
const planOf = (spec: ElementwiseSpec) => {
  const { shape, views } = collapse(spec.shape, [...spec.inputs.map((o) => o.view), spec.out.view ?? contiguous(spec.shape)]);
  return { shape, views, access: views.map((v) => accessOf(v, shape)) };
};

/**
 * Part of a map: positions [first, first + count) of the iteration, with operand k (inputs, then
 * output) bound from element `shifts[k]` of its buffer. Operands read in their own order ('c')
 * must be bound from the same element.
 */
export interface Piece {
  readonly first: number;
  readonly count: number;
  readonly shifts: readonly number[];
}

/** The program of one elementwise map, or of a piece of it (see {@link elementwisePieces}). */
export const elementwiseProgram = (spec: ElementwiseSpec, piece?: Piece): Program => {
  const { inputs, out } = spec;
  const { shape, views, access } = planOf(spec);
  const strided = access.includes('s');
  const size = piece?.count ?? sizeOf(shape);
  const uniforms: UniformField[] = [
    { name: 'size', type: 'u32', value: size },
    { name: 'first', type: 'u32', value: piece?.first ?? 0 },
    // Where operands read in their own order ('c') start in their bindings (all alike: at the piece's start).
    { name: 'lead', type: 'u32', value: piece && access.includes('c') ? piece.first - piece.shifts[access.indexOf('c')] : 0 },
  ];
  if (spec.value !== undefined) uniforms.push({ name: 'value', type: out.type, value: spec.value });
  // u32 arithmetic wraps, so a base below its binding's start still lands on the right element.
  uniforms.push({ name: 'bases', type: 'u32', value: views.map((v, k) => (v.base - (piece?.shifts[k] ?? 0)) >>> 0) });
  if (strided) {
    uniforms.push({ name: 'shape', type: 'u32', value: [...shape] });
    uniforms.push({ name: 'strides', type: 'u32', value: views.flatMap((v) => [...v.strides]) });
  }
  const operands = inputs.map((o, k) => `${o.type}${access[k]}`).join(',');
  const scalar = spec.scalar ?? inputs[0]?.type ?? out.type;
  return {
    shaderKey: `ew|${spec.expr}|${operands}|${out.type}${access[inputs.length]}|${strided ? shape.length : '-'}|${scalar}|${spec.value !== undefined}`,
    workgroupSize: WG,
    dispatch: groupsFor(size, WG),
    inputs: inputs.map((o, k) => ({ name: `src${k}`, type: o.type })),
    outputs: [{ name: 'dst', type: out.type }],
    uniforms,
    scalar,
    code: () => `${HELPERS}

fn run(group: u32, lid: u32) {
  let i = group * WG + lid;
  if (i >= u.size) { return; }
${strided ? stridedOffsets(access, shape.length) : ''}${inputs.map((_, k) => `  let v${k} = src${k}[${index(access[k], k)}];`).join('\n')}
  dst[${index(access[inputs.length], inputs.length)}] = ${spec.expr};
}`,
  };
};

/** Row-major coordinates of position p of `shape`. */
const coordsOf = (shape: readonly number[], p: number): number[] => {
  const c = shape.map(() => 0);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = p % shape[d];
    p = Math.floor(p / shape[d]);
  }
  return c;
};

/**
 * Elements [lo, hi] of its buffer that a view (strides >= 0) may touch over positions [a, b). Where
 * each axis steps past all the axes after it (a window, a slice), offsets grow with the position
 * and [a, b) spans from a's element to b - 1's. Otherwise the axes before the first one where a and
 * b - 1 differ are fixed, that axis runs between them, and the axes after it are taken whole.
 */
const touched = (shape: readonly number[], view: View, a: number, b: number): [number, number] => {
  const [ca, cb] = [coordsOf(shape, a), coordsOf(shape, b - 1)];
  const at = (c: readonly number[]) => c.reduce((o, x, d) => o + x * view.strides[d], view.base);
  let extent = 0;
  const ordered = shape.every((_, d) => {
    const e = shape.length - 1 - d;
    const ok = view.strides[e] >= extent;
    extent += (shape[e] - 1) * view.strides[e];
    return ok;
  });
  if (ordered) return [at(ca), at(cb)];
  const d0 = ca.findIndex((c, d) => c !== cb[d]);
  let [lo, hi] = [view.base, view.base];
  shape.forEach((n, d) => {
    if (d0 < 0 || d < d0) {
      lo += ca[d] * view.strides[d];
      hi += ca[d] * view.strides[d];
    } else if (d === d0) {
      lo += ca[d] * view.strides[d];
      hi += cb[d] * view.strides[d];
    } else hi += (n - 1) * view.strides[d];
  });
  return [lo, hi];
};

/**
 * The map cut into pieces whose every operand fits a binding of `limit` elements starting at a
 * multiple of `align` elements, each with the element range [start, end) of every operand
 * (inputs, then output) to bind: from each piece's start, the longest that fits. Null where that
 * leaves pieces of under 64 positions on average (a transpose of a tensor larger than the limit).
 */
export const elementwisePieces = (spec: ElementwiseSpec, limit: number, align: number): { piece: Piece; ranges: [number, number][] }[] | null => {
  const { shape, views, access } = planOf(spec);
  const size = sizeOf(shape);
  const rangesOf = (first: number, count: number) =>
    views.map((v, k): [number, number] => {
      const [lo, hi] = access[k] === 'c' ? [first, first + count - 1] : touched(shape, v, first, first + count);
      return [lo - (lo % align), hi + 1];
    });
  const fits = (first: number, count: number) => rangesOf(first, count).every(([lo, hi]) => hi - lo <= limit);
  const pieces: { piece: Piece; ranges: [number, number][] }[] = [];
  for (let first = 0; first < size; ) {
    // A longer piece never touches less, so the longest that fits is found by bisection; one position always fits.
    let [count, most] = [1, Math.min(size - first, limit)];
    while (count < most) {
      const mid = Math.ceil((count + most) / 2);
      if (fits(first, mid)) count = mid;
      else most = mid - 1;
    }
    const ranges = rangesOf(first, count);
    pieces.push({ piece: { first, count, shifts: ranges.map(([lo]) => lo) }, ranges });
    first += count;
    if (pieces.length > 16 + size / 64) return null;
  }
  return pieces;
};

/** WGSL of each unary function, by dtype (i32 has only the functions the op table allows it). */
export const UNARY_EXPR = {
  f32: {
    neg: '-v0', abs: 'abs(v0)', exp: 'exp(v0)', log: 'select(log(v0), nan(), v0 < 0.0)', sqrt: 'select(sqrt(v0), nan(), v0 < 0.0)',
    rsqrt: '1.0 / sqrt(v0)', reciprocal: '1.0 / v0', square: 'v0 * v0', relu: 'reluOf(v0)',
    sigmoid: 'sigmoidOf(v0)', tanh: 'tanhOf(v0)', sign: 'sign(v0)', floor: 'floor(v0)', ceil: 'ceil(v0)',
  },
  i32: { neg: '-v0', abs: 'abs(v0)', square: 'v0 * v0', relu: 'max(v0, 0i)', sign: 'sign(v0)' },
} as const;

/** WGSL of each binary function, by dtype. i32 division truncates, and x/0 is 0 (as JS's ToInt32(x/0)). */
export const BINARY_EXPR = {
  f32: { add: 'v0 + v1', sub: 'v0 - v1', mul: 'v0 * v1', div: 'v0 / v1', max: 'maxOf(v0, v1)', min: 'minOf(v0, v1)', pow: 'powF(v0, v1)' },
  i32: { add: 'v0 + v1', sub: 'v0 - v1', mul: 'v0 * v1', div: 'select(v0 / v1, 0i, v1 == 0i)', max: 'max(v0, v1)', min: 'min(v0, v1)', pow: 'powI(v0, v1)' },
} as const;

// WGSL lets drivers assume no NaN, so comparisons test for it on the bits: any comparison with NaN is false but ne.
const ordered = (op: string) => `select(0i, 1i, !isNan(v0) && !isNan(v1) && v0 ${op} v1)`;
/** WGSL of each compare function (i32 0/1). */
export const COMPARE_EXPR = {
  eq: ordered('=='), ne: 'select(1i, 0i, !isNan(v0) && !isNan(v1) && v0 == v1)', lt: ordered('<'), le: ordered('<='), gt: ordered('>'), ge: ordered('>='),
} as const;
