/**
 * The WebAssembly side of the backend: the kernels of assembly/kernels.ts instantiated on one shared
 * WebAssembly.Memory, an arena in that memory for each op's operands and scratch, and a pool of
 * worker threads (Node's worker threads, or a browser's Web Workers) that run a kernel's slices
 * beside the calling thread, woken and joined with Atomics.
 */
import { FMA_WASM, SIMD_WASM } from './wasm.generated.js';

// Node's modules, where there are any: worker threads need them, and Node 20 needs a V8 flag for FMA.
const node = typeof process !== 'undefined' && process.versions?.node !== undefined
  ? { os: await import('node:os'), v8: await import('node:v8'), threads: await import('node:worker_threads') }
  : null;

/** A Web Worker, as far as it is used here: TypeScript declares it only in the DOM library. */
interface WebWorker {
  postMessage(message: unknown): void;
  terminate(): void;
  onmessage: (() => void) | null;
  onerror: ((event: { message?: string; preventDefault(): void }) => void) | null;
}
/** What a browser (page or worker) offers for threads. */
const web = globalThis as unknown as {
  Worker?: new (url: string, options?: { name?: string }) => WebWorker;
  crossOriginIsolated?: boolean;
  navigator?: { hardwareConcurrency?: number };
};

/**
 * Why kernels can run on the calling thread only, or null where worker threads can share their
 * memory: always under Node; in a browser, only on a cross-origin isolated page (or in its workers),
 * the one place a shared memory may be sent to a worker.
 */
export const singleThreadReason = (): string | null => {
  if (node) return null;
  if (typeof web.Worker !== 'function') return 'no Web Workers here';
  return web.crossOriginIsolated ? null : 'the page is not cross-origin isolated (COOP/COEP headers)';
};

/** The default thread count: every core (Node's `os.availableParallelism()`, a browser's `navigator.hardwareConcurrency`). */
export const defaultThreads = (): number => node?.os.availableParallelism() ?? web.navigator?.hardwareConcurrency ?? 1;

/** Tells of a trouble that does not stop the work: Node's warnings, else the console. */
const warn = (message: string): void => {
  if (node) process.emitWarning(message);
  else console.warn(message);
};

/** The part of the WebAssembly JS API used here: TypeScript declares it only in the DOM library. */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { exports: unknown };
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}
type WasmModule = { readonly kind: 'module' };
interface WasmMemory {
  readonly buffer: SharedArrayBuffer;
  grow(pages: number): number;
}
const { WebAssembly } = globalThis as unknown as { WebAssembly: WasmApi };

/** The kernels every thread can run; their last two parameters are (tid, nt). */
const KERNELS = [
  'matmul', 'conv2d', 'conv2dBackwardData', 'conv2dBackwardFilter', 'sumParts', 'batchNormTrain', 'batchNormBackward', 'channelAffine',
  'binaryF32', 'reluF32', 'reluBackwardF32', 'winogradFilter', 'winogradConv', 'winogradBackwardFilter', 'winogradFilterGrad',
  'winograd4Conv', 'winogradConvPanels', 'winograd4ConvPanels', 'maxPool2d', 'maxPool2dBackward', 'subsample',
] as const;
/** A kernel of assembly/kernels.ts. */
export type KernelName = (typeof KERNELS)[number];
type Exports = Record<KernelName, (...args: number[]) => void> & { GEMM_SCRATCH: { value: number } };

// Fixed addresses: control words (i32), kernel arguments (f64), a conv geometry (i32), then the arena.
const CTRL = 1024;
const [GEN, PENDING, KERNEL, ARGC, NT, READY, FAILED, QUIT] = [0, 1, 2, 3, 4, 5, 6, 7];
const ARGS = CTRL + 64;
const MAX_ARGS = 16;
/** Where a conv kernel reads its geometry (16 i32, in the field order of assembly/kernels.ts). */
export const GEOMETRY = 2048;
/** Where a forward conv kernel reads its epilogue (4 u32: bias, residual, relu, scale; see assembly/common.ts). */
const EPILOGUE = GEOMETRY + 64;
const ARENA = 4096;
const PAGE = 65536;
const MAX_PAGES = 65536;
/** Tensors live in the memory up to this many bytes (the rest are ordinary arrays), leaving room for arenas. */
const RESIDENT_LIMIT = 3 * 2 ** 30;

