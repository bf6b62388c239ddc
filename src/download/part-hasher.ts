/**
 * The SHA-256 of an item whose parts arrive out of order, computed while they arrive, so the item
 * need not be read back from storage after the download. Bytes that continue the hash (a whole
 * part, or a piece of one as it streams in) are hashed at once (in the hash Worker, their buffer
 * handed over); later ones are held, up to a bound, until their turn. Bytes not held are read back
 * from the store when the hash reaches them, once their part is stored (`stored()`), else at the
 * end: parts stored earlier and parts that were not held.
 */
import { addRange, type ByteRange } from '../protocol/ranges.js';
import { createSHA256, type IHasher } from 'hash-wasm';
import type { HashWorkerFactory } from '../engine/item-hasher.js';
import type { HashBack, HashReply, HashRequest } from '../engine/hash-worker.js';

/** Bytes of later parts held for their turn at most, unless the hasher is given another bound. */
const MAX_HELD = 16 * 1024 * 1024;
/** Slice size when reading back from the store. */
const READ_SLICE = 4 * 1024 * 1024;
/** Bytes smaller than this go to the hash Worker gathered into one message of this size. */
const BATCH = 1024 * 1024;

/** Where the bytes are hashed, in order. */
interface Sink {
  /**
   * Hashes the bytes next; they may be handed over (not used by the caller afterwards), and their
   * buffer is released once the sink is done with it.
   */
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
  readonly #maxHeld: number;
  readonly #release: (buffer: ArrayBuffer) => void;
  #next = 0;
  /** Where the hash was when held pieces it went past were last dropped. */
  #swept = 0;
  /** Ranges known to be in the store, merged. */
  #stored: ByteRange[] = [];
  /** Reading stored bytes back to hash them, while the download goes on. */
  #catchingUp: Promise<void> | undefined;
  #failure: unknown;

  /**
   * @param size the item's size
   * @param read reads stored bytes of the item back, for what was not offered or held
   * @param worker starts the hash Worker; without one the page's thread hashes
   * @param maxHeld bytes of later parts held for their turn at most (16 MiB by default)
   * @param release takes each buffer of the bytes offered (and read back) once the hasher is done
   *   with it, to be used again
   */
  constructor(
    size: number,
    read: (start: number, end: number) => Promise<Uint8Array<ArrayBuffer>>,
    worker: HashWorkerFactory | undefined,
    maxHeld = MAX_HELD,
    release: (buffer: ArrayBuffer) => void = () => undefined,
  ) {
    this.#size = size;
    this.#maxHeld = maxHeld;
    this.#read = read;
    this.#release = release;
    this.#sink = worker ? workerSink(worker, release) : threadSink(release);
  }

  /**
   * Bytes of the item were stored, or are being stored: hashed now if they continue the hash, held
   * if there is room, else read back when the hash reaches them.
   * @param start their offset
   * @param bytes the bytes, which the caller no longer uses (they may be handed to the Worker)
   */
  offer(start: number, bytes: Uint8Array<ArrayBuffer>): void {
    // While stored bytes are read back, the hash is theirs: these come again from the store.
    if (start !== this.#next || this.#catchingUp) {
      // A part fetched again (after a failed attempt) may bring bytes held already: the longer
      // piece stays.
      const replaced = this.#held.get(start);
      const before = replaced?.length ?? 0;
      if (start <= this.#next || bytes.length <= before) {
        this.#release(bytes.buffer);
        return;
      }
      const fits = (): boolean => this.#heldBytes - before + bytes.length <= this.#maxHeld;
      // Pieces the hash went past (held from an attempt cut into other pieces) make room.
      if (!fits()) this.#dropPassed();
      if (fits()) {
        this.#held.set(start, bytes);
        this.#heldBytes += bytes.length - before;
        if (replaced) this.#release(replaced.buffer);
      } else this.#release(bytes.buffer);
      return;
    }
    this.#feed(bytes);
    this.#drainHeld();
    this.#catchUp();
  }

