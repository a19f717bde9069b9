import { Wasm, fmaSupported } from '../../packages/backend-cpu/dist/wasm.js';
import { matmul } from '../../packages/backend-cpu/dist/gemm.js';
const w = new Wasm({ threads: 2, fma: fmaSupported(), onGrow: () => {} });
await w.start();
const m = 128, n = 128, k = 128;
const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
const b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i));
const c = new Float32Array(m * n);
const t0 = Date.now();
let junk = [];
for (let i = 0; ; i++) {
  matmul(w, a, [m, k], false, b, [k, n], false, c, [m, n]);
  junk.push(new Float32Array(1000 + (i % 7)));
  if (junk.length > 2000) junk = [];
  if (i % 20000 === 0) console.log(i, (Date.now() - t0) / 1000);
}
