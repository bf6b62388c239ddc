/**
 * The SHA-256 of an item whose parts arrive out of order, computed while they arrive, so the item
 * need not be read back from storage after the download. A part that continues the hash is hashed
 * as soon as it is stored (in the hash Worker, its buffer handed over); a later part is held, up to
 * a bound, until its turn; what was not hashed by the end (parts stored earlier, parts that were
 * not held) is read back from the store then.
 */
import { createSHA256, type IHasher } from 'hash-wasm';
import type { HashWorkerFactory } from '../engine/item-hasher.js';
import type { HashReply, HashRequest } from '../engine/hash-worker.js';

/** Bytes of later parts held for their turn at most. */
const MAX_HELD = 16 * 1024 * 1024;
/** Slice size when reading back from the store. */
const READ_SLICE = 4 * 1024 * 1024;

/** Where the bytes are hashed, in order. */
interface Sink {
  /** Hashes the bytes next; they may be handed over (not used by the caller afterwards). */
  update(bytes: Uint8Array<ArrayBuffer>): void;
  digest(): Promise<Uint8Array>;
  close(): void;
}

/**
 * Hashes an item's parts as they are stored: see the module's description.
 * @internal
 */
export class PartHasher {
  readonly #size: number;
  readonly #read: (start: number, end: number) => Promise<Uint8Array<ArrayBuffer>>;
  readonly #sink: Sink;
  readonly #held = new Map<number, Uint8Array<ArrayBuffer>>();
  #heldBytes = 0;
  #next = 0;

  /**
   * @param size the item's size
   * @param read reads stored bytes of the item back, for what was not offered or held
   * @param worker starts the hash Worker; without one the page's thread hashes
   */
  constructor(
    size: number,
    read: (start: number, end: number) => Promise<Uint8Array<ArrayBuffer>>,
    worker: HashWorkerFactory | undefined,
  ) {
    this.#size = size;
    this.#read = read;
    this.#sink = worker ? workerSink(worker) : threadSink();
  }

  /**
   * A part was stored: hashed now if it continues the hash, held if there is room, else read back
   * at the end.
   * @param start its offset
   * @param bytes its bytes, which the caller no longer uses (they may be handed to the Worker)
   */
  offer(start: number, bytes: Uint8Array<ArrayBuffer>): void {
    if (start !== this.#next) {
      if (start > this.#next && this.#heldBytes + bytes.length <= MAX_HELD) {
        this.#held.set(start, bytes);
        this.#heldBytes += bytes.length;
      }
      return;
    }
    this.#feed(bytes);
    for (let next = this.#held.get(this.#next); next; next = this.#held.get(this.#next)) {
      this.#held.delete(this.#next);
      this.#heldBytes -= next.length;
      this.#feed(next);
    }
  }

  /**
   * The digest, once every part is stored: the bytes not hashed yet are read back first.
   * @throws {Error} (as a rejection) when the store cannot give them back or the Worker failed
   */
  async digest(): Promise<Uint8Array> {
    while (this.#next < this.#size) {
      const held = this.#held.get(this.#next);
      if (held) {
        this.#held.delete(this.#next);
        this.#heldBytes -= held.length;
        this.#feed(held);
        continue;
      }
      // Up to the next held part, if there is one soon.
      let end = Math.min(this.#size, this.#next + READ_SLICE);
      for (const at of this.#held.keys()) if (at > this.#next && at < end) end = at;
      this.#feed(await this.#read(this.#next, end));
    }
    return this.#sink.digest();
  }

  /** Stops the Worker, for a download given up. */
  close(): void {
    this.#sink.close();
    this.#held.clear();
  }

  #feed(bytes: Uint8Array<ArrayBuffer>): void {
    this.#next += bytes.length;
    this.#sink.update(bytes);
  }
}

/** Hashes on the page's thread. */
function threadSink(): Sink {
  let hasher: Promise<IHasher> = createSHA256().then((h) => {
    h.init();
    return h;
  });
  return {
    update(bytes) {
      hasher = hasher.then((h) => h.update(bytes));
    },
    digest: () => hasher.then((h) => h.digest('binary')),
    close: () => undefined,
  };
}

/** Hashes in the hash Worker, the bytes' buffers handed over (transferred, not copied). */
function workerSink(factory: HashWorkerFactory): Sink {
  const worker = factory();
  let failed: Error | undefined;
  let settle: ((reply: HashReply) => void) | undefined;
  const fail = (error: Error): void => {
    failed ??= error;
    settle?.({ error: failed.message });
    worker.terminate();
  };
  worker.onmessage = (event: MessageEvent<HashReply>) => settle?.(event.data);
  worker.onerror = (event) => {
    // A script that failed to load or run: not the page's error.
    event.preventDefault();
    fail(new Error(event.message || 'the hash Worker could not start'));
  };
  worker.onmessageerror = () => fail(new Error('the hash Worker answered unreadably'));
  const post = (request: HashRequest, transfer: Transferable[] = []): void => {
    if (!failed) worker.postMessage(request, transfer);
  };
  return {
    update(bytes) {
      // A view of part of a buffer is copied first, so only its bytes travel.
      const own =
        bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
          ? bytes
          : bytes.slice();
      post({ chunk: own }, [own.buffer]);
    },
    digest() {
      return new Promise<Uint8Array>((resolve, reject) => {
        if (failed) {
          reject(failed);
          return;
        }
        settle = (reply) => {
          worker.terminate();
          if ('digest' in reply) resolve(reply.digest);
          else reject(new Error(reply.error));
        };
        post({ end: true });
      });
    },
    close: () => fail(new Error('hashing stopped')),
  };
}
