/**
 * PyTorch checkpoints as `torch.save` writes them (torch >= 1.6): a zip holding `<name>/data.pkl`, a
 * pickle of the saved object in which each tensor names a storage by key, and the storages' raw
 * little-endian bytes as `<name>/data/<key>`. Reading runs nothing, the promise of
 * `torch.load(weights_only=True)`: the pickle goes through `unpickle` with only the globals a tensor
 * state dict needs. Every size the file states is checked against another (the zip's directory, the
 * pickle's element counts, the data's CRC) before it is trusted with an allocation, and storages are
 * read one at a time, when a tensor is asked for.
 *
 * The zip is read with yauzl: it reads the central directory from a file descriptor and opens each
 * entry on demand, so a large checkpoint is never read whole, and it checks each entry's data against
 * the file's bounds (fflate, the other candidate, wants the whole archive in memory).
 */
import * as zlib from 'node:zlib';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { PickleGlobal, unpickle } from './pickle.js';
import { decodeElements, DTYPE_BYTES, weightsFile, type SafetensorsDtype, type WeightsEntry, type WeightsFile } from './weights.js';

/** A PyTorch checkpoint this reader refuses or finds malformed; the message names the file and what is at fault. */
export class PthError extends Error {
  override name = 'PthError';
}

// torch.save names each storage by its legacy typed class, one per element type.
const STORAGES: Record<string, SafetensorsDtype> = {
  FloatStorage: 'F32', DoubleStorage: 'F64', HalfStorage: 'F16', BFloat16Storage: 'BF16', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};
const ORDERED_DICT = 'collections.OrderedDict';
const REBUILD_TENSOR = 'torch._utils._rebuild_tensor_v2';
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
const GLOBALS: ReadonlySet<string> = new Set([ORDERED_DICT, REBUILD_TENSOR, REBUILD_PARAMETER, ...Object.keys(STORAGES).map((s) => `torch.${s}`)]);

/** A storage as the pickle names it: an entry `data/<key>` holding `numel` elements of `dtype`. */
class StorageRef {
  constructor(readonly key: string, readonly dtype: SafetensorsDtype, readonly numel: number) {}
}

/** A tensor as the pickle builds it: a strided view into a storage (views may share one). */
class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly shape: number[], readonly stride: number[]) {}
}

/** A tensor of the state dict, with the view it is read from. */
interface PthEntry extends WeightsEntry {
  readonly view: TensorRef;
}

const isIndex = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
const isIndexTuple = (x: unknown): x is number[] => Array.isArray(x) && x.every(isIndex);
const isEmptyDict = (x: unknown) => x instanceof Map && x.size === 0;

/** Names a pickled value's Python type, for errors. */
const kind = (x: unknown): string =>
  x === null ? 'None' : x instanceof TensorRef ? 'tensor' : x instanceof StorageRef ? 'storage' : x instanceof Map ? 'dict' : Array.isArray(x) ? (Object.isFrozen(x) ? 'tuple' : 'list')
    : typeof x === 'string' ? 'str' : typeof x === 'boolean' ? 'bool' : typeof x === 'number' || typeof x === 'bigint' ? 'number' : String(x);

