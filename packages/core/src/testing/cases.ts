/**
 * Forward cases: every op of the interface run through `runOp` on the active backend and compared
 * with the float64 reference, over edge shapes, dtypes, broadcasting, conv/pool geometry grids and
 * large sizes; plus the dtype rules and the errors bad input must raise.
 */
import {
  adaptiveAvgPool2d, add, argmax, broadcastTo, cast, concat, conv2d, dropout, eq, full, localResponseNorm, matmul, maxPool2d, mean, permute,
  reshape, slice, softmaxCrossEntropy,
  sum, tensor, topk, transpose, where, zeros,
} from '../api.js';
import { runOp, tidy, type Tensor } from '../engine.js';
import { conv2dGeometry, pool2dGeometry, type Conv2dOptions, type Pool2dOptions } from '../geometry.js';
import type { DropoutAttrs, DType, LocalResponseNormAttrs, OpAttrs, OpName, RandomAttrs, SgdAttrs } from '../ops.js';
import { asI32, expectClose, expectThrows, maxAbs, Rng, runAndRead, shapeName, toTensor, type KitTensor, type Tolerance } from './harness.js';
import { numel, ref, refReshape, refTensor, type RefInputs, type RefTensor } from './reference.js';

/** One conformance check: run it with a backend set; it throws an Error describing any mismatch. */
export interface ConformanceCase {
  readonly name: string;
  /** The op under test (for composites, the op they hinge on). */
  readonly op: OpName;
  run(): Promise<void>;
}

/** The inputs of op K as kit tensors. */
type KitInputs<K extends OpName> = { [P in keyof RefInputs<K>]: RefInputs<K>[P] extends RefTensor[] ? KitTensor[] : KitTensor };

type AnyInputs = Record<string, KitTensor | KitTensor[]>;

/** `f` over every given input (optional ones left out stay out). */
const mapInputs = <T>(inputs: AnyInputs, f: (t: KitTensor) => T): Record<string, T | T[]> =>
  Object.fromEntries(Object.entries(inputs).filter(([, v]) => v !== undefined).map(([k, v]) => [k, Array.isArray(v) ? v.map(f) : f(v)]));

/** The dtype rule, stated independently of the op table: what each output must hold. */
const expectedDtypes = (op: OpName, inputs: AnyInputs, attrs: Record<string, unknown>, n: number): DType[] => {
  const dt = (t: KitTensor | KitTensor[] | undefined) => (Array.isArray(t) ? t[0] : t)?.dtype ?? 'f32';
  if (op === 'compare' || op === 'argmax') return ['i32'];
  if (op === 'topk') return [dt(inputs.x), 'i32'];
  if (op === 'cast' || op === 'fill') return [attrs.dtype as DType];
  if (op === 'where') return [dt(inputs.a)];
  return Array<DType>(n).fill(dt(Object.values(inputs)[0]));
};

/** What a forward case computes: inputs, attributes and per-output tolerances. */
interface OpSpec<K extends OpName> {
  inputs: KitInputs<K>;
  attrs: OpAttrs<K>;
  /** One for all outputs, one per output, or computed from the reference outputs. */
  tol?: Tolerance | Tolerance[] | ((want: RefTensor[]) => Tolerance[]);
}

/** A case running op K once on inputs drawn by `make`, checked output by output against the reference. */
const opCase = <K extends OpName>(name: string, op: K, make: (rng: Rng) => OpSpec<K>): ConformanceCase => ({
  name,
  op,
  run: async () => {
    const { inputs, attrs, tol } = make(new Rng(name));
    const want = (ref[op] as (i: unknown, a: unknown) => RefTensor[])(inputs, attrs);
    const got = await runAndRead(() => runOp(op, mapInputs(inputs as AnyInputs, toTensor) as never, attrs));
    if (got.length !== want.length) throw new Error(`${name}: ${got.length} outputs, want ${want.length}`);
    const dtypes = expectedDtypes(op, inputs as AnyInputs, attrs as Record<string, unknown>, want.length);
    const tols = typeof tol === 'function' ? tol(want) : Array.isArray(tol) ? tol : want.map(() => tol ?? {});
    want.forEach((w, i) => expectClose(want.length > 1 ? `${name} (output ${i})` : name, got[i], w, dtypes[i], tols[i]));
  },
});

/** A case that checks a composite computation (a view followed by ops) against a reference composition. */
const flowCase = (name: string, op: OpName, make: (rng: Rng) => { run: () => Tensor; want: RefTensor; tol?: Tolerance; dtype?: DType }): ConformanceCase => ({
  name,
  op,
  run: async () => {
    const { run, want, tol, dtype = 'f32' } = make(new Rng(name));
    const [got] = await runAndRead(() => [run()]);
    expectClose(name, got, want, dtype, tol);
  },
});

const errorCase = (name: string, op: OpName, fn: () => unknown, ...parts: string[]): ConformanceCase => ({
  name,
  op,
  run: async () => expectThrows(name, fn, ...parts),
});

const r = refTensor;
const LARGE = 300_000;

// --- elementwise -------------------------------------------------------------------------------

type UnaryFn = OpAttrs<'unary'>['fn'];
const UNARY_DOMAIN: Record<UnaryFn, (rng: Rng, shape: number[]) => KitTensor> = {
  neg: (g, s) => g.uniform(s, -3, 3),
  abs: (g, s) => g.uniform(s, -3, 3),
  exp: (g, s) => g.uniform(s, -10, 10),
  log: (g, s) => g.uniform(s, 0.05, 20),
  sqrt: (g, s) => g.uniform(s, 0, 20),
  rsqrt: (g, s) => g.uniform(s, 0.05, 20),
  reciprocal: (g, s) => g.signed(s, 0.05, 20),
  square: (g, s) => g.uniform(s, -3, 3),
  relu: (g, s) => g.uniform(s, -3, 3),
  sigmoid: (g, s) => g.uniform(s, -12, 12),
  tanh: (g, s) => g.uniform(s, -6, 6),
  sign: (g, s) => r(s, g.uniform(s, -3, 3).data.map((v, i) => (i % 3 === 0 ? 0 : v))),
  floor: (g, s) => g.uniform(s, -5, 5),
  ceil: (g, s) => g.uniform(s, -5, 5),
};
/** log/tanh/sigmoid may be computed with absolute (not relative) accuracy near their zeros. */
const unaryTol = (fn: UnaryFn): Tolerance => ({ scale: ['log', 'tanh', 'sigmoid'].includes(fn) ? 1 : 0 });
const UNARY_FNS = Object.keys(UNARY_DOMAIN) as UnaryFn[];

const unaryCases = (): ConformanceCase[] => [
  ...UNARY_FNS.map((fn) => opCase(`unary/${fn} f32 [7,5]`, 'unary', (g) => ({ inputs: { x: UNARY_DOMAIN[fn](g, [7, 5]) }, attrs: { fn }, tol: unaryTol(fn) }))),
  ...(['neg', 'abs', 'square', 'relu', 'sign'] as const).map((fn) =>
    opCase(`unary/${fn} i32 [7,5]`, 'unary', (g) => ({ inputs: { x: g.ints([7, 5], -50, 50) }, attrs: { fn } })),
  ),
  opCase('unary/neg rank 0', 'unary', (g) => ({ inputs: { x: g.uniform([]) }, attrs: { fn: 'neg' } })),
  opCase('unary/exp 1 element', 'unary', (g) => ({ inputs: { x: g.uniform([1]) }, attrs: { fn: 'exp' } })),
  opCase('unary/relu empty [0,3]', 'unary', () => ({ inputs: { x: r([0, 3]) }, attrs: { fn: 'relu' } })),
  opCase('unary/sigmoid rank 5', 'unary', (g) => ({ inputs: { x: g.uniform([2, 1, 3, 1, 2], -4, 4) }, attrs: { fn: 'sigmoid' }, tol: { scale: 1 } })),
  opCase(`unary/relu large [${LARGE + 1}]`, 'unary', (g) => ({ inputs: { x: g.uniform([LARGE + 1], -3, 3) }, attrs: { fn: 'relu' } })),
  opCase(`unary/sqrt large [${LARGE}]`, 'unary', (g) => ({ inputs: { x: g.uniform([LARGE], 0, 100) }, attrs: { fn: 'sqrt' } })),
  opCase('unary/tanh saturates without NaN', 'unary', () => ({ inputs: { x: r([6], [-100, -20, -1e-4, 0, 20, 100]) }, attrs: { fn: 'tanh' }, tol: { scale: 1 } })),
  opCase('unary/sigmoid saturates without NaN', 'unary', () => ({ inputs: { x: r([5], [-100, -30, 0, 30, 100]) }, attrs: { fn: 'sigmoid' }, tol: { scale: 1e-30 } })),
  opCase('unary/exp overflows to inf and underflows to 0', 'unary', () => ({ inputs: { x: r([4], [-200, -50, 50, 200]) }, attrs: { fn: 'exp' }, tol: { scale: 1e-30 } })),
  opCase('unary/log of 0 and negatives', 'unary', () => ({ inputs: { x: r([3], [0, -1, 1]) }, attrs: { fn: 'log' } })),
  opCase('unary/rsqrt of 0 is inf', 'unary', () => ({ inputs: { x: r([2], [0, 4]) }, attrs: { fn: 'rsqrt' } })),
  opCase('unary/reciprocal of 0 is inf', 'unary', () => ({ inputs: { x: r([2], [0, -4]) }, attrs: { fn: 'reciprocal' } })),
];

