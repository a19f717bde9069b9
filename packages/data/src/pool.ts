import { Worker } from 'node:worker_threads';
import type { BatchItem, DecodedBatch, DecodeOptions } from './decode.js';

/** A batch for a worker to decode. */
export interface Task {
  readonly id: number;
  readonly items: readonly BatchItem[];
}

/** A worker's answer: the batch, or why it could not be made (bad samples are skipped inside it, not errors). */
export type Reply = { readonly id: number; readonly batch: DecodedBatch } | { readonly id: number; readonly error: string };

interface Pending {
  readonly images: number;
  resolve(r: DecodedBatch): void;
  reject(e: Error): void;
}

function startWorker(workerData: DecodeOptions): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./decode-worker.js', import.meta.url), { workerData });
  // Run from source (tests, a workspace resolving the `source` condition) the worker is TypeScript too;
  // Node 20 gives workers none of the parent's loader hooks, so the worker registers tsx's itself.
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const url = JSON.stringify(new URL('./decode-worker.ts', import.meta.url).href);
  return new Worker(`import(${tsx}).then((tsx) => { tsx.register(); return import(${url}); })`, { eval: true, workerData });
}

/** Whether a sample's bytes own their whole buffer, so they can be moved to a worker rather than copied. */
const movable = (b: Uint8Array) => b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;

/**
 * worker_threads that decode whole batches: each worker writes a batch's floats into one array and
 * moves it back, so the main thread never touches pixels and no sample is copied twice. Workers start
 * when the pool is made and stay for every epoch until close(). A worker is ref'd only while it has
 * work, so an idle pool never keeps the process alive; one that dies takes the pool down with a
 * clear error rather than leaving its batches hanging.
 */
export class DecodePool {
  private readonly workers: { worker: Worker; pending: Map<number, Pending>; images: number }[];
  private nextId = 0;
  private broken: Error | undefined;
  /** Resolves once every worker has loaded its modules (sharp loads later, at the first encoded image): start-up, apart from decoding. */
  readonly ready: Promise<void>;

  constructor(size: number, options: DecodeOptions) {
    const started: Promise<void>[] = [];
    this.workers = Array.from({ length: size }, () => {
      const slot = { worker: startWorker(options), pending: new Map<number, Pending>(), images: 0 };
      slot.worker.unref();
      started.push(new Promise((resolve) => slot.worker.once('message', () => resolve())));
      slot.worker.on('message', (reply: Reply | 'ready') => {
        if (reply === 'ready') return;
        const p = slot.pending.get(reply.id)!;
        slot.pending.delete(reply.id);
        slot.images -= p.images;
        if (slot.pending.size === 0) slot.worker.unref();
        if ('batch' in reply) p.resolve(reply.batch);
        else p.reject(new Error(reply.error));
      });
      const die = (e: Error) => {
        this.broken ??= new Error(`decode worker failed: ${e.message}`);
        for (const p of slot.pending.values()) p.reject(this.broken);
        slot.pending.clear();
      };
      slot.worker.on('error', die);
      slot.worker.on('exit', (code) => die(new Error(`exited with code ${code}`)));
      return slot;
    });
    this.ready = Promise.all(started).then(() => {});
    this.ready.catch(() => {});
  }

  /** Decodes a batch on the worker with the fewest images waiting; sample bytes are moved, not copied. */
  run(items: readonly BatchItem[]): Promise<DecodedBatch> {
    if (this.broken) return Promise.reject(this.broken);
    const slot = this.workers.reduce((a, b) => (b.images < a.images ? b : a));
    const id = this.nextId++;
    const moved = items.flatMap(({ image }) => {
      const bytes = typeof image === 'string' ? undefined : image.kind === 'encoded' ? image.bytes : image.pixels;
      return bytes && movable(bytes) ? [bytes.buffer as ArrayBuffer] : [];
    });
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { images: items.length, resolve, reject });
      slot.images += items.length;
      slot.worker.ref();
      slot.worker.postMessage({ id, items } satisfies Task, [...new Set(moved)]);
    });
  }

  /** Ends every worker; batches still being decoded are rejected. */
  async close(): Promise<void> {
    this.broken ??= new Error('decode pool closed');
    // Terminating is not awaited: a worker still starting up may never report its exit, and an
    // unref'd worker does not keep the event loop alive anyway, so awaiting could leave the caller's
    // promise unsettled when the loop drains (the process then quits with exit code 13).
    for (const s of this.workers) void s.worker.terminate().catch(() => {});
  }
}
