/**
 * Transformed weights kept between calls in the kernels' memory: the Winograd filter transforms of
 * forward convolutions, which inference redid on every call for weights that never change.
 *
 * An entry belongs to one weight storage and one transform, and holds it for one version of the
 * storage's contents (`TensorView.version`). Core draws versions from one process-wide counter, at
 * every new storage and every in-place write (`sgdUpdate`, `assign`), and never reuses one, so a
 * version names one set of contents forever: an entry is used only when the version asked for is its
 * own, and it can never be stale, whatever happens to the storage or to the memory under it. An
 * entry left behind by an update (its version will not come back) is released at the storage's next
 * call; a freed storage's entries at the next call of any.
 */
import type { Wasm } from './wasm.js';

/** The weights a transform is made from: their storage (`freed` once freed) and the version of its contents. */
export interface WeightSource {
  readonly owner: { readonly freed: boolean };
  readonly version: number;
}

type Owner = WeightSource['owner'];

interface Entry {
  version: number;
  /** The transform, in the kernels' memory; null while this version has been asked for only once. */
  data: Float32Array | null;
}

/** At most this many weight storages are followed; past it the least recently used is dropped. */
const MAX_OWNERS = 1024;

/**
 * Transforms of weights, at most `limitBytes` of them. A transform is kept from the second call with
 * the same contents on, so training, which changes the weights after every use, never pays for a
 * copy. Past the limit no new transform is kept (the caller makes it as scratch, as without a
 * cache): evicting the least recently used would keep none of a model that cycles through more
 * than the limit, where keeping the first ones keeps as many as fit.
 */
export class TransformCache {
  // Transforms by tag, per storage, least recently used storage first.
  readonly #owners = new Map<Owner, Map<number, Entry>>();
  #bytes = 0;

  constructor(
    readonly wasm: Wasm,
    readonly limitBytes: number,
  ) {}

  /** Bytes of transforms held. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The byte address of transform `tag` (`floats` long) of `source`'s weights, kept from an earlier
   * call or made now by `make(address)`; 0 when it is not kept, and the caller makes it itself.
   */
  get(source: WeightSource, tag: number, floats: number, make: (at: number) => void): number {
    const { owner, version } = source;
    // A view made by hand without a version cannot be told apart from the storage's next contents.
    if (!Number.isSafeInteger(version)) return 0;
    for (const o of this.#owners.keys()) if (o.freed) this.#drop(o);
    const tags = this.#owners.get(owner) ?? new Map<number, Entry>();
    this.#owners.delete(owner);
    this.#owners.set(owner, tags);
    // Other versions of these weights are gone for good.
    for (const [t, e] of tags) if (e.version !== version) this.#release(tags, t, e);
    const e = tags.get(tag);
    if (!e) {
      tags.set(tag, { version, data: null });
      if (this.#owners.size > MAX_OWNERS) this.#drop(this.#owners.keys().next().value!);
      return 0;
    }
    if (e.data) return e.data.byteOffset;
    if (this.#bytes + floats * 4 > this.limitBytes) return 0;
    const data = this.wasm.allocate('f32', floats) as Float32Array | null;
    if (!data) return 0;
    make(data.byteOffset);
    e.data = data;
    this.#bytes += data.byteLength;
    return data.byteOffset;
  }

  #drop(owner: Owner): void {
    const tags = this.#owners.get(owner)!;
    for (const [t, e] of tags) this.#release(tags, t, e);
    this.#owners.delete(owner);
  }

  #release(tags: Map<number, Entry>, tag: number, e: Entry): void {
    if (e.data) {
      this.wasm.release(e.data);
      this.#bytes -= e.data.byteLength;
    }
    tags.delete(tag);
  }
}
