/**
 * The SHA-256 of an item's prefix, fed with the bytes of each write as they are stored, so that
 * completing the item reads little back from disk. Bytes that arrive ahead of a gap (HTTP parts
 * sent side by side, say) are held, up to a bound, and fed once the gap fills.
 */
import { createHash, type Hash } from 'node:crypto';

/** Bytes held ahead of a gap per item, at most, by default; past it they are read back at completion. */
export const HELD_AHEAD_MAX = 1024 * 1024;

/**
 * A running SHA-256 of `[0, hashedTo)` of an item.
 * @internal
 */
export class RunningDigest {
  readonly #hash: Hash = createHash('sha256');
  #to = 0;
  /** Bytes past `#to`, by offset, waiting for the gap before them to fill. */
  readonly #ahead = new Map<number, Uint8Array>();
  #aheadBytes = 0;
  readonly #aheadMax: number;
  /** The last update scheduled; updates run in order. */
  #last: Promise<void> = Promise.resolve();
  /** Bytes to feed at the next update, in order: one update takes all offered until it runs. */
  readonly #queue: Uint8Array[] = [];
  /** Given away by {@link RunningDigest.take}: offers are ignored. */
  #taken = false;

  /** @param aheadMax bytes held ahead of a gap, at most (0: none) */
  constructor(aheadMax = HELD_AHEAD_MAX) {
    this.#aheadMax = aheadMax;
  }

  /** The end of the bytes fed (or scheduled to be). */
  get hashedTo(): number {
    return this.#to;
  }

  /** Bytes held ahead of a gap. */
  get heldBytes(): number {
    return this.#aheadBytes;
  }

  /**
   * Offers bytes just stored at `start`. Bytes at `hashedTo` are fed, with any held bytes they now
   * reach; bytes past it are held while the bound allows (the caller must not change them); bytes
   * before it were fed already.
   */
  offer(start: number, bytes: Uint8Array): void {
    if (this.#taken || bytes.length === 0 || start + bytes.length <= this.#to) return;
    if (start > this.#to) {
      if (!this.#ahead.has(start) && this.#aheadBytes + bytes.length <= this.#aheadMax) {
        this.#ahead.set(start, bytes);
        this.#aheadBytes += bytes.length;
      }
      return;
    }
    const run = [bytes.subarray(this.#to - start)];
    this.#to = start + bytes.length;
    for (let next = this.#take(this.#to); next; next = this.#take(this.#to)) {
      run.push(next);
      this.#to += next.length;
    }
    // Held bytes the run passed over (the same bytes sent again, cut otherwise) are let go; what
    // they had past the run is read back at completion.
    for (const [at, held] of this.#ahead)
      if (at < this.#to) {
        this.#ahead.delete(at);
        this.#aheadBytes -= held.length;
      }
    // Fed once the next write has started, so hashing overlaps with the disk; in order. An update
    // already waiting takes these bytes too (a body's many small buffers make one update).
    const waiting = this.#queue.length > 0;
    this.#queue.push(...run);
    if (waiting) return;
    const hash = this.#hash;
    const queue = this.#queue;
    this.#last = this.#last.then(
      () =>
        new Promise<void>((resolve) =>
          setImmediate(() => {
            for (const b of queue.splice(0)) hash.update(b);
            resolve();
          }),
        ),
    );
  }

  /**
   * Waits for the updates scheduled, and gives the hash to finish (from `hashedTo` on). The
   * digest is used up: offer nothing more.
   */
  async take(): Promise<{ hash: Hash; from: number }> {
    const from = this.#to;
    this.#taken = true;
    this.drop();
    await this.#last;
    return { hash: this.#hash, from };
  }

  /** Lets the held bytes go. */
  drop(): void {
    this.#ahead.clear();
    this.#aheadBytes = 0;
  }

  #take(at: number): Uint8Array | undefined {
    const held = this.#ahead.get(at);
    if (!held) return undefined;
    this.#ahead.delete(at);
    this.#aheadBytes -= held.length;
    return held;
  }
}
