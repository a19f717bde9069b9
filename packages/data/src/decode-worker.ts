import { parentPort, workerData } from 'node:worker_threads';
import { decodeFile, type DecodeOptions } from './decode.js';
import type { Reply, Task } from './pool.js';

const options = workerData as DecodeOptions;
const port = parentPort!;
port.on('message', (task: Task) => {
  decodeFile(task.image, task.epoch, task.index, options).then(
    (decoded) => port.postMessage({ id: task.id, decoded } satisfies Reply, [decoded.data.buffer]),
    (e: Error) => port.postMessage({ id: task.id, reason: e.message } satisfies Reply),
  );
});
