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
import type { Program, UniformField } from '../header.js';

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

/** WGSL ending the forward statistics of channel c from Σ (x - mean)² `q`. */
const finishForward = (q: string) => `let inv = 1.0 / sqrt(${q} / m + u.eps);
    invstdOut[c] = inv;
    coef[c] = gamma[c] * inv;`;

/** WGSL ending the backward statistics of channel c from Σ dy `db` and Σ dy·(x - mean) `dxm`. */
const finishBackward = (db: string, dxm: string) => `let inv = invstd[c];
    let dg = ${dxm} * inv;
    let a = gamma[c] * inv;
    dgamma[c] = dg;
    dbeta[c] = ${db};
    coef[c] = a;
    coef[u.channels + c] = -a * inv * dg / m;
    coef[2u * u.channels + c] = -a * ${db} / m;`;

/** u32 uniforms, and `eps` as f32. */
const uniformsOf = (values: Record<string, number>, eps = 0): UniformField[] => [
  ...Object.entries(values).map(([name, value]) => ({ name, type: 'u32' as const, value })),
  { name: 'eps', type: 'f32', value: eps },
];

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
    uniforms: uniformsOf({ batch, channels, inner, count: batch * inner }, eps),
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
  let sq = groupSum(q, lid);
  if (lid == 0u) {
    meanOut[c] = mu;
    ${finishForward('sq')}
  }`
    : `  let mu = mean[c];
  var sdy = 0.0;
  var sdyx = 0.0;
  ${walk(`sdy += dy[i];
      sdyx += dy[i] * (x[i] - mu);`)}
  let db = groupSum(sdy, lid);
  let dxm = groupSum(sdyx, lid);
  if (lid == 0u) {
    ${finishBackward('db', 'dxm')}
  }`
}
}`,
  };
};

/**
 * For a batch too large to bind at once, the statistics in parts: per chunk of the batch, the
 * per-channel sums one pass needs ('sum': Σ x; 'sqdev': Σ (x - mean)²; 'grad': Σ dy and
 * Σ dy·(x - mean)), written to row `slot` of `part` [chunks, sums, C]; `batchNormFinishProgram`
 * then adds the rows up.
 */
export const batchNormPartialProgram = (kind: 'sum' | 'sqdev' | 'grad', batch: number, channels: number, inner: number, slot: number): Program => ({
  shaderKey: `batchNorm|partial|${kind}`,
  workgroupSize: WG,
  dispatch: channels,
  inputs: (kind === 'sum' ? ['x'] : kind === 'sqdev' ? ['x', 'mean'] : ['dy', 'x', 'mean']).map((name) => ({ name, type: 'f32' as const })),
  outputs: [{ name: 'part', type: 'f32' }],
  uniforms: uniformsOf({ batch, channels, inner, slot }),
  groupReductions: true,
  code: () => `fn run(group: u32, lid: u32) {
  let c = group;
${
  kind === 'grad'
    ? `  let mu = mean[c];
  var s0 = 0.0;
  var s1 = 0.0;
  ${walk(`s0 += dy[i];
      s1 += dy[i] * (x[i] - mu);`)}
  let t0 = groupSum(s0, lid);
  let t1 = groupSum(s1, lid);
  if (lid == 0u) {
    part[2u * u.slot * u.channels + c] = t0;
    part[(2u * u.slot + 1u) * u.channels + c] = t1;
  }`
    : `  ${kind === 'sum' ? '' : 'let mu = mean[c];\n  '}var s0 = 0.0;
  ${walk(kind === 'sum' ? 's0 += x[i];' : `let d = x[i] - mu;
      s0 += d * d;`)}
  let t0 = groupSum(s0, lid);
  if (lid == 0u) { part[u.slot * u.channels + c] = t0; }`
}
}`,
});

/**
 * Adds up the `chunks` rows of partial sums (see above), a thread per channel, into the mean
 * ('mean'), or the forward or backward statistics as `batchNormProgram` writes them.
 */
export const batchNormFinishProgram = (kind: 'mean' | 'forward' | 'backward', chunks: number, channels: number, count: number, eps = 0): Program => ({
  shaderKey: `batchNorm|finish|${kind}`,
  workgroupSize: WG,
  dispatch: Math.ceil(channels / WG),
  inputs: (kind === 'mean' ? ['part'] : kind === 'forward' ? ['part', 'mean', 'gamma'] : ['part', 'gamma', 'invstd']).map((name) => ({ name, type: 'f32' as const })),
  outputs: (kind === 'mean' ? ['meanOut'] : kind === 'forward' ? ['invstdOut', 'coef'] : ['dgamma', 'dbeta', 'coef']).map((name) => ({ name, type: 'f32' as const })),
  uniforms: uniformsOf({ chunks, channels, count }, eps),
  code: () => `fn run(group: u32, lid: u32) {
  let c = group * WG + lid;
  if (c >= u.channels) { return; }
  let m = f32(u.count);
  var s0 = 0.0;
${
  kind === 'backward'
    ? `  var s1 = 0.0;
  for (var j = 0u; j < u.chunks; j++) {
    s0 += part[2u * j * u.channels + c];
    s1 += part[(2u * j + 1u) * u.channels + c];
  }`
    : '  for (var j = 0u; j < u.chunks; j++) { s0 += part[j * u.channels + c]; }'
}
  ${kind === 'mean' ? 'meanOut[c] = s0 / m;' : kind === 'forward' ? finishForward('s0') : finishBackward('s0', 's1')}
}`,
});
