/**
 * File-system storage of items: one folder per item under the data folder, holding
 * `data` (the bytes, written at their offsets) and `meta.json` (size, stored ranges, state).
 *
 * Durability policy: a chunk is acknowledged after `write` returned and `meta.json` naming its
 * range was replaced atomically (write to a temporary file, then rename). A crash of the process
 * after that loses nothing; the item's data file is `fsync`ed before it is marked complete.
 * Operations on one item run one at a time, in order.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { addRange, covers, ITEM_ID_PATTERN, type ByteRange } from '../../src/protocol/index.js';

/** What the store records about an item. */
export interface ItemRecord {
  readonly itemId: string;
  readonly size: number;
  /** Stored byte ranges, sorted and merged. */
  readonly ranges: readonly ByteRange[];
  /** Whole and verified. */
  readonly complete: boolean;
  /** Hex SHA-256, once complete. */
  readonly sha256?: string;
  /** Creation time, milliseconds since the epoch. */
  readonly createdAt: number;
  /** Who created it (the user an upload token names); only they may write to it. */
  readonly owner?: string;
  /** Media type the client gave when it created the item. */
  readonly mime?: string;
  /** File name the client gave when it created the item. */
  readonly name?: string;
}

/** What {@link ItemStore.open} records about a new item. */
export interface NewItem {
  readonly owner?: string | undefined;
  readonly mime?: string | undefined;
  readonly name?: string | undefined;
}

/** Why a store operation failed; `code` maps to a dup/2 wire error. */
export class StoreError extends Error {
  readonly code:
    | 'conflict'
    | 'unauthorized'
    | 'out-of-range'
    | 'incomplete'
    | 'digest-mismatch'
    | 'storage-failed';

  constructor(code: StoreError['code'], message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}

/**
 * The storage an upload server needs. {@link FileStore} keeps items on disk; another backend
 * implements the same methods.
 */
export interface ItemStore {
  /**
   * Creates an item of `size` bytes owned by `owner`, or returns the existing one. Throws
   * `conflict` when it exists with another size and `unauthorized` when another owner made it.
   */
  open(itemId: string, size: number, item?: NewItem): Promise<ItemRecord>;
  /** The item, or `undefined`. */
  get(itemId: string): Promise<ItemRecord | undefined>;
  /** Stores bytes at an offset; resolves once they are durable per the store's policy. */
  write(itemId: string, offset: number, bytes: Uint8Array): Promise<ItemRecord>;
  /** Verifies the whole item against `sha256` (hex) and marks it complete. */
  finish(itemId: string, sha256: string): Promise<ItemRecord>;
  /** Reads `start..end` (half-open) of a stored item. */
  read(itemId: string, start: number, end: number): ReadStream;
  /**
   * Calls `listener` with the item's record each time it changes (bytes stored, completed, reset).
   * @returns a function that stops the calls
   */
  watch(itemId: string, listener: (record: ItemRecord) => void): () => void;
  /** Releases open files. */
  close(): Promise<void>;
}

interface Slot {
  record: ItemRecord;
  handle?: FileHandle;
  queue: Promise<unknown>;
}

/** {@link ItemStore} on the local file system. */
export class FileStore implements ItemStore {
  readonly #dir: string;
  readonly #slots = new Map<string, Slot>();
  readonly #loading = new Map<string, Promise<Slot | undefined>>();
  readonly #changes = new EventEmitter().setMaxListeners(0);

  /**
   * @param dir the data folder; created when missing
   */
  constructor(dir: string) {
    this.#dir = dir;
  }

  async open(itemId: string, size: number, item: NewItem = {}): Promise<ItemRecord> {
    checkId(itemId);
    const { owner } = item;
    const slot = await this.#slot(itemId, { size, ...item });
    if (!slot) throw new StoreError('storage-failed', `could not create item ${itemId}`);
    if (slot.record.owner !== undefined && slot.record.owner !== owner) {
      throw new StoreError('unauthorized', `item ${itemId} belongs to someone else`);
    }
    if (slot.record.size !== size) {
      throw new StoreError(
        'conflict',
        `item ${itemId} exists with size ${slot.record.size}, not ${size}`,
      );
    }
    return slot.record;
  }

  async get(itemId: string): Promise<ItemRecord | undefined> {
    if (!ITEM_ID_PATTERN.test(itemId)) return undefined;
    return (await this.#slot(itemId))?.record;
  }

  write(itemId: string, offset: number, bytes: Uint8Array): Promise<ItemRecord> {
    return this.#serial(itemId, async (slot) => {
      const { record } = slot;
      if (offset + bytes.length > record.size) {
        throw new StoreError(
          'out-of-range',
          `bytes ${offset}..${offset + bytes.length} are past size ${record.size}`,
        );
      }
      if (record.complete) return record;
      try {
        slot.handle ??= await open(this.#dataPath(itemId), 'r+');
        let done = 0;
        while (done < bytes.length) {
          const { bytesWritten } = await slot.handle.write(
            bytes,
            done,
            bytes.length - done,
            offset + done,
          );
          done += bytesWritten;
        }
        const next = {
          ...record,
          ranges: addRange(record.ranges, { start: offset, end: offset + bytes.length }),
        };
        await this.#saveMeta(next);
        this.#set(slot, next);
        return next;
      } catch (e) {
        throw new StoreError(
          'storage-failed',
          `could not store bytes of ${itemId}: ${(e as Error).message}`,
          { cause: e },
        );
      }
    });
  }