type BinaryFn = OpAttrs<'binary'>['fn'];
const BROADCASTS: Record<string, [number[], number[]]> = {
  same: [[7, 5], [7, 5]],
  scalar: [[7, 5], []],
  'size-1': [[7, 5], [1]],
  leading: [[3, 4, 5], [5]],
  'leading on a': [[5], [3, 4, 5]],
  middle: [[4, 1, 5], [4, 3, 5]],
  'both sides': [[3, 1, 5], [1, 4, 1]],
  'rank 5': [[2, 1, 3, 1, 2], [3, 4, 1]],
  empty: [[0, 5], [5]],
  'rank 0': [[], []],
};
const binaryInputs = (fn: BinaryFn, g: Rng, sa: number[], sb: number[]) => ({
  a: fn === 'pow' ? g.uniform(sa, 0.25, 3) : g.uniform(sa, -2, 2),
  b: fn === 'div' ? g.signed(sb, 0.25, 2) : g.uniform(sb, -2, 2),
});
const binaryCase = (fn: BinaryFn, kind: string) => {
  const [sa, sb] = BROADCASTS[kind];
  return opCase(`binary/${fn} ${kind} ${shapeName(sa)} ${shapeName(sb)}`, 'binary', (g) => ({ inputs: binaryInputs(fn, g, sa, sb), attrs: { fn }, tol: { scale: fn === 'pow' ? 1e-6 : 0 } }));
};
const BINARY_FNS: BinaryFn[] = ['add', 'sub', 'mul', 'div', 'max', 'min', 'pow'];

const binaryCases = (): ConformanceCase[] => [
  ...BINARY_FNS.flatMap((fn) => ['same', 'scalar', 'both sides'].map((kind) => binaryCase(fn, kind))),
  ...['size-1', 'leading', 'leading on a', 'middle', 'rank 5', 'empty', 'rank 0'].map((kind) => binaryCase('add', kind)),
  binaryCase('mul', 'middle'),
  binaryCase('sub', 'leading on a'),
  ...(['add', 'sub', 'mul', 'max', 'min'] as const).map((fn) =>
    opCase(`binary/${fn} i32 [3,1,5] [1,4,1]`, 'binary', (g) => ({ inputs: { a: g.ints([3, 1, 5], -1000, 1000), b: g.ints([1, 4, 1], -1000, 1000) }, attrs: { fn } })),
  ),
  opCase(`binary/add large [${LARGE}]`, 'binary', (g) => ({ inputs: { a: g.uniform([LARGE]), b: g.uniform([LARGE]) }, attrs: { fn: 'add' } })),
  // Odd lengths past a vector multiple: backends may run large f32 operands in SIMD slices, one per thread.
  ...(['add', 'sub', 'mul', 'div', 'max', 'min'] as const).flatMap((fn) => [
    opCase(`binary/${fn} large same [${LARGE + 3}]`, 'binary', (g) => ({ inputs: binaryInputs(fn, g, [LARGE + 3], [LARGE + 3]), attrs: { fn } })),
    opCase(`binary/${fn} large scalar [${LARGE + 5}] []`, 'binary', (g) => ({ inputs: binaryInputs(fn, g, [LARGE + 5], []), attrs: { fn } })),
  ]),
  opCase('binary/mul large broadcast [600,500] [500]', 'binary', (g) => ({ inputs: { a: g.uniform([600, 500]), b: g.uniform([500]) }, attrs: { fn: 'mul' } })),
];

const COMPARE_FNS = ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const;
const compareCases = (): ConformanceCase[] => [
  ...COMPARE_FNS.map((fn) =>
    opCase(`compare/${fn} f32 with ties [7,5] [5]`, 'compare', (g) => ({ inputs: { a: g.ints([7, 5], -2, 3, 'f32'), b: g.ints([5], -2, 3, 'f32') }, attrs: { fn } })),
  ),
  ...COMPARE_FNS.map((fn) =>
    opCase(`compare/${fn} i32 [7,1] [1,5]`, 'compare', (g) => ({ inputs: { a: g.ints([7, 1], -2, 3), b: g.ints([1, 5], -2, 3) }, attrs: { fn } })),
  ),
  opCase('compare/lt empty [0,4]', 'compare', (g) => ({ inputs: { a: r([0, 4]), b: g.uniform([4]) }, attrs: { fn: 'lt' } })),
  ...(['eq', 'ne'] as const).map((fn) =>
    opCase(`compare/${fn} with NaN`, 'compare', () => ({ inputs: { a: r([3], [NaN, 1, NaN]), b: r([3], [NaN, NaN, 1]) }, attrs: { fn } })),
  ),
];

const whereCases = (): ConformanceCase[] => [
  opCase('where/f32 cond [7,1] a [7,5] b scalar', 'where', (g) => ({ inputs: { cond: g.ints([7, 1], 0, 2), a: g.uniform([7, 5]), b: g.uniform([]) }, attrs: {} })),
  opCase('where/any nonzero cond selects a', 'where', (g) => ({ inputs: { cond: asI32(r([2, 3], [-3, 0, 2, 0, 1, 7])), a: g.uniform([3]), b: g.uniform([2, 3]) }, attrs: {} })),
  opCase('where/i32 values', 'where', (g) => ({ inputs: { cond: g.ints([4, 4], 0, 2), a: g.ints([4, 1], -9, 9), b: g.ints([4], -9, 9) }, attrs: {} })),
  opCase('where/empty [0,3]', 'where', (g) => ({ inputs: { cond: g.ints([0, 3], 0, 2), a: g.uniform([3]), b: g.uniform([1]) }, attrs: {} })),
  opCase('where/rank 0', 'where', (g) => ({ inputs: { cond: asI32(r([], [0])), a: g.uniform([]), b: g.uniform([]) }, attrs: {} })),
];

const castCopyFillCases = (): ConformanceCase[] => [
  opCase('cast/f32 to i32 truncates toward zero', 'cast', (g) => ({ inputs: { x: g.uniform([7, 5], -50, 50) }, attrs: { dtype: 'i32' } })),
  opCase('cast/f32 to i32 at halves', 'cast', () => ({ inputs: { x: r([8], [-2.7, -1.5, -0.5, 0, 0.5, 1.5, 2.7, 123456]) }, attrs: { dtype: 'i32' } })),
  opCase('cast/i32 to f32', 'cast', (g) => ({ inputs: { x: g.ints([7, 5], -100000, 100000) }, attrs: { dtype: 'f32' } })),
  opCase('cast/f32 to f32', 'cast', (g) => ({ inputs: { x: g.uniform([3, 4]) }, attrs: { dtype: 'f32' }, tol: 'exact' })),
  opCase('cast/i32 to i32', 'cast', (g) => ({ inputs: { x: g.ints([5], -9, 9) }, attrs: { dtype: 'i32' } })),
  opCase('cast/empty [2,0]', 'cast', () => ({ inputs: { x: r([2, 0]) }, attrs: { dtype: 'i32' } })),
  opCase('copy/f32 [7,5]', 'copy', (g) => ({ inputs: { x: g.uniform([7, 5]) }, attrs: {}, tol: 'exact' })),
  opCase('copy/i32 [4,3]', 'copy', (g) => ({ inputs: { x: g.ints([4, 3], -99, 99) }, attrs: {} })),
  opCase('copy/rank 0', 'copy', (g) => ({ inputs: { x: g.uniform([]) }, attrs: {}, tol: 'exact' })),
  opCase('copy/empty [0]', 'copy', () => ({ inputs: { x: r([0]) }, attrs: {} })),
  opCase('fill/f32 [7,5]', 'fill', () => ({ inputs: {}, attrs: { shape: [7, 5], dtype: 'f32', value: 2.5 }, tol: 'exact' })),
  opCase('fill/i32 [3,2]', 'fill', () => ({ inputs: {}, attrs: { shape: [3, 2], dtype: 'i32', value: -7 } })),
  opCase('fill/rank 0', 'fill', () => ({ inputs: {}, attrs: { shape: [], dtype: 'f32', value: -1.25 }, tol: 'exact' })),
  opCase('fill/empty [0,5]', 'fill', () => ({ inputs: {}, attrs: { shape: [0, 5], dtype: 'f32', value: 1 } })),
  opCase(`fill/large [${LARGE}]`, 'fill', () => ({ inputs: {}, attrs: { shape: [LARGE], dtype: 'f32', value: -0.125 }, tol: 'exact' })),
];

// --- reductions --------------------------------------------------------------------------------

type ReduceFn = OpAttrs<'reduce'>['fn'];
const reduceTol = (fn: ReduceFn, x: KitTensor, axes: readonly number[]): Tolerance =>
  fn === 'max' || fn === 'min' ? 'exact' : { k: numel(axes.map((a) => x.shape[a])), scale: maxAbs(x) };
const reduceCase = (name: string, fn: ReduceFn, axes: number[], make: (g: Rng) => KitTensor) =>
  opCase(`reduce/${fn} ${name} axes ${shapeName(axes)}`, 'reduce', (g) => {
    const x = make(g);
    return { inputs: { x }, attrs: { fn, axes }, tol: reduceTol(fn, x, axes) };
  });
const AXES_3D = [[], [0], [1], [2], [0, 2], [0, 1, 2]];

const reduceCases = (): ConformanceCase[] => [
  ...(['sum', 'mean', 'max', 'min'] as const).flatMap((fn) => AXES_3D.map((axes) => reduceCase('[3,4,5]', fn, axes, (g) => g.uniform([3, 4, 5])))),
  ...(['sum', 'max', 'min'] as const).map((fn) => reduceCase('i32 [4,6]', fn, [1], (g) => g.ints([4, 6], -100, 100))),
  reduceCase('rank 0', 'sum', [], (g) => g.uniform([])),
  reduceCase('rank 5 [2,3,2,3,2]', 'sum', [0, 2, 4], (g) => g.uniform([2, 3, 2, 3, 2])),
  reduceCase('empty axis is 0 [3,0]', 'sum', [1], () => r([3, 0])),
  reduceCase('empty axis is NaN [3,0]', 'mean', [1], () => r([3, 0])),
  reduceCase('empty kept axis [0,4]', 'max', [1], () => r([0, 4])),
  reduceCase(`large [${LARGE}]`, 'sum', [0], (g) => g.uniform([LARGE])),
  reduceCase(`large positive [${LARGE}]`, 'mean', [0], (g) => g.uniform([LARGE], 0, 1)),
  reduceCase('large rows [600,500]', 'sum', [1], (g) => g.uniform([600, 500])),
  reduceCase('large columns [500,600]', 'mean', [0], (g) => g.uniform([500, 600])),
  reduceCase(`large [${LARGE}]`, 'max', [0], (g) => g.uniform([LARGE])),
  reduceCase('large middle [30,100,100]', 'min', [1], (g) => g.uniform([30, 100, 100])),
];