/** The hooks that give the allowed globals their meaning, as torch.load does, building only descriptions. */
const torchHooks = (label: string) => {
  const storages = new Map<string, StorageRef>();
  return {
    label,
    globals: GLOBALS,
    persistentLoad(pid: unknown): StorageRef {
      // ('storage', torch.FloatStorage, key, location, numel): location (cpu, cuda:0) does not matter here.
      const type: unknown = Array.isArray(pid) ? pid[1] : undefined;
      const isStorageType = type instanceof PickleGlobal && type.module === 'torch' && Object.hasOwn(STORAGES, type.name);
      if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage' || !isStorageType || typeof pid[2] !== 'string' || !isIndex(pid[4]))
        throw new Error(`persistent id ${JSON.stringify(pid, (_, v) => (typeof v === 'bigint' ? String(v) : v))} is not ('storage', type, key, location, numel)`);
      const [, , key, , numel] = pid as [string, PickleGlobal, string, unknown, number];
      const ref = new StorageRef(key, STORAGES[(type as PickleGlobal).name], numel);
      const seen = storages.get(key);
      if (seen && (seen.dtype !== ref.dtype || seen.numel !== ref.numel))
        throw new Error(`storage ${key} is named as ${seen.numel} ${seen.dtype} and as ${numel} ${ref.dtype}`);
      storages.set(key, seen ?? ref);
      return seen ?? ref;
    },
    reduce(fn: PickleGlobal, args: readonly unknown[]): unknown {
      switch (String(fn)) {
        case ORDERED_DICT:
          if (args.length) throw new Error(`${fn} is called with arguments; torch.save passes none`);
          return new Map();
        case REBUILD_TENSOR: {
          // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata]); the rest are unused here.
          const [storage, offset, shape, stride, , hooks, metadata] = args;
          if (args.length < 6 || args.length > 7 || !(storage instanceof StorageRef) || !isIndex(offset) || !isIndexTuple(shape)
            || !isIndexTuple(stride) || shape.length !== stride.length || !isEmptyDict(hooks) || (args.length === 7 && !isEmptyDict(metadata)))
            throw new Error(`${fn} needs (storage, offset, size, stride, requires_grad, {}), got ${args.map(kind).join(', ')}`);
          return new TensorRef(storage, offset, [...shape], [...stride]);
        }
        case REBUILD_PARAMETER:
          if (args.length !== 3 || !(args[0] instanceof TensorRef) || !isEmptyDict(args[2]))
            throw new Error(`${fn} needs (tensor, requires_grad, {}), got ${args.map(kind).join(', ')}`);
          return args[0];
        default:
          throw new Error(`${fn} is not called by a state dict`);
      }
    },
    build(obj: unknown, state: unknown): void {
      // An OrderedDict's attributes: a state dict keeps `_metadata` (each module's format version) there, unused here.
      if (!(obj instanceof Map) || !(state instanceof Map)) throw new Error(`BUILD on a ${kind(obj)} is not part of a state dict`);
    },
  };
};

/**
 * The state dict in what the pickle built: the object itself, or the dict under `state_dict` or
 * `model` (what training scripts wrap it in), less the `module.` prefix that nn.DataParallel adds
 * to every key.
 */
const stateDictOf = (root: unknown, fail: (msg: string) => Error): Map<string, TensorRef> => {
  if (!(root instanceof Map)) throw fail(`holds a ${kind(root)}, not a dict of tensors`);
  const key = ['state_dict', 'model'].find((k) => root.get(k) instanceof Map);
  const dict = key === undefined ? root : (root.get(key) as Map<unknown, unknown>);
  const where = key === undefined ? '' : `[${JSON.stringify(key)}]`;
  const out = new Map<string, TensorRef>();
  for (const [k, v] of dict) {
    if (typeof k !== 'string') throw fail(`the dict${where} has a ${kind(k)} key; a state dict's keys are names`);
    if (!(v instanceof TensorRef))
      throw fail(`${where}[${JSON.stringify(k)}] is a ${kind(v)}, not a tensor (a state dict holds only tensors; keys: ${[...dict.keys()].slice(0, 8).join(', ')})`);
    out.set(k, v);
  }
  const names = [...out.keys()];
  if (names.length && names.every((n) => n.startsWith('module.'))) return new Map([...out].map(([k, v]) => [k.slice(7), v]));
  return out;
};

/** Whether a view reads its storage in order, so it is one slice of it. */
const isContiguous = ({ shape, stride }: TensorRef): boolean => {
  let expected = 1;
  for (let ax = shape.length - 1; ax >= 0; ax--) {
    if (shape[ax] !== 1 && stride[ax] !== expected) return false;
    expected *= shape[ax];
  }
  return true;
};

