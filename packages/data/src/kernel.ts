/**
 * The loader's per-pixel loops, assembly/resample.ts compiled to WebAssembly: one instance per thread,
 * its memory grown to the largest crop seen. See writeRows and writeFiltered there for what they compute.
 */
import { RESAMPLE_WASM } from './wasm.generated.js';

/** Two source taps per output column (byte offsets in a row) or row (row indices; first -1: padding), and the weight of the second. */
export interface Taps {
  readonly first: Int32Array;
  readonly next: Int32Array;
  readonly frac: Float32Array;
}

/** The part of the WebAssembly JS API used here: TypeScript declares it only in the DOM library. */
interface Wasm {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
interface Exports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  writeRows(...args: number[]): void;
  writeFiltered(...args: number[]): void;
}
const { WebAssembly } = globalThis as unknown as { WebAssembly: Wasm };
const kernel = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(RESAMPLE_WASM, 'base64')), {}).exports as Exports;

const PAGE = 65536;
// Page 0 is the module's own (its stack); operands start above it, each 16-byte aligned.
const BASE = PAGE;
const align = (n: number) => (n + 15) & ~15;

/** The kernel's memory, grown to `end` bytes if it is smaller, with `src` copied in at BASE. */
function memoryWith(src: Uint8Array, end: number): ArrayBuffer {
  const { memory } = kernel;
  if (memory.buffer.byteLength < end) memory.grow(Math.ceil((end - memory.buffer.byteLength) / PAGE));
  new Uint8Array(memory.buffer, BASE, src.length).set(src);
  return memory.buffer;
}

/**
 * Writes the crop that `cols` x `rows` describe from `src` (8-bit, 3 channels `channelStride`
 * apart, rows `rowStride` apart) into `out` as 3 planes of cols.first.length x rows.first.length
 * floats, source value v becoming v * scale[c] + bias[c]; columns outside [lo, hi) and padding rows
 * are bias[c].
 */
export function writeRows(src: Uint8Array, rowStride: number, channelStride: number, cols: Taps, rows: Taps, lo: number, hi: number, out: Float32Array, scale: readonly number[], bias: readonly number[]): void {
  const [ow, oh] = [cols.first.length, rows.first.length];
  const at = { src: BASE, cols: 0, rows: 0, out: 0, cache: 0, end: 0 };
  at.cols = align(at.src + src.length);
  at.rows = align(at.cols + 12 * ow);
  at.out = align(at.rows + 12 * oh);
  at.cache = align(at.out + 12 * ow * oh);
  at.end = at.cache + 24 * ow;
  const m = memoryWith(src, at.end);
  for (const [taps, where, n] of [[cols, at.cols, ow], [rows, at.rows, oh]] as const) {
    new Int32Array(m, where, n).set(taps.first);
    new Int32Array(m, where + 4 * n, n).set(taps.next);
    new Float32Array(m, where + 8 * n, n).set(taps.frac);
  }
  kernel.writeRows(at.src, rowStride, channelStride, at.cols, ow, oh, lo, hi, at.rows, at.out, at.cache, ...scale, ...bias);
  out.set(new Float32Array(m, at.out, 3 * ow * oh));
}

/** Per output column (row): the first tap (a byte offset in a row; a row index), and `taps` weights each, zero-padded. */
export interface TapList {
  readonly first: Int32Array;
  readonly weights: Float32Array;
  readonly taps: number;
}

/**
 * Writes the crop that `cols` x `rows` describe from `nrows` rows of `src` (interleaved 8-bit RGB,
 * rows `rowStride` bytes apart) into `out` as 3 planes, each output the weighted sum of its taps:
 * source value v becomes v * scale[c] + bias[c]; columns outside [lo, hi) and rows whose first tap is
 * -1 are bias[c].
 */
export function writeFiltered(src: Uint8Array, rowStride: number, nrows: number, cols: TapList, rows: TapList, lo: number, hi: number, out: Float32Array, scale: readonly number[], bias: readonly number[]): void {
  const [ow, oh] = [cols.first.length, rows.first.length];
  const at = { src: BASE, cols: 0, rows: 0, h: 0, out: 0, end: 0 };
  at.cols = align(at.src + src.length + 1); // the kernel's 4-byte loads read one byte past the last pixel
  at.rows = align(at.cols + 4 * ow * (1 + cols.taps));
  at.h = align(at.rows + 4 * oh * (1 + rows.taps));
  at.out = align(at.h + 12 * nrows * ow);
  at.end = at.out + 12 * ow * oh;
  const m = memoryWith(src, at.end);
  for (const [taps, where, n] of [[cols, at.cols, ow], [rows, at.rows, oh]] as const) {
    new Int32Array(m, where, n).set(taps.first);
    new Float32Array(m, where + 4 * n, n * taps.taps).set(taps.weights);
  }
  kernel.writeFiltered(at.src, rowStride, at.cols, ow, cols.taps, nrows, at.h, at.rows, oh, rows.taps, lo, hi, at.out, ...scale, ...bias);
  out.set(new Float32Array(m, at.out, 3 * ow * oh));
}