/**
 * Bytes of a block for `floats` elements: whole 64-byte lines (a cache line; SIMD alignment), with
 * at least 64 bytes of slack after the elements, as the arena has always given its regions.
 */
const blockBytes = (floats: number): number => Math.ceil((floats * 4 + 64) / 64) * 64;

/** Where {@link Wasm.place} put an op's arrays. */
export interface Placement {
  /** Byte addresses: the inputs', the outputs', then the scratch regions'. */
  readonly at: number[];
  /** Copies the outputs that live outside the memory back from their regions. */
  done(): void;
}
/** Below this many multiply-adds an op runs on the calling thread alone: waking the pool costs more. */
const PARALLEL_WORK = 1 << 20;

const decode = (base64: string): Uint8Array => Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));

let fmaSupport: boolean | undefined;
/** Whether relaxed SIMD validates here; Node 20 has it behind a V8 flag, which this sets if it must. */
export const fmaSupported = (): boolean => {
  if (fmaSupport === undefined) {
    const bytes = decode(FMA_WASM);
    fmaSupport = WebAssembly.validate(bytes);
    if (!fmaSupport && node) {
      node.v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
      fmaSupport = WebAssembly.validate(bytes);
    }
  }
  return fmaSupport;
};

const compiled = new Map<boolean, WasmModule>();
const moduleFor = (fma: boolean): WasmModule => {
  let m = compiled.get(fma);
  if (!m) compiled.set(fma, (m = new WebAssembly.Module(decode(fma ? FMA_WASM : SIMD_WASM))));
  return m;
};

// A worker: instantiates the kernels on the shared memory, then runs its slice of each new generation.
// A wake-up alone is no job: the caller publishes a job (GEN + 1) before it notifies, so a worker that
// saw the new GEN unwoken may have run the job and gone back to sleep when that notify arrives. Running
// again on it took a second share of PENDING (-1), and the caller then waited forever.
// One body for both hosts; only how it gets its data and reports back differs (see WORKER_START).
const WORKER = `
const run = ({ module, memory, names, tid, ctrl, args, maxArgs }, post) => {
  const { exports } = new WebAssembly.Instance(module, { env: { memory } });
  const kernels = names.map((n) => exports[n]);
  const ctl = new Int32Array(memory.buffer, ctrl, 8);
  const argv = new Float64Array(memory.buffer, args, maxArgs);
  let gen = Atomics.load(ctl, ${GEN});
  Atomics.add(ctl, ${READY}, 1);
  post('ready');
  for (;;) {
    Atomics.wait(ctl, ${GEN}, gen);
    const next = Atomics.load(ctl, ${GEN});
    if (next === gen) continue;
    gen = next;
    if (Atomics.load(ctl, ${QUIT})) break;
    try {
      kernels[ctl[${KERNEL}]](...argv.subarray(0, ctl[${ARGC}]), tid, ctl[${NT}]);
    } catch {
      Atomics.store(ctl, ${FAILED}, 1);
    }
    if (Atomics.sub(ctl, ${PENDING}, 1) === 1) Atomics.notify(ctl, ${PENDING});
  }
};
`;
/** How a worker gets its data: Node's `workerData`; a Web Worker's first message. */
const WORKER_START = {
  node: `const { parentPort, workerData } = require('node:worker_threads'); run(workerData, (m) => parentPort.postMessage(m));`,
  web: `onmessage = ({ data }) => run(data, (m) => postMessage(m));`,
};

