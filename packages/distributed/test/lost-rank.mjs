// Run by the tests under `mpirun --enable-recovery` (which lets the job go on when a rank dies):
// the last rank kills itself after one collective; the others must give up within their timeout,
// naming it, instead of waiting forever.
import { allReduce, init } from '../dist/index.js';

const g = init({ timeoutSeconds: Number(process.argv[2]) });
await allReduce(Float32Array.of(1));
if (g.rank === g.worldSize - 1) process.kill(process.pid, 'SIGKILL');
const started = Date.now();
try {
  await allReduce(new Float32Array(1000));
  console.log(JSON.stringify({ rank: g.rank, error: null }));
} catch (e) {
  console.log(JSON.stringify({ rank: g.rank, name: e.name, error: e.message, seconds: (Date.now() - started) / 1000 }));
}
process.exit(1);
