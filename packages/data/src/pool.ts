import { Worker } from 'node:worker_threads';
import type { DecodeOptions, Decoded } from './decode.js';

/** One image for a worker to decode: a file, or its bytes (from a shard). */
export interface Task {
  readonly id: number;
  readonly image: string | Uint8Array;
  readonly epoch: number;
  readonly index: number;
}

/** A worker's answer: the sample, or why it could not be decoded. */
export type Reply = { readonly id: number; readonly decoded: Decoded } | { readonly id: number; readonly reason: string };

interface Pending {
  resolve(r: Decoded | string): void;
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

/**
 * worker_threads that decode files. A worker is ref'd only while it has work, so an idle pool never
 * keeps the process alive. A worker that dies takes the pool down with a clear error rather than
 * leaving its tasks hanging.
 */
export class DecodePool {
  private readonly workers: { worker: Worker; pending: Map<number, Pending> }[];
  private nextId = 0;
  private broken: Error | undefined;

  constructor(size: number, options: DecodeOptions) {
    this.workers = Array.from({ length: size }, () => {
      const slot = { worker: startWorker(options), pending: new Map<number, Pending>() };
      slot.worker.unref();
      slot.worker.on('message', (reply: Reply) => {
        const p = slot.pending.get(reply.id)!;
        slot.pending.delete(reply.id);
        if (slot.pending.size === 0) slot.worker.unref();
        p.resolve('decoded' in reply ? reply.decoded : reply.reason);
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
  }

  /** Decodes one image on the least busy worker (bytes are moved, not copied); resolves to the reason when it is bad data. */
  run(image: string | Uint8Array, epoch: number, index: number): Promise<Decoded | string> {
    if (this.broken) return Promise.reject(this.broken);
    const slot = this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.ref();
      // Bytes that own their whole buffer are moved; a view into a larger one is copied.
      const own = typeof image !== 'string' && image.buffer instanceof ArrayBuffer && image.byteLength === image.buffer.byteLength;
      slot.worker.postMessage({ id, image, epoch, index } satisfies Task, own ? [image.buffer as ArrayBuffer] : []);
    });
  }

  /** Ends every worker; tasks still running are rejected. */
  async close(): Promise<void> {
    this.broken ??= new Error('decode pool closed');
    // Terminating is not awaited: a worker still starting up may never report its exit, and an
    // unref'd worker does not keep the event loop alive anyway, so awaiting could leave the caller's
    // promise unsettled when the loop drains (the process then quits with exit code 13).
    for (const s of this.workers) void s.worker.terminate().catch(() => {});
  }
}
