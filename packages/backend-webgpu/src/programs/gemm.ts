/**
 * The GEMM skeleton behind matmul and the three convolutions: C[b][m][n] = Σ_k A(b, m, k) · B(b, k, n),
 * where each program supplies how A and B elements are fetched (`loadA`, `loadB`) and C written
 * (`storeC`). Convolutions fetch straight from the image (implicit GEMM: no im2col buffer).
 *
 * Two kernels, one per kind of device (the package README has the measurements behind the choice):
 * - 'shared-tiles' (GPUs): a 64×64 tile of C per workgroup of 256 invocations, 4×4 per invocation,
 *   K in steps of 16 staged through workgroup memory.
 * - 'subgroup-strips' (CPU Vulkan drivers such as lavapipe, which run a subgroup as the lanes of one
 *   SIMD register and pay a scalar loop over the lanes for every storage load): each invocation owns
 *   a strip of up to 32 rows × 16 columns in registers and reads B straight from memory (16 bytes at a
 *   time where the program offers `loadB4`); the rows of A are the same for the whole workgroup, so
 *   lane i of each subgroup loads row i of every group of 8 and `subgroupBroadcast` shares it, which
 *   cuts the loads of A eightfold. No workgroup memory and no barriers, which such drivers pay dearly.
 *
 * Split-K: with `splits` > 1 the depth is cut into that many chunks, each its own workgroup, and
 * `storeC` sees the chunk in the private `split` (it writes partial sums, which the caller adds up).
 * That keeps a device busy when C is small and the depth long (a convolution's filter gradient).
 */
import type { BufferDecl, Program, UniformField } from '../header.js';

/** The GEMM kernel a device runs (see above). */
export type GemmKernel = 'shared-tiles' | 'subgroup-strips';

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
  /**
   * WGSL defining how positions decode, once each (a column per invocation before the depth loop, a
   * depth step once for all the loads of that step): `depOf(b, k) -> Dep` and `colOf(b, n) -> Col`
   * (types the program declares, or aliases of u32); and the accesses `loadA(b, m, d: Dep) -> f32`,
   * `loadB(b, d: Dep, c: Col) -> f32` and `storeC(b, m, c: Col, v: f32)`, called in range only. With
   * `vectorB`, `loadB4(b, d: Dep, c: Col) -> vec4<f32>` (columns n..n+3 of colOf(b, n), n a multiple
   * of 4, cols a multiple of 4) replaces `loadB` on the 'subgroup-strips' kernel.
   */
  readonly loaders: string;
  /** Along which index A's (B's) consecutive elements sit in memory, so tile loads coalesce. */
  readonly aRuns: 'm' | 'k';
  readonly bRuns: 'k' | 'n';
  /** The loaders define `loadB4` (see `loaders`). */
  readonly vectorB?: boolean;
  /** Depth chunks computed apart (default 1). */
  readonly splits?: number;
}

/** Rows × columns of C one workgroup computes. */
export const gemmTile = (kernel: GemmKernel, rows: number): [number, number] =>
  kernel === 'shared-tiles' ? [64, 64] : [stripRows(rows), STRIP_WG * 16];

const STRIP_WG = 16;
/** Rows per strip: 32 (the measured best), fewer for shorter C, always whole subgroup broadcasts of 8. */
const stripRows = (rows: number): number => Math.min(32, Math.ceil(rows / 8) * 8) || 8;

/** The GEMM program of `parts` on `kernel`. */
export const gemmProgram = (parts: GemmParts, kernel: GemmKernel): Program => {
  const [tileM, tileN] = gemmTile(kernel, parts.rows);
  const tilesM = Math.ceil(parts.rows / tileM);
  const tilesN = Math.ceil(parts.cols / tileN);
  const splits = parts.splits ?? 1;
  const chunk = Math.ceil(parts.depth / splits / 16) * 16;
  const strips = kernel === 'subgroup-strips';
  const vectorB = strips && parts.vectorB === true;
  return {
    shaderKey: `gemm|${kernel}|${tileM}|${parts.key}|${parts.aRuns}${parts.bRuns}|${vectorB}`,
    workgroupSize: strips ? STRIP_WG : 256,
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
    subgroups: strips,
    code: () => `${parts.loaders}

var<private> split: u32;

${strips ? stripsBody(tileM, vectorB) : sharedTilesBody(parts)}`,
  };
};

/** The workgroup's place: its batch, tile origin and depth range (a let for the loop bound, a private for storeC). */
const PLACE = `let tn = group % u.tilesN;
  let t = group / u.tilesN;
  let tm = t % u.tilesM;
  let b = (t / u.tilesM) % u.batches;
  let chunk = t / (u.tilesM * u.batches);
  split = chunk;
  let k0 = chunk * u.chunk;
  let k1 = min(u.depth, (chunk + 1u) * u.chunk);`;

