/** A source of uniform numbers in [0, 1). */
export type Rand = () => number;

/** murmur3's 32-bit finaliser: a bijection that spreads every input bit over the output. */
function mix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * A generator whose whole stream is a pure function of its keys (non-negative safe integers), e.g.
 * (seed, epoch, sample index): any worker, in any order, draws the same numbers for the same sample.
 */
export function keyedRandom(...keys: number[]): Rand {
  let state = 0x243f6a88;
  for (const key of keys) {
    state = mix(state ^ (key >>> 0));
    state = mix(state ^ Math.floor(key / 2 ** 32));
  }
  let counter = 0;
  // A Weyl sequence through the finaliser (as splitmix does): cheap, and no state to carry between samples.
  return () => mix((state + Math.imul(++counter, 0x9e3779b9)) >>> 0) / 2 ** 32;
}

/** A uniform integer in [lo, hi], both ends included. */
export function randInt(rand: Rand, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** The integers 0..n-1 in an order drawn from `rand` (Fisher-Yates). */
export function permutation(n: number, rand: Rand): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = randInt(rand, 0, i);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}
