import { parentPort, workerData } from 'node:worker_threads';
import { configureSharp, decodeBatch, type DecodeOptions } from './decode.js';
import type { Reply, Task } from './pool.js';

// The pool runs one worker per core, each decoding one image at a time in libvips: more libvips
// threads per image would only contend for the same cores, and no input is ever read twice.
configureSharp((s) => {
  s.concurrency(1);
  s.cache(false);
});
const options = workerData as DecodeOptions;
const port = parentPort!;
port.on('message', (task: Task) => {
  decodeBatch(task.items, options).then(
    (batch) => port.postMessage({ id: task.id, batch } satisfies Reply, [batch.images.buffer]),
    (e: Error) => port.postMessage({ id: task.id, error: e.message } satisfies Reply),
  );
});
port.postMessage('ready');