const argmaxTopkCases = (): ConformanceCase[] => [
  ...[0, 1, 2].map((axis) => opCase(`argmax/ties [3,4,5] axis ${axis}`, 'argmax', (g) => ({ inputs: { x: g.ints([3, 4, 5], 0, 3, 'f32') }, attrs: { axis } }))),
  opCase('argmax/i32 [6,7] axis 1', 'argmax', (g) => ({ inputs: { x: g.ints([6, 7], -5, 5) }, attrs: { axis: 1 } })),
  opCase('argmax/1 element', 'argmax', (g) => ({ inputs: { x: g.uniform([1]) }, attrs: { axis: 0 } })),
  opCase('argmax/large [1000,300] axis 1', 'argmax', (g) => ({ inputs: { x: g.uniform([1000, 300]) }, attrs: { axis: 1 } })),
  opCase('argmax/large [300,1000] axis 0', 'argmax', (g) => ({ inputs: { x: g.uniform([300, 1000]) }, attrs: { axis: 0 } })),
  ...[0, 1, 3, 7].map((k) => opCase(`topk/ties [4,7] k ${k}`, 'topk', (g) => ({ inputs: { x: g.ints([4, 7], 0, 4, 'f32') }, attrs: { k } }))),
  opCase('topk/rank 1 [9] k 4', 'topk', (g) => ({ inputs: { x: g.uniform([9]) }, attrs: { k: 4 } })),
  opCase('topk/rank 3 [2,3,6] k 2', 'topk', (g) => ({ inputs: { x: g.uniform([2, 3, 6]) }, attrs: { k: 2 } })),
  opCase('topk/i32 [5,6] k 3', 'topk', (g) => ({ inputs: { x: g.ints([5, 6], -3, 3) }, attrs: { k: 3 } })),
  opCase('topk/negative values [3,5] k 5', 'topk', (g) => ({ inputs: { x: g.uniform([3, 5], -9, -1) }, attrs: { k: 5 } })),
  opCase('topk/large [300,1000] k 5', 'topk', (g) => ({ inputs: { x: g.uniform([300, 1000]) }, attrs: { k: 5 } })),
  opCase('topk/no rows [0,5] k 2', 'topk', () => ({ inputs: { x: r([0, 5]) }, attrs: { k: 2 } })),
];

// --- matmul ------------------------------------------------------------------------------------

const mmCase = (m: number, k: number, n: number, opts: { transA?: boolean; transB?: boolean; batchA?: number[]; batchB?: number[]; label?: string } = {}) => {
  const { transA = false, transB = false, batchA = [], batchB = [] } = opts;
  const sa = [...batchA, ...(transA ? [k, m] : [m, k])];
  const sb = [...batchB, ...(transB ? [n, k] : [k, n])];
  const tr = `${transA ? ' transA' : ''}${transB ? ' transB' : ''}`;
  return opCase(`matmul/${opts.label ?? `${m}x${k}x${n}`} ${shapeName(sa)} ${shapeName(sb)}${tr}`, 'matmul', (g) => {
    const a = g.uniform(sa);
    const b = g.uniform(sb);
    return { inputs: { a, b }, attrs: { transA, transB }, tol: { k, scale: maxAbs(a) * maxAbs(b) } };
  });
};

const matmulCases = (): ConformanceCase[] => [
  mmCase(1, 1, 1),
  ...[false, true].flatMap((transA) => [false, true].map((transB) => mmCase(7, 5, 3, { transA, transB }))),
  mmCase(33, 17, 29, { label: 'odd' }),
  mmCase(4, 5, 6, { batchA: [2, 3], batchB: [2, 3], label: 'batched' }),
  mmCase(4, 5, 6, { batchA: [2, 1], batchB: [3], label: 'broadcast batch' }),
  mmCase(4, 5, 6, { batchB: [2, 3], label: 'rank 2 x rank 4' }),
  mmCase(6, 5, 4, { batchA: [3], batchB: [3], transB: true, label: 'batched' }),
  mmCase(7, 5, 3, { batchA: [1], batchB: [4], transA: true, label: 'broadcast batch' }),
  mmCase(3, 0, 4, { label: 'K=0 gives zeros' }),
  mmCase(0, 5, 3, { label: 'M=0' }),
  mmCase(1, 300, 1, { label: 'dot' }),
  mmCase(128, 256, 64, { label: 'large' }),
  mmCase(64, 256, 128, { transA: true, transB: true, label: 'large' }),
];

// --- convolution and pooling -------------------------------------------------------------------

type ConvOp = 'conv2d' | 'conv2dBackwardData' | 'conv2dBackwardFilter';
const convCase = (op: ConvOp, x: number[], w: number[], opts: Conv2dOptions, label = '') => {
  const name = `${op}/${label}x${shapeName(x)} w${shapeName(w)} s${opts.stride ?? 1} p${opts.padding ?? 0} d${opts.dilation ?? 1} g${opts.groups ?? 1}`;
  return opCase(name, op, (rng) => {
    const g = conv2dGeometry(x, w, opts);
    const xs = rng.uniform(x);
    const ws = rng.uniform(w);
    const dy = rng.uniform([g.batch, g.outChannels, g.outH, g.outW]);
    if (op === 'conv2d') return { inputs: { x: xs, w: ws }, attrs: g, tol: { k: (g.inChannels / g.groups) * g.kernelH * g.kernelW, scale: maxAbs(xs) * maxAbs(ws) } };
    if (op === 'conv2dBackwardData')
      return { inputs: { dy, w: ws }, attrs: g, tol: { k: (g.outChannels / g.groups) * g.kernelH * g.kernelW, scale: maxAbs(dy) * maxAbs(ws) } };
    return { inputs: { x: xs, dy }, attrs: g, tol: { k: g.batch * g.outH * g.outW, scale: maxAbs(xs) * maxAbs(dy) } };
  }) as ConformanceCase;
};

/** A stride x padding x kernel grid, with dilation, groups, batch and odd input sizes varied along it. */
const CONV_GRID: [number[], number[], Conv2dOptions][] = (() => {
  const grid: [number[], number[], Conv2dOptions][] = [];
  const kernels = [[1, 1], [3, 3], [2, 3], [5, 5]];
  const sizes = [[9, 7], [11, 9], [7, 10], [13, 11]];
  let i = 0;
  for (const [kh, kw] of kernels)
    for (const stride of [1, 2, 3])
      for (const padding of [0, 1, 2]) {
        const dilation = [1, 1, 2, 3][i % 4];
        const groups = [1, 2, 4][Math.floor(i / 2) % 3];
        const [h, w] = sizes[(i * 3) % 4];
        const opts = { stride, padding, dilation, groups };
        const x = [1 + (i % 3), 4, h, w];
        const wt = [8, 4 / groups, kh, kw];
        i++;
        try {
          conv2dGeometry(x, wt, opts);
        } catch {
          continue; // the kernel does not fit this input: not a conv
        }
        grid.push([x, wt, opts]);
      }
  return grid;
})();

const CONV_SPECIAL: [string, number[], number[], Conv2dOptions][] = [
  ['depthwise ', [2, 6, 9, 9], [6, 1, 3, 3], { padding: 1, groups: 6 }],
  ['depthwise strided ', [2, 6, 9, 8], [6, 1, 3, 3], { stride: 2, padding: 1, groups: 6 }],
  ['projection 1x1 ', [2, 8, 9, 9], [16, 8, 1, 1], { stride: 2 }],
  ['stem 7x7 ', [1, 3, 33, 33], [8, 3, 7, 7], { stride: 2, padding: 3 }],
  ['kernel bigger than input ', [1, 2, 3, 3], [3, 2, 5, 5], { padding: 2 }],
  ['1x1 input ', [3, 4, 1, 1], [5, 4, 1, 1], {}],
  ['asymmetric ', [2, 4, 9, 8], [6, 4, 3, 2], { stride: [2, 1], padding: [1, 0], dilation: [1, 2] }],
  ['asymmetric grouped ', [1, 4, 8, 11], [4, 2, 2, 3], { stride: [1, 2], padding: [0, 2], dilation: [2, 1], groups: 2 }],
  ['asymmetric 1xN ', [2, 3, 6, 9], [4, 3, 1, 5], { stride: [3, 2], padding: [0, 2] }],
  ['several outputs per group ', [2, 4, 7, 7], [6, 2, 3, 3], { padding: 1, groups: 2 }],
  ['empty batch ', [0, 3, 5, 5], [4, 3, 3, 3], { padding: 1 }],
  ['dilated, kernel wider than stride ', [1, 2, 13, 13], [2, 2, 3, 3], { stride: 2, dilation: 3, padding: 3 }],
  // 3x3 stride 1 with 8+ channels, the shapes fast paths (Winograd on the CPU) take: widths a multiple
  // of 16 and not, output channels not a multiple of 4, padding 0, 1 and 2.
  ['resnet 3x3 ', [2, 16, 32, 32], [16, 16, 3, 3], { padding: 1 }],
  ['resnet 3x3 8x8 ', [2, 32, 8, 8], [32, 32, 3, 3], { padding: 1 }],
  ['3x3 odd sizes ', [3, 10, 9, 7], [9, 10, 3, 3], { padding: 1 }],
  ['3x3 unpadded ', [1, 16, 18, 20], [8, 16, 3, 3], {}],
  ['3x3 padding 2 ', [1, 8, 11, 13], [12, 8, 3, 3], { padding: 2 }],
];

/** The parts of conv2d's fused epilogue a case turns on. */
interface Epilogue {
  scale?: boolean;
  bias?: boolean;
  residual?: boolean;
  relu?: boolean;
}
/** Each part alone and the combinations residual blocks use (a folded batch-norm is scale + bias). */
const EPILOGUES: Epilogue[] = [
  { scale: true },
  { bias: true },
  { residual: true },
  { relu: true },
  { bias: true, relu: true },
  { residual: true, relu: true },
  { scale: true, bias: true, relu: true },
  { scale: true, bias: true, residual: true, relu: true },
];
const epilogueName = (e: Epilogue) => ['scale', 'bias', 'residual', 'relu'].filter((k) => e[k as keyof Epilogue]).join('+');

