/**
 * The process group: this process's rank among all of them, and the collectives, run by Open MPI on
 * the binding's communication thread. Every collective must be called by every rank in the same
 * order with the same element count; a mismatch is an error on every rank (never a hang), and a
 * collective that waits longer than the timeout ends with a message naming the ranks that are gone.
 */
import { loadBinding, type MpiBinding } from './native.js';

/** How a reduction combines the ranks' values ('mean' is the sum divided by the world size). */
export type ReduceOp = 'sum' | 'mean' | 'min' | 'max';

/** The buffers collectives take, reduced and broadcast in place. */
export type CollectiveBuffer = Float32Array | Float64Array | Int32Array | Uint8Array;

/** Raised by collectives: a lost rank, a timeout, ranks that disagree, or MPI missing. */
export class DistributedError extends Error {
  override name = 'DistributedError';
}

/** Options of `init`. */
export interface InitOptions {
  /**
   * Seconds a collective may wait for the other ranks before this process gives up and says which
   * ranks are gone. Default: the RESIDUAL_DIST_TIMEOUT environment variable, else 45.
   */
  readonly timeoutSeconds?: number;
}

/** Where a rank runs. */
export interface PeerInfo {
  readonly rank: number;
  readonly host: string;
  readonly pid: number;
}

const KIND = { allReduce: 0, broadcast: 1, barrier: 2, finalize: 3 } as const;
const OPS: Record<ReduceOp, number> = { sum: 0, mean: 1, min: 2, max: 3 };
const HOST_BYTES = 64;

const timeoutOf = (options: InitOptions): number => {
  const raw = process.env.RESIDUAL_DIST_TIMEOUT;
  const t = options.timeoutSeconds ?? (raw ? Number(raw) : 45);
  if (!(t > 0)) throw new DistributedError(`the collective timeout must be a positive number of seconds, got '${options.timeoutSeconds ?? raw}'`);
  return t;
};

/** All processes of one MPI job (MPI_COMM_WORLD). Make it with `init()`. */
export class ProcessGroup {
  /** This process's rank, 0 ... worldSize - 1. */
  readonly rank: number;
  /** The number of processes. */
  readonly worldSize: number;
  /** This process's rank among those on its host. */
  readonly localRank: number;
  /** Processes on this host. */
  readonly localSize: number;
  /** The MPI library, e.g. 'Open MPI v4.1.4'. */
  readonly engine: string;
  /** Seconds a collective may wait for the others. */
  readonly timeoutSeconds: number;
  /** Every rank's host and process id, exchanged at start (to name a lost rank). */
  readonly peers: readonly PeerInfo[];
  readonly #mpi: MpiBinding;
  readonly #host: string;
  #count = 0;
  #failure: DistributedError | null = null;
  /** A collective timed out: the communication thread may never come back, so nothing else can run. */
  #stuck = false;
  #finalized = false;

  /** @internal use `init()`. */
  constructor(mpi: MpiBinding, options: InitOptions) {
    this.#mpi = mpi;
    this.timeoutSeconds = timeoutOf(options);
    const info = mpi.init();
    this.rank = info.rank;
    this.worldSize = info.worldSize;
    this.localRank = info.localRank;
    this.localSize = info.localSize;
    this.engine = info.library;
    this.#host = info.processor;
    const pids = new Int32Array(this.worldSize);
    pids[this.rank] = process.pid;
    const hosts = new Uint8Array(this.worldSize * HOST_BYTES);
    hosts.set(new TextEncoder().encode(info.processor).subarray(0, HOST_BYTES), this.rank * HOST_BYTES);
    this.allReduceSync(pids);
    this.allReduceSync(hosts);
    const text = new TextDecoder();
    this.peers = Array.from(pids, (pid, rank) => ({
      rank, pid, host: text.decode(hosts.subarray(rank * HOST_BYTES, (rank + 1) * HOST_BYTES)).replace(/\0+$/, ''),
    }));
  }

  /** Sums (or averages, ...) `buffer` across all ranks, in place; resolves with the same buffer. */
  allReduce<T extends CollectiveBuffer>(buffer: T, op: ReduceOp = 'sum'): Promise<T> {
    return this.#async(`allReduce of ${buffer.length} ${typeName(buffer)} (${op})`, KIND.allReduce, buffer, OPS[op], 0) as Promise<T>;
  }

  /**
   * `allReduce`, blocking this thread until done: for synchronous code such as a sync batch-norm's
   * forward pass. Queued behind any collective still in flight.
   */
  allReduceSync<T extends CollectiveBuffer>(buffer: T, op: ReduceOp = 'sum'): T {
    this.#sync(`allReduce of ${buffer.length} ${typeName(buffer)} (${op})`, KIND.allReduce, buffer, OPS[op], 0);
    return buffer;
  }

  /** Copies `root`'s `buffer` into every rank's, in place; resolves with the same buffer. */
  broadcast<T extends CollectiveBuffer>(buffer: T, root = 0): Promise<T> {
    this.#checkRoot(root);
    return this.#async(`broadcast of ${buffer.length} ${typeName(buffer)} from rank ${root}`, KIND.broadcast, buffer, 0, root) as Promise<T>;
  }

  /** Resolves once every rank has called it. */
  async barrier(): Promise<void> {
    await this.#async('barrier', KIND.barrier, null, 0, 0);
  }