  finish(itemId: string, sha256: string): Promise<ItemRecord> {
    return this.#serial(itemId, async (slot) => {
      const { record } = slot;
      if (record.complete) {
        if (record.sha256 !== sha256)
          throw new StoreError('digest-mismatch', `item ${itemId} is stored with another SHA-256`);
        return record;
      }
      if (!covers(record.ranges, { start: 0, end: record.size })) {
        throw new StoreError('incomplete', `item ${itemId} is missing bytes`);
      }
      let actual: string;
      try {
        if (slot.handle) {
          await slot.handle.sync();
          await slot.handle.close();
          delete slot.handle;
        }
        actual = await hashFile(this.#dataPath(itemId), record.size);
      } catch (e) {
        throw new StoreError(
          'storage-failed',
          `could not read back ${itemId}: ${(e as Error).message}`,
          { cause: e },
        );
      }
      if (actual !== sha256) {
        // Some stored bytes are wrong and nothing says which: the client must send them all again.
        const reset = { ...record, ranges: [] };
        await this.#saveMeta(reset);
        this.#set(slot, reset);
        throw new StoreError(
          'digest-mismatch',
          `item ${itemId} has SHA-256 ${actual}, the client sent ${sha256}`,
        );
      }
      const next: ItemRecord = { ...record, complete: true, sha256 };
      await this.#saveMeta(next);
      this.#set(slot, next);
      return next;
    });
  }

  watch(itemId: string, listener: (record: ItemRecord) => void): () => void {
    this.#changes.on(itemId, listener);
    return () => this.#changes.off(itemId, listener);
  }

  #set(slot: Slot, record: ItemRecord): void {
    slot.record = record;
    this.#changes.emit(record.itemId, record);
  }

  read(itemId: string, start: number, end: number): ReadStream {
    checkId(itemId);
    return createReadStream(this.#dataPath(itemId), { start, end: end - 1 });
  }

  async close(): Promise<void> {
    for (const slot of this.#slots.values()) {
      await slot.queue.catch(() => undefined);
      await slot.handle?.close().catch(() => undefined);
      delete slot.handle;
    }
    this.#slots.clear();
  }

  #slot(itemId: string, create?: NewItem & { size: number }): Promise<Slot | undefined> {
    const cached = this.#slots.get(itemId);
    if (cached) return Promise.resolve(cached);
    // One load per item at a time, so two first OPENs cannot both create the data file.
    let loading = this.#loading.get(itemId);
    if (!loading) {
      loading = this.#load(itemId, create).finally(() => this.#loading.delete(itemId));
      this.#loading.set(itemId, loading);
      return loading;
    }
    return loading.then(
      (slot) => slot ?? (create === undefined ? undefined : this.#slot(itemId, create)),
    );
  }

  async #load(
    itemId: string,
    create: (NewItem & { size: number }) | undefined,
  ): Promise<Slot | undefined> {
    let record = await this.#loadMeta(itemId);
    if (!record) {
      if (create === undefined) return undefined;
      record = {
        itemId,
        size: create.size,
        ranges: [],
        complete: false,
        createdAt: Date.now(),
        ...(create.owner === undefined ? {} : { owner: create.owner }),
        ...(create.mime ? { mime: create.mime } : {}),
        ...(create.name ? { name: create.name } : {}),
      };
      await mkdir(join(this.#dir, itemId), { recursive: true });
      const fh = await open(this.#dataPath(itemId), 'w');
      await fh.close();
      await this.#saveMeta(record);
    }
    const slot: Slot = { record, queue: Promise.resolve() };
    this.#slots.set(itemId, slot);
    return slot;
  }

  #serial<T>(itemId: string, fn: (slot: Slot) => Promise<T>): Promise<T> {
    const slot = this.#slots.get(itemId);
    if (!slot) return Promise.reject(new StoreError('out-of-range', `item ${itemId} is not open`));
    const run = slot.queue.then(() => fn(slot));
    slot.queue = run.catch(() => undefined);
    return run;
  }

  #dataPath(itemId: string): string {
    return join(this.#dir, itemId, 'data');
  }

  async #loadMeta(itemId: string): Promise<ItemRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.#dir, itemId, 'meta.json'), 'utf8')) as ItemRecord;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async #saveMeta(record: ItemRecord): Promise<void> {
    const path = join(this.#dir, record.itemId, 'meta.json');
    await writeFile(`${path}.tmp`, JSON.stringify(record));
    await rename(`${path}.tmp`, path);
  }
}

function checkId(itemId: string): void {
  if (!ITEM_ID_PATTERN.test(itemId))
    throw new TypeError(`ws-uploader: invalid item id ${JSON.stringify(itemId)}`);
}

function hashFile(path: string, size: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    if (size === 0) {
      resolve(hash.digest('hex'));
      return;
    }
    createReadStream(path, { start: 0, end: size - 1 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