  /** Hashes the held pieces that continue the hash. */
  #drainHeld(): void {
    for (let next = this.#held.get(this.#next); next; next = this.#held.get(this.#next)) {
      this.#held.delete(this.#next);
      this.#heldBytes -= next.length;
      this.#feed(next);
    }
  }

  /**
   * A part is in the store, whole: once the hash reaches it, what of it was not hashed or held is
   * read back from the store then, while the download goes on.
   * @param start its offset
   * @param end the offset after its last byte
   */
  stored(start: number, end: number): void {
    this.#stored = addRange(this.#stored, { start, end });
    this.#catchUp();
  }

  /** Reads back what is stored from where the hash is, in the background, until a gap. */
  #catchUp(): void {
    if (this.#catchingUp || this.#failure !== undefined) return;
    if (this.#nextStored() === undefined) return;
    this.#catchingUp = (async () => {
      for (let end = this.#nextStored(); end !== undefined; end = this.#nextStored()) {
        const held = this.#held.get(this.#next);
        if (held) {
          this.#held.delete(this.#next);
          this.#heldBytes -= held.length;
          this.#feed(held);
        } else this.#feed(await this.#read(this.#next, end));
      }
    })()
      .catch((e: unknown) => {
        this.#failure = e; // given by digest()
      })
      .finally(() => {
        this.#catchingUp = undefined;
        // Pieces of a part still streaming in, held while the stored bytes before them were read.
        if (this.#failure !== undefined) return;
        this.#drainHeld();
        this.#catchUp();
      });
  }

  /** Where to stop reading stored bytes back from `#next`; `undefined` when they are not stored. */
  #nextStored(): number | undefined {
    if (this.#next >= this.#size) return undefined;
    const range = this.#stored.find((r) => r.start <= this.#next && r.end > this.#next);
    if (!range) return undefined;
    let end = Math.min(range.end, this.#next + READ_SLICE);
    for (const at of this.#held.keys()) if (at > this.#next && at < end) end = at;
    return end;
  }

  /**
   * The digest, once every part is stored: the bytes not hashed yet are read back first.
   * @throws {Error} (as a rejection) when the store cannot give them back or the Worker failed
   */
  async digest(): Promise<Uint8Array> {
    while (this.#catchingUp) await this.#catchingUp;
    if (this.#failure !== undefined) throw this.#failure;
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
    this.#failure ??= new Error('hashing stopped');
    this.#sink.close();
    for (const held of this.#held.values()) this.#release(held.buffer);
    this.#held.clear();
  }

  #feed(bytes: Uint8Array<ArrayBuffer>): void {
    this.#next += bytes.length;
    this.#sink.update(bytes);
  }

  /** Drops the held pieces the hash went past (once for each place the hash reaches). */
  #dropPassed(): void {
    if (this.#swept === this.#next) return;
    this.#swept = this.#next;
    for (const [at, held] of this.#held)
      if (at < this.#next) {
        this.#held.delete(at);
        this.#heldBytes -= held.length;
        this.#release(held.buffer);
      }
  }
}

/** Hashes on the page's thread. */
function threadSink(release: (buffer: ArrayBuffer) => void): Sink {
  let hasher: Promise<IHasher> = createSHA256().then((h) => {
    h.init();
    return h;
  });
  return {
    update(bytes) {
      hasher = hasher.then((h) => {
        h.update(bytes);
        release(bytes.buffer);
        return h;
      });
    },
    digest: () => hasher.then((h) => h.digest('binary')),
    close: () => undefined,
  };
}

/** Hashes in the hash Worker, the bytes' buffers handed over (transferred, not copied). */
function workerSink(factory: HashWorkerFactory, release: (buffer: ArrayBuffer) => void): Sink {
  const worker = factory();
  let failed: Error | undefined;
  let settle: ((reply: HashReply) => void) | undefined;
  const fail = (error: Error): void => {
    failed ??= error;
    settle?.({ error: failed.message });
    worker.terminate();
  };
  worker.onmessage = (event: MessageEvent<HashReply | HashBack>) => {
    const reply = event.data;
    if ('back' in reply) release(reply.back);
    else settle?.(reply);
  };
  worker.onerror = (event) => {
    // A script that failed to load or run: not the page's error.
    event.preventDefault();
    fail(new Error(event.message || 'the hash Worker could not start'));
  };
  worker.onmessageerror = () => fail(new Error('the hash Worker answered unreadably'));
  const post = (request: HashRequest, transfer: Transferable[] = []): void => {
    if (!failed) worker.postMessage(request, transfer);
  };
  // Small pieces (a body as it streams in) are gathered, so that a message carries a MiB.
  let batch: Uint8Array<ArrayBuffer> | undefined;
  let batched = 0;
  const flush = (): void => {
    if (!batch || batched === 0) return;
    const full = batched === batch.length ? batch : batch.slice(0, batched);
    post({ chunk: full }, [full.buffer]);
    batch = undefined;
    batched = 0;
  };
  return {
    update(bytes) {
      if (bytes.length < BATCH / 4) {
        if (batch && batched + bytes.length > batch.length) flush();
        batch ??= new Uint8Array(BATCH);
        batch.set(bytes, batched);
        batched += bytes.length;
        release(bytes.buffer);
        return;
      }
      flush();
      // The caller is done with the bytes and their buffer: a view that fills most of its buffer
      // (a dup/2 frame's payload after its header) travels with it, not copied (a copy into fresh
      // memory costs ~2.5 ms/MiB here, more than the SHA-256); a small view of a large buffer is
      // copied, so the rest of that buffer is neither moved nor kept alive.
      // A buffer handed over comes back once hashed, to be used again.
      const whole = 2 * bytes.byteLength >= bytes.buffer.byteLength;
      const own = whole ? bytes : bytes.slice();
      if (!whole) release(bytes.buffer);
      post({ chunk: own, back: whole }, [own.buffer]);
    },
    digest() {
      flush();
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