/** Shapes for the epilogue: the layers of the CIFAR and ImageNet ResNets, and geometries fast paths leave to the general one. */
const EPILOGUE_SHAPES: [string, number[], number[], Conv2dOptions][] = [
  ['', [2, 3, 6, 5], [4, 3, 3, 3], { padding: 1 }],
  ['resnet 3x3 ', [2, 16, 32, 32], [16, 16, 3, 3], { padding: 1 }],
  ['resnet 3x3 8x8 ', [2, 32, 8, 8], [32, 32, 3, 3], { padding: 1 }],
  ['resnet 3x3 strided ', [2, 16, 9, 9], [32, 16, 3, 3], { stride: 2, padding: 1 }],
  ['projection 1x1 ', [2, 16, 9, 9], [32, 16, 1, 1], { stride: 2 }],
  ['bottleneck 1x1 ', [1, 64, 7, 7], [256, 64, 1, 1], {}],
  ['stem 7x7 ', [1, 3, 33, 33], [16, 3, 7, 7], { stride: 2, padding: 3 }],
  ['grouped ', [2, 4, 7, 7], [6, 2, 3, 3], { padding: 1, groups: 2 }],
  ['3x3 odd sizes ', [3, 10, 9, 7], [9, 10, 3, 3], { padding: 1 }],
];

const epilogueCase = (label: string, x: number[], w: number[], opts: Conv2dOptions, e: Epilogue) =>
  opCase(`conv2d/epilogue ${epilogueName(e)} ${label}x${shapeName(x)} w${shapeName(w)} s${opts.stride ?? 1} p${opts.padding ?? 0} g${opts.groups ?? 1}`, 'conv2d', (rng) => {
    const g = conv2dGeometry(x, w, opts);
    const xs = rng.uniform(x);
    const ws = rng.uniform(w);
    // Scales of both signs and a zero, as a batch-norm with zero-initialised gamma has.
    const scale = e.scale ? r([g.outChannels], rng.uniform([g.outChannels], -2, 2).data.map((v, i) => (i === 1 ? 0 : v))) : undefined;
    const bias = e.bias ? rng.uniform([g.outChannels]) : undefined;
    const residual = e.residual ? rng.uniform([g.batch, g.outChannels, g.outH, g.outW], -2, 2) : undefined;
    const magnitude = maxAbs(xs) * maxAbs(ws) * (scale ? maxAbs(scale) : 1) + (bias ? maxAbs(bias) : 0) + (residual ? maxAbs(residual) : 0);
    return {
      inputs: { x: xs, w: ws, scale, bias, residual },
      attrs: { ...g, relu: e.relu ?? false },
      tol: { k: (g.inChannels / g.groups) * g.kernelH * g.kernelW, scale: magnitude },
    };
  }) as ConformanceCase;

const convCases = (): ConformanceCase[] => [
  ...(['conv2d', 'conv2dBackwardData', 'conv2dBackwardFilter'] as const).flatMap((op) => [
    ...CONV_GRID.map(([x, w, opts]) => convCase(op, x, w, opts)),
    ...CONV_SPECIAL.map(([label, x, w, opts]) => convCase(op, x, w, opts, label)),
  ]),
  ...EPILOGUE_SHAPES.flatMap(([label, x, w, opts]) => EPILOGUES.map((e) => epilogueCase(label, x, w, opts, e))),
];

const POOLS: [number[], Pool2dOptions][] = [
  [[2, 3, 8, 8], { kernelSize: 2 }],
  [[2, 3, 7, 9], { kernelSize: 2 }],
  [[2, 3, 9, 9], { kernelSize: 3, stride: 2, padding: 1 }],
  [[1, 2, 7, 5], { kernelSize: 3, stride: 2, padding: 1 }],
  [[1, 2, 5, 6], { kernelSize: 3, stride: 1, padding: 1 }],
  [[1, 2, 3, 4], { kernelSize: 1 }],
  // 1x1 windows only subsample (ResNet's option-A shortcut); backends may take a shortcut for them.
  [[2, 3, 7, 8], { kernelSize: 1, stride: 2 }],
  [[1, 2, 6, 7], { kernelSize: 1, stride: [3, 2] }],
  [[1, 3, 5, 5], { kernelSize: 2, stride: 1 }],
  [[2, 2, 7, 6], { kernelSize: [3, 2], stride: [2, 1], padding: [1, 0] }],
  [[1, 2, 8, 7], { kernelSize: 3, stride: 3, padding: 1 }],
  // Rows of many outputs, so a backend that takes windows several at a time meets full groups and
  // a remainder: ResNet-50's stem pool (3x3/2, padding 1) at odd and even widths, and stride 1.
  [[1, 3, 17, 19], { kernelSize: 3, stride: 2, padding: 1 }],
  [[2, 2, 12, 18], { kernelSize: 3, stride: 2, padding: 1 }],
  [[1, 2, 9, 13], { kernelSize: 3, stride: 1, padding: 1 }],
  [[1, 2, 6, 21], { kernelSize: 2 }],
];
const poolName = (op: string, x: number[], o: Pool2dOptions, extra = '') =>
  `${op}/x${shapeName(x)} k${o.kernelSize} s${o.stride ?? o.kernelSize} p${o.padding ?? 0}${extra}`;

const poolCases = (): ConformanceCase[] =>
  POOLS.flatMap(([x, o]) => {
    const geom = pool2dGeometry(x, o);
    const k = geom.kernelH * geom.kernelW;
    const dyOf = (g: Rng) => g.uniform([geom.batch, geom.channels, geom.outH, geom.outW]);
    const withPad = (geom.padTop > 0 || geom.padLeft > 0 ? [true, false] : [true]) as boolean[];
    return [
      opCase(poolName('maxPool2d', x, o), 'maxPool2d', (g) => ({ inputs: { x: g.uniform(x, -3, 3) }, attrs: geom, tol: 'exact' })),
      // Every 7th cell NaN: a window holding one gives NaN (as PyTorch's does), wherever in it.
      opCase(poolName('maxPool2d', x, o, ' NaN wins'), 'maxPool2d', (g) => {
        const t = g.uniform(x, -3, 3);
        return { inputs: { x: r(x, t.data.map((v, i) => (i % 7 === 3 ? NaN : v))) }, attrs: geom, tol: 'exact' };
      }),
      opCase(poolName('maxPool2dBackward', x, o, ' ties go to the first max'), 'maxPool2dBackward', (g) => ({
        inputs: { dy: dyOf(g), x: g.ints(x, 0, 3, 'f32') },
        attrs: geom,
        tol: { k, scale: 1 },
      })),
      ...withPad.flatMap((countIncludePad) => {
        const attrs = { ...geom, countIncludePad };
        const extra = countIncludePad ? '' : ' excluding pad';
        return [
          opCase(poolName('avgPool2d', x, o, extra), 'avgPool2d', (g) => ({ inputs: { x: g.uniform(x, -3, 3) }, attrs, tol: { k, scale: 3 } })),
          opCase(poolName('avgPool2dBackward', x, o, extra), 'avgPool2dBackward', (g) => ({ inputs: { dy: dyOf(g) }, attrs, tol: { k, scale: 1 } })),
        ];
      }),
    ];
  });

// --- normalisation and loss --------------------------------------------------------------------

/** The fused epilogue of batchNormTrain: a residual added, a ReLU after. */
type BnEpilogue = { residual?: boolean; relu?: boolean };
const bnEpilogueName = (e: BnEpilogue) => (e.residual || e.relu ? `${['residual', 'relu'].filter((k) => e[k as keyof BnEpilogue]).join('+')} ` : '');

const bnCase = (label: string, shape: number[], eps: number, offset = 0, e: BnEpilogue = {}) =>
  opCase(`batchNormTrain/${bnEpilogueName(e)}${label}${shapeName(shape)} eps ${eps}`, 'batchNormTrain', (g) => {
    const x = r(shape, g.uniform(shape, -2, 2).data.map((v) => Math.fround(v + offset)));
    const c = shape[1];
    const count = numel(shape) / c;
    const residual = e.residual ? g.uniform(shape, -2, 2) : undefined;
    return {
      inputs: { x, gamma: g.uniform([c], 0.5, 2), beta: g.uniform([c]), residual },
      attrs: { eps, relu: e.relu ?? false },
      tol: [{ k: count, scale: residual ? 3 : 1 }, { k: count, scale: maxAbs(x) }, { k: count }],
    };
  });

const f32Ref = (t: RefTensor): RefTensor => r(t.shape, t.data.map(Math.fround));

/** With a ReLU, y is the fused forward's own output (in f32), so the mask is the one training meets. */
const bnBackwardCase = (shape: number[], e: BnEpilogue = {}) =>
  opCase(`batchNormBackward/${bnEpilogueName(e)}${shapeName(shape)}`, 'batchNormBackward', (g) => {
    const c = shape[1];
    const x = g.uniform(shape, -2, 2);
    const gamma = g.uniform([c], 0.5, 2);
    const beta = g.uniform([c]);
    const residual = e.residual ? g.uniform(shape, -2, 2) : undefined;
    const [y, m, invstd] = ref.batchNormTrain({ x, gamma, beta, residual }, { eps: 1e-5, relu: e.relu });
    return {
      inputs: { dy: g.uniform(shape), x, gamma, mean: f32Ref(m), invstd: f32Ref(invstd), y: e.relu ? f32Ref(y) : undefined },
      attrs: { relu: e.relu ?? false, residual: e.residual ?? false },
      tol: (want) => want.map((w) => ({ k: numel(shape) / c, scale: maxAbs(w) })),
    };
  });

const affineCase = (shape: number[]) =>
  opCase(`channelAffine/${shapeName(shape)}`, 'channelAffine', (g) => {
    const x = g.uniform(shape, -3, 3);
    const scale = g.uniform([shape[1]], -2, 2);
    const shift = g.uniform([shape[1]]);
    return { inputs: { x, scale, shift }, attrs: {}, tol: { scale: maxAbs(x) * maxAbs(scale) + maxAbs(shift) } };
  });

