/**
 * Batch-norm's per-channel statistics, a workgroup per channel, reduced in shared memory. The
 * elementwise part (normalising, or the input gradient) is then one elementwise map whose
 * per-channel coefficients this program writes to `coef`.
 *
 * forward:  mean, invstd = 1/sqrt(biased var + eps) (two passes: the mean, then squares about it),
 *           coef = gamma·invstd, so y = (x - mean)·coef + beta.
 * backward: dbeta = Σ dy, dgamma = invstd·Σ dy·(x - mean), and coef = [a, b, c] with
 *           dx = a·dy + b·(x - mean) + c, a = gamma·invstd, b = -a·invstd·dgamma/M, c = -a·dbeta/M.
 */
import type { Program } from '../header.js';

const WG = 256;

/**
 * WGSL visiting this invocation's elements of channel c (every WG-th of the channel's N·inner) with
 * `body` seeing their index i. The (n, j) position steps forward by WG without a division per element.
 */
const walk = (body: string): string => `{
    // An empty channel (inner 0) has nothing to visit.
    var n = select(u.batch, lid / u.inner, u.inner > 0u);
    var j = lid % u.inner;
    loop {
      if (n >= u.batch) { break; }
      let i = (n * u.channels + c) * u.inner + j;
      ${body}
      j += WG % u.inner;
      n += WG / u.inner;
      if (j >= u.inner) {
        j -= u.inner;
        n += 1u;
      }
    }
  }`;

/** The statistics program over x [N, C, ...] viewed as [batch, channels, inner]. */
export const batchNormProgram = (mode: 'forward' | 'backward', batch: number, channels: number, inner: number, eps = 0): Program => {
  const forward = mode === 'forward';
  return {
    shaderKey: `batchNorm|${mode}`,
    workgroupSize: WG,
    dispatch: channels,
    inputs: forward
      ? [{ name: 'x', type: 'f32' }, { name: 'gamma', type: 'f32' }]
      : ['dy', 'x', 'gamma', 'mean', 'invstd'].map((name) => ({ name, type: 'f32' as const })),
    outputs: (forward ? ['meanOut', 'invstdOut', 'coef'] : ['dgamma', 'dbeta', 'coef']).map((name) => ({ name, type: 'f32' as const })),
    uniforms: [
      { name: 'batch', type: 'u32', value: batch },
      { name: 'channels', type: 'u32', value: channels },
      { name: 'inner', type: 'u32', value: inner },
      { name: 'count', type: 'u32', value: batch * inner },
      { name: 'eps', type: 'f32', value: eps },
    ],
    groupReductions: true,
    code: () => `fn run(group: u32, lid: u32) {
  let c = group;
  let m = f32(u.count);
${
  forward
    ? `  var s = 0.0;
  ${walk('s += x[i];')}
  let mu = groupSum(s, lid) / m;
  var q = 0.0;
  ${walk(`let d = x[i] - mu;
      q += d * d;`)}
  let inv = 1.0 / sqrt(groupSum(q, lid) / m + u.eps);
  if (lid == 0u) {
    meanOut[c] = mu;
    invstdOut[c] = inv;
    coef[c] = gamma[c] * inv;
  }`
    : `  let mu = mean[c];
  var sdy = 0.0;
  var sdyx = 0.0;
  ${walk(`sdy += dy[i];
      sdyx += dy[i] * (x[i] - mu);`)}
  let db = groupSum(sdy, lid);
  let dxm = groupSum(sdyx, lid);
  if (lid == 0u) {
    let inv = invstd[c];
    let dg = dxm * inv;
    let a = gamma[c] * inv;
    dgamma[c] = dg;
    dbeta[c] = db;
    coef[c] = a;
    coef[u.channels + c] = -a * inv * dg / m;
    coef[2u * u.channels + c] = -a * db / m;
  }`
}
}`,
  };
};