  /** `root`'s value (any JSON), on every rank; other ranks' `value` is ignored. */
  async broadcastObject<T>(value: T, root = 0): Promise<T> {
    const bytes = this.rank === root ? new TextEncoder().encode(JSON.stringify(value ?? null)) : new Uint8Array(0);
    const length = await this.broadcast(Int32Array.of(bytes.length), root);
    const buffer = this.rank === root ? bytes : new Uint8Array(length[0]);
    await this.broadcast(buffer, root);
    return JSON.parse(new TextDecoder().decode(buffer)) as T;
  }

  /** Ends MPI for this process (after every rank's last collective). Nothing may run afterwards. */
  finalize(): void {
    if (this.#finalized || this.#stuck) return;
    this.#failure = null;
    this.#sync('finalize', KIND.finalize, null, 0, 0);
    this.#finalized = true;
  }

  /** Whether `finalize()` ran. */
  get finalized(): boolean {
    return this.#finalized;
  }

  /**
   * The ranks known to be gone: those on this host whose process no longer exists. Ranks on other
   * hosts cannot be checked from here.
   */
  lostPeers(): PeerInfo[] {
    return this.peers.filter((p) => p.rank !== this.rank && p.host === this.#host && !alive(p.pid));
  }

  /** A message naming the lost ranks, for a collective that `what` describes. */
  describeLoss(what: string): string {
    const who = `rank ${this.rank} of ${this.worldSize}`;
    const lost = this.lostPeers();
    if (lost.length) {
      const names = lost.map((p) => `rank ${p.rank} (pid ${p.pid} on ${p.host})`).join(', ');
      return `${who}: lost ${names}: its process is gone (killed or crashed) while this rank waited in ${what}`;
    }
    const remote = this.peers.filter((p) => p.host !== this.#host).map((p) => p.rank);
    return `${who}: no answer within ${this.timeoutSeconds} s in ${what}: ` +
      (remote.length
        ? `every rank on this host is alive, so one of ranks ${remote.join(', ')} (on other hosts) died, hung or is slower than the timeout`
        : 'every rank is alive, so one hung or worked longer than the timeout between collectives (raise it with --dist-timeout or RESIDUAL_DIST_TIMEOUT)');
  }

  #checkRoot(root: number) {
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) throw new DistributedError(`root ${root} is not a rank of ${this.worldSize}`);
  }

  #ready() {
    if (this.#failure) throw this.#failure;
    if (this.#finalized) throw new DistributedError('the process group was finalized; no collective can run after finalize()');
  }

  #fail(e: unknown, what: string): DistributedError {
    const timedOut = (e as { code?: string }).code === 'ETIMEDOUT';
    this.#stuck ||= timedOut;
    const message = timedOut ? this.describeLoss(what) : `rank ${this.rank} of ${this.worldSize}: ${(e as Error).message}`;
    this.#failure = new DistributedError(message);
    return this.#failure;
  }

  #sync(what: string, kind: number, buffer: CollectiveBuffer | null, op: number, root: number): void {
    this.#ready();
    const label = `${what} (collective #${++this.#count})`;
    try {
      this.#mpi.submit(kind, buffer, op, root, true, this.timeoutSeconds * 1000);
    } catch (e) {
      throw this.#fail(e, label);
    }
  }

  async #async(what: string, kind: number, buffer: CollectiveBuffer | null, op: number, root: number): Promise<unknown> {
    this.#ready();
    const label = `${what} (collective #${++this.#count})`;
    const job = this.#mpi.submit(kind, buffer, op, root, false, 0)!;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), this.timeoutSeconds * 1000);
    });
    try {
      return await Promise.race([job, timeout]);
    } catch (e) {
      throw this.#fail(e, label);
    } finally {
      clearTimeout(timer);
    }
  }
}

const typeName = (b: CollectiveBuffer) =>
  b instanceof Float32Array ? 'float32' : b instanceof Float64Array ? 'float64' : b instanceof Int32Array ? 'int32' : 'uint8';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Whether MPI can be used here, and if not, why and what to install. */
export const mpiStatus = (): { available: true } | { available: false; reason: string } => {
  const b = loadBinding();
  return 'binding' in b ? { available: true } : { available: false, reason: b.error };
};

let world: ProcessGroup | null = null;

/** This process's rank (0 before `init()`). */
export let rank = 0;
/** The number of processes (1 before `init()`). */
export let worldSize = 1;

/**
 * Starts MPI (once; later calls return the same group) and exchanges where every rank runs. Under
 * `mpirun` (or Slurm, or the MPI operator) the rank and size come from the launcher; run alone, this
 * process is rank 0 of 1. Throws a `DistributedError` saying what to install when MPI is missing.
 */
export const init = (options: InitOptions = {}): ProcessGroup => {
  if (!world) {
    const b = loadBinding();
    if (!('binding' in b)) throw new DistributedError(b.error);
    world = new ProcessGroup(b.binding, options);
    rank = world.rank;
    worldSize = world.worldSize;
  }
  return world;
};

const need = (): ProcessGroup => {
  if (!world) throw new DistributedError('call init() before any collective');
  return world;
};

/** `allReduce` on the group `init()` made. */
export const allReduce = <T extends CollectiveBuffer>(buffer: T, op: ReduceOp = 'sum'): Promise<T> => need().allReduce(buffer, op);
/** `broadcast` on the group `init()` made. */
export const broadcast = <T extends CollectiveBuffer>(buffer: T, root = 0): Promise<T> => need().broadcast(buffer, root);
/** `barrier` on the group `init()` made. */
export const barrier = (): Promise<void> => need().barrier();
/** Ends MPI for this process, if `init()` started it. */
export const finalize = (): void => world?.finalize();
