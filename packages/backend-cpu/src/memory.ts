/**
 * CPU memory: storages drawn from a free-list pool keyed by (dtype, length), plus the grow-only
 * WebAssembly memory the kernels work in. Large storages live in that memory (its own free blocks
 * pool them), where kernels use them without copies; small ones, and any past its limit, are
 * ordinary arrays. A training loop allocates the same sizes every step, so after the first step
 * every allocation is a pool hit and memory stays flat.
 */
import type { DataArray, DType, MemoryInfo } from '@residual/core';

/** A CPU tensor's memory: one typed array of exactly the tensor's element count. */
export interface CpuStorage {
  /** The elements; an empty array once freed. */
  data: DataArray;
  /** Set by `free()`, so a second free is caught. */
  freed: boolean;
  /**
   * Set when the elements are in oneDNN's nChw16c order for these [N, C, H, W] (C a multiple of 16)
   * rather than row-major: the native provider keeps activations so between its ops (src/blocked.ts).
   */
  blocked?: readonly [number, number, number, number];
}

/** Where large arrays can live instead of the JavaScript heap: the kernels' WebAssembly memory. */
export interface ResidentHeap {
  /** A new array there, or null when there is no room (an ordinary array is made instead). */
  allocate(dtype: DType, length: number): DataArray | null;
  /** Takes back an array of `allocate`. */
  release(data: DataArray): void;
}

/** Arrays of at least this many elements live in the resident heap: below it, copies cost less than they save. */
export const RESIDENT_MIN = 4096;

const EMPTY = { f32: new Float32Array(0), i32: new Int32Array(0) } as const;

const dtypeOf = (data: DataArray): DType => (data instanceof Float32Array ? 'f32' : 'i32');

/** The pool of one backend, with the byte counts `memory()` reports. */
export class CpuMemory {
  readonly #free = { f32: new Map<number, Float32Array[]>(), i32: new Map<number, Int32Array[]>() };
  #liveBytes = 0;
  #liveBuffers = 0;
  #pooledBytes = 0;
  #wasmBytes = 0;
  #peakBytes = 0;
  // Live arrays in the resident heap, and their bytes (which the WebAssembly memory's size counts already).
  #resident = new WeakSet<DataArray>();
  #residentBytes = 0;

  /**
   * @param maxPooledBytes freed ordinary arrays beyond this many pooled bytes are dropped for the GC.
   * @param heap where arrays of RESIDENT_MIN elements or more live, when given.
   */
  constructor(readonly maxPooledBytes = Infinity, readonly heap?: ResidentHeap) {}

  /** A storage of `length` elements; its contents are arbitrary (kernels overwrite every element). */
  alloc(dtype: DType, length: number): CpuStorage {
    const resident = this.heap && length >= RESIDENT_MIN ? this.heap.allocate(dtype, length) : null;
    if (resident) {
      this.#resident.add(resident);
      this.#residentBytes += resident.byteLength;
      this.#liveBytes += resident.byteLength;
      this.#liveBuffers++;
      this.#grew();
      return { data: resident, freed: false };
    }
    const reused = this.#free[dtype].get(length)?.pop();
    if (reused) this.#pooledBytes -= reused.byteLength;
    const data = reused ?? (dtype === 'f32' ? new Float32Array(length) : new Int32Array(length));
    this.#liveBytes += data.byteLength;
    this.#liveBuffers++;
    this.#grew();
    return { data, freed: false };
  }

  /**
   * Gives `s` a new array of the same size, filled by `fill` from the old one, which is then freed:
   * how a storage changes layout in one pass, without a copy back.
   */
  replaceData(s: CpuStorage, fill: (fresh: DataArray, old: DataArray) => void): void {
    const fresh = this.alloc(dtypeOf(s.data), s.data.length);
    fill(fresh.data, s.data);
    const old = { data: s.data, freed: false };
    s.data = fresh.data;
    this.free(old);
  }

  /** A new storage holding a copy of `data`. */
  upload(data: DataArray): CpuStorage {
    const s = this.alloc(dtypeOf(data), data.length);
    s.data.set(data);
    return s;
  }

  /** Returns a storage's array to the pool; using the storage afterwards is an error. */
  free(s: CpuStorage): void {
    if (s.freed) throw new Error('cpu backend: free() of a storage that was already freed');
    const { data } = s;
    const dtype = dtypeOf(data);
    s.freed = true;
    s.data = EMPTY[dtype];
    this.#liveBytes -= data.byteLength;
    this.#liveBuffers--;
    if (this.#resident.has(data)) {
      this.#resident.delete(data);
      this.#residentBytes -= data.byteLength;
      this.heap?.release(data);
      return;
    }
    // A view of a WebAssembly memory forgotten by clear(): pooling it would keep that whole memory alive.
    // (Pages that are not cross-origin isolated have shared memories but no SharedArrayBuffer global.)
    if (Object.prototype.toString.call(data.buffer) === '[object SharedArrayBuffer]') return;
    if (this.#pooledBytes + data.byteLength > this.maxPooledBytes) return;
    const map = this.#free[dtype] as Map<number, DataArray[]>;
    const list = map.get(data.length);
    if (list) list.push(data);
    else map.set(data.length, [data]);
    this.#pooledBytes += data.byteLength;
  }

  /** Records the size of the kernels' WebAssembly memory, which counts as held. */
  holdWasm(bytes: number): void {
    this.#wasmBytes = bytes;
    this.#grew();
  }

  /** The byte counts of `Backend.memory()`; the WebAssembly memory, resident storages included, counts as held. */
  info(): MemoryInfo {
    return {
      liveBytes: this.#liveBytes,
      liveBuffers: this.#liveBuffers,
      heldBytes: this.#held(),
      peakBytes: this.#peakBytes,
    };
  }

  /** Drops the pool and forgets the WebAssembly memory (live storages stay valid). */
  clear(): void {
    this.#free.f32.clear();
    this.#free.i32.clear();
    this.#pooledBytes = 0;
    this.#wasmBytes = 0;
    // Resident storages still alive stay valid (their memory lives while they do) but are counted as ordinary ones.
    this.#resident = new WeakSet();
    this.#residentBytes = 0;
  }

  #held(): number {
    return this.#liveBytes - this.#residentBytes + this.#pooledBytes + this.#wasmBytes;
  }

  #grew(): void {
    this.#peakBytes = Math.max(this.#peakBytes, this.#held());
  }
}
