/**
 * Safetensors, the format torchvision, timm and Hugging Face weights come in: an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON naming each tensor's dtype, shape and byte range, then the
 * tensors' bytes, little-endian and row-major. Loading runs no code, and nothing is allocated on the
 * header's word alone: the header is checked against the file's real size before any tensor is read.
 *
 * This module needs no Node API, so it serves browsers too (`loadSafetensors` on a fetched buffer);
 * the file reader and the atomic writer live in `safetensors-node.ts`. Typed arrays are viewed in the
 * host's byte order, which is little-endian on every platform residual runs on.
 */
import type { DType } from '../ops.js';
import { decodeElements, DTYPE_BYTES, weightsFile, type SafetensorsDtype, type SafetensorsTensor, type WeightsEntry, type WeightsFile } from './weights.js';

/** A malformed file or bad input to the writer; the message names the file and the tensor at fault. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** The largest header accepted: real ones are kilobytes, so anything past this is corrupt or hostile. */
export const MAX_HEADER_BYTES = 100 * 2 ** 20;

/** One tensor as the header describes it; `begin`/`end` are byte offsets into the buffer. */
export interface SafetensorsEntry extends WeightsEntry {
  readonly begin: number;
  readonly end: number;
}

/** A validated header: the tensors cover the buffer exactly, in buffer order. */
export interface SafetensorsHeader {
  /** File offset of the buffer, 8 + N. */
  readonly bufferStart: number;
  readonly bufferBytes: number;
  readonly tensors: ReadonlyMap<string, SafetensorsEntry>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Random access to a safetensors file's bytes: a file handle, a buffer, a Blob, HTTP ranges. */
export interface SafetensorsSource {
  /** Named in every error. */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes from `position`, in a fresh buffer of that size (tensors are viewed in place). */
  read(position: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** An open safetensors file whose header is validated; tensors are read one at a time on demand. */
export interface SafetensorsFile extends WeightsFile {
  readonly format: 'safetensors';
  readonly header: SafetensorsHeader;
  readonly tensors: ReadonlyMap<string, SafetensorsEntry>;
}

const err = (fileName: string, msg: string, cause?: unknown): SafetensorsError =>
  new SafetensorsError(`${fileName}: ${msg}`, cause === undefined ? undefined : { cause });
const tensorLabel = (name: string): string => `tensor ${JSON.stringify(name)}`;
const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isIndexList = (x: unknown): x is number[] =>
  Array.isArray(x) && x.every((d) => Number.isSafeInteger(d) && d >= 0);

/** Reads the header length N from the first 8 bytes and checks it against the file before anything is allocated. */
const headerLength = (bytes: Uint8Array, fileName: string, fileSize: number): number => {
  if (fileSize < 8) throw err(fileName, `file is ${fileSize} bytes, too short for the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) throw err(fileName, `header length ${n} runs past the end of the file (${fileSize} bytes)`);
  if (n > MAX_HEADER_BYTES) throw err(fileName, `header length ${n} is over the ${MAX_HEADER_BYTES / 2 ** 20} MiB cap`);
  return Number(n);
};

/** The first key of the top-level object that occurs twice: JSON.parse silently keeps only the last. */
const duplicateKey = (json: string): string | undefined => {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === '"') {
      const start = i;
      for (i++; json[i] !== '"'; i++) if (json[i] === '\\') i++;
      let j = i + 1;
      while (json[j] === ' ' || json[j] === '\t' || json[j] === '\n' || json[j] === '\r') j++;
      if (depth !== 1 || json[j] !== ':') continue;
      const key = JSON.parse(json.slice(start, i + 1)) as string;
      if (seen.has(key)) return key;
      seen.add(key);
    }
  }
  return undefined;
};

const checkEntry = (name: string, info: unknown, bufferBytes: number, fileName: string): SafetensorsEntry => {
  const at = tensorLabel(name);
  if (!isRecord(info)) throw err(fileName, `${at}: expected {dtype, shape, data_offsets}, got ${JSON.stringify(info)}`);
  const { dtype, shape, data_offsets: offsets } = info;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype))
    throw err(fileName, `${at}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  if (!isIndexList(shape)) throw err(fileName, `${at}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  if (!isIndexList(offsets) || offsets.length !== 2 || offsets[0] > offsets[1])
    throw err(fileName, `${at}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  const [begin, end] = offsets;
  const bytes = shape.reduce((a, d) => a * d, DTYPE_BYTES[dtype as SafetensorsDtype]);
  if (end - begin !== bytes)
    throw err(fileName, `${at}: shape [${shape.join(', ')}] of ${dtype} needs ${bytes} bytes, data_offsets [${begin}, ${end}] hold ${end - begin}`);
  if (end > bufferBytes) throw err(fileName, `${at}: data_offsets [${begin}, ${end}] end past the buffer (${bufferBytes} bytes)`);
  return { name, dtype: dtype as SafetensorsDtype, shape, begin, end };
};

/**
 * Parses and validates a header. `bytes` holds at least the file's first 8 + N bytes (the whole file,
 * in memory); `fileSize` is the whole file's size when `bytes` is only its start.
 */
export const parseSafetensorsHeader = (bytes: Uint8Array, fileName: string, fileSize = bytes.byteLength): SafetensorsHeader => {
  const n = headerLength(bytes, fileName, fileSize);
  const attempt = <T>(f: () => T, what: string): T => {
    try {
      return f();
    } catch (e) {
      throw err(fileName, `${what} (${(e as Error).message})`, e);
    }
  };
  const json = attempt(() => new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n)), 'header is not valid UTF-8');
  const root: unknown = attempt(() => JSON.parse(json), 'header is not valid JSON');
  if (!isRecord(root)) throw err(fileName, `header must be a JSON object, got ${JSON.stringify(root).slice(0, 80)}`);
  const dup = duplicateKey(json);
  if (dup !== undefined) throw err(fileName, `${tensorLabel(dup)} appears twice in the header`);

  const bufferStart = 8 + n;
  const bufferBytes = fileSize - bufferStart;
  let metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, info] of Object.entries(root)) {
    if (name !== '__metadata__') {
      entries.push(checkEntry(name, info, bufferBytes, fileName));
      continue;
    }
    if (!isRecord(info)) throw err(fileName, `__metadata__ must be an object of strings, got ${JSON.stringify(info)}`);
    for (const [k, v] of Object.entries(info))
      if (typeof v !== 'string') throw err(fileName, `__metadata__ ${JSON.stringify(k)} must be a string, got ${JSON.stringify(v)}`);
    metadata = info as Record<string, string>;
  }

