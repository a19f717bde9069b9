/**
 * Batch-norm's per-channel statistics, a workgroup per channel, reduced in shared memory. The
 * elementwise part (normalising, with the forward's fused residual and ReLU, or the input gradient)
 * is then one elementwise map whose per-channel coefficients this program writes to `coef`.
 *
 * forward:  mean, invstd = 1/sqrt(biased var + eps) (two passes: the mean, then squares about it),
 *           coef = gamma·invstd, so y = (x - mean)·coef + beta.
 * backward: dbeta = Σ dy, dgamma = invstd·Σ dy·(x - mean), and coef = [a, b, c] with
 *           dx = a·dy + b·(x - mean) + c, a = gamma·invstd, b = -a·invstd·dgamma/M, c = -a·dbeta/M.
 *
 * The backward of the fused epilogue (y = relu(gamma·x̂ + beta + residual)) happens in the same walk:
 * dy is masked by the forward's output `y` as it is read, and where the forward added a residual
 * that masked dy, the residual's gradient, is written to `dres` as it goes by.
 */
import type { Program, UniformField } from '../header.js';

/** The epilogue the forward applied, as the backward sees it: a ReLU to undo, a residual whose gradient to write. */
export interface BatchNormEpilogue {
  readonly relu: boolean;
  readonly residual: boolean;
}

const PLAIN: BatchNormEpilogue = { relu: false, residual: false };

/** Bindings the epilogue adds to a backward pass: the forward's output read, the residual's gradient written. */
const epilogueBindings = (e: BatchNormEpilogue) => ({
  inputs: e.relu ? [{ name: 'y', type: 'f32' as const }] : [],
  outputs: e.residual ? [{ name: 'dres', type: 'f32' as const }] : [],
});

/** WGSL binding `g`, the gradient at the affine map's output for element i: dy masked where relu, stored to dres where residual. */
const gradAt = (e: BatchNormEpilogue): string =>
  `let g = ${e.relu ? 'reluGrad(y[i], dy[i])' : 'dy[i]'};${e.residual ? '\n      dres[i] = g;' : ''}`;

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

/**
 * The statistics program over x [N, C, ...] viewed as [batch, channels, inner]; backward, with the
 * forward's epilogue `e` (inputs dy, x, gamma, mean, invstd, then y where relu; outputs dgamma,
 * dbeta, coef, then dres where residual).
 */
export const batchNormProgram = (mode: 'forward' | 'backward', batch: number, channels: number, inner: number, eps = 0, e = PLAIN): Program => {
  const forward = mode === 'forward';
  const extra = epilogueBindings(forward ? PLAIN : e);
  return {
    shaderKey: `batchNorm|${mode}${forward ? '' : `|${e.relu}|${e.residual}`}`,
    workgroupSize: WG,
    dispatch: channels,
    inputs: [
      ...(forward ? ['x', 'gamma'] : ['dy', 'x', 'gamma', 'mean', 'invstd']).map((name) => ({ name, type: 'f32' as const })),
      ...extra.inputs,
    ],
    outputs: [...(forward ? ['meanOut', 'invstdOut', 'coef'] : ['dgamma', 'dbeta', 'coef']).map((name) => ({ name, type: 'f32' as const })), ...extra.outputs],
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
  ${walk(`${gradAt(e)}
      sdy += g;
      sdyx += g * (x[i] - mu);`)}
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
 * Σ dy·(x - mean), dy masked and dres written as `e` says), written to row `slot` of `part`
 * [chunks, sums, C]; `batchNormFinishProgram` then adds the rows up. Inputs: x, mean, or dy, x, mean
 * (then y where relu); outputs: part (then dres where residual).
 */
export const batchNormPartialProgram = (
  kind: 'sum' | 'sqdev' | 'grad', batch: number, channels: number, inner: number, slot: number, e = PLAIN,
): Program => ({
  shaderKey: `batchNorm|partial|${kind}${kind === 'grad' ? `|${e.relu}|${e.residual}` : ''}`,
  workgroupSize: WG,
  dispatch: channels,
  inputs: [
    ...(kind === 'sum' ? ['x'] : kind === 'sqdev' ? ['x', 'mean'] : ['dy', 'x', 'mean']).map((name) => ({ name, type: 'f32' as const })),
    ...epilogueBindings(kind === 'grad' ? e : PLAIN).inputs,
  ],
  outputs: [{ name: 'part', type: 'f32' }, ...epilogueBindings(kind === 'grad' ? e : PLAIN).outputs],
  uniforms: uniformsOf({ batch, channels, inner, slot }),
  groupReductions: true,
  code: () => `fn run(group: u32, lid: u32) {
  let c = group;
${
  kind === 'grad'
    ? `  let mu = mean[c];
  var s0 = 0.0;
  var s1 = 0.0;
  ${walk(`${gradAt(e)}
      s0 += g;
      s1 += g * (x[i] - mu);`)}
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