/** Options of {@link Wasm}. */
export interface WasmOptions {
  /** Threads every large op is split over, the calling one included. */
  readonly threads: number;
  /** Use the relaxed-SIMD (FMA) kernels; the caller checked {@link fmaSupported}. */
  readonly fma: boolean;
  /** Told the memory's new size in bytes whenever it grows. */
  readonly onGrow: (bytes: number) => void;
}

/** The kernels on one shared memory, with the worker threads that share it (started on first need). */
export class Wasm {
  readonly threads: number;
  /** Floats of GEMM scratch each thread needs (packed panels). */
  readonly gemmScratch: number;
  readonly #module: WasmModule;
  readonly #onGrow: (bytes: number) => void;
  readonly #memory: WasmMemory;
  readonly #exports: Exports;
  // Views of the fixed addresses stay valid as the memory grows (a shared memory never moves)...
  readonly #ctl: Int32Array;
  readonly #args: Float64Array;
  readonly #geometry: Int32Array;
  readonly #epilogue: Uint32Array;
  // ...but a view of the whole memory has to be made anew.
  #heap: Float32Array;
  // Every buffer object the memory has had (one per size): arrays on any of them live here.
  readonly #buffers = new WeakSet<SharedArrayBuffer>();
  // Blocks past ARENA: tensors and the arena, handed out from the top and reused by exact size.
  #top = ARENA;
  readonly #free = new Map<number, number[]>();
  #arena = { at: 0, bytes: 0 };
  #workers: { terminate(): unknown }[] | null = null;
  #started: Promise<number> | null = null;

  constructor({ threads, fma, onGrow }: WasmOptions) {
    this.threads = threads;
    this.#onGrow = onGrow;
    this.#module = moduleFor(fma);
    this.#memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    this.#exports = new WebAssembly.Instance(this.#module, { env: { memory: this.#memory } }).exports as unknown as Exports;
    this.gemmScratch = this.#exports.GEMM_SCRATCH.value / 4;
    const buffer = this.#memory.buffer;
    this.#ctl = new Int32Array(buffer, CTRL, 8);
    this.#args = new Float64Array(buffer, ARGS, MAX_ARGS);
    this.#geometry = new Int32Array(buffer, GEOMETRY, 16);
    this.#epilogue = new Uint32Array(buffer, EPILOGUE, 4);
    this.#heap = new Float32Array(buffer);
    this.#buffers.add(buffer);
    onGrow(buffer.byteLength);
  }

