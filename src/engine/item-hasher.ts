/**
 * SHA-256 of a whole item computed as a stream, never holding the item in memory. Where the page
 * reads the bytes it sends, in order (one `dup/2` or `dup/1` server), they are hashed on the
 * page's thread as they go by, and whatever was not read (a resumed upload) is read in slices at
 * the end: a second reader of the file would cost more than it saves. Where the browser streams
 * the bytes from the file itself (HTTP parts) or the order is broken (several servers at once), a
 * large item is hashed from the start in a Worker (`hash-worker.ts`) that reads the file itself;
 * where no Worker starts (no script at its URL, a Content-Security-Policy without `worker-src`),
 * the page's thread does it.
 */
import { createSHA256, type IHasher } from 'hash-wasm';
import type { HashReply, HashRequest } from './hash-worker.js';

/** Slice size for the bytes the scheduler did not read. */
const READ_SLICE = 4 * 1024 * 1024;

/** Smallest item hashed in a Worker: below it, starting one costs more than it saves. */
export const HASH_WORKER_MIN = 8 * 1024 * 1024;

/** Starts a hash Worker (see `EngineOptions.hashWorker`). */
export type HashWorkerFactory = () => Worker;

/**
 * The hash Worker factory for the `hashWorker` option: `hash-worker.js` next to this module (or
 * next to the bundle), a script URL given by the page, or none.
 * @internal
 */
export function hashWorkerFactory(option: boolean | string | URL): HashWorkerFactory | undefined {
  if (option === false || typeof Worker === 'undefined') return undefined;
  return () =>
    new Worker(option === true ? new URL('./hash-worker.js', import.meta.url) : option, {
      type: 'module',
      name: 'ws-uploader-hash',
    });
}

/** @internal */
export class ItemHasher {
  readonly #blob: Blob;
  readonly #hasher: Promise<IHasher>;
  #worker: HashWorkerFactory | undefined;
  #running: { worker: Worker; fail(error: Error): void } | undefined;
  #next = 0;
  #digest: Promise<Uint8Array> | undefined;
  #closed = false;

  /**
   * @param blob the whole item
   * @param worker starts a hash Worker for `ahead()`; without it (or for an item under
   *   `HASH_WORKER_MIN`) the page's thread hashes
   */
  constructor(blob: Blob, worker?: HashWorkerFactory) {
    this.#blob = blob;
    this.#worker = worker && blob.size >= HASH_WORKER_MIN ? worker : undefined;
    this.#hasher = createSHA256().then((h) => {
      h.init();
      return h;
    });
  }

  /**
   * Offers bytes read at an offset; only the bytes that continue the hash are used (none once the
   * digest is under way).
   * @returns a promise to await before reusing `bytes`
   */
  async update(offset: number, bytes: Uint8Array): Promise<void> {
    if (this.#digest || offset > this.#next || offset + bytes.length <= this.#next) return;
    const hasher = await this.#hasher;
    if (this.#digest || offset > this.#next || offset + bytes.length <= this.#next) return;
    hasher.update(bytes.subarray(this.#next - offset));
    this.#next = offset + bytes.length;
  }

  /**
   * Starts the digest now, alongside the sending, for a sender that does not read the bytes it
   * sends in order (`Blob` bodies, several servers at once): in a Worker for a large item, where
   * one starts, else on the page's thread.
   */
  ahead(): void {
    const worker = this.#worker;
    this.#digest ??= worker
      ? this.#inWorker(worker).catch((error: unknown) => {
          if (this.#closed) throw error;
          // No Worker here after all: the page's thread hashes.
          this.#worker = undefined;
          return this.#onThread();
        })
      : this.#onThread();
    this.#retryable(this.#digest);
  }

  /** Whether the digest is being computed in a Worker (or was). */
  get inWorker(): boolean {
    return this.#worker !== undefined && this.#digest !== undefined;
  }

  /** The digest of the whole item: what `ahead()` started, or the offered bytes and the rest. */
  digest(): Promise<Uint8Array> {
    this.#digest ??= this.#onThread();
    this.#retryable(this.#digest);
    return this.#digest;
  }

  #retryable(digest: Promise<Uint8Array>): void {
    // A failed read (a file that cannot be read for a moment) is tried again by the next call,
    // from where the hash got to.
    digest.catch(() => {
      if (this.#digest === digest) this.#digest = undefined;
    });
  }

  /** Stops a running hash Worker, for an item no longer sent; a pending `digest()` fails. */
  close(): void {
    this.#closed = true;
    this.#running?.fail(new Error('hashing stopped'));
  }

  #inWorker(factory: HashWorkerFactory): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const worker = factory();
      const settle = (): void => {
        worker.terminate();
        this.#running = undefined;
      };
      const fail = (error: Error): void => {
        settle();
        reject(error);
      };
      this.#running = { worker, fail };
      worker.onmessage = (event: MessageEvent<HashReply>) => {
        settle();
        if ('digest' in event.data) resolve(event.data.digest);
        else reject(new Error(event.data.error));
      };
      worker.onerror = (event) => {
        // A script that failed to load or run: not the page's error.
        event.preventDefault();
        fail(new Error(event.message || 'the hash Worker could not start'));
      };
      worker.onmessageerror = () => fail(new Error('the hash Worker answered unreadably'));
      worker.postMessage({ blob: this.#blob } satisfies HashRequest);
    });
  }

  async #onThread(): Promise<Uint8Array> {
    if (this.#closed) throw new Error('hashing stopped');
    const hasher = await this.#hasher;
    const size = this.#blob.size;
    // One slice read ahead of the one being hashed.
    const read = (at: number): Promise<ArrayBuffer> | undefined =>
      at < size ? this.#blob.slice(at, Math.min(size, at + READ_SLICE)).arrayBuffer() : undefined;
    let next = read(this.#next);
    while (next) {
      const bytes = new Uint8Array(await next);
      next = read(this.#next + bytes.length);
      next?.catch(() => undefined);
      hasher.update(bytes);
      this.#next += bytes.length;
    }
    return hasher.digest('binary');
  }
}
