/**
 * The SHA-256 of an item's prefix, fed with the bytes of each write as they are stored, so that
 * completing the item reads little back from disk. Bytes that arrive ahead of a gap (HTTP parts
 * sent side by side, say) are held, within a budget shared by every item of a store, and fed once
 * the gap fills.
 */
import { createHash, type Hash } from 'node:crypto';

/**
 * Bytes held ahead of a gap over every item of a store, at most, by default: on a long link the
 * engine sends three HTTP parts side by side (each about a second of the rate), and what ends
 * within three quarters of it ({@link AHEAD_SPAN_SHARE}) past the digest's place is held: the
 * next part of 16 MiB and the start of the one after; on a short link it sends its parts one
 * after another, and only the overlap of one part with the next is held.
 */
export const DIGEST_AHEAD_BYTES = 32 * 1024 * 1024;

/**
 * Bytes are held only when they end within this share of the bound past the digest's place: the
 * part side by side with the one it waits for does, and the start of the one after. A split's
 * next stripe (16 MiB, every other one on a server of two) ends 32 MiB past the digest's place:
 * held whole before, a stripe this server never joins up stayed in memory until the item
 * completed, and a split's servers went past 150 MiB RSS; now at most its first 8 MiB are.
 */
export const AHEAD_SPAN_SHARE = 0.75;

/** A digest that took no room for this long lets its held bytes go when another needs the room. */
export const AHEAD_IDLE_MS = 2000;

/**
 * The bytes that running digests hold ahead of their gaps, over all of them, bounded. Held bytes
 * are only a cache (they are stored, and can be read back), so an item whose upload stopped must
 * not keep the room from the others: when one digest needs room, digests that took none for
 * {@link AHEAD_IDLE_MS} let their held bytes go. Digests still taking room keep theirs, so two
 * items uploading at once do not take the room from each other in turn.
 * @internal
 */
export class AheadBudget {
  readonly #limit: number;
  readonly #now: () => number;
  #used = 0;
  /** Digests holding bytes, by when they last took room, the least recent first. */
  readonly #holders = new Map<RunningDigest, number>();

  readonly #span: number;

  /**
   * @param limit bytes held over every digest, at most (0: none)
   * @param now the clock, in ms
   * @param span how far past a digest's place held bytes may end
   *   (default {@link AHEAD_SPAN_SHARE} of `limit`)
   */
  constructor(
    limit: number,
    now: () => number = () => performance.now(),
    span = limit * AHEAD_SPAN_SHARE,
  ) {
    this.#limit = limit;
    this.#now = now;
    this.#span = span;
  }

  /** How far past a digest's place held bytes may end. */
  get span(): number {
    return this.#span;
  }

  /** Bytes held now, over every digest. */
  get used(): number {
    return this.#used;
  }

  /** Bytes held over every digest, at most. */
  get limit(): number {
    return this.#limit;
  }

