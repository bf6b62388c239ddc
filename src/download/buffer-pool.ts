/**
 * Buffers of one size, used again. Fresh memory for every piece of a download (a response body's
 * own pieces, a copy) costs more than writing and hashing the piece: the browser maps it, zeroes
 * it and collects it again, for every byte downloaded.
 */

/** Size of the buffers a download's bodies are read into, unless told otherwise. */
export const POOL_BUFFER = 4 * 1024 * 1024;
/** Buffers kept for use again, at most, unless told otherwise. */
const KEPT = 16;

/** @internal */
export class BufferPool {
  /** Bytes of each buffer. */
  readonly size: number;
  readonly #kept: ArrayBuffer[] = [];
  readonly #keep: number;

  /**
   * @param size bytes of each buffer
   * @param keep buffers kept for use again, at most (the rest are left to the collector)
   */
  constructor(size = POOL_BUFFER, keep = KEPT) {
    this.size = size;
    this.#keep = keep;
  }

  /** Buffers waiting to be used again. */
  get kept(): number {
    return this.#kept.length;
  }

  /** A buffer of `size` bytes: one given back, else a new one. */
  take(): ArrayBuffer {
    return this.#kept.pop() ?? new ArrayBuffer(this.size);
  }

  /**
   * A buffer nobody uses any more. Kept when it is one of this pool's size (any buffer may be
   * given: others, and buffers moved to another thread, are ignored) and there is room.
   */
  give(buffer: ArrayBufferLike): void {
    if (
      buffer instanceof ArrayBuffer &&
      buffer.byteLength === this.size &&
      this.#kept.length < this.#keep &&
      !this.#kept.includes(buffer)
    )
      this.#kept.push(buffer);
  }
}
