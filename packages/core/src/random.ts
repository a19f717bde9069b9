/** The global random generator: a Philox key and a counter that advances with every draw. */
import { addCounter, blocksFor } from './philox.js';

/** A generator's whole state; save it in a checkpoint to resume draws exactly. */
export interface RngState {
  readonly key: readonly [number, number];
  readonly counter: readonly [number, number];
}

const keyOf = (seed: number): [number, number] => {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative safe integer, got ${seed}`);
  return [seed >>> 0, Math.floor(seed / 4294967296) >>> 0];
};

let state: RngState = { key: keyOf(0x5eed), counter: [0, 0] };

/** Seeds the global generator (PyTorch's `torch.manual_seed`). */
export const manualSeed = (seed: number): void => {
  state = { key: keyOf(seed), counter: [0, 0] };
};

/** The global generator's state. */
export const getRngState = (): RngState => ({ key: [...state.key], counter: [...state.counter] }) as RngState;

/** Restores a state from `getRngState()`. */
export const setRngState = (s: RngState): void => {
  state = { key: [s.key[0] >>> 0, s.key[1] >>> 0], counter: [s.counter[0] >>> 0, s.counter[1] >>> 0] };
};

/**
 * Reserves the Philox blocks of one draw: with an explicit seed, a fresh stream from counter 0;
 * otherwise the next blocks of the global generator.
 */
export const nextDraw = (dist: 'uniform' | 'normal', size: number, seed?: number): RngState => {
  if (seed !== undefined) return { key: keyOf(seed), counter: [0, 0] };
  const draw = state;
  state = { key: state.key, counter: addCounter(state.counter, blocksFor(dist, size)) };
  return draw;
};
