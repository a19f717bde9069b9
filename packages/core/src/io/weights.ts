/**
 * What the weights formats residual reads (safetensors, PyTorch's `.pth`) have in common: element
 * types named as safetensors names them (each PyTorch storage type maps onto one), their conversion
 * to the dtypes residual holds, and `WeightsFile`, which lists a file's tensors before reading any and
 * then reads them one at a time. Needs no Node API.
 */
import type { DType, TypedArrayFor } from '../ops.js';

/** Bytes per element of each stored element type. */
export const DTYPE_BYTES = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 } as const;

/** The element types residual reads, as a safetensors header spells them. */
export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/** A tensor converted to a dtype residual holds; `sourceDtype` says what the file stored. */
export type SafetensorsTensor = {
  [D in DType]: { readonly dtype: D; readonly shape: number[]; readonly data: TypedArrayFor<D>; readonly sourceDtype: SafetensorsDtype };
}[DType];

/** A tensor as a file describes it, before its bytes are read. */
export interface WeightsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
}

/** An open weights file of either format: every tensor is known up front, and read on demand. */
export interface WeightsFile {
  readonly fileName: string;
  readonly format: 'safetensors' | 'pth';
  /** In the file's own order (PyTorch's state-dict order for `.pth`, buffer order for safetensors). */
  readonly tensors: ReadonlyMap<string, WeightsEntry>;
  /** Safetensors' string metadata; a `.pth` file has none. */
  readonly metadata: Readonly<Record<string, string>>;
  get(name: string): Promise<SafetensorsTensor>;
  /** Every tensor, in `tensors`' order. */
  entries(): AsyncGenerator<[string, SafetensorsTensor]>;
  close(): Promise<void>;
}

/** F16 to F32 is exact: every half, subnormals, infinities and NaN payloads included, is a float. */
const f16ToF32 = (src: Uint16Array): Float32Array => {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) out[i] = (sign ? -mant : mant) * 2 ** -24;
    else bits[i] = sign | (exp === 31 ? 0x7f800000 : (exp + 112) << 23) | (mant << 13);
  }
  return out;
};

/**
 * Converts little-endian elements to the dtype residual holds: floats to f32 (F64 rounds, the others
 * are exact), integers and booleans to i32. `bytes` must be a fresh buffer holding exactly the
 * elements, since it is viewed in place. `fail` makes the error for an I64 outside the int32 range.
 */
export const decodeElements = (
  dtype: SafetensorsDtype, shape: readonly number[], bytes: Uint8Array, fail: (message: string) => Error,
): SafetensorsTensor => {
  const buf = bytes.buffer;
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const s = [...shape];
  const f32 = (data: Float32Array): SafetensorsTensor => ({ dtype: 'f32', shape: s, data, sourceDtype: dtype });
  const i32 = (data: Int32Array): SafetensorsTensor => ({ dtype: 'i32', shape: s, data, sourceDtype: dtype });
  switch (dtype) {
    case 'F32': return f32(new Float32Array(buf, 0, n));
    case 'F64': return f32(Float32Array.from(new Float64Array(buf, 0, n)));
    case 'F16': return f32(f16ToF32(new Uint16Array(buf, 0, n)));
    case 'BF16': {
      const src = new Uint16Array(buf, 0, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return f32(out);
    }
    case 'I64': {
      const words = new Int32Array(buf, 0, 2 * n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = words[2 * i];
        if (words[2 * i + 1] !== lo >> 31)
          throw fail(`I64 element ${i} is ${new DataView(buf).getBigInt64(8 * i, true)}, outside the int32 range`);
        out[i] = lo;
      }
      return i32(out);
    }
    case 'I32': return i32(new Int32Array(buf, 0, n));
    case 'I16': return i32(Int32Array.from(new Int16Array(buf, 0, n)));
    case 'I8': return i32(Int32Array.from(new Int8Array(buf, 0, n)));
    case 'U8': return i32(Int32Array.from(new Uint8Array(buf, 0, n)));
    case 'BOOL': return i32(Int32Array.from(new Uint8Array(buf, 0, n), (b) => (b ? 1 : 0)));
  }
};

/** The part of a `WeightsFile` both formats share: lookup by name, iteration in order, close. */
export const weightsFile = <E extends WeightsEntry>(
  fileName: string,
  format: WeightsFile['format'],
  tensors: ReadonlyMap<string, E>,
  metadata: Readonly<Record<string, string>>,
  load: (entry: E) => Promise<SafetensorsTensor>,
  close: () => Promise<void>,
  fail: (message: string) => Error,
): WeightsFile & { readonly tensors: ReadonlyMap<string, E> } => ({
  fileName,
  format,
  tensors,
  metadata,
  async get(name) {
    const e = tensors.get(name);
    if (!e) {
      const names = [...tensors.keys()];
      const shown = names.slice(0, 8).map((k) => JSON.stringify(k)).join(', ');
      throw fail(`no tensor ${JSON.stringify(name)} among its ${names.length} tensors (${shown}${names.length > 8 ? ', ...' : ''})`);
    }
    return load(e);
  },
  async *entries() {
    for (const e of tensors.values()) yield [e.name, await load(e)];
  },
  close,
});