/** Copies a view's elements, row-major, out of its storage's bytes (a fresh buffer, so it can be viewed in place). */
const gather = (storage: Uint8Array, view: TensorRef): Uint8Array => {
  const size = DTYPE_BYTES[view.storage.dtype];
  const numel = view.shape.reduce((a, d) => a * d, 1);
  if (isContiguous(view)) return storage.slice(view.offset * size, (view.offset + numel) * size);
  const out = new Uint8Array(numel * size);
  // Elements move as whole words of up to 4 bytes; an 8-byte element is two.
  const unit = Math.min(size, 4);
  const Words = unit === 4 ? Uint32Array : unit === 2 ? Uint16Array : Uint8Array;
  const src = new Words(storage.buffer as ArrayBuffer, 0, storage.byteLength / unit);
  const dst = new Words(out.buffer);
  const k = size / unit;
  const { shape, stride } = view;
  const index = shape.map(() => 0);
  for (let i = 0, p = view.offset; i < numel; i++) {
    for (let w = 0; w < k; w++) dst[i * k + w] = src[p * k + w];
    for (let ax = shape.length - 1; ax >= 0; ax--) {
      p += stride[ax];
      if (++index[ax] < shape[ax]) break;
      p -= stride[ax] * shape[ax];
      index[ax] = 0;
    }
  }
  return out;
};

/** Reads one stored entry whole into a buffer of exactly its size, checked against its CRC. */
const readEntry = async (zip: ZipFile, entry: Entry, fail: (msg: string, cause?: unknown) => Error): Promise<Uint8Array> => {
  // Opening the stream checks the data lies within the file, so the size below is bounded by the file's.
  const stream = await zip.openReadStreamPromise(entry).catch((e: Error) => {
    throw fail(`entry ${entry.fileName}: ${e.message}`, e);
  });
  const out = new Uint8Array(entry.uncompressedSize);
  let n = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      if (chunk.length > out.length - n) throw fail(`entry ${entry.fileName} holds more than the ${out.length} bytes its header says`);
      out.set(chunk, n);
      n += chunk.length;
    }
  } catch (e) {
    throw e instanceof PthError ? e : fail(`entry ${entry.fileName}: ${(e as Error).message}`, e);
  }
  if (n !== out.length) throw fail(`entry ${entry.fileName} holds ${n} bytes, its header says ${out.length} (truncated?)`);
  // zlib.crc32 arrived in Node 20.15; on older Nodes only the sizes are checked.
  if (typeof zlib.crc32 === 'function' && zlib.crc32(out) >>> 0 !== entry.crc32)
    throw fail(`entry ${entry.fileName}: its data does not match its CRC-32 (corrupt or edited)`);
  return out;
};

/** Lists a zip's entries by name, refusing what torch.save never writes (compression, encryption, duplicates). */
const listEntries = async (zip: ZipFile, fail: (msg: string, cause?: unknown) => Error): Promise<Map<string, Entry>> => {
  const entries = new Map<string, Entry>();
  try {
    for await (const e of zip.eachEntry()) {
      if (entries.has(e.fileName)) throw fail(`entry ${e.fileName} appears twice`);
      if (e.isEncrypted() || e.compressionMethod !== 0)
        throw fail(`entry ${e.fileName} is ${e.isEncrypted() ? 'encrypted' : `compressed (method ${e.compressionMethod})`}; torch.save stores entries as they are, so save it again with torch.save`);
      entries.set(e.fileName, e);
    }
  } catch (e) {
    throw e instanceof PthError ? e : fail(`the zip's directory is damaged (${(e as Error).message})`, e);
  }
  return entries;
};

