/** Fused softmax cross-entropy with label smoothing, forward and backward, over logits [N, C]. */

/** log Σ exp(row), shifted by the row's maximum so no term overflows. */
const logSumExp = (logits: Float32Array, base: number, classes: number): number => {
  let m = -Infinity;
  for (let j = 0; j < classes; j++) m = Math.max(m, logits[base + j]);
  if (m === -Infinity || m === Infinity) return m;
  let s = 0;
  for (let j = 0; j < classes; j++) s += Math.exp(logits[base + j] - m);
  return m + Math.log(s);
};

const validLabel = (label: number, classes: number): boolean => label >= 0 && label < classes;

/** loss[n] = -(1-s)·log p[label] - (s/C)·Σ_j log p_j; NaN for a label outside [0, C). */
export const softmaxCrossEntropy = (
  logits: Float32Array, labels: Int32Array, classes: number, smoothing: number, loss: Float32Array,
): void => {
  for (let n = 0; n < labels.length; n++) {
    const base = n * classes;
    const label = labels[n];
    if (!validLabel(label, classes)) {
      loss[n] = NaN;
      continue;
    }
    const lse = logSumExp(logits, base, classes);
    let sumLogp = 0;
    if (smoothing !== 0) for (let j = 0; j < classes; j++) sumLogp += logits[base + j] - lse;
    loss[n] = -(1 - smoothing) * (logits[base + label] - lse) - (smoothing / classes) * sumLogp;
  }
};

/** dlogits[n, j] = dloss[n] · (p_j - target_j), target = (1-s)·onehot(label) + s/C; NaN rows for bad labels. */
export const softmaxCrossEntropyBackward = (
  logits: Float32Array, labels: Int32Array, dloss: Float32Array, classes: number, smoothing: number, dlogits: Float32Array,
): void => {
  const uniform = smoothing / classes;
  for (let n = 0; n < labels.length; n++) {
    const base = n * classes;
    const label = labels[n];
    if (!validLabel(label, classes)) {
      dlogits.fill(NaN, base, base + classes);
      continue;
    }
    const lse = logSumExp(logits, base, classes);
    const g = dloss[n];
    for (let j = 0; j < classes; j++) {
      const target = (j === label ? 1 - smoothing : 0) + uniform;
      dlogits[base + j] = g * (Math.exp(logits[base + j] - lse) - target);
    }
  }
};