  /**
   * Lays out consecutive regions of the given numbers of floats in the arena (64-byte aligned, with
   * slack after each so vector loads past an edge stay inside) and returns their byte addresses. The
   * regions are valid until the next call.
   */
  #reserve(...floats: number[]): number[] {
    let end = 0;
    const offsets = floats.map((n) => {
      const start = end;
      end += blockBytes(n);
      return start;
    });
    if (end > this.#arena.bytes) {
      // A larger arena: the old block goes back to the free blocks, where a tensor of its size may take it.
      if (this.#arena.bytes > 0) this.#release(this.#arena.at, this.#arena.bytes);
      const at = this.#block(end, MAX_PAGES * PAGE);
      if (at === null) throw new Error(`cpu backend: an op needs ${end} bytes of WebAssembly memory beside the tensors there, more than the 4 GiB it can address`);
      this.#arena = { at, bytes: end };
    }
    return offsets.map((o) => this.#arena.at + o);
  }

  /**
   * Addresses for an op's arrays: an array that lives in this memory (see {@link allocate}) is used
   * where it is; each other one gets an arena region, inputs copied in. Then one region per count of
   * floats in `scratch`. Call `done()` after the kernels to copy outputs back to arrays outside.
   */
  place(inputs: readonly Float32Array[], outputs: readonly Float32Array[], ...scratch: number[]): Placement {
    const outside = [...inputs, ...outputs].filter((a) => !this.holds(a));
    const regions = this.#reserve(...outside.map((a) => a.length), ...scratch);
    let next = 0;
    const back: [number, Float32Array][] = [];
    const at = [...inputs, ...outputs].map((a, i) => {
      if (this.holds(a)) return a.byteOffset;
      const region = regions[next++];
      if (i < inputs.length) this.#write(region, a);
      else back.push([region, a]);
      return region;
    });
    at.push(...regions.slice(next));
    return {
      at,
      done: () => {
        for (const [region, a] of back) this.#read(region, a);
      },
    };
  }

  /**
   * A new array of `length` elements in this memory, where kernels use it without copies; null when
   * the tensors here would pass RESIDENT_LIMIT (the caller then makes an ordinary array).
   */
  allocate(dtype: 'f32' | 'i32', length: number): Float32Array | Int32Array | null {
    const at = this.#block(blockBytes(length), RESIDENT_LIMIT);
    if (at === null) return null;
    const buffer = this.#memory.buffer;
    return dtype === 'f32' ? new Float32Array(buffer, at, length) : new Int32Array(buffer, at, length);
  }

  /** Returns an array of {@link allocate} to the free blocks; arrays from elsewhere are ignored. */
  release(data: Float32Array | Int32Array): void {
    if (this.holds(data)) this.#release(data.byteOffset, blockBytes(data.length));
  }

  /** Whether `data` lives in this memory. */
  holds(data: Float32Array | Int32Array): boolean {
    return this.#buffers.has(data.buffer as SharedArrayBuffer);
  }

  /** A free block of `bytes`, reused or new below `limit`; null past it. */
  #block(bytes: number, limit: number): number | null {
    const reused = this.#free.get(bytes)?.pop();
    if (reused !== undefined) return reused;
    const at = this.#top;
    // The slack past the top keeps a vector load over the last block's edge inside the memory.
    const end = at + bytes + 64;
    if (end > limit) return null;
    const pages = Math.ceil(end / PAGE);
    const have = this.#heap.byteLength / PAGE;
    if (pages > have) {
      this.#memory.grow(pages - have);
      this.#buffers.add(this.#memory.buffer);
      this.#heap = new Float32Array(this.#memory.buffer);
      this.#onGrow(this.#heap.byteLength);
    }
    this.#top = at + bytes;
    return at;
  }

