/**
 * Write locks on byte ranges of items, shared by every protocol of an upload server, so two
 * connections never write the same bytes at once (a second tab, or a socket the client gave up
 * on). The newer writer wins: the holder of an overlapping lock is asked to stop, lets its started
 * writes finish, and lets go; the newcomer waits for that, but no longer than the lock timeout,
 * and then gets `locked` (retryable).
 */
import type { ByteRange } from '../../src/protocol/index.js';
import { StoreError } from './file-store.js';

/** Who holds a lock. */
export interface LockHolder {
  /**
   * Asked to stop writing because another connection takes over the bytes: stop taking new
   * bytes, and resolve once the writes already started are done (and the lock released).
   */
  supersede(): void;
}

interface Lock {
  readonly itemId: string;
  readonly range: ByteRange;
  readonly holder: LockHolder;
  /** Resolves when the lock is released. */
  readonly released: Promise<void>;
  release(): void;
}

/** @internal The write locks of one upload server. */
export class ItemLocks {
  readonly #timeoutMs: number;
  readonly #locks = new Map<string, Set<Lock>>();

  /** @param timeoutMs the longest a newcomer waits for the holders it supersedes */
  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /** Whether any range of the item is locked. */
  held(itemId: string): boolean {
    return (this.#locks.get(itemId)?.size ?? 0) > 0;
  }

  /**
   * Locks a whole item unless someone holds a lock on it, superseding no one; a writer that
   * comes meanwhile supersedes this lock (which does nothing) and waits for its release.
   * @returns a function that releases the lock, or `undefined` when the item is locked
   */
  async tryAcquire(itemId: string): Promise<(() => void) | undefined> {
    if (this.held(itemId)) return undefined;
    return this.acquire(itemId, { start: 0, end: Number.MAX_SAFE_INTEGER }, { supersede() {} });
  }

  /**
   * Locks `range` of an item for `holder`, superseding the holders of overlapping ranges.
   * @returns a function that releases the lock (calling it twice is harmless)
   * @throws {StoreError} `locked` when a superseded holder did not let go in time
   */
  async acquire(itemId: string, range: ByteRange, holder: LockHolder): Promise<() => void> {
    let set = this.#locks.get(itemId);
    if (!set) this.#locks.set(itemId, (set = new Set()));
    const rivals = [...set].filter(
      (l) => l.holder !== holder && l.range.start < range.end && range.start < l.range.end,
    );
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const lock: Lock = {
      itemId,
      range,
      holder,
      released,
      release: () => {
        const mine = this.#locks.get(itemId);
        if (mine?.delete(lock) && mine.size === 0) this.#locks.delete(itemId);
        release();
      },
    };
    set.add(lock);
    if (rivals.length === 0) return lock.release;
    for (const rival of rivals) rival.holder.supersede();
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([
      Promise.all(rivals.map((r) => r.released)).then(() => true),
      new Promise<boolean>(
        (resolve) => (timer = setTimeout(() => resolve(false), this.#timeoutMs)),
      ),
    ]);
    clearTimeout(timer);
    if (!inTime || !set.has(lock)) {
      lock.release();
      throw new StoreError(
        'locked',
        `another connection is still writing item ${itemId}; try again later`,
      );
    }
    return lock.release;
  }
}