/** y as relu leaves it (zeros where the input was negative), so the mask meets exact zeros. */
const reluBackwardCase = (shape: number[]) =>
  opCase(`reluBackward/${shapeName(shape)}`, 'reluBackward', (g) => {
    const y = g.uniform(shape, -2, 2);
    return { inputs: { y: r(shape, y.data.map((v) => Math.max(v, 0))), dy: g.uniform(shape, -3, 3) }, attrs: {} };
  });

const labelsFor = (g: Rng, n: number, c: number) => g.ints([n], 0, c);
const sceCase = (label: string, n: number, c: number, smoothing: number, logitScale = 3, labels?: number[]) =>
  opCase(`softmaxCrossEntropy/${label}[${n},${c}] smoothing ${smoothing}`, 'softmaxCrossEntropy', (g) => {
    const logits = g.uniform([n, c], -logitScale, logitScale);
    return {
      inputs: { logits, labels: labels ? asI32(r([n], labels)) : labelsFor(g, n, c) },
      attrs: { smoothing },
      tol: { k: c, scale: 1 + maxAbs(logits) },
    };
  });
const sceBackwardCase = (label: string, n: number, c: number, smoothing: number, logitScale = 3) =>
  opCase(`softmaxCrossEntropyBackward/${label}[${n},${c}] smoothing ${smoothing}`, 'softmaxCrossEntropyBackward', (g) => {
    const dloss = g.uniform([n]);
    return {
      inputs: { logits: g.uniform([n, c], -logitScale, logitScale), labels: labelsFor(g, n, c), dloss },
      attrs: { smoothing },
      tol: { k: c, scale: maxAbs(dloss) },
    };
  });

const normLossCases = (): ConformanceCase[] => [
  bnCase('', [4, 3], 1e-5),
  bnCase('', [2, 3, 5, 7], 1e-5),
  bnCase('', [2, 1, 3], 0.1),
  bnCase('rank 5 ', [3, 5, 2, 2, 2], 1e-5),
  bnCase('one sample ', [1, 2, 3, 3], 1e-3),
  bnCase('stable variance at mean 100 ', [4, 3, 5, 5], 1e-5, 100),
  bnCase('large ', [8, 16, 16, 16], 1e-5),
  ...[{ relu: true }, { residual: true }, { residual: true, relu: true }].flatMap((e) => [
    bnCase('', [4, 3], 1e-5, 0, e),
    bnCase('', [2, 3, 5, 7], 1e-5, 0, e),
    bnCase('large ', [8, 16, 16, 16], 1e-5, 0, e),
    bnCase('CIFAR layer ', [4, 32, 16, 16], 1e-5, 0, e),
  ]),
  bnBackwardCase([4, 3]),
  bnBackwardCase([2, 3, 5, 7]),
  bnBackwardCase([3, 2, 4, 1, 2]),
  ...[{ relu: true }, { residual: true }, { residual: true, relu: true }].flatMap((e) => [
    bnBackwardCase([4, 3], e),
    bnBackwardCase([2, 3, 5, 7], e),
    bnBackwardCase([8, 16, 16, 16], e),
    bnBackwardCase([4, 32, 16, 16], e),
  ]),
  reluBackwardCase([7, 5]),
  reluBackwardCase([0, 3]),
  reluBackwardCase([2, 3, 4, 5]),
  reluBackwardCase([LARGE + 7]),
  affineCase([2, 3]),
  affineCase([2, 3, 4, 5]),
  affineCase([3, 2, 7]),
  affineCase([2, 2, 1, 2, 3]),
  ...[0, 0.1, 1].map((s) => sceCase('', 4, 10, s)),
  sceCase('', 1, 1, 0),
  sceCase('', 1, 1, 0.1),
  sceCase('', 7, 3, 0.1),
  sceCase('logits of 1e4 ', 5, 4, 0, 1e4),
  sceCase('logits of 1e4 ', 5, 4, 0.1, 1e4),
  sceCase('labels out of range give NaN ', 4, 3, 0.1, 3, [-1, 3, 1, 2]),
  sceCase('large ', 256, 1000, 0.1),
  sceBackwardCase('', 4, 10, 0),
  sceBackwardCase('', 4, 10, 0.1),
  sceBackwardCase('', 1, 1, 0.2),
  sceBackwardCase('logits of 1e4 ', 5, 4, 0.1, 1e4),
  sceBackwardCase('large ', 64, 1000, 0),
];

// --- local response normalisation, dropout, adaptive pooling ------------------------------------

/** AlexNet's normalisation (its paper, section 3.3, in PyTorch's alpha/size convention). */
const ALEXNET_LRN: LocalResponseNormAttrs = { size: 5, alpha: 1e-4, beta: 0.75, k: 2 };
const lrnName = (a: LocalResponseNormAttrs) => `size ${a.size} alpha ${a.alpha} beta ${a.beta} k ${a.k}`;

/**
 * y = x·s^-beta is a product, so its error is relative: the sum of `size` squares in s, and a power
 * (f32 pow loses a few ulps, more as |beta·log s| grows).
 */
const lrnCase = (label: string, shape: number[], a: LocalResponseNormAttrs, range = 3) =>
  opCase(`localResponseNorm/${label}${shapeName(shape)} ${lrnName(a)}`, 'localResponseNorm', (g) => ({
    inputs: { x: g.uniform(shape, -range, range) },
    attrs: a,
    tol: { k: Math.max(a.size, 4) },
  }));

/** dx = dy·s^-beta minus a sum over the windows holding x: terms cancel, so the floor is the largest dx. */
const lrnBackwardCase = (label: string, shape: number[], a: LocalResponseNormAttrs, range = 3) =>
  opCase(`localResponseNormBackward/${label}${shapeName(shape)} ${lrnName(a)}`, 'localResponseNormBackward', (g) => ({
    inputs: { x: g.uniform(shape, -range, range), dy: g.uniform(shape) },
    attrs: a,
    tol: (want) => want.map((w) => ({ k: a.size * a.size, scale: maxAbs(w) })),
  }));

const dropoutCase = (label: string, shape: number[], attrs: DropoutAttrs) =>
  opCase(`dropout/${label}p ${attrs.p} ${shapeName(shape)} counter ${shapeName(attrs.counter)}`, 'dropout', (g) => ({
    inputs: { x: g.uniform(shape, -3, 3) },
    attrs,
  }));

/** The share of 1e5 elements dropout keeps, against 1 - p within 5 standard errors; the kept ones scaled by exactly 1/(1-p) in f32. */
const keepRateCase = (p: number): ConformanceCase => {
  const name = `dropout/keeps 1 - p of 1e5 elements at p ${p}`;
  return {
    name,
    op: 'dropout',
    run: async () => {
      const n = 100_000;
      const [got] = await runAndRead(() => [dropout(full([n], 1), p, { seed: 2012 })]);
      const scale = Math.fround(1 / (1 - p));
      let kept = 0;
      for (let i = 0; i < n; i++) {
        if (got.data[i] === scale) kept++;
        else if (got.data[i] !== 0) throw new Error(`${name}: element ${i} is ${got.data[i]}, neither 0 nor ${scale}`);
      }
      const se = Math.sqrt((p * (1 - p)) / n);
      if (Math.abs(kept / n - (1 - p)) > 5 * se) throw new Error(`${name}: kept ${kept / n} of the elements, want ${1 - p} ± ${5 * se}`);
    },
  };
};

/** Adaptive average pooling written from PyTorch's definition: the mean of each output cell's window. */
const refAdaptive = (x: RefTensor, oh: number, ow: number): RefTensor => {
  const [n, c, h, w] = x.shape;
  const y = refTensor([n, c, oh, ow]);
  const span = (i: number, inSize: number, outSize: number) => [Math.floor((i * inSize) / outSize), Math.ceil(((i + 1) * inSize) / outSize)];
  let o = 0;
  for (let p = 0; p < n * c; p++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++, o++) {
        const [h0, h1] = span(i, h, oh);
        const [w0, w1] = span(j, w, ow);
        let sum = 0;
        for (let r = h0; r < h1; r++) for (let q = w0; q < w1; q++) sum += x.data[(p * h + r) * w + q];
        y.data[o] = sum / ((h1 - h0) * (w1 - w0));
      }
  return y;
};

/** Each size takes another of adaptiveAvgPool2d's paths: the input itself, a global mean, one avgPool2d, or two matmuls. */
const ADAPTIVE: [string, OpName, number[], [number, number]][] = [
  ['same size ', 'copy', [2, 3, 5, 4], [5, 4]],
  ['to 1x1 ', 'reduce', [2, 3, 5, 4], [1, 1]],
  ['dividing ', 'avgPool2d', [2, 3, 8, 6], [4, 3]],
  ['overlapping windows ', 'matmul', [2, 3, 7, 9], [3, 4]],
  ['larger than the input ', 'matmul', [1, 4, 2, 3], [6, 6]],
  ["VGG's 7x7 from 2x2 ", 'matmul', [1, 8, 2, 2], [7, 7]],
  ["AlexNet's 6x6 from 13x13 ", 'matmul', [2, 4, 13, 13], [6, 6]],
];

