/**
 * Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
 * counter-based generator, so any element of a random tensor can be computed on its own and every
 * backend draws the same numbers for the same (seed, counter).
 *
 * Element i of a draw whose first block is `counter`:
 * - uniform: word (i mod 4) of block (counter + floor(i / 4)), as (u + 0.5) / 2^32 in (0, 1);
 * - normal: Box-Muller on words (2j, 2j + 1), j = i mod 2, of block (counter + floor(i / 2)):
 *   sqrt(-2 ln u1) * cos(2 pi u2).
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two u32. */
export const mulhi32 = (a: number, b: number): number => {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const m1 = ah * bl + ((al * bl) >>> 16);
  const m2 = al * bh + (m1 & 0xffff);
  return (ah * bh + Math.floor(m1 / 65536) + Math.floor(m2 / 65536)) >>> 0;
};

/** One Philox 4x32-10 block: 4 counter words and 2 key words in, 4 random u32 words out. */
export const philox4x32 = (
  c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array | number[] = new Uint32Array(4),
): Uint32Array | number[] => {
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi32(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
};

const TWO_NEG_32 = 2 ** -32;
/** A u32 as a float in the open interval (0, 1). */
export const u32ToUnit = (u: number): number => (u + 0.5) * TWO_NEG_32;

/** Adds `n` to a 64-bit counter given as [lo, hi] words. */
export const addCounter = (counter: readonly [number, number], n: number): [number, number] => {
  const lo = counter[0] + (n % 4294967296);
  const carry = Math.floor(lo / 4294967296) + Math.floor(n / 4294967296);
  return [lo >>> 0, (counter[1] + carry) >>> 0];
};

/** Philox blocks a draw of `size` elements consumes. */
export const blocksFor = (dist: 'uniform' | 'normal', size: number): number => Math.ceil(size / (dist === 'uniform' ? 4 : 2));

/**
 * Fills `out` with the draw described above; the reference every backend's randomFill matches.
 * `a`, `b`: low/high for uniform, mean/std for normal.
 */
export const philoxFill = (
  out: Float32Array, dist: 'uniform' | 'normal', seed: readonly [number, number], counter: readonly [number, number], a: number, b: number,
): Float32Array => {
  const block = new Uint32Array(4);
  const n = out.length;
  const per = dist === 'uniform' ? 4 : 2;
  for (let base = 0, blk = 0; base < n; base += per, blk++) {
    const [lo, hi] = addCounter(counter, blk);
    philox4x32(lo, hi, 0, 0, seed[0], seed[1], block);
    if (dist === 'uniform') {
      for (let j = 0; j < 4 && base + j < n; j++) out[base + j] = a + (b - a) * u32ToUnit(block[j]);
    } else {
      for (let j = 0; j < 2 && base + j < n; j++) {
        const u1 = u32ToUnit(block[2 * j]);
        const u2 = u32ToUnit(block[2 * j + 1]);
        out[base + j] = a + b * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      }
    }
  }
  return out;
};
