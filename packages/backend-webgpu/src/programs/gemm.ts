/**
 * The tiled, register-blocked GEMM skeleton behind matmul and the three convolutions:
 * C[b][m][n] = Σ_k A(b, m, k) · B(b, k, n), where each program supplies how A and B elements are
 * fetched (`loadA`, `loadB`) and C written (`storeC`). A 64×64 tile of C per workgroup of 256
 * invocations, 4×4 per invocation, K in steps of 16 through shared memory. Convolutions fetch
 * straight from the image (implicit GEMM: no im2col buffer).
 *
 * Split-K: with `splits` > 1 the depth is cut into that many chunks, each its own workgroup, and
 * `storeC` sees the chunk in the private `split` (it writes partial sums, which the caller adds up).
 * That keeps a GPU busy when C is small and the depth long (a convolution's filter gradient).
 */
import type { BufferDecl, Program, UniformField } from '../header.js';

/** What a GEMM-shaped program supplies. */
export interface GemmParts {
  /** Identifies the loaders (the skeleton adds its own parameters to the shader key). */
  readonly key: string;
  readonly batch: number;
  readonly rows: number;
  readonly cols: number;
  readonly depth: number;
  readonly inputs: readonly BufferDecl[];
  readonly output: BufferDecl;
  readonly uniforms: readonly UniformField[];
  /** WGSL defining `loadA(b, m, k) -> f32`, `loadB(b, k, n) -> f32` and `storeC(b, m, n, v)`; called in range only. */
  readonly loaders: string;
  /** Along which index A's (B's) consecutive elements sit in memory, so tile loads coalesce. */
  readonly aRuns: 'm' | 'k';
  readonly bRuns: 'k' | 'n';
  /** Depth chunks computed apart (default 1). */
  readonly splits?: number;
}

const WG = 256;
const TILE = 64;

/** The GEMM program of `parts`. */
export const gemmProgram = (parts: GemmParts): Program => {
  const tilesM = Math.ceil(parts.rows / TILE);
  const tilesN = Math.ceil(parts.cols / TILE);
  const splits = parts.splits ?? 1;
  const chunk = Math.ceil(parts.depth / splits / 16) * 16;
  const [am, ak] = parts.aRuns === 'm' ? ['e % BM', 'e / BM'] : ['e / BK', 'e % BK'];
  const [bk, bn] = parts.bRuns === 'n' ? ['e / BN', 'e % BN'] : ['e % BK', 'e / BK'];
  return {
    shaderKey: `gemm|${parts.key}|${parts.aRuns}${parts.bRuns}`,
    workgroupSize: WG,
    dispatch: parts.rows === 0 || parts.cols === 0 ? 0 : parts.batch * tilesM * tilesN * splits,
    inputs: parts.inputs,
    outputs: [parts.output],
    uniforms: [
      { name: 'rows', type: 'u32', value: parts.rows },
      { name: 'cols', type: 'u32', value: parts.cols },
      { name: 'depth', type: 'u32', value: parts.depth },
      { name: 'tilesM', type: 'u32', value: tilesM },
      { name: 'tilesN', type: 'u32', value: tilesN },
      { name: 'batches', type: 'u32', value: parts.batch },
      { name: 'chunk', type: 'u32', value: chunk },
      ...parts.uniforms,
    ],
    code: () => `${parts.loaders}

const BM = ${TILE}u;
const BN = ${TILE}u;
const BK = 16u;
// Tiles as [k][m / 4] and [k][n / 4] of vec4: one shared read gives an invocation its 4 rows (columns).
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;
var<private> split: u32;

fn run(group: u32, lid: u32) {
  let tn = group % u.tilesN;
  let t = group / u.tilesN;
  let tm = t % u.tilesM;
  let b = (t / u.tilesM) % u.batches;
  // A let for the loop bounds (uniformity analysis treats private variables as varying), a private for storeC.
  let chunk = t / (u.tilesM * u.batches);
  split = chunk;
  let k1 = min(u.depth, (chunk + 1u) * u.chunk);
  let m0 = tm * BM;
  let n0 = tn * BN;
  let tx = lid % 16u;
  let ty = lid / 16u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = chunk * u.chunk; k0 < k1; k0 += BK) {
    for (var q = 0u; q < 4u; q++) {
      let e = lid + q * WG;
      let am = ${am};
      let ak = ${ak};
      var va = 0.0;
      if (m0 + am < u.rows && k0 + ak < k1) { va = loadA(b, m0 + am, k0 + ak); }
      As[ak * 16u + am / 4u][am % 4u] = va;
      let bk = ${bk};
      let bn = ${bn};
      var vb = 0.0;
      if (k0 + bk < k1 && n0 + bn < u.cols) { vb = loadB(b, k0 + bk, n0 + bn); }
      Bs[bk * 16u + bn / 4u][bn % 4u] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let a = As[kk * 16u + ty];
      let bv = Bs[kk * 16u + tx];
      acc[0] += a.x * bv;
      acc[1] += a.y * bv;
      acc[2] += a.z * bv;
      acc[3] += a.w * bv;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty * 4u + i;
    if (m >= u.rows) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx * 4u + j;
      if (n < u.cols) { storeC(b, m, n, acc[i][j]); }
    }
  }
}`,
  };
};