/**
 * Opens a PyTorch checkpoint: reads the zip's directory and the pickle, checks every tensor against
 * its storage, and reads no tensor yet. Accepts a state dict (`torch.save(model.state_dict(), f)`,
 * torchvision's published files), or one under `state_dict` or `model` in a wrapping dict; a
 * `module.` prefix on every key (nn.DataParallel) is dropped. Close the file when done.
 */
export const openPth = async (path: string): Promise<WeightsFile> => {
  const fail = (msg: string, cause?: unknown) => new PthError(`${path}: ${msg}`, cause === undefined ? undefined : { cause });
  const zip = await yauzl.openPromise(path, { autoClose: false }).catch((e: Error) => {
    throw fail(`not a zip archive as torch.save (torch >= 1.6) writes (${e.message})`, e);
  });
  try {
    const entries = await listEntries(zip, fail);
    const pickles = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pickles.length !== 1)
      throw fail(pickles.length ? `several pickles (${pickles.join(', ')})` : 'no <name>/data.pkl entry: not a checkpoint from torch.save');
    const prefix = pickles[0].slice(0, -'data.pkl'.length);
    const byteorder = entries.get(`${prefix}byteorder`);
    if (byteorder) {
      const order = byteorder.uncompressedSize <= 16 ? new TextDecoder().decode(await readEntry(zip, byteorder, fail)) : '?';
      if (order !== 'little') throw fail(`saved with byte order ${JSON.stringify(order)}; only little-endian checkpoints are read`);
    }
    const root = unpickle(await readEntry(zip, entries.get(pickles[0])!, fail), torchHooks(`${path}: ${pickles[0]}`));

    const tensors = new Map<string, PthEntry>();
    for (const [name, view] of stateDictOf(root, (msg) => fail(`${pickles[0]}: ${msg}`))) {
      const { key, dtype, numel } = view.storage;
      const at = `tensor ${JSON.stringify(name)}`;
      const entry = entries.get(`${prefix}data/${key}`);
      if (!entry) throw fail(`${at}: its storage ${prefix}data/${key} is missing`);
      const bytes = BigInt(numel) * BigInt(DTYPE_BYTES[dtype]);
      if (BigInt(entry.uncompressedSize) !== bytes)
        throw fail(`${at}: storage ${entry.fileName} holds ${entry.uncompressedSize} bytes, the pickle says ${numel} ${dtype} elements (${bytes} bytes)`);
      // The view must read inside its storage, and no more elements than the storage holds: an
      // expanded view (stride 0) could otherwise ask for any amount of memory from a small file.
      const elements = view.shape.reduce((a, d) => a * BigInt(d), 1n);
      const last = view.shape.reduce((a, d, ax) => a + BigInt(d - 1) * BigInt(view.stride[ax]), BigInt(view.offset));
      const shown = `shape [${view.shape.join(', ')}], stride [${view.stride.join(', ')}] from offset ${view.offset}`;
      if (elements > 0n && last >= BigInt(numel)) throw fail(`${at}: ${shown} reaches element ${last} of a ${numel}-element storage`);
      if (elements > BigInt(numel)) throw fail(`${at}: ${shown} has ${elements} elements, more than its ${numel}-element storage (save a contiguous copy)`);
      tensors.set(name, { name, dtype, shape: view.shape, view });
    }

    // One storage is kept between reads, for the views that share it (torch.save writes shared storages once).
    let cached: { key: string; bytes: Promise<Uint8Array> } | undefined;
    const load = async ({ name, dtype, shape, view }: PthEntry) => {
      const { key } = view.storage;
      if (cached?.key !== key) cached = { key, bytes: readEntry(zip, entries.get(`${prefix}data/${key}`)!, fail) };
      const bytes = gather(await cached.bytes, view);
      return decodeElements(dtype, shape, bytes, (msg) => fail(`tensor ${JSON.stringify(name)}: ${msg}`));
    };
    return weightsFile(path, 'pth', tensors, {}, load, async () => zip.close(), fail);
  } catch (e) {
    zip.close();
    throw e;
  }
};