  // Zero-size tensors may share an offset with their neighbour, hence the tie-break on `end`.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: SafetensorsEntry | undefined;
  for (const e of entries) {
    const at = `${tensorLabel(e.name)}: data_offsets [${e.begin}, ${e.end}]`;
    const covered = prev?.end ?? 0;
    if (prev && e.begin < covered) throw err(fileName, `${at} overlap ${tensorLabel(prev.name)} [${prev.begin}, ${prev.end}]`);
    if (e.begin > covered) throw err(fileName, `${at} leave bytes [${covered}, ${e.begin}) of the buffer unused`);
    prev = e;
  }
  if ((prev?.end ?? 0) !== bufferBytes)
    throw err(fileName, prev
      ? `${tensorLabel(prev.name)} ends at byte ${prev.end} of the ${bufferBytes}-byte buffer, leaving its tail unused`
      : `the buffer holds ${bufferBytes} bytes but the header lists no tensors`);
  return { bufferStart, bufferBytes, metadata, tensors: new Map(entries.map((e) => [e.name, e])) };
};

/** Opens safetensors from any random-access source: reads and validates the header, then tensors on demand. */
export const openSafetensorsSource = async (source: SafetensorsSource): Promise<SafetensorsFile> => {
  const { name: fileName, size } = source;
  const read = async (position: number, length: number, what: string): Promise<Uint8Array> => {
    let bytes: Uint8Array;
    try {
      bytes = await source.read(position, length);
    } catch (e) {
      throw err(fileName, `${what}: ${(e as Error).message}`, e);
    }
    if (bytes.byteLength !== length) throw err(fileName, `${what}: read ${bytes.byteLength} bytes, expected ${length}`);
    return bytes;
  };
  const prefix = await read(0, Math.min(size, 8), 'header length');
  const n = headerLength(prefix, fileName, size);
  const header = parseSafetensorsHeader(await read(0, 8 + n, 'header'), fileName, size);
  const load = async (e: SafetensorsEntry): Promise<SafetensorsTensor> => {
    const bytes = await read(header.bufferStart + e.begin, e.end - e.begin, tensorLabel(e.name));
    return decodeElements(e.dtype, e.shape, bytes, (msg) => err(fileName, `${tensorLabel(e.name)}: ${msg}`));
  };
  const file = weightsFile(fileName, 'safetensors', header.tensors, header.metadata, load, async () => source.close?.(), (msg) => err(fileName, msg));
  return { ...file, format: 'safetensors', header };
};

/** Safetensors already in memory (a fetched or read buffer); `fileName` is named in errors. */
export const loadSafetensors = (bytes: Uint8Array | ArrayBuffer, fileName: string): Promise<SafetensorsFile> => {
  // A plain Uint8Array view: a Node Buffer's slice() shares memory (and may start mid-pool), but tensors need fresh buffers.
  const all = bytes instanceof Uint8Array ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
  return openSafetensorsSource({ name: fileName, size: all.byteLength, read: async (p, l) => all.slice(p, p + l) });
};

/** The dtypes the writer produces; each needs the array kind it maps to. */
export type SafetensorsWriteDtype = 'F32' | 'F16' | 'I64' | 'I32';
const WRITE_ARRAY: Record<SafetensorsWriteDtype, DType> = { F32: 'f32', F16: 'f32', I64: 'i32', I32: 'i32' };

/** A tensor to write; `dtype` defaults to F32 for a Float32Array and I32 for an Int32Array. */
export interface SafetensorsInput {
  readonly data: Float32Array | Int32Array;
  readonly shape: readonly number[];
  readonly dtype?: SafetensorsWriteDtype;
}

/** Rounds f32 bits to the nearest F16, ties to even; overflow goes to infinity, NaN stays NaN. */
const f32ToF16 = (bits: number): number => {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // the F16 biased exponent
  if (e >= 31) return sign | 0x7c00;
  if (e < -10) return sign; // below half the smallest subnormal
  const rne = (m: number, shift: number): number => {
    const q = m >>> shift;
    const rest = m - q * 2 ** shift;
    const half = 2 ** (shift - 1);
    return q + (rest > half || (rest === half && q & 1) ? 1 : 0);
  };
  // A carry out of the mantissa bumps the exponent, up to infinity, which is what rounding wants.
  return sign | (e > 0 ? (e << 10) + rne(mant, 13) : rne(mant | 0x800000, 14 - e));
};

/**
 * Encodes tensors as safetensors bytes. Tensors are laid out by element size, largest first, then by
 * name, and the header is padded with spaces to a multiple of 8, so every tensor is aligned to its
 * element size (readers that map the file can view it in place). `label` names the output in errors.
 */
export const serializeSafetensors = (
  tensors: Readonly<Record<string, SafetensorsInput>>,
  metadata?: Readonly<Record<string, string>>,
  label = 'safetensors',
): Uint8Array => {
  const items = Object.entries(tensors).map(([name, t]) => {
    const at = tensorLabel(name);
    if (name === '__metadata__') throw err(label, `${at}: the name is reserved for metadata`);
    const kind: DType | undefined = t.data instanceof Float32Array ? 'f32' : t.data instanceof Int32Array ? 'i32' : undefined;
    if (!kind) throw err(label, `${at}: data must be a Float32Array or an Int32Array`);
    const dtype = t.dtype ?? (kind === 'f32' ? 'F32' : 'I32');
    if (!Object.hasOwn(WRITE_ARRAY, dtype) || WRITE_ARRAY[dtype] !== kind)
      throw err(label, `${at}: cannot write ${kind === 'f32' ? 'a Float32Array' : 'an Int32Array'} as ${JSON.stringify(dtype)} (F32, F16 take a Float32Array; I32, I64 an Int32Array)`);
    if (!isIndexList(t.shape)) throw err(label, `${at}: shape must be a list of non-negative integers, got ${JSON.stringify(t.shape)}`);
    const numel = t.shape.reduce((a, d) => a * d, 1);
    if (numel !== t.data.length) throw err(label, `${at}: shape [${t.shape.join(', ')}] has ${numel} elements, data has ${t.data.length}`);
    return { name, dtype, shape: [...t.shape], data: t.data, begin: 0, end: 0 };
  });
  items.sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const parts: string[] = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== 'string') throw err(label, `__metadata__ ${JSON.stringify(k)} must be a string, got ${JSON.stringify(v)}`);
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const it of items) {
    it.begin = offset;
    it.end = offset += it.data.length * DTYPE_BYTES[it.dtype];
    // Built key by key: a JS object would move integer-like names such as "0" to the front.
    parts.push(`${JSON.stringify(it.name)}:${JSON.stringify({ dtype: it.dtype, shape: it.shape, data_offsets: [it.begin, it.end] })}`);
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const n = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + n + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + n);

  for (const { dtype, data, begin } of items) {
    const at = 8 + n + begin;
    if (dtype === 'F32' || dtype === 'I32') out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    else if (dtype === 'F16') {
      const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
      for (let i = 0; i < bits.length; i++) view.setUint16(at + 2 * i, f32ToF16(bits[i]), true);
    } else
      for (let i = 0; i < data.length; i++) {
        view.setInt32(at + 8 * i, data[i], true);
        view.setInt32(at + 8 * i + 4, data[i] >> 31, true);
      }
  }
  return out;
};
