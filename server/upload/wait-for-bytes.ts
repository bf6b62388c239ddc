/**
 * The bounded wait of a reader (`GET /files` or a dup/2 READ) for bytes of an item not stored yet:
 * raise a demand for what is missing, watch the store, give up after `holdMs` or when stopped.
 * @internal
 */
import { covers, missingRanges, type ByteRange } from '../../src/protocol/index.js';
import type { ItemRecord, ItemStore } from './file-store.js';

/** A reader waits for ranges of an item that are not stored yet. */
export interface Demand {
  readonly itemId: string;
  /** The missing ranges the reader asked for, sorted, half-open. */
  readonly ranges: readonly ByteRange[];
}

/** What {@link waitForBytes} waits for, and how long. */
export interface WaitForBytesOptions {
  readonly store: ItemStore;
  readonly itemId: string;
  /** The ranges wanted, each half-open. */
  readonly ranges: readonly ByteRange[];
  /** The item as the reader last looked at it; `undefined` when it was not opened yet. */
  readonly record: ItemRecord | undefined;
  /** The longest wait, in ms. */
  readonly holdMs: number;
  /** Told once, before waiting, of the missing ranges, so they can be asked for first. */
  readonly onDemand?: ((demand: Demand) => void) | undefined;
  /** Ends the wait early (the reader went away): resolves `undefined`. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Waits until every range wanted is stored. Resolves at once with `record` when it already holds
 * them (no demand raised); else raises a demand, watches the store, and looks once more after the
 * watch is installed (bytes stored between the caller's look and the watch would raise no change).
 * Whatever ends the wait removes the watch, the timer and the abort listener.
 * @returns the item's record once the ranges are stored; `undefined` after `holdMs` or when stopped
 */
export function waitForBytes(options: WaitForBytesOptions): Promise<ItemRecord | undefined> {
  const { store, itemId, ranges, record, signal } = options;
  const isReady = (r: ItemRecord): boolean => ranges.every((want) => covers(r.ranges, want));
  if (record && isReady(record)) return Promise.resolve(record);
  options.onDemand?.({
    itemId,
    ranges: ranges.flatMap((want) => missingRanges(want, record?.ranges ?? [])),
  });
  if (signal?.aborted) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let settled = false;
    const done = (value: ItemRecord | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unwatch();
      signal?.removeEventListener('abort', onAbort);
      resolve(value);
    };
    const onAbort = (): void => done(undefined);
    const check = (r: ItemRecord | undefined): void => {
      if (r && isReady(r)) done(r);
    };
    const unwatch = store.watch(itemId, check);
    const timer = setTimeout(() => done(undefined), options.holdMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    // Bytes stored between the caller's look and the watch.
    store.get(itemId).then(check, () => undefined);
  });
}