  #release(at: number, bytes: number): void {
    const list = this.#free.get(bytes);
    if (list) list.push(at);
    else this.#free.set(bytes, [at]);
  }

  /** Copies `data` to byte address `ptr`. */
  #write(ptr: number, data: Float32Array): void {
    this.#heap.set(data, ptr >>> 2);
  }

  /** Copies `out.length` floats from byte address `ptr` into `out`. */
  #read(ptr: number, out: Float32Array): void {
    out.set(this.#heap.subarray(ptr >>> 2, (ptr >>> 2) + out.length));
  }

  /** Writes a conv geometry (16 i32) where the conv kernels read it. */
  geometry(values: readonly number[]): void {
    this.#geometry.set(values);
  }

  /**
   * Writes a forward conv's epilogue, y = act(y·scale[k] + bias[k] + residual), where its kernels read
   * it, and returns the address to hand them: 0 (none) when there is nothing to apply. `scale`, `bias`
   * and `residual` are byte addresses in this memory, 0 when absent.
   */
  epilogue(bias: number, residual: number, relu: boolean, scale = 0): number {
    if (!bias && !residual && !relu && !scale) return 0;
    this.#epilogue.set([bias, residual, +relu, scale]);
    return EPILOGUE;
  }

  /** The threads an op of `work` multiply-adds is split over. */
  threadsFor(work: number): number {
    return work >= PARALLEL_WORK ? this.threads : 1;
  }

  /**
   * Runs `kernel(...args, tid, nt)` for every tid: on all threads when the op has `work` multiply-adds
   * or more than PARALLEL_WORK, else on this one. The slices depend only on nt, so until the workers
   * are up this thread runs them all, with the same result.
   */
  run(kernel: KernelName, args: readonly number[], work: number): void {
    const nt = this.threadsFor(work);
    const fn = this.#exports[kernel];
    if (nt === 1 || !this.#ready()) {
      for (let tid = 0; tid < nt; tid++) fn(...args, tid, nt);
      return;
    }
    const ctl = this.#ctl;
    this.#args.set(args);
    ctl[KERNEL] = KERNELS.indexOf(kernel);
    ctl[ARGC] = args.length;
    ctl[NT] = nt;
    Atomics.store(ctl, PENDING, nt - 1);
    Atomics.add(ctl, GEN, 1);
    Atomics.notify(ctl, GEN);
    try {
      fn(...args, 0, nt);
    } finally {
      // A browser's main thread may not block in Atomics.wait, so there the caller spins: it has just run
      // its own slice, so it waits only for the workers to finish theirs, which are as long.
      for (let left = Atomics.load(ctl, PENDING); left !== 0; left = Atomics.load(ctl, PENDING)) if (node) Atomics.wait(ctl, PENDING, left);
    }
    if (Atomics.exchange(ctl, FAILED, 0)) throw new Error(`cpu backend: kernel '${kernel}' failed in a worker thread`);
  }

  /**
   * Starts the worker threads (once) and resolves to the number of threads that run ops: all of them
   * once the workers are up, 1 when they could not start (said in a warning). Ops do not wait for it:
   * until then the calling thread runs every slice itself.
   */
  start(): Promise<number> {
    this.#started ??= this.threads < 2
      ? Promise.resolve(1)
      : this.#spawn().then(
        () => this.threads,
        (e: Error) => {
          warn(`cpu backend: worker threads failed to start (${e.message}); running on one thread`);
          this.dispose();
          return 1;
        },
      );
    return this.#started;
  }

  /** Starts `threads - 1` workers on this memory and resolves when every one is up. */
  async #spawn(): Promise<void> {
    const shared = { module: this.#module, memory: this.#memory, names: KERNELS, ctrl: CTRL, args: ARGS, maxArgs: MAX_ARGS };
    const count = this.threads - 1;
    if (node) {
      const workers = Array.from({ length: count }, (_, i) =>
        new node.threads.Worker(WORKER + WORKER_START.node, { eval: true, workerData: { ...shared, tid: i + 1 } }));
      this.#workers = workers;
      for (const w of workers) w.unref();
      await Promise.all(workers.map((w) => new Promise((resolve, reject) => w.once('message', resolve).once('error', reject))));
      return;
    }
    // A worker made from a blob of this script, not from a file beside it: no bundler has to find and
    // copy a worker file, and it starts where this module was loaded from another origin (a CDN).
    const { Worker } = web;
    if (!Worker) throw new Error('no Web Workers here');
    const url = URL.createObjectURL(new Blob([WORKER + WORKER_START.web], { type: 'text/javascript' }));
    try {
      const workers: WebWorker[] = [];
      this.#workers = workers;
      const up = Array.from({ length: count }, (_, i) => {
        const w = new Worker(url, { name: `residual cpu ${i + 1}` });
        workers.push(w);
        return new Promise<void>((resolve, reject) => {
          w.onmessage = () => resolve();
          w.onerror = (event) => {
            event.preventDefault();
            reject(new Error(event.message || 'a worker failed to start'));
          };
          w.postMessage({ ...shared, tid: i + 1 });
        });
      });
      await Promise.all(up);
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  /** Whether the workers are all up; starts them the first time it is asked. */
  #ready(): boolean {
    void this.start();
    return this.#workers !== null && Atomics.load(this.#ctl, READY) === this.threads - 1;
  }

  /** Stops the workers; the kernels keep working on this thread alone. */
  dispose(): void {
    if (!this.#workers) return;
    Atomics.store(this.#ctl, QUIT, 1);
    Atomics.add(this.#ctl, GEN, 1);
    Atomics.notify(this.#ctl, GEN);
    for (const w of this.#workers) void w.terminate();
    this.#workers = null;
  }
}
