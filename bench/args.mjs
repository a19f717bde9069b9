// Flag reading shared by the bench scripts.

/** Reads flags of `values` (node:util parseArgs) as positive integers, naming the flag when one is not. */
export const positiveInts = (values) => (flag) => {
  const n = Number(values[flag]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer, got '${values[flag]}'`);
  return n;
};
