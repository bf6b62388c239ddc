/**
 * SHA-256 of a whole item computed as a stream: the bytes the scheduler reads anyway are hashed
 * as they go by, in order; whatever it did not read (a resumed upload, a partial task) is read
 * in slices at the end. The item is never held in memory.
 */
import { createSHA256, type IHasher } from 'hash-wasm';

/** Slice size for the bytes the scheduler did not read. */
const READ_SLICE = 4 * 1024 * 1024;

/** @internal */
export class ItemHasher {
  readonly #blob: Blob;
  readonly #hasher: Promise<IHasher>;
  #next = 0;
  #digest: Promise<Uint8Array> | undefined;

  /** @param blob the whole item */
  constructor(blob: Blob) {
    this.#blob = blob;
    this.#hasher = createSHA256().then((h) => {
      h.init();
      return h;
    });
  }

  /**
   * Offers bytes read at an offset; only the bytes that continue the hash are used.
   * @returns a promise to await before reusing `bytes`
   */
  async update(offset: number, bytes: Uint8Array): Promise<void> {
    if (offset > this.#next || offset + bytes.length <= this.#next || this.#digest) return;
    const hasher = await this.#hasher;
    if (offset > this.#next || offset + bytes.length <= this.#next) return;
    hasher.update(bytes.subarray(this.#next - offset));
    this.#next = offset + bytes.length;
  }

  /** The digest of the whole item, reading what was not offered. */
  digest(): Promise<Uint8Array> {
    this.#digest ??= (async () => {
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
    })();
    // A failed read (a file that cannot be read for a moment) is tried again by the next call,
    // from where the hash got to.
    this.#digest.catch(() => (this.#digest = undefined));
    return this.#digest;
  }
}
