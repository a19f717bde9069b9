/** What a backend is: storage management plus one kernel per op of the interface. */
import type { DataArray, DType, Kernels } from './ops.js';

/** Memory a backend holds, in bytes. */
export interface MemoryInfo {
  /** Bytes in live storages (allocated and not yet freed). */
  readonly liveBytes: number;
  /** Live storages. */
  readonly liveBuffers: number;
  /** Bytes held by the backend in all (live plus pooled for reuse). */
  readonly heldBytes: number;
  /** The most `heldBytes` has ever been. */
  readonly peakBytes: number;
}

/**
 * A backend: opaque storages of type S and the kernel table. Core never looks inside a storage.
 * Sizes are in elements; every storage holds exactly one dtype.
 */
export interface Backend<S = unknown> {
  /** Short name used by `useBackend` ('cpu', 'webgpu', ...). */
  readonly name: string;
  /** Human description of the device, e.g. the adapter name. */
  readonly device: string;
  /** True when the device is emulated on the CPU (lavapipe, SwiftShader): `auto` prefers the CPU backend then. */
  readonly software?: boolean;
  /** Copies host data into a new storage. */
  upload(data: DataArray): S;
  /** Reads a storage back (size elements of dtype). */
  download(storage: S, size: number, dtype: DType): Promise<DataArray>;
  /** Synchronous read, for backends whose memory the host can see (the CPU). */
  readSync?(storage: S, size: number, dtype: DType): DataArray;
  /** Releases a storage; it must not be used again. */
  free(storage: S): void;
  /** Waits until queued work is done (no-op for synchronous backends). */
  sync(): Promise<void>;
  /** Current memory use. */
  memory(): MemoryInfo;
  /** Releases every resource; the backend is unusable afterwards. */
  dispose(): void;
  /** One kernel per op. */
  readonly kernels: Kernels<S>;
}