const sharedTilesBody = (parts: GemmParts): string => {
  const [am, ak] = parts.aRuns === 'm' ? ['e % BM', 'e / BM'] : ['e / BK', 'e % BK'];
  const [bk, bn] = parts.bRuns === 'n' ? ['e / BN', 'e % BN'] : ['e % BK', 'e / BK'];
  return `const BM = 64u;
const BN = 64u;
const BK = 16u;
// Tiles as [k][m / 4] and [k][n / 4] of vec4: one shared read gives an invocation its 4 rows (columns).
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

fn run(group: u32, lid: u32) {
  ${PLACE}
  let m0 = tm * BM;
  let n0 = tn * BN;
  let tx = lid % 16u;
  let ty = lid / 16u;
  // Element q of the invocation's share of each tile sits at the same row / column in every step.
  var colsB: array<Col, 4>;
  for (var q = 0u; q < 4u; q++) {
    let e = lid + q * WG;
    colsB[q] = colOf(b, n0 + ${bn});
  }
  var acc: array<vec4<f32>, 4>;
  for (var kt = k0; kt < k1; kt += BK) {
    for (var q = 0u; q < 4u; q++) {
      let e = lid + q * WG;
      let am = ${am};
      let ak = ${ak};
      var va = 0.0;
      if (m0 + am < u.rows && kt + ak < k1) { va = loadA(b, m0 + am, depOf(b, kt + ak)); }
      As[ak * 16u + am / 4u][am % 4u] = va;
      let bk = ${bk};
      let bn = ${bn};
      var vb = 0.0;
      if (kt + bk < k1 && n0 + bn < u.cols) { vb = loadB(b, depOf(b, kt + bk), colsB[q]); }
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
      if (n < u.cols) { storeC(b, m, colOf(b, n), acc[i][j]); }
    }
  }
}`;
};

/** Unrolled, so every accumulator is its own register (a dynamically indexed array would live in memory). */
const each = (count: number, line: (i: number) => string, sep = '\n    '): string => Array.from({ length: count }, (_, i) => line(i)).join(sep);

const stripsBody = (tileM: number, vectorB: boolean): string => {
  const fetchB = vectorB
    ? `fn fetchB(b: u32, d: Dep, c: Col, n: u32) -> vec4<f32> {
  if (n >= u.cols) { return vec4<f32>(); }
  return loadB4(b, d, c);
}`
    : `fn fetchB1(b: u32, d: Dep, c: Col, n: u32) -> f32 {
  if (n >= u.cols) { return 0.0; }
  return loadB(b, d, c);
}`;
  const loadsB = vectorB
    ? each(4, (j) => `let b${j} = fetchB(b, d, c${4 * j}, n0 + ${4 * j}u);`)
    : each(4, (j) => `let b${j} = vec4<f32>(${each(4, (q) => `fetchB1(b, d, c${4 * j + q}, n0 + ${4 * j + q}u)`, ', ')});`);
  // acc{i}_{j}: row i, columns 4j..4j+3 of the invocation's strip.
  return `${fetchB}
fn fetchA(b: u32, m: u32, d: Dep) -> f32 {
  if (m >= u.rows) { return 0.0; }
  return loadA(b, m, d);
}

fn run(group: u32, lid: u32) {
  ${PLACE}
  let m0 = tm * ${tileM}u;
  let n0 = (tn * WG + lid) * 16u;
  let mine = m0 + lane % 8u;
  ${each(16, (j) => `let c${j} = colOf(b, n0 + ${j}u);`)}
  ${each(tileM * 4, (x) => `var acc${x >> 2}_${x & 3} = vec4<f32>();`)}
  for (var k = k0; k < k1; k++) {
    let d = depOf(b, k);
    ${each(tileM / 8, (h) => `let a${h} = fetchA(b, mine + ${8 * h}u, d);`)}
    ${loadsB}
    ${each(tileM, (i) => `let r${i} = subgroupBroadcast(a${i >> 3}, ${i & 7}u);\n    ${each(4, (j) => `acc${i}_${j} += r${i} * b${j};`, ' ')}`)}
  }
  // Through a private array, so the stores are a loop over rows rather than thousands of unrolled lane loops (compile time).
  var out: array<vec4<f32>, ${tileM * 4}>;
  ${each(tileM * 4, (x) => `out[${x}] = acc${x >> 2}_${x & 3};`, '\n  ')}
  for (var i = 0u; i < ${tileM}u; i++) {
    let m = m0 + i;
    if (m >= u.rows) { break; }
    ${each(16, (j) => `if (n0 + ${j}u < u.cols) { storeC(b, m, c${j}, out[i * 4u + ${j >> 2}u][${j & 3}]); }`)}
  }
}`;
};