const lrnDropoutCases = (): ConformanceCase[] => [
  lrnCase("AlexNet's ", [2, 8, 5, 6], ALEXNET_LRN, 30),
  lrnCase('', [2, 6, 4, 4], { size: 3, alpha: 1, beta: 0.75, k: 1 }),
  lrnCase('even size ', [1, 7, 3, 5], { size: 4, alpha: 2, beta: 1.5, k: 0.5 }),
  lrnCase('window wider than the channels ', [2, 3, 2, 2], { size: 9, alpha: 3, beta: 0.75, k: 1 }),
  lrnCase('size 1 ', [2, 4, 3, 3], { size: 1, alpha: 1, beta: 0.5, k: 2 }),
  lrnCase('rank 3 ', [3, 6, 7], { size: 5, alpha: 1, beta: 0.75, k: 2 }),
  lrnCase('rank 5 ', [2, 5, 2, 3, 2], { size: 3, alpha: 1, beta: 1, k: 1 }),
  lrnCase('1 channel ', [2, 1, 3, 3], { size: 5, alpha: 1, beta: 0.75, k: 1 }),
  lrnCase('empty ', [0, 4, 3, 3], ALEXNET_LRN),
  lrnCase("large, AlexNet's first layer ", [2, 96, 55, 55], ALEXNET_LRN, 30),
  lrnBackwardCase("AlexNet's ", [2, 8, 5, 6], ALEXNET_LRN, 30),
  lrnBackwardCase('', [2, 6, 4, 4], { size: 3, alpha: 1, beta: 0.75, k: 1 }),
  lrnBackwardCase('even size ', [1, 7, 3, 5], { size: 4, alpha: 2, beta: 1.5, k: 0.5 }),
  lrnBackwardCase('window wider than the channels ', [2, 3, 2, 2], { size: 9, alpha: 3, beta: 0.75, k: 1 }),
  lrnBackwardCase('rank 3 ', [3, 6, 7], { size: 5, alpha: 1, beta: 0.75, k: 2 }),
  lrnBackwardCase("large, AlexNet's second layer ", [2, 256, 27, 27], ALEXNET_LRN, 30),
  dropoutCase('', [7, 5], { p: 0.5, seed: [1, 2], counter: [0, 0] }),
  dropoutCase('', [4, 3, 5, 5], { p: 0.1, seed: [0xdeadbeef, 7], counter: [5, 0] }),
  dropoutCase('', [33], { p: 0.9, seed: [3, 0], counter: [11, 0] }),
  dropoutCase('keeps all at ', [6, 2], { p: 0, seed: [3, 0], counter: [0, 0] }),
  dropoutCase('carry into the high counter word ', [13], { p: 0.5, seed: [1, 2], counter: [0xfffffffe, 3] }),
  dropoutCase('rank 0 ', [], { p: 0.5, seed: [1, 2], counter: [0, 0] }),
  dropoutCase('empty ', [0, 4], { p: 0.5, seed: [1, 2], counter: [0, 0] }),
  dropoutCase('large ', [LARGE + 3], { p: 0.3, seed: [9, 9], counter: [77, 1] }),
  keepRateCase(0.5),
  keepRateCase(0.2),
  ...ADAPTIVE.map(([label, op, shape, [oh, ow]]) =>
    flowCase(`adaptiveAvgPool2d/${label}x${shapeName(shape)} to ${oh}x${ow}`, op, (g) => {
      const x = g.uniform(shape);
      return { run: () => adaptiveAvgPool2d(toTensor(x), [oh, ow]), want: refAdaptive(x, oh, ow), tol: { k: shape[2] * shape[3], scale: 1 } };
    }),
  ),
];

// --- layout ------------------------------------------------------------------------------------

const permuteCase = (shape: number[], perm: number[], dtype: DType = 'f32') =>
  opCase(`permute/${dtype} ${shapeName(shape)} by ${shapeName(perm)}`, 'permute', (g) => ({ inputs: { x: dtype === 'i32' ? g.ints(shape, -99, 99) : g.uniform(shape) }, attrs: { perm }, tol: 'exact' }));
const sliceCase = (label: string, shape: number[], begin: number[], size: number[], dtype: DType = 'f32') =>
  opCase(`slice/${label}${shapeName(shape)} at ${shapeName(begin)} size ${shapeName(size)}`, 'slice', (g) => ({
    inputs: { x: dtype === 'i32' ? g.ints(shape, -99, 99) : g.uniform(shape) },
    attrs: { begin, size },
    tol: 'exact',
  }));
const padCase = (label: string, shape: number[], pads: [number, number][], value: number, dtype: DType = 'f32') =>
  opCase(`pad/${label}${shapeName(shape)} by ${JSON.stringify(pads)} value ${value}`, 'pad', (g) => ({
    inputs: { x: dtype === 'i32' ? g.ints(shape, -99, 99) : g.uniform(shape) },
    attrs: { pads, value },
    tol: 'exact',
  }));
const concatCase = (label: string, shapes: number[][], axis: number, dtype: DType = 'f32') =>
  opCase(`concat/${label}${shapes.map(shapeName).join(' ')} axis ${axis}`, 'concat', (g) => ({
    inputs: { xs: shapes.map((s) => (dtype === 'i32' ? g.ints(s, -99, 99) : g.uniform(s))) },
    attrs: { axis },
    tol: 'exact',
  }));
const broadcastCase = (from: number[], to: number[], dtype: DType = 'f32') =>
  opCase(`broadcastTo/${dtype} ${shapeName(from)} to ${shapeName(to)}`, 'broadcastTo', (g) => ({ inputs: { x: dtype === 'i32' ? g.ints(from, -99, 99) : g.uniform(from) }, attrs: { shape: to }, tol: 'exact' }));

const layoutCases = (): ConformanceCase[] => [
  permuteCase([7, 5], [1, 0]),
  permuteCase([2, 3, 4], [2, 0, 1]),
  permuteCase([2, 3, 4], [1, 2, 0]),
  permuteCase([2, 3, 4], [0, 2, 1]),
  permuteCase([2, 3, 4, 5], [0, 2, 3, 1]),
  permuteCase([2, 3, 4, 5], [0, 3, 1, 2]),
  permuteCase([2, 1, 3, 2, 2], [4, 2, 0, 3, 1]),
  permuteCase([], []),
  permuteCase([6], [0]),
  permuteCase([0, 3, 2], [2, 0, 1]),
  permuteCase([3, 4], [1, 0], 'i32'),
  permuteCase([64, 64, 64], [2, 1, 0]),
  sliceCase('', [7, 5], [2, 1], [3, 3]),
  sliceCase('whole ', [4, 5], [0, 0], [4, 5]),
  sliceCase('empty ', [4, 5], [2, 0], [0, 5]),
  sliceCase('rank 5 ', [2, 3, 4, 3, 2], [1, 0, 1, 1, 0], [1, 3, 2, 2, 2]),
  sliceCase('1 element ', [3, 3], [2, 2], [1, 1]),
  sliceCase('last row ', [5, 7], [4, 0], [1, 7]),
  sliceCase('rank 0 ', [], [], []),
  sliceCase('', [6], [1], [4], 'i32'),
  sliceCase('large ', [64, 64, 80], [3, 5, 7], [50, 40, 60]),
  padCase('', [3], [[2, 1]], 0),
  padCase('CIFAR crop padding ', [2, 3, 8, 8], [[0, 0], [0, 0], [4, 4], [4, 4]], 0),
  padCase('', [2, 3], [[1, 0], [0, 2]], -1.5),
  padCase('no padding ', [3, 4], [[0, 0], [0, 0]], 9),
  padCase('empty input ', [0, 2], [[1, 1], [0, 0]], 4),
  padCase('', [2, 2], [[1, 1], [1, 1]], 7, 'i32'),
  padCase('rank 0 ', [], [], 3),
  padCase('rank 5 ', [1, 2, 1, 2, 1], [[1, 0], [0, 1], [2, 2], [0, 0], [1, 3]], 0.5),
  concatCase('', [[2, 3], [4, 3]], 0),
  concatCase('three ', [[2, 3], [2, 1], [2, 4]], 1),
  concatCase('', [[2, 3, 2, 2], [2, 3, 2, 3]], 3),
  concatCase('middle ', [[2, 1, 4], [2, 3, 4]], 1),
  concatCase('with an empty part ', [[2, 0, 4], [2, 3, 4]], 1),
  concatCase('single ', [[3, 3]], 0),
  concatCase('i32 ', [[1, 2], [3, 2]], 0, 'i32'),
  concatCase('rank 1 ', [[3], [5]], 0),
  concatCase('large channels ', [[8, 64, 16, 16], [8, 32, 16, 16]], 1),
  broadcastCase([], [3, 4]),
  broadcastCase([4], [3, 4]),
  broadcastCase([3, 1], [3, 4]),
  broadcastCase([2, 1, 4], [3, 2, 5, 4]),
  broadcastCase([3, 4], [3, 4]),
  broadcastCase([1], [0, 3]),
  broadcastCase([1, 3], [2, 3], 'i32'),
];

// --- in-place update and random fill -----------------------------------------------------------

const sgdCase = (label: string, attrs: Omit<SgdAttrs, 'firstStep'>, shape: number[] = [7, 5], steps = 3): ConformanceCase => {
  const name = `sgdUpdate/${label}${shapeName(shape)} over ${steps} steps`;
  return {
    name,
    op: 'sgdUpdate',
    run: async () => {
      const g = new Rng(name);
      let p: RefTensor = g.uniform(shape);
      let m: RefTensor = g.uniform(shape); // junk: the first step must not read it
      const param = toTensor(p);
      const momentum = toTensor(m);
      try {
        for (let step = 0; step < steps; step++) {
          const grad = g.uniform(shape);
          const stepAttrs = { ...attrs, firstStep: step === 0 };
          [p, m] = ref.sgdUpdate({ param: p, grad, momentum: m }, stepAttrs);
          const produced = tidy(() => runOp('sgdUpdate', { param, grad: toTensor(grad), momentum }, stepAttrs));
          if (produced.length) throw new Error(`${name}: sgdUpdate returned ${produced.length} outputs, want none (it updates in place)`);
          const [pg, mg] = [await param.data(), await momentum.data()];
          const tol = { k: step + 1, scale: 1 };
          expectClose(`${name} param after step ${step + 1}`, { shape, dtype: 'f32', data: pg }, p, 'f32', tol);
          if (attrs.momentum !== 0) expectClose(`${name} momentum after step ${step + 1}`, { shape, dtype: 'f32', data: mg }, m, 'f32', tol);
          p = f32Ref(p);
          m = f32Ref(m);
        }
      } finally {
        param.dispose();
        momentum.dispose();
      }
    },
  };
};

const sgdCases = (): ConformanceCase[] => {
  const base = { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false };
  return [
    sgdCase('plain ', base),
    sgdCase('weight decay ', { ...base, weightDecay: 0.05 }),
    sgdCase('momentum ', { ...base, momentum: 0.9 }),
    sgdCase('momentum with dampening ', { ...base, momentum: 0.9, dampening: 0.5 }),
    sgdCase('nesterov ', { ...base, momentum: 0.9, nesterov: true }),
    sgdCase('momentum and weight decay ', { ...base, momentum: 0.9, weightDecay: 1e-2 }),
    sgdCase('nesterov, weight decay, dampening ', { ...base, lr: 0.5, momentum: 0.8, nesterov: true, weightDecay: 5e-3, dampening: 0.1 }),
    sgdCase('rank 0 ', { ...base, momentum: 0.5 }, [], 2),
    sgdCase('large ', { ...base, momentum: 0.9, weightDecay: 1e-4 }, [LARGE], 2),
  ];
};

