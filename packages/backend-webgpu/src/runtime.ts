/// <reference types="@webgpu/types" />
/**
 * The WebGPU runtime under the kernels: pooled storage buffers, one command encoder (and one open
 * compute pass) that batches many dispatches per submit, per-dispatch uniforms packed into one
 * arena (bound at a dynamic offset), a pipeline cache keyed by shaderKey, a bind-group cache keyed
 * by pipeline and bindings (the pool hands a training loop the same buffers every step), bindings
 * of whole storages or of parts of them (for ops split past the binding limit, see split.ts), async
 * reads through staging buffers, and GPU errors turned into errors thrown by the next call (WebGPU
 * reports them asynchronously).
 */
import type { MemoryInfo } from '@residual/core';
import { describeAdapter, isSoftwareAdapter, type GpuHandle } from './gpu.js';
import { packUniforms, shaderSource, uniformLayout, type Program } from './header.js';
import type { GemmKernel } from './programs/gemm.js';
import { BufferPool, sizeClass } from './pool.js';

// WebGPU's flag values (fixed by the spec), so Node needs no globals installed.
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_MODE_READ = 0x1;
const STAGE_COMPUTE = 0x4;

/** The backend's storage: a pooled GPU buffer of `capacity` bytes (a size class) holding `bytes` bytes of data. */
export interface GpuStorage {
  readonly buffer: GPUBuffer;
  readonly capacity: number;
  readonly bytes: number;
}

/** A range of a storage bound to one binding of a program: `offset` and `size` in bytes. */
export interface Binding {
  readonly storage: GpuStorage;
  readonly offset: number;
  readonly size: number;
}

/** Tuning knobs of the runtime. */
export interface RuntimeOptions {
  /** Dispatches recorded before the encoder is submitted without waiting for a read. Default 128. */
  readonly maxDispatchesPerSubmit?: number;
  /**
   * The GEMM kernel of matmul and the convolutions. Default: 'subgroup-strips' on a CPU adapter
   * (a fallback adapter such as lavapipe) with subgroups of at least 8, else 'shared-tiles'.
   */
  readonly gemmKernel?: GemmKernel;
  /**
   * The largest storage binding, in bytes, an op may use before it is split into several
   * dispatches over parts of its tensors: the device's maxStorageBufferBindingSize, or less (down
   * to 1024) to make splitting happen on small tensors, as the tests do.
   */
  readonly maxBindingBytes?: number;
}

/** Counts that show the runtime's batching and reuse at work. */
export interface RuntimeCounters {
  /** Command buffers submitted. */
  readonly submits: number;
  /** Pipelines built (one per distinct shaderKey). */
  readonly pipelines: number;
  /** Dispatches recorded (an op split to fit the binding limit records several). */
  readonly dispatches: number;
  /** GPU buffers ever created (storage and staging); flat once the pool has warmed up. */
  readonly buffersCreated: number;
}

interface Pipeline {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /** What the shader was built for; a program reusing its key must match (else its key is incomplete). */
  readonly signature: string;
}

const signatureOf = (p: Program, uniformWords: number) =>
  `${p.workgroupSize}|${p.inputs.map((b) => b.type).join(',')}|${p.outputs.map((b) => b.type).join(',')}|${uniformWords}`;

/** Bytes of the uniform arena: every dispatch of one submit takes an aligned slot of it. */
const ARENA_BYTES = 1 << 16;
/** Cached bind groups kept before the cache starts over (each holds its buffers alive). */
const MAX_BIND_GROUPS = 8192;

