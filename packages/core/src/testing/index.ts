/**
 * @residual/core/testing: the backend conformance kit. Every op of the interface, forward and
 * backward, checked on the active backend against a float64 reference and finite differences.
 *
 * ```ts
 * setBackend(createMyBackend());
 * for (const c of conformanceCases({ skip: { 'matmul/large ...': 'why' } }))
 *   (c.skip ? it.skip : it)(c.skip ? `${c.name} (skipped: ${c.skip})` : c.name, () => c.run());
 * ```
 */
import { forwardCases, type ConformanceCase } from './cases.js';
import { gradientCases } from './grad-cases.js';

export type { ConformanceCase } from './cases.js';
export { expectClose, RTOL, Rng, type KitTensor, type Readback, type Tolerance } from './harness.js';
export { createReferenceBackend, type RefStorage } from './reference-backend.js';
export { numericGrad, ref, refTensor, type RefInputs, type RefOp, type RefTensor } from './reference.js';

/** Options of `conformanceCases`. */
export interface ConformanceOptions {
  /** Case name -> why it is skipped on this backend. Every name must exist, so stale skips are caught. */
  readonly skip?: Readonly<Record<string, string>>;
}

/** A case, with the reason it is skipped when the caller listed it. */
export type ListedCase = ConformanceCase & { readonly skip?: string };

/** Every case of the kit, in a stable order, with the caller's skips attached. */
export const conformanceCases = (options: ConformanceOptions = {}): ListedCase[] => {
  const cases = [...forwardCases(), ...gradientCases()];
  const names = new Set<string>();
  for (const c of cases) {
    if (names.has(c.name)) throw new Error(`conformance kit: duplicate case name '${c.name}'`);
    names.add(c.name);
  }
  const skip = options.skip ?? {};
  const unknown = Object.keys(skip).filter((name) => !names.has(name));
  if (unknown.length) throw new Error(`conformanceCases: skip lists unknown case(s): ${unknown.map((n) => `'${n}'`).join(', ')}`);
  const silent = Object.keys(skip).filter((name) => !skip[name].trim());
  if (silent.length) throw new Error(`conformanceCases: skip of ${silent.map((n) => `'${n}'`).join(', ')} gives no reason`);
  return cases.map((c) => (skip[c.name] === undefined ? c : { ...c, skip: skip[c.name] }));
};
