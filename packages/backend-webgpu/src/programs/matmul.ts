/** Batched matmul on the GEMM skeleton: batch dims broadcast through strides, transposes in the loaders. */
import type { Shape } from '@residual/core';
import type { Program } from '../header.js';
import { broadcastView } from '../views.js';
import { gemmProgram, type GemmKernel } from './gemm.js';

/** The program of a [..., M, K] · b [..., K, N] (before transposes) into `outShape`. */
export const matmulProgram = (aShape: Shape, bShape: Shape, transA: boolean, transB: boolean, outShape: Shape, kernel: GemmKernel): Program => {
  const [m, n] = outShape.slice(-2);
  const depth = transA ? aShape.at(-2)! : aShape.at(-1)!;
  const batchShape = outShape.slice(0, -2);
  // Batch strides in whole matrices, scaled to elements.
  const batchStrides = (shape: Shape, matrix: number) => broadcastView(shape.slice(0, -2), batchShape).strides.map((s) => s * matrix);
  // Rows of B read 16 bytes at a time: every row (and every matrix, a whole number of rows) starts 16-byte aligned.
  const vectorB = kernel === 'subgroup-strips' && !transB && n % 4 === 0;
  return gemmProgram(
    {
      key: `matmul|${transA}|${transB}|${batchShape.length}`,
      batch: batchShape.reduce((p, d) => p * d, 1),
      rows: m,
      cols: n,
      depth,
      inputs: [
        { name: 'lhs', type: 'f32' },
        { name: 'rhs', type: vectorB ? 'vec4<f32>' : 'f32' },
      ],
      output: { name: 'res', type: 'f32' },
      uniforms: [
        { name: 'shape', type: 'u32', value: batchShape },
        { name: 'strides', type: 'u32', value: [...batchStrides(aShape, m * depth), ...batchStrides(bShape, depth * n)] },
      ],
      loaders: `alias Dep = u32;
alias Col = u32;
fn depOf(b: u32, k: u32) -> u32 { return k; }
fn colOf(b: u32, n: u32) -> u32 { return n; }
fn loadA(b: u32, m: u32, k: u32) -> f32 { return lhs[stridedOffset(b, 0u) + ${transA ? 'k * u.rows + m' : 'm * u.depth + k'}]; }
${
  vectorB
    ? 'fn loadB4(b: u32, k: u32, n: u32) -> vec4<f32> { return rhs[(stridedOffset(b, 1u) + k * u.cols + n) / 4u]; }'
    : `fn loadB(b: u32, k: u32, n: u32) -> f32 { return rhs[stridedOffset(b, 1u) + ${transB ? 'n * u.depth + k' : 'k * u.cols + n'}]; }`
}
fn storeC(b: u32, m: u32, n: u32, v: f32) { res[(b * u.rows + m) * u.cols + n] = v; }`,
      aRuns: transA ? 'm' : 'k',
      bRuns: transB ? 'k' : 'n',
      vectorB,
    },
    kernel,
  );
};
