/**
 * Buffer pool keyed by size class. A training step allocates the same sizes every time, so after
 * the first step every allocation is a pool hit and no GPU buffer is created.
 */

/**
 * The size class of a request: at least 256 bytes, then four classes per power of two, so a
 * buffer wastes at most a quarter of its size and nearby sizes share buffers.
 */
export const sizeClass = (bytes: number): number => {
  if (bytes <= 256) return 256;
  const step = 2 ** (Math.floor(Math.log2(bytes - 1)) - 2);
  return Math.ceil(bytes / step) * step;
};

interface Pooled<B> {
  readonly buffer: B;
  /** The submit epoch in which it was freed: commands recorded before that submit may still use it. */
  readonly freedIn: number;
}

/** Free lists per size class over some buffer type B, with byte counts. */
export class BufferPool<B> {
  readonly #free = new Map<number, Pooled<B>[]>();
  #pooledBytes = 0;
  #liveBytes = 0;
  #liveBuffers = 0;

  /** @param destroy releases a buffer for good. */
  constructor(private readonly destroy: (buffer: B) => void) {}

  /**
   * A buffer of `capacity` bytes (a size class), pooled or else made by `create`. With `before`
   * set, only a buffer freed in an epoch earlier than `before` is reused: one that no unsubmitted
   * command can still touch.
   */
  acquire(capacity: number, create: () => B, before = Infinity): B {
    const list = this.#free.get(capacity);
    let buffer: B | undefined;
    if (list?.length) {
      if (before === Infinity) buffer = list.pop()!.buffer;
      else if (list[0].freedIn < before) buffer = list.shift()!.buffer;
    }
    if (buffer !== undefined) this.#pooledBytes -= capacity;
    else buffer = create();
    this.#liveBytes += capacity;
    this.#liveBuffers++;
    return buffer;
  }

  /** Returns a buffer of `capacity` bytes, freed during submit epoch `epoch`, to its free list. */
  release(buffer: B, capacity: number, epoch: number): void {
    this.#liveBytes -= capacity;
    this.#liveBuffers--;
    this.#pooledBytes += capacity;
    let list = this.#free.get(capacity);
    if (!list) this.#free.set(capacity, (list = []));
    list.push({ buffer, freedIn: epoch });
  }

  /** Destroys every pooled (free) buffer. */
  trim(): void {
    for (const list of this.#free.values()) for (const p of list) this.destroy(p.buffer);
    this.#free.clear();
    this.#pooledBytes = 0;
  }

  /** Bytes and buffers handed out, and bytes held in all (handed out plus pooled). */
  get stats(): { liveBytes: number; liveBuffers: number; heldBytes: number } {
    return { liveBytes: this.#liveBytes, liveBuffers: this.#liveBuffers, heldBytes: this.#liveBytes + this.#pooledBytes };
  }
}
