// Run by the tests under mpirun: every collective on odd sizes and 100 MB buffers, each result
// checked element by element against its closed form. Prints one JSON line per rank.
import { allReduce, barrier, broadcast, finalize, init } from '../dist/index.js';

const g = init();
const { rank: r, worldSize: n } = g;
const checks = {};
const expectEvery = (name, buffer, want) => {
  for (let i = 0; i < buffer.length; i++)
    if (buffer[i] !== want(i)) return (checks[name] = `element ${i}: got ${buffer[i]}, want ${want(i)}`);
  checks[name] = 'ok';
};
// Values that are exact in float32, so sums in any order give the same bits.
const v = (rank, i) => (rank + 1) * ((i % 13) - 6) + (i % 7);
const sumOf = (i) => { let s = 0; for (let k = 0; k < n; k++) s += v(k, i); return s; };

for (const size of [1, 7, 1023, 100_003]) {
  const a = Float32Array.from({ length: size }, (_, i) => v(r, i));
  expectEvery(`sum f32 ${size}`, await allReduce(a, 'sum'), sumOf);
  const m = Float32Array.from({ length: size }, (_, i) => v(r, i) * n);
  expectEvery(`mean f32 ${size}`, await allReduce(m, 'mean'), sumOf);
  expectEvery(`max i32 ${size}`, await g.allReduce(Int32Array.from({ length: size }, (_, i) => v(r, i)), 'max'), (i) => Math.max(...Array.from({ length: n }, (_, k) => v(k, i))));
  expectEvery(`min f64 ${size}`, await g.allReduce(Float64Array.from({ length: size }, (_, i) => v(r, i) + 0.25), 'min'), (i) => Math.min(...Array.from({ length: n }, (_, k) => v(k, i))) + 0.25);
  const root = size % n;
  const b = Float32Array.from({ length: size }, (_, i) => (r === root ? i * 0.5 + 1 : -1));
  expectEvery(`broadcast f32 ${size} from ${root}`, await broadcast(b, root), (i) => i * 0.5 + 1);
  expectEvery(`sync sum f32 ${size}`, g.allReduceSync(Float32Array.from({ length: size }, (_, i) => v(r, i))), sumOf);
}

// 100 MB: 26,214,400 float32 values, reduced in place (the same array comes back).
const big = new Float32Array(26_214_400);
for (let i = 0; i < big.length; i++) big[i] = (r + 1) * (i % 1000);
const back = await allReduce(big);
checks['100MB in place'] = back === big ? 'ok' : 'a different array came back';
expectEvery('100MB sum', big, (i) => ((n * (n + 1)) / 2) * (i % 1000));
big.fill(r === n - 1 ? 3.5 : 0);
expectEvery('100MB broadcast', await broadcast(big, n - 1), () => 3.5);

await barrier();
const obj = await g.broadcastObject(r === 0 ? { hello: 'from 0', list: [1, 2, 3] } : null);
checks.broadcastObject = JSON.stringify(obj) === '{"hello":"from 0","list":[1,2,3]}' ? 'ok' : JSON.stringify(obj);
checks.peers = g.peers.length === n && g.peers[r].pid === process.pid && g.peers.every((p, k) => p.rank === k && p.pid > 0) ? 'ok' : JSON.stringify(g.peers);
// Several collectives in flight at once finish in order, each with its own result.
const inflight = await Promise.all(Array.from({ length: 8 }, (_, k) => allReduce(Float32Array.of(k, r))));
checks.inflight = inflight.every((a, k) => a[0] === k * n && a[1] === (n * (n - 1)) / 2) ? 'ok' : JSON.stringify(inflight.map((a) => [...a]));
finalize();
console.log(JSON.stringify({ rank: r, worldSize: n, localRank: g.localRank, engine: g.engine, checks }));