/** Pooled GPU memory, batched submission and error reporting for one device. */
export class Runtime {
  readonly device: GPUDevice;
  /** The GEMM kernel the programs of this device use. */
  readonly gemmKernel: GemmKernel;
  /** The largest binding, in bytes, of any dispatch (see `RuntimeOptions.maxBindingBytes`). */
  readonly maxBinding: number;
  /**
   * Where a binding of part of a storage may start: a multiple of this many bytes. At least 256
   * (WebGPU's default minStorageBufferOffsetAlignment) whatever the device allows, so an op splits
   * alike on every device and a CPU adapter's tests cover what a GPU runs.
   */
  readonly bindAlign: number;
  readonly #handle: GpuHandle;
  readonly #limits: GPUSupportedLimits;
  readonly #maxDispatches: number;
  readonly #storage = new BufferPool<GPUBuffer>((b) => b.destroy());
  readonly #staging = new BufferPool<GPUBuffer>((b) => b.destroy());
  readonly #live = new Set<GpuStorage>();
  readonly #pipelines = new Map<string, Pipeline>();
  readonly #bindGroups = new Map<string, GPUBindGroup>();
  /** A number per GPU buffer, for bind-group cache keys. */
  readonly #bufferIds = new WeakMap<GPUBuffer, number>();
  readonly #arena = new ArrayBuffer(ARENA_BYTES);
  readonly #arenaView = new DataView(this.#arena);
  readonly #uniforms: GPUBuffer;
  readonly #uniformAlign: number;
  readonly #lost: Promise<never>;
  /** Error-scope results not yet settled; each records the first error it sees. */
  readonly #checks = new Set<Promise<void>>();
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #dispatches = 0;
  #dispatchesTotal = 0;
  #arenaUsed = 0;
  #ops = new Set<string>();
  /** Count of submits so far: a buffer freed in epoch e is safe to overwrite from the queue once e < epoch. */
  #epoch = 0;
  #peakBytes = 0;
  #buffersCreated = 0;
  #error: Error | null = null;
  #disposed = false;

