// Run by the tests under mpirun: ranks that reduce different sizes get an error, not a hang.
import { allReduce, finalize, init } from '../dist/index.js';

const g = init({ timeoutSeconds: 20 });
try {
  await allReduce(new Float32Array(10 + g.rank));
  console.log(JSON.stringify({ rank: g.rank, error: null }));
} catch (e) {
  console.log(JSON.stringify({ rank: g.rank, name: e.name, error: e.message }));
}
finalize();