const randomCase = (label: string, attrs: RandomAttrs) =>
  opCase(`randomFill/${label}${attrs.dist} ${shapeName(attrs.shape)} counter ${shapeName(attrs.counter)}`, 'randomFill', () => ({
    inputs: {},
    attrs,
    tol: { scale: Math.abs(attrs.a) + Math.abs(attrs.b) },
  }));

/** Sample mean and standard deviation of 1e5 draws, against the distribution's, within 5 standard errors. */
const momentsCase = (attrs: RandomAttrs, mean: number, std: number): ConformanceCase => {
  const name = `randomFill/moments of 1e5 ${attrs.dist} draws`;
  return {
    name,
    op: 'randomFill',
    run: async () => {
      const [got] = await runAndRead(() => runOp('randomFill', {}, attrs));
      const n = got.data.length;
      let s = 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < n; i++) [s, lo, hi] = [s + got.data[i], Math.min(lo, got.data[i]), Math.max(hi, got.data[i])];
      const m = s / n;
      let v = 0;
      for (let i = 0; i < n; i++) v += (got.data[i] - m) ** 2;
      const sd = Math.sqrt(v / (n - 1));
      if (Math.abs(m - mean) > (5 * std) / Math.sqrt(n)) throw new Error(`${name}: sample mean ${m}, want ${mean} ± ${(5 * std) / Math.sqrt(n)}`);
      if (Math.abs(sd - std) > (5 * std) / Math.sqrt(n)) throw new Error(`${name}: sample std ${sd}, want ${std}`);
      if (attrs.dist === 'uniform' && (lo <= attrs.a || hi >= attrs.b)) throw new Error(`${name}: draws span [${lo}, ${hi}], outside the open (${attrs.a}, ${attrs.b})`);
    },
  };
};

const randomCases = (): ConformanceCase[] => {
  const u = { dist: 'uniform', seed: [1, 2], counter: [0, 0], a: -2, b: 3 } as const;
  const nrm = { dist: 'normal', seed: [0xdeadbeef, 7], counter: [5, 0], a: 1, b: 2 } as const;
  return [
    randomCase('', { ...u, shape: [7, 5] }),
    randomCase('', { ...nrm, shape: [9] }),
    randomCase('carry into the high counter word ', { ...u, shape: [13], counter: [0xfffffffe, 3] }),
    randomCase('carry into the high counter word ', { ...nrm, shape: [7], counter: [0xffffffff, 0] }),
    randomCase('', { ...u, shape: [1] }),
    randomCase('', { ...nrm, shape: [] }),
    randomCase('', { ...u, shape: [0, 4] }),
    randomCase('large ', { ...nrm, shape: [LARGE], seed: [3, 0] }),
    momentsCase({ ...u, shape: [100_000] }, 0.5, 5 / Math.sqrt(12)),
    momentsCase({ ...nrm, shape: [100_000] }, 1, 2),
  ];
};

// --- views followed by ops (layout ops produce the operands) ------------------------------------


const viewCases = (): ConformanceCase[] => [
  flowCase('reduce/sum over a reshape view', 'reduce', (g) => {
    const x = g.uniform([6, 5]);
    return { run: () => sum(reshape(toTensor(x), [3, 10]), [1]), want: refReshape(ref.reduce({ x: refReshape(x, [3, 10]) }, { fn: 'sum', axes: [1] })[0], [3]), tol: { k: 10, scale: 1 } };
  }),
  flowCase('unary/exp of a reshape(-1) view', 'unary', (g) => {
    const x = g.uniform([2, 3, 4]);
    return { run: () => runOp('unary', { x: reshape(toTensor(x), [-1]) }, { fn: 'exp' })[0], want: ref.unary({ x: refReshape(x, [24]) }, { fn: 'exp' })[0] };
  }),
  flowCase('binary/add of a permuted tensor and a row', 'binary', (g) => {
    const x = g.uniform([2, 3, 4]);
    const b = g.uniform([3]);
    const px = ref.permute({ x }, { perm: [2, 0, 1] })[0];
    return { run: () => add(permute(toTensor(x), [2, 0, 1]), toTensor(b)), want: ref.binary({ a: px, b }, { fn: 'add' })[0] };
  }),
  flowCase('matmul/of a slice', 'matmul', (g) => {
    const x = g.uniform([6, 8]);
    const w = g.uniform([5, 3]);
    const sx = ref.slice({ x }, { begin: [1, 2], size: [4, 5] })[0];
    return { run: () => matmul(slice(toTensor(x), [1, 2], [4, 5]), toTensor(w)), want: ref.matmul({ a: sx, b: w }, { transA: false, transB: false })[0], tol: { k: 5, scale: 1 } };
  }),
  flowCase('matmul/of an NHWC flatten (permute then reshape)', 'matmul', (g) => {
    const x = g.uniform([2, 3, 2, 2]);
    const w = g.uniform([3, 4]);
    const px = refReshape(ref.permute({ x }, { perm: [0, 2, 3, 1] })[0], [8, 3]);
    return { run: () => matmul(reshape(permute(toTensor(x), [0, 2, 3, 1]), [8, 3]), toTensor(w)), want: ref.matmul({ a: px, b: w }, { transA: false, transB: false })[0], tol: { k: 3, scale: 1 } };
  }),
  flowCase('conv2d/of a padded tensor', 'conv2d', (g) => {
    const x = g.uniform([1, 2, 5, 4]);
    const w = g.uniform([3, 2, 3, 3]);
    const pads: [number, number][] = [[0, 0], [0, 0], [1, 2], [2, 0]];
    const px = ref.pad({ x }, { pads, value: 0 })[0];
    return {
      run: () => runOp('conv2d', { x: runOp('pad', { x: toTensor(x) }, { pads, value: 0 })[0], w: toTensor(w) }, conv2dGeometry(px.shape, w.shape))[0],
      want: ref.conv2d({ x: px, w }, conv2dGeometry(px.shape, w.shape))[0],
      tol: { k: 18, scale: 1 },
    };
  }),
  flowCase('slice/of a concat gives back the part', 'slice', (g) => {
    const a = g.uniform([2, 3]);
    const b = g.uniform([2, 4]);
    return { run: () => slice(concat([toTensor(a), toTensor(b)], 1), [0, 3], [2, 4]), want: b, tol: 'exact' };
  }),
  flowCase('reduce/max over a transpose', 'reduce', (g) => {
    const x = g.uniform([4, 6]);
    const tx = ref.permute({ x }, { perm: [1, 0] })[0];
    return { run: () => runOp('reduce', { x: transpose(toTensor(x)) }, { fn: 'max', axes: [1] })[0], want: ref.reduce({ x: tx }, { fn: 'max', axes: [1] })[0], tol: 'exact' };
  }),
];

// --- dtype rules and errors ---------------------------------------------------------------------

const dtypeCases = (): ConformanceCase[] => [
  flowCase('dtype/i32 plus a number stays i32', 'binary', () => ({ run: () => add(tensor(Int32Array.of(1, -2, 3)), 2), want: r([3], [3, 0, 5]), dtype: 'i32' })),
  flowCase('dtype/comparing f32 gives i32', 'compare', () => ({ run: () => eq(tensor([1, 2, 3]), 2), want: r([3], [0, 1, 0]), dtype: 'i32' })),
  flowCase('dtype/sum of i32 stays i32', 'reduce', () => ({ run: () => sum(tensor(Int32Array.of(5, 6, 7))), want: r([], [18]), dtype: 'i32' })),
  flowCase('dtype/argmax gives i32', 'argmax', () => ({ run: () => argmax(tensor([1, 5, 2]), 0), want: r([], [1]), dtype: 'i32' })),
  flowCase('dtype/topk indices are i32', 'topk', () => ({ run: () => topk(tensor([1, 5, 2]), 2).indices, want: r([2], [1, 2]), dtype: 'i32' })),
  flowCase('dtype/topk values keep i32', 'topk', () => ({ run: () => topk(tensor(Int32Array.of(1, 5, 2)), 2).values, want: r([2], [5, 2]), dtype: 'i32' })),
  flowCase('dtype/where on i32 values stays i32', 'where', () => ({ run: () => where(tensor(Int32Array.of(1, 0)), tensor(Int32Array.of(4, 4)), tensor(Int32Array.of(9, 9))), want: r([2], [4, 9]), dtype: 'i32' })),
  flowCase('dtype/cast f32 to i32 truncates', 'cast', () => ({ run: () => cast(tensor([-1.5, 1.5]), 'i32'), want: r([2], [-1, 1]), dtype: 'i32' })),
  flowCase('dtype/full i32', 'fill', () => ({ run: () => full([2], 3, 'i32'), want: r([2], [3, 3]), dtype: 'i32' })),
  errorCase('dtype/mean of i32 is rejected', 'reduce', () => mean(tensor(Int32Array.of(1, 2))), 'mean', 'i32'),
  errorCase('dtype/exp of i32 is rejected', 'unary', () => runOp('unary', { x: tensor(Int32Array.of(1)) }, { fn: 'exp' }), 'exp', 'i32'),
  errorCase('dtype/where needs an i32 cond', 'where', () => where(tensor([1, 0]), tensor([1, 2]), tensor([3, 4])), 'where', 'cond', 'f32'),
  errorCase('dtype/binary of f32 and i32 is rejected', 'binary', () => add(tensor([1, 2]), tensor(Int32Array.of(1, 2))), 'add', 'f32', 'i32'),
  errorCase('dtype/matmul of i32 is rejected', 'matmul', () => matmul(tensor(Int32Array.of(1, 2, 3, 4), [2, 2]), tensor(Int32Array.of(1, 2, 3, 4), [2, 2])), 'matmul', 'i32'),
  errorCase('dtype/softmaxCrossEntropy needs i32 labels', 'softmaxCrossEntropy', () => softmaxCrossEntropy(zeros([2, 3]), tensor([0, 1])), 'softmaxCrossEntropy', 'labels', 'i32', 'f32'),
  errorCase('dtype/concat of mixed dtypes is rejected', 'concat', () => concat([tensor([1]), tensor(Int32Array.of(1))]), 'concat', 'i32'),
  errorCase('dtype/i32 cannot require gradients', 'unary', () => tensor(Int32Array.of(1)).requireGrad(), 'i32'),
];

