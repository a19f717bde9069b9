/**
 * Fused softmax cross-entropy over logits [N, C], a workgroup per row: the row max, then
 * Σ exp(x - max) (and Σ (x - max) for label smoothing), give log p = x - max - log Σ without
 * overflow. forward: loss = -(1-s)·log p[label] - (s/C)·Σ log p, NaN for a label outside [0, C).
 * backward: dlogits = dloss·(p - target), target = (1-s)·[j = label] + s/C.
 */
import type { Program } from '../header.js';

const WG = 128;

/** The forward (loss per row) or backward (dlogits) program. */
export const softmaxCrossEntropyProgram = (mode: 'forward' | 'backward', rows: number, classes: number, smoothing: number): Program => {
  const forward = mode === 'forward';
  return {
    shaderKey: `softmaxCrossEntropy|${mode}`,
    workgroupSize: WG,
    dispatch: rows,
    inputs: [
      { name: 'logits', type: 'f32' },
      { name: 'labels', type: 'i32' },
      ...(forward ? [] : [{ name: 'dloss', type: 'f32' as const }]),
    ],
    outputs: [{ name: forward ? 'loss' : 'dlogits', type: 'f32' }],
    uniforms: [
      { name: 'classes', type: 'u32', value: classes },
      { name: 'smoothing', type: 'f32', value: smoothing },
    ],
    groupReductions: true,
    code: () => `fn run(group: u32, lid: u32) {
  let base = group * u.classes;
  var mx = lowest();
  for (var j = lid; j < u.classes; j += WG) { mx = maxOf(mx, logits[base + j]); }
  mx = groupMax(mx, lid);
  var se = 0.0;
  var sd = 0.0;
  for (var j = lid; j < u.classes; j += WG) {
    let d = logits[base + j] - mx;
    se += exp(d);
    sd += d;
  }
  let lse = log(groupSum(se, lid));
  let label = labels[group];
  let c = f32(u.classes);
  let s = u.smoothing;
${
  forward
    ? `  let sumLogp = groupSum(sd, lid) - c * lse;
  if (lid == 0u) {
    let valid = label >= 0i && u32(label) < u.classes;
    let logpl = logits[base + select(0u, u32(label), valid)] - mx - lse;
    loss[group] = select(nan(), -(1.0 - s) * logpl - (s / c) * sumLogp, valid);
  }`
    : `  let g = dloss[group];
  for (var j = lid; j < u.classes; j += WG) {
    let want = select(0.0, 1.0 - s, i32(j) == label) + s / c;
    dlogits[base + j] = g * (exp(logits[base + j] - mx - lse) - want);
  }`
}
}`,
  };
};
