/**
 * How the downloader stores an item's parts and hashes them as they are stored: in the store's
 * Worker where it has one (`OpfsItemStore`, which writes through sync access handles and hashes
 * the bytes it wrote), else on the page's thread through `ItemStore.put()`, the parts then
 * hashed by a `PartHasher` (in the hash Worker, or on the page's thread). The store's Worker also
 * fetches parts itself (HTTP `Range`, `dup/2`), writing each as it streams in.
 */
import type { ByteRange } from '../protocol/ranges.js';
import type { PartSource } from './fetch-part.js';
import type { ItemStore } from './item-store.js';
import type { PartHasher } from './part-hasher.js';

/**
 * Stores one item's parts and computes its SHA-256 from them.
 * @internal
 */
export interface ItemWriter {
  /** Where the parts are written: in the store's Worker, or from the page's thread. */
  readonly thread: 'worker' | 'page';
  /**
   * Stores a part; once this resolves it survives a reload.
   * @param start its offset in the item
   * @param bytes its bytes, which the caller no longer uses: their buffer may be handed over
   */
  put(start: number, bytes: Uint8Array<ArrayBuffer>): Promise<void>;
  /**
   * Where it can, fetches a part from an upload server (over HTTP, a `Range` GET, or `dup/2`) and
   * stores it as it streams in, in the store's Worker, so its bytes never reach the page.
   * @param via how
   * @param source the upload server and its read token
   * @param part the bytes
   * @param signal stops the fetch
   * @param stallMs longest wait for the next piece of an HTTP body, in ms
   * @returns `false` when it could not try (fetch the part and `put()` it)
   * @throws {PartFetchError} (as a rejection) when the upload server's side failed
   * @throws {DOMException} (as a rejection) what the store failed with, or an `AbortError`
   * @throws {Error} (as a rejection) when the store's Worker stopped (crashed) during the fetch
   */
  fetch?(
    via: 'http' | 'dup2',
    source: PartSource,
    part: ByteRange,
    signal: AbortSignal,
    stallMs?: number,
  ): Promise<boolean>;
  /**
   * The item's SHA-256, once every part is stored (bytes not seen are read back first).
   * @throws {Error} (as a rejection) from a writer that hashes nothing
   */
  digest(): Promise<Uint8Array>;
  /** Stops the hashing, for a download that is over or given up. */
  close(): void;
}

/**
 * Parts written by `store.put()` on the page's thread, then offered to `hasher`.
 * @param store where the parts go
 * @param itemId the item
 * @param hasher hashes the parts once stored; without one nothing is hashed
 * @internal
 */
export function pageWriter(store: ItemStore, itemId: string, hasher?: PartHasher): ItemWriter {
  return {
    thread: 'page',
    async put(start, bytes) {
      const end = start + bytes.length;
      await store.put(itemId, start, bytes);
      hasher?.offer(start, bytes); // hands the bytes over
      hasher?.stored(start, end);
    },
    digest: () =>
      hasher ? hasher.digest() : Promise.reject(new Error('this writer hashes nothing')),
    close: () => hasher?.close(),
  };
}