  /**
   * Room for `bytes` more held by `digest`, made where needed by letting idle digests' held bytes
   * go, least recent first: only when that makes the room (else nothing is let go for nothing).
   * @returns whether the bytes may be held
   */
  take(digest: RunningDigest, bytes: number): boolean {
    if (bytes > this.#limit) return false;
    const now = this.#now();
    if (this.#used + bytes > this.#limit) {
      const idle: RunningDigest[] = [];
      let freed = 0;
      for (const [other, since] of this.#holders) {
        if (this.#used - freed + bytes <= this.#limit || now - since < AHEAD_IDLE_MS) break;
        if (other === digest) continue;
        idle.push(other);
        freed += other.heldBytes;
      }
      if (this.#used - freed + bytes > this.#limit) return false;
      for (const other of idle) other.drop();
    }
    this.#used += bytes;
    this.#touch(digest, now);
    return true;
  }

  /** `digest` is in use (it was fed bytes): not idle, whatever it holds. */
  busy(digest: RunningDigest): void {
    if (this.#holders.has(digest)) this.#touch(digest, this.#now());
  }

  #touch(digest: RunningDigest, now: number): void {
    this.#holders.delete(digest);
    this.#holders.set(digest, now);
  }

  /** Gives back `bytes` that `digest` held; `none` when it holds nothing more. */
  give(digest: RunningDigest, bytes: number, none: boolean): void {
    this.#used -= bytes;
    if (none) this.#holders.delete(digest);
  }
}

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
  readonly #budget: AheadBudget;
  /** The last update scheduled; updates run in order. */
  #last: Promise<void> = Promise.resolve();
  /** Bytes to feed at the next update, in order: one update takes all offered until it runs. */
  readonly #queue: Uint8Array[] = [];
  /** Given away by {@link RunningDigest.take}: offers are ignored. */
  #taken = false;

  /** @param budget bounds the bytes held ahead of a gap, shared with other digests */
  constructor(budget: AheadBudget = new AheadBudget(DIGEST_AHEAD_BYTES)) {
    this.#budget = budget;
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
   * Offers bytes just stored at `start`: {@link offerParts} of one part.
   */
  offer(start: number, bytes: Uint8Array): void {
    this.offerParts(start, [bytes]);
  }

  /**
   * Offers the parts of one write, stored one after another from `start`. Bytes at `hashedTo` are
   * fed, with any held bytes they now reach. A write past it is held, all of it or none (held in
   * part, the digest's place would stop inside a stored chunk, from which the store does not
   * catch up until the item completes), while the bound allows and when it ends within
   * {@link AheadBudget.span} past `hashedTo` (the parts side by side with the one the digest
   * waits for; not a stripe of a split past it, whose gap this server may never fill); the
   * caller must not change held bytes. Bytes before `hashedTo` were fed already.
   */
  offerParts(start: number, parts: readonly Uint8Array[]): void {
    let length = 0;
    for (const part of parts) length += part.length;
    if (this.#taken || length === 0 || start + length <= this.#to) return;
    if (start > this.#to) {
      if (start + length - this.#to > this.#budget.span) return;
      const offsets: number[] = [];
      let at = start;
      for (const part of parts) {
        offsets.push(at);
        at += part.length;
      }
      // Bytes held at one of these places already: these are not held again.
      if (offsets.some((o) => this.#ahead.has(o)) || !this.#budget.take(this, length)) return;
      parts.forEach((part, i) => {
        if (part.length > 0) this.#ahead.set(offsets[i]!, part);
      });
      this.#aheadBytes += length;
      return;
    }
    let at = start;
    for (const part of parts) {
      this.#feed(at, part);
      at += part.length;
    }
  }

  /** Feeds bytes at `start`, no later than `hashedTo`: what is new of them, and the held after. */
  #feed(start: number, bytes: Uint8Array): void {
    if (bytes.length === 0 || start + bytes.length <= this.#to) return;
    if (this.#aheadBytes > 0) this.#budget.busy(this);
    const run = [bytes.subarray(this.#to - start)];
    this.#to = start + bytes.length;
    for (let next = this.#take(this.#to); next; next = this.#take(this.#to)) {
      run.push(next);
      this.#to += next.length;
    }
    // Held bytes the run passed over (the same bytes sent again, cut otherwise) are let go; what
    // they had past the run is read back at completion.
    for (const [at, held] of this.#ahead) if (at < this.#to) this.#let(at, held);
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

  /** Lets the held bytes go (they are read back from disk when the digest reaches them). */
  drop(): void {
    if (this.#aheadBytes > 0) this.#budget.give(this, this.#aheadBytes, true);
    this.#ahead.clear();
    this.#aheadBytes = 0;
  }

  #take(at: number): Uint8Array | undefined {
    const held = this.#ahead.get(at);
    if (held) this.#let(at, held);
    return held;
  }

  #let(at: number, held: Uint8Array): void {
    this.#ahead.delete(at);
    this.#aheadBytes -= held.length;
    this.#budget.give(this, held.length, this.#ahead.size === 0);
  }
}
