/**
 * Splitting an op whose tensors need bindings larger than the device allows
 * (maxStorageBufferBindingSize) into dispatches over parts of them. An op that works item by item
 * along a leading axis (images, rows, planes, elements) runs once per chunk of items, each operand
 * bound from the chunk's first item; an operand the op reads whole (a filter, a broadcast vector)
 * is bound whole in every chunk. A binding must start at a multiple of the runtime's `bindAlign`:
 * chunks are sized so every operand's chunk starts aligned where that fits, and otherwise an
 * operand's chunk that starts off alignment goes through a scratch buffer (copied in, and for an
 * output copied back), which costs a copy but no change to the programs.
 *
 * Elementwise maps split along their positions (an operand bound over the range a run of positions
 * reads), and reductions along their leading axis, with partial results where that axis is reduced.
 */
import { sizeOf, type Shape } from '@residual/core';
import type { Program } from './header.js';
import { elementwisePieces, elementwiseProgram, type ElementwiseSpec } from './programs/elementwise.js';
import { reduceProgram, type ReduceSpec } from './programs/reduce.js';
import type { Binding, GpuStorage, Runtime } from './runtime.js';

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * Items per chunk (the last may have fewer) of `count` items whose operands advance `itemBytes`
 * each per item (0: bound whole) in bindings of at most `limit` bytes: all of them if they fit,
 * else the most that keeps every chunk's offsets multiples of `align`, else (no such count fits)
 * the most that fit; 0 where not even one item fits.
 */
export const chunkItems = (count: number, itemBytes: readonly number[], limit: number, align: number): number => {
  const moving = itemBytes.filter((b) => b > 0);
  const fit = Math.min(count, ...moving.map((b) => Math.floor(limit / b)));
  if (fit === count) return count;
  const step = moving.reduce((s, b) => {
    const need = align / gcd(b, align);
    return (s * need) / gcd(s, need);
  }, 1);
  return Math.floor(fit / step) * step || fit;
};

/** An operand of an op split along items: its storage (or a binding of part of one), advancing `item` bytes per item (0: bound whole). */
export interface Part {
  readonly storage: GpuStorage | Binding;
  readonly item: number;
}

/** Bytes [offset, offset + size) of a part's storage that items [first, first + n) take. */
const rangeOf = (p: Part, first: number, n: number): Binding => {
  const [storage, at] = 'storage' in p.storage ? [p.storage.storage, p.storage.offset] : [p.storage, 0];
  return { storage, offset: at + first * p.item, size: n * p.item };
};

/**
 * One dispatch of `program` over items [first, first + n) of its parts. A part bound whole, or
 * whose range starts aligned, is bound in place; another is copied to a scratch buffer bound
 * instead (and, for an output, copied back after the dispatch).
 */
export const runChunk = (rt: Runtime, op: string, program: Program, inputs: readonly Part[], outputs: readonly Part[], first: number, n: number): void => {
  const scratch: [GpuStorage, Binding, boolean][] = [];
  const bind = (output: boolean) => (p: Part): GpuStorage | Binding => {
    if (p.item === 0) return p.storage;
    const range = rangeOf(p, first, n);
    if (range.offset % rt.bindAlign === 0) return range;
    const s = rt.alloc(range.size, op);
    rt.copy(op, range.storage, s, range.size, range.offset);
    scratch.push([s, range, output]);
    return s;
  };
  rt.run(op, program, inputs.map(bind(false)), outputs.map(bind(true)));
  for (const [s, range, output] of scratch) {
    if (output) rt.copy(op, s, range.storage, range.size, 0, range.offset);
    rt.free(s);
  }
};

/** Bytes a part binds when bound as it is. */
const wholeBytes = (p: Part): number => ('storage' in p.storage ? p.storage.size : p.storage.bytes);

/**
 * The chunks (first item, item count) of `count` items of `parts`: one chunk of all where every
 * part fits a binding. Throws, naming the op and the sizes, where one item does not fit.
 */
export const chunksOf = (rt: Runtime, op: string, count: number, parts: readonly Part[]): { first: number; n: number }[] => {
  if (count === 0 || parts.every((p) => wholeBytes(p) <= rt.maxBinding)) return [{ first: 0, n: count }];
  const k = chunkItems(count, parts.map((p) => p.item), rt.maxBinding, rt.bindAlign);
  if (k === 0) {
    const sizes = parts.filter((p) => p.item > 0).map((p) => p.item);
    throw new Error(`webgpu ${op}: cannot split ${count} items of ${sizes.join(', ')} bytes per operand: one item exceeds the binding limit of ${rt.maxBinding} bytes`);
  }
  return Array.from({ length: Math.ceil(count / k) }, (_, j) => ({ first: j * k, n: Math.min(k, count - j * k) }));
};

/**
 * Runs `op` over `count` items: in one dispatch of `programOf(count, 0)` with every operand bound
 * as it is where all fit a binding, else once per chunk of `n` items from item `first`.
 */
export const runItems = (
  rt: Runtime,
  op: string,
  count: number,
  inputs: readonly Part[],
  outputs: readonly Part[],
  programOf: (n: number, first: number) => Program,
): void => {
  const chunks = chunksOf(rt, op, count, [...inputs, ...outputs]);
  if (chunks.length === 1) rt.run(op, programOf(count, 0), inputs.map((p) => p.storage), outputs.map((p) => p.storage));
  else for (const { first, n } of chunks) runChunk(rt, op, programOf(n, first), inputs, outputs, first, n);
};