  constructor(handle: GpuHandle, options: RuntimeOptions = {}) {
    // Holding the handle keeps Dawn's GPU object (and so the device) alive as long as this runtime.
    this.#handle = handle;
    this.device = handle.device;
    this.#limits = handle.device.limits;
    this.#maxDispatches = options.maxDispatchesPerSubmit ?? 128;
    // subgroup-strips broadcasts from lanes 0..7, so it needs subgroups of 8 lanes or more.
    const info = handle.adapter.info;
    const strips = this.device.features.has('subgroups') && (info.subgroupMinSize ?? 0) >= 8;
    this.gemmKernel = options.gemmKernel ?? (strips && info.isFallbackAdapter ? 'subgroup-strips' : 'shared-tiles');
    const refusal = !['shared-tiles', 'subgroup-strips'].includes(this.gemmKernel)
      ? `unknown gemmKernel '${this.gemmKernel}' (shared-tiles or subgroup-strips)`
      : this.gemmKernel === 'subgroup-strips' && !strips
        ? `gemmKernel 'subgroup-strips' needs subgroups of at least 8 lanes, which this adapter (${this.description}) lacks`
        : null;
    if (refusal) {
      this.device.destroy();
      throw new Error(`webgpu backend: ${refusal}`);
    }
    const bindingLimit = this.#limits.maxStorageBufferBindingSize;
    const wanted = options.maxBindingBytes ?? bindingLimit;
    if (!(wanted >= 1024)) {
      this.device.destroy();
      throw new Error(`webgpu backend: maxBindingBytes must be a number of bytes of at least 1024 (got ${wanted})`);
    }
    this.maxBinding = Math.floor(Math.min(wanted, bindingLimit) / 4) * 4;
    this.bindAlign = Math.max(256, this.#limits.minStorageBufferOffsetAlignment);
    this.#uniformAlign = this.#limits.minUniformBufferOffsetAlignment;
    this.#uniforms = this.device.createBuffer({ size: ARENA_BYTES, usage: USAGE.UNIFORM | USAGE.COPY_DST, label: 'uniform arena' });
    this.device.onuncapturederror = (ev) => this.#fail(`webgpu: ${ev.error.message}`);
    this.#lost = this.device.lost.then((info) => {
      throw this.#fail(`webgpu: device lost (${info.reason || 'unknown'}): ${info.message}`);
    });
    this.#lost.catch(() => {});
  }

  /** Whether the adapter emulates a GPU on the CPU (lavapipe, SwiftShader), for `Backend.software`. */
  get software(): boolean {
    return isSoftwareAdapter(this.#handle.adapter.info);
  }

  /** The adapter's description, for `Backend.device`. */
  get description(): string {
    return describeAdapter(this.#handle.adapter.info);
  }

  /**
   * A storage of at least `bytes` bytes (4 at least: WebGPU has no empty bindings). It may exceed
   * the binding limit: the ops that split bind it a part at a time.
   */
  alloc(bytes: number, op: string, forUpload = false): GpuStorage {
    this.check();
    const need = Math.max(4, bytes);
    const limit = this.#limits.maxBufferSize;
    if (need > limit) throw new Error(`webgpu ${op}: a tensor of ${need} bytes exceeds this device's maxBufferSize (${limit} bytes)`);
    const capacity = Math.min(sizeClass(need), limit - (limit % 4));
    const create = () => this.#createBuffer(capacity, USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST, op);
    // Uploads write through the queue, ahead of unsubmitted commands, so they need a buffer no such command uses.
    const buffer = this.#storage.acquire(capacity, create, forUpload && this.#encoder ? this.#epoch : Infinity);
    const storage = { buffer, capacity, bytes: need };
    this.#live.add(storage);
    this.#notePeak();
    return storage;
  }

  /** A new storage holding `data`. */
  upload(data: Float32Array | Int32Array): GpuStorage {
    const s = this.alloc(data.byteLength, 'upload', true);
    if (data.byteLength > 0) this.device.queue.writeBuffer(s.buffer, 0, data);
    return s;
  }

  /** Returns a storage to the pool; commands already recorded still see its contents. */
  free(s: GpuStorage): void {
    if (!this.#live.delete(s)) throw new Error('webgpu free: storage is not live (freed twice, or from another backend)');
    if (this.#disposed) return;
    this.#storage.release(s.buffer, s.capacity, this.#epoch);
  }

  /**
   * Records one dispatch of `program` over `inputs` (read-only) and `outputs` (read-write), each a
   * whole storage or a binding of part of one. Throws, naming the op and the binding, where one
   * exceeds the binding limit (an op that does not split its tensors).
   */
  run(op: string, program: Program, inputs: readonly (GpuStorage | Binding)[], outputs: readonly (GpuStorage | Binding)[]): void {
    this.check();
    if (program.dispatch === 0) return;
    const decls = [...program.inputs, ...program.outputs];
    const bindings = [...inputs, ...outputs].map((b, i) => this.#binding(op, decls[i].name, b));
    const grid = this.#grid(program.dispatch, op);
    const uniformLayoutOf = uniformLayout(program);
    const { pipeline, layout } = this.#pipeline(program, signatureOf(program, uniformLayoutOf.words));
    const bytes = uniformLayoutOf.words * 4;
    const slot = Math.ceil(bytes / this.#uniformAlign) * this.#uniformAlign;
    if (this.#arenaUsed + slot > ARENA_BYTES) this.flush();
    const offset = this.#arenaUsed;
    this.#arenaUsed += slot;
    packUniforms(program, uniformLayoutOf, this.#arenaView, offset);
    const pass = this.#computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, this.#bindGroup(program.shaderKey, layout, bytes, bindings), [offset]);
    pass.dispatchWorkgroups(grid[0], grid[1]);
    this.#dispatchesTotal++;
    this.#ops.add(op);
    if (++this.#dispatches >= this.#maxDispatches) this.flush();
  }

  /** Records a copy of `bytes` bytes of `src` from byte `from` into `dst` at byte `to` (multiples of 4). */
  copy(op: string, src: GpuStorage, dst: GpuStorage, bytes: number, from = 0, to = 0): void {
    this.check();
    if (bytes === 0) return;
    this.#encoderForCopy().copyBufferToBuffer(src.buffer, from, dst.buffer, to, bytes);
    this.#ops.add(op);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.#encoder) return;
    this.#pass?.end();
    this.#pass = null;
    if (this.#arenaUsed > 0) this.device.queue.writeBuffer(this.#uniforms, 0, this.#arena, 0, this.#arenaUsed);
    const ops = [...this.#ops].join(', ');
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.device.queue.submit([this.#encoder.finish()]);
    this.#watch(this.device.popErrorScope(), (m) => `webgpu: validation error in a batch of ${ops}: ${m}`);
    this.#watch(this.device.popErrorScope(), (m) => `webgpu: out of GPU memory in a batch of ${ops}: ${m}`);
    this.#encoder = null;
    this.#dispatches = 0;
    this.#arenaUsed = 0;
    this.#ops = new Set();
    this.#epoch++;
  }

  /** Reads the first `bytes` bytes of a storage back to the host. */
  async read(s: GpuStorage, bytes: number): Promise<ArrayBuffer> {
    this.check();
    if (bytes === 0) {
      await this.sync();
      return new ArrayBuffer(0);
    }
    const capacity = Math.min(sizeClass(bytes), this.#limits.maxBufferSize);
    const staging = this.#staging.acquire(capacity, () => this.#createBuffer(capacity, USAGE.MAP_READ | USAGE.COPY_DST, 'download'));
    this.#notePeak();
    this.#encoderForCopy().copyBufferToBuffer(s.buffer, 0, staging, 0, bytes);
    this.flush();
    try {
      await Promise.race([staging.mapAsync(MAP_MODE_READ, 0, bytes), this.#lost]);
      const out = staging.getMappedRange(0, bytes).slice(0);
      staging.unmap();
      await this.#settle();
      return out;
    } finally {
      this.#staging.release(staging, capacity, this.#epoch);
    }
  }

  /** Waits for all submitted work, then throws any error it raised. */
  async sync(): Promise<void> {
    this.check();
    this.flush();
    await Promise.race([this.device.queue.onSubmittedWorkDone(), this.#lost]);
    await this.#settle();
  }

  /** Throws the first GPU error seen, or if the runtime was disposed. */
  check(): void {
    if (this.#disposed) throw new Error('webgpu backend: used after dispose()');
    if (this.#error) throw this.#error;
  }

  /** Byte counts of storages (and download staging buffers, which the backend holds too). */
  memory(): MemoryInfo {
    const s = this.#storage.stats;
    return { liveBytes: s.liveBytes, liveBuffers: s.liveBuffers, heldBytes: this.#heldBytes(), peakBytes: this.#peakBytes };
  }

  /** Submits, pipelines and buffers created so far. */
  counters(): RuntimeCounters {
    return { submits: this.#epoch, pipelines: this.#pipelines.size, dispatches: this.#dispatchesTotal, buffersCreated: this.#buffersCreated };
  }

  /** Destroys every buffer and the device. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#bindGroups.clear();
    this.#pass?.end();
    this.#encoder = this.#pass = null;
    this.#storage.trim();
    this.#staging.trim();
    for (const s of this.#live) s.buffer.destroy();
    this.#uniforms.destroy();
    this.device.destroy();
  }

  #heldBytes(): number {
    return this.#storage.stats.heldBytes + this.#staging.stats.heldBytes;
  }

  #notePeak(): void {
    this.#peakBytes = Math.max(this.#peakBytes, this.#heldBytes());
  }

  #fail(message: string): Error {
    if (!this.#disposed) this.#error ??= new Error(message);
    return this.#error ?? new Error(message);
  }

  /** Records the outcome of an error scope; `describe` turns its message into ours. */
  #watch(scope: Promise<GPUError | null>, describe: (message: string) => string): void {
    const check: Promise<void> = scope.then(
      (e) => {
        if (e) this.#fail(describe(e.message));
      },
      () => {},
    );
    this.#checks.add(check);
    void check.finally(() => this.#checks.delete(check));
  }

  async #settle(): Promise<void> {
    await Promise.race([Promise.all(this.#checks), this.#lost]);
    this.check();
  }

  #createBuffer(size: number, usage: number, op: string): GPUBuffer {
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({ size, usage, label: op });
    this.#bufferIds.set(buffer, ++this.#buffersCreated);
    const held = this.#heldBytes();
    this.#watch(this.device.popErrorScope(), () => `webgpu ${op}: out of GPU memory allocating ${size} bytes (${held} bytes already held)`);
    return buffer;
  }

  /** A storage as a binding (the whole of it), checked against the binding limit. */
  #binding(op: string, name: string, b: GpuStorage | Binding): Binding {
    const part = 'storage' in b;
    const size = part ? b.size : b.bytes;
    if (size > this.maxBinding) {
      throw new Error(
        `webgpu ${op}: '${name}' needs a binding of ${size} bytes, over the limit of ${this.maxBinding} (maxStorageBufferBindingSize or the maxBindingBytes option), and ${op} cannot split it here`,
      );
    }
    if (!part) return { storage: b, offset: 0, size: Math.min(b.capacity, this.maxBinding) };
    if (b.offset % this.bindAlign !== 0 || size % 4 !== 0 || size <= 0 || b.offset + size > b.storage.capacity) {
      throw new Error(`webgpu ${op}: binding '${name}' of bytes [${b.offset}, ${b.offset + size}) is not a valid part of a ${b.storage.capacity}-byte buffer`);
    }
    return b;
  }

  /** The bind group of a program's layout over `bindings`, made once per distinct set of them. */
  #bindGroup(shaderKey: string, layout: GPUBindGroupLayout, uniformBytes: number, bindings: readonly Binding[]): GPUBindGroup {
    const key = `${shaderKey}|${bindings.map((b) => `${this.#bufferIds.get(b.storage.buffer)}@${b.offset}+${b.size}`).join(',')}`;
    let group = this.#bindGroups.get(key);
    if (!group) {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.#uniforms, size: uniformBytes } }];
      bindings.forEach((b, i) => entries.push({ binding: i + 1, resource: { buffer: b.storage.buffer, offset: b.offset, size: b.size } }));
      group = this.device.createBindGroup({ layout, entries, label: shaderKey });
      if (this.#bindGroups.size >= MAX_BIND_GROUPS) this.#bindGroups.clear();
      this.#bindGroups.set(key, group);
    }
    return group;
  }

  #pipeline(p: Program, signature: string): Pipeline {
    const cached = this.#pipelines.get(p.shaderKey);
    if (cached?.signature === signature) return cached;
    if (cached) throw new Error(`webgpu: program '${p.shaderKey}' was built for ${cached.signature}, now used with ${signature}: its shaderKey is incomplete`);
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: STAGE_COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } },
      ...p.inputs.map((_, i) => ({ binding: i + 1, visibility: STAGE_COMPUTE, buffer: { type: 'read-only-storage' as const } })),
      ...p.outputs.map((_, i) => ({ binding: p.inputs.length + i + 1, visibility: STAGE_COMPUTE, buffer: { type: 'storage' as const } })),
    ];
    const code = shaderSource(p);
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code, label: p.shaderKey });
    const layout = this.device.createBindGroupLayout({ entries, label: p.shaderKey });
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
      label: p.shaderKey,
    });
    const numbered = code.split('\n').map((l, i) => `${String(i + 1).padStart(4)}  ${l}`).join('\n');
    this.#watch(this.device.popErrorScope(), (m) => `webgpu: program '${p.shaderKey}' does not build: ${m}\n${numbered}`);
    const built = { pipeline, layout, signature };
    this.#pipelines.set(p.shaderKey, built);
    return built;
  }

  #computePass(): GPUComputePassEncoder {
    this.#pass ??= this.#encoderNow().beginComputePass();
    return this.#pass;
  }

  #encoderForCopy(): GPUCommandEncoder {
    this.#pass?.end();
    this.#pass = null;
    return this.#encoderNow();
  }

  #encoderNow(): GPUCommandEncoder {
    this.#encoder ??= this.device.createCommandEncoder();
    return this.#encoder;
  }

  /** Folds a workgroup count into a 2-D grid within maxComputeWorkgroupsPerDimension. */
  #grid(groups: number, op: string): [number, number] {
    const max = this.#limits.maxComputeWorkgroupsPerDimension;
    if (groups <= max) return [groups, 1];
    const y = Math.ceil(groups / max);
    if (y > max) throw new Error(`webgpu ${op}: ${groups} workgroups exceed what one dispatch can hold (${max}² on this device)`);
    return [Math.ceil(groups / y), y];
  }
}
