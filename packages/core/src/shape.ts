/** Shapes: validation and broadcasting, written once for every op. */

/** A tensor's dimensions, outermost first. */
export type Shape = readonly number[];

/** Raised when shapes or dtypes do not fit an op; the message names the op and the shapes. */
export class ShapeError extends Error {
  override name = 'ShapeError';
}

/** Number of elements of a shape (1 for a scalar). */
export const sizeOf = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

/** Row-major strides of a contiguous tensor. */
export const stridesOf = (shape: Shape): number[] => {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
};

/** The NumPy broadcast of two shapes; `op` names the caller in the error. */
export const broadcastShapes = (a: Shape, b: Shape, op = 'broadcast'): number[] => {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new ShapeError(`${op}: shapes [${a.join(', ')}] and [${b.join(', ')}] cannot be broadcast (axis ${i}: ${da} vs ${db})`);
    out[i] = da === 1 ? db : da;
  }
  return out;
};

/** Checks that every entry is a non-negative integer; names `what` in the error. */
export const checkShape = (shape: Shape, what = 'shape'): void => {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0))
    throw new ShapeError(`${what} must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
};

/** Normalises a possibly negative axis against a rank. */
export const normAxis = (axis: number, rank: number, op: string): number => {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new ShapeError(`${op}: axis ${axis} out of range for rank ${rank}`);
  return a;
};

/** Shapes equal element by element. */
export const shapesEqual = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * For each axis of `target` that `from` was broadcast along (absent or size 1 -> larger),
 * the axes to sum a gradient of shape `target` over to get back to `from`.
 */
export const broadcastReductionAxes = (from: Shape, target: Shape): number[] => {
  const axes: number[] = [];
  const off = target.length - from.length;
  for (let i = 0; i < target.length; i++) {
    const d = i < off ? 1 : from[i - off];
    if (i < off || (d === 1 && target[i] !== 1)) axes.push(i);
  }
  return axes;
};