const errorCases = (): ConformanceCase[] => [
  errorCase('error/binary shape mismatch names both shapes', 'binary', () => add(zeros([2, 3]), zeros([4])), 'add', '[2, 3]', '[4]'),
  errorCase('error/compare shape mismatch names both shapes', 'compare', () => eq(zeros([5, 2]), zeros([3, 1, 3])), 'eq', '[5, 2]', '[3, 1, 3]'),
  errorCase('error/matmul inner mismatch names both shapes', 'matmul', () => matmul(zeros([2, 3]), zeros([4, 5])), 'matmul', '[2, 3]', '[4, 5]'),
  errorCase('error/matmul batch mismatch names both shapes', 'matmul', () => matmul(zeros([2, 3, 4]), zeros([3, 4, 5])), 'matmul', '[2]', '[3]'),
  errorCase('error/matmul of a vector is rejected', 'matmul', () => matmul(zeros([3]), zeros([3, 2])), 'matmul', '[3]'),
  errorCase('error/conv2d channel mismatch names both shapes', 'conv2d', () => conv2d(zeros([1, 3, 5, 5]), zeros([4, 2, 3, 3])), 'conv2d', '[1, 3, 5, 5]', '[4, 2, 3, 3]'),
  errorCase('error/conv2d kernel larger than input', 'conv2d', () => conv2d(zeros([1, 1, 2, 2]), zeros([1, 1, 3, 3])), 'conv2d', '3x3', '2x2'),
  errorCase('error/conv2d groups must divide channels', 'conv2d', () => conv2d(zeros([1, 3, 5, 5]), zeros([4, 1, 3, 3]), { groups: 2 }), 'conv2d', 'groups'),
  errorCase('error/conv2d rank-3 input', 'conv2d', () => conv2d(zeros([3, 5, 5]), zeros([4, 3, 3, 3])), 'conv2d', '[3, 5, 5]'),
  errorCase('error/concat mismatch names both shapes', 'concat', () => concat([zeros([2, 3]), zeros([2, 4])], 0), 'concat', '[2, 3]', '[2, 4]'),
  errorCase('error/concat of nothing', 'concat', () => concat([]), 'concat'),
  errorCase('error/reduce axis out of range', 'reduce', () => runOp('reduce', { x: zeros([2, 3]) }, { fn: 'sum', axes: [2] }), 'reduce', '2', '[2, 3]'),
  errorCase('error/reduce axes unsorted', 'reduce', () => runOp('reduce', { x: zeros([2, 3]) }, { fn: 'sum', axes: [1, 0] }), 'reduce', 'sorted'),
  errorCase('error/max over an empty axis', 'reduce', () => runOp('reduce', { x: zeros([2, 0]) }, { fn: 'max', axes: [1] }), 'max', 'empty'),
  errorCase('error/argmax axis out of range', 'argmax', () => runOp('argmax', { x: zeros([2, 3]) }, { axis: 2 }), 'argmax', '2'),
  errorCase('error/topk k larger than the axis', 'topk', () => topk(zeros([2, 3]), 4), 'topk', '4'),
  errorCase('error/bad permutation', 'permute', () => permute(zeros([2, 3]), [0, 0]), 'permute', '0, 0'),
  errorCase('error/permutation of the wrong length', 'permute', () => runOp('permute', { x: zeros([2, 3]) }, { perm: [0] }), 'permute'),
  errorCase('error/slice out of range', 'slice', () => slice(zeros([4]), [1], [5]), 'slice', '[4]'),
  errorCase('error/slice with a negative start', 'slice', () => runOp('slice', { x: zeros([4]) }, { begin: [-1], size: [2] }), 'slice'),
  errorCase('error/negative padding', 'pad', () => runOp('pad', { x: zeros([4]) }, { pads: [[-1, 0]], value: 0 }), 'pad'),
  errorCase('error/broadcastTo an incompatible shape', 'broadcastTo', () => broadcastTo(zeros([3]), [4]), 'broadcastTo', '[3]', '[4]'),
  errorCase('error/broadcastTo a smaller rank', 'broadcastTo', () => broadcastTo(zeros([2, 3]), [3]), 'broadcastTo', '[2, 3]'),
  errorCase('error/labels of the wrong length', 'softmaxCrossEntropy', () => softmaxCrossEntropy(zeros([2, 3]), tensor(Int32Array.of(0, 1, 2))), 'softmaxCrossEntropy', 'labels'),
  errorCase('error/batchNormTrain gamma of the wrong size', 'batchNormTrain', () => runOp('batchNormTrain', { x: zeros([4, 3]), gamma: zeros([2]), beta: zeros([3]) }, { eps: 1e-5 }), 'batchNormTrain', 'gamma', '[2]'),
  errorCase('error/batchNormTrain with one value per channel', 'batchNormTrain', () => runOp('batchNormTrain', { x: zeros([1, 3]), gamma: zeros([3]), beta: zeros([3]) }, { eps: 1e-5 }), 'batchNormTrain'),
  errorCase('error/conv2d scale of the wrong size', 'conv2d', () => conv2d(zeros([1, 3, 5, 5]), zeros([4, 3, 3, 3]), { scale: zeros([4, 1]) }), 'conv2d', 'scale', '[4, 1]'),
  errorCase('error/conv2d bias of the wrong size', 'conv2d', () => conv2d(zeros([1, 3, 5, 5]), zeros([4, 3, 3, 3]), { bias: zeros([3]) }), 'conv2d', 'bias', '[3]'),
  errorCase('error/conv2d residual of the wrong shape', 'conv2d', () => conv2d(zeros([1, 3, 5, 5]), zeros([4, 3, 3, 3]), { residual: zeros([1, 4, 5, 5]) }), 'conv2d', 'residual', '[1, 4, 3, 3]', '[1, 4, 5, 5]'),
  errorCase('error/batchNormTrain residual of the wrong shape', 'batchNormTrain', () => runOp('batchNormTrain', { x: zeros([4, 3]), gamma: zeros([3]), beta: zeros([3]), residual: zeros([4, 2]) }, { eps: 1e-5 }), 'batchNormTrain', 'residual', '[4, 2]'),
  errorCase('error/batchNormBackward relu without y', 'batchNormBackward', () => runOp('batchNormBackward', { dy: zeros([4, 3]), x: zeros([4, 3]), gamma: zeros([3]), mean: zeros([3]), invstd: zeros([3]) }, { relu: true }), 'batchNormBackward', 'y'),
  errorCase('error/reluBackward dy of another shape', 'reluBackward', () => runOp('reluBackward', { y: zeros([2, 3]), dy: zeros([3, 2]) }, {}), 'reluBackward', 'dy', '[3, 2]'),
  errorCase('error/channelAffine scale of the wrong size', 'channelAffine', () => runOp('channelAffine', { x: zeros([2, 3, 2]), scale: zeros([2]), shift: zeros([3]) }, {}), 'channelAffine', 'scale'),
  errorCase('error/maxPool2d padding over half the kernel', 'maxPool2d', () => maxPool2d(zeros([1, 1, 5, 5]), { kernelSize: 2, padding: 2 }), 'maxPool2d', 'padding'),
  errorCase('error/sgdUpdate grad of another shape', 'sgdUpdate', () => runOp('sgdUpdate', { param: zeros([3]), grad: zeros([4]), momentum: zeros([3]) }, { lr: 1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true }), 'sgdUpdate', 'grad', '[4]'),
  errorCase('error/localResponseNorm of a rank-2 input', 'localResponseNorm', () => localResponseNorm(zeros([2, 3]), 5), 'localResponseNorm', 'rank 3', '[2, 3]'),
  errorCase('error/localResponseNorm size 0', 'localResponseNorm', () => localResponseNorm(zeros([1, 3, 2, 2]), 0), 'localResponseNorm', 'size'),
  errorCase('error/localResponseNorm with k 0', 'localResponseNorm', () => localResponseNorm(zeros([1, 3, 2, 2]), 3, { k: 0 }), 'localResponseNorm', 'k > 0'),
  errorCase('error/dropout op with p 1', 'dropout', () => runOp('dropout', { x: zeros([3]) }, { p: 1, seed: [0, 0], counter: [0, 0] }), 'dropout', 'p', '[0, 1)'),
  errorCase('error/dropout of i32', 'dropout', () => dropout(tensor(Int32Array.of(1, 2)), 0.5), 'dropout', 'f32', 'i32'),
  errorCase('error/dropout p outside [0, 1]', 'dropout', () => dropout(zeros([3]), 1.5), 'dropout', 'p', '1.5'),
  errorCase('error/adaptiveAvgPool2d of an empty plane', 'avgPool2d', () => adaptiveAvgPool2d(zeros([1, 2, 0, 3]), 2), 'adaptiveAvgPool2d', '[1, 2, 0, 3]'),
  errorCase('error/reshape to a different size', 'copy', () => reshape(zeros([2, 3]), [4]), 'reshape', '[2, 3]', '[4]'),
];

/** Every forward, dtype and error case. */
export const forwardCases = (): ConformanceCase[] => [
  ...unaryCases(),
  ...binaryCases(),
  ...compareCases(),
  ...whereCases(),
  ...castCopyFillCases(),
  ...reduceCases(),
  ...argmaxTopkCases(),
  ...matmulCases(),
  ...convCases(),
  ...poolCases(),
  ...normLossCases(),
  ...lrnDropoutCases(),
  ...layoutCases(),
  ...sgdCases(),
  ...randomCases(),
  ...viewCases(),
  ...dtypeCases(),
  ...errorCases(),
];