/** The whole of a storage as a binding. */
export const whole = (storage: GpuStorage): Binding => ({ storage, offset: 0, size: storage.bytes });

/** An elementwise map, in pieces where an operand is too large for one binding. */
export const runElementwise = (rt: Runtime, op: string, spec: ElementwiseSpec, inputs: readonly GpuStorage[], out: GpuStorage): void => {
  if ([...inputs, out].every((s) => s.bytes <= rt.maxBinding) || sizeOf(spec.shape) === 0) {
    rt.run(op, elementwiseProgram(spec), inputs, [out]);
    return;
  }
  const pieces = elementwisePieces(spec, rt.maxBinding / 4, rt.bindAlign / 4);
  if (!pieces) throw new Error(`webgpu ${op}: cannot split [${spec.shape.join(', ')}] into parts whose operands fit bindings of ${rt.maxBinding} bytes`);
  for (const { piece, ranges } of pieces) {
    const bind = (storage: GpuStorage, k: number): Binding => ({ storage, offset: ranges[k][0] * 4, size: (ranges[k][1] - ranges[k][0]) * 4 });
    rt.run(op, elementwiseProgram(spec, piece), inputs.map(bind), [bind(out, inputs.length)]);
  }
};

/** A reduction's shape with size-1 axes dropped and neighbours of the same kind (reduced or kept) merged. */
const mergeAxes = (shape: Shape, axes: readonly number[]): { shape: number[]; axes: number[] } => {
  const out: { size: number; reduced: boolean }[] = [];
  shape.forEach((size, i) => {
    const reduced = axes.includes(i);
    if (size === 1) return;
    if (out.at(-1)?.reduced === reduced) out.at(-1)!.size *= size;
    else out.push({ size, reduced });
  });
  return { shape: out.map((a) => a.size), axes: out.flatMap((a, i) => (a.reduced ? [i] : [])) };
};

/**
 * A reduction of the tensor in `x` into `y` (bindings of any 4-byte offset), split where it is too
 * large: along a kept leading axis by chunks of it; along a reduced leading axis into partial
 * results per chunk, which are then reduced in turn. The program reads and writes from an element
 * base past its bindings' aligned starts, so a chunk may hold any number of items.
 */
export const runReduce = (rt: Runtime, op: string, spec: ReduceSpec, x: Binding, y: Binding): void => {
  const [n, ...rest] = spec.shape;
  const inner = sizeOf(rest);
  const outputs = sizeOf(spec.shape.filter((_, i) => !spec.axes.includes(i)));
  const lead = (r: Binding) => r.offset % rt.bindAlign;
  if ((lead(x) + x.size <= rt.maxBinding && lead(y) + y.size <= rt.maxBinding) || n === undefined) {
    // A whole storage is bound as it is, as before splitting existed.
    const bind = (r: Binding) => (r.offset === 0 && r.size === r.storage.bytes ? r.storage : { storage: r.storage, offset: r.offset - lead(r), size: lead(r) + r.size });
    rt.run(op, reduceProgram({ ...spec, xBase: lead(x) / 4, yBase: lead(y) / 4 }), [bind(x)], [bind(y)]);
    return;
  }
  // Neighbouring axes both reduced or both kept are one axis, so chunks along the leading one are as fine as can be.
  const merged = mergeAxes(spec.shape, spec.axes);
  if (merged.shape.length < spec.shape.length) return runReduce(rt, op, { ...spec, ...merged }, x, y);
  const keep = !spec.axes.includes(0);
  const room = rt.maxBinding - rt.bindAlign + 4;
  // Items per chunk, at least one (a single item too large is split in turn). Partial results must
  // come out smaller than the input, else reducing them is the same problem again.
  const k = Math.max(1, Math.floor(room / (Math.max(inner, keep ? outputs / n : 0) * 4)));
  if (!keep && (outputs * 4 > room || spec.fn === 'argmax' || (k === 1 && inner === outputs))) {
    throw new Error(`webgpu ${op}: cannot split a reduction of [${spec.shape.join(', ')}] over axes [${spec.axes.join(', ')}] to fit bindings of ${rt.maxBinding} bytes`);
  }
  const part = (r: Binding, item: number, first: number, m: number): Binding => ({ storage: r.storage, offset: r.offset + first * item, size: m * item });
  const chunks = Math.ceil(n / k);
  if (keep) {
    for (let first = 0; first < n; first += k) {
      const m = Math.min(k, n - first);
      runReduce(rt, op, { ...spec, shape: [m, ...rest] }, part(x, inner * 4, first, m), part(y, (outputs / n) * 4, first, m));
    }
    return;
  }
  const partials = whole(rt.alloc(chunks * outputs * 4, op));
  const fn = spec.fn === 'mean' ? 'sum' : spec.fn;
  for (let j = 0; j < chunks; j++) {
    const m = Math.min(k, n - j * k);
    runReduce(rt, op, { ...spec, fn, shape: [m, ...rest] }, part(x, inner * 4, j * k, m), part(partials, outputs * 4, j, 1));
  }
  const divisor = spec.fn === 'mean' ? (spec.divisor ?? sizeOf(spec.axes.map((a) => spec.shape[a]))) : undefined;
  runReduce(rt, op, { fn: spec.fn, type: spec.type, shape: [chunks, outputs], axes: [0], divisor }, partials, y);
  rt.free(partials.storage);
};
