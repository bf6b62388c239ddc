/**
 * File-system storage of items: one folder per item under the data folder, holding
 * `data` (the bytes, written at their offsets) and `meta.json` (size, stored ranges, state).
 *
 * Durability: `write` resolves only once its bytes are durable. With the default policy `fsync`,
 * that is after the data file was flushed (`fdatasync`) and `meta.json` naming the range was
 * replaced atomically and flushed (write and flush a temporary file, rename it, flush the folder):
 * acknowledged bytes survive a crash of the process or of the machine. With `write`, the flushes
 * are skipped: acknowledged bytes survive a crash of the process (`kill -9`), not of the machine.
 * Writes that arrive while a flush runs share the next one (group commit), so flushing costs one
 * round per batch, not per chunk. Readers only ever see durable ranges.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
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
  /** Last time bytes were stored, milliseconds since the epoch. */
  readonly updatedAt?: number;
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
    | 'quota-exceeded'
    | 'storage-full'
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
  /**
   * Verifies the whole item against `sha256` (hex) and marks it complete; without `sha256`, marks
   * it complete with the digest of what is stored (for protocols that send none, such as tus).
   */
  finish(itemId: string, sha256?: string): Promise<ItemRecord>;
  /** Deletes a partial item; `false` when there is none (or it is complete). */
  remove(itemId: string): Promise<boolean>;
  /** Reads `start..end` (half-open) of a stored item. */
  read(itemId: string, start: number, end: number): ReadStream;
  /**
   * Calls `listener` with the item's record each time it changes (bytes stored, completed, reset).
   * @returns a function that stops the calls
   */
  watch(itemId: string, listener: (record: ItemRecord) => void): () => void;
  /**
   * Deletes partial items that stored nothing for `ttlMs`.
   * @returns the ids of the deleted items
   */
  expire(ttlMs: number): Promise<string[]>;
  /** Releases open files. */
  close(): Promise<void>;
}

/** Options of {@link FileStore}. */
export interface FileStoreOptions {
  /**
   * `fsync`: acknowledged bytes survive a crash of the machine. `write`: they survive a crash of
   * the process only, and the store is faster on slow disks. @default 'fsync'
   */
  readonly durability?: 'fsync' | 'write';
  /** Largest sum of the sizes of all items, in bytes. @default Infinity */
  readonly maxBytes?: number;
  /** Largest sum of the sizes of one owner's items, in bytes. @default Infinity */
  readonly maxBytesPerOwner?: number;
}

interface Slot {
  /** What is durable: what readers and OPENED see. */
  record: ItemRecord;
  /** Ranges written but not yet durable. */
  pending: ByteRange[];
  handle?: FileHandle;
  queue: Promise<unknown>;
  /** The flush running now, and the one writes arriving meanwhile wait for. */
  committing?: Promise<ItemRecord> | undefined;
  nextCommit?: Promise<ItemRecord> | undefined;
}

/** {@link ItemStore} on the local file system. */
export class FileStore implements ItemStore {
  readonly #dir: string;
  readonly #sync: boolean;
  readonly #maxBytes: number;
  readonly #maxBytesPerOwner: number;
  readonly #slots = new Map<string, Slot>();
  readonly #loading = new Map<string, Promise<Slot | undefined>>();
  readonly #changes = new EventEmitter().setMaxListeners(0);
  /** Sizes of every item by owner (`''` for none), read from disk on first use. */
  #usage: Promise<Map<string, { owner: string; size: number }>> | undefined;

  /**
   * @param dir the data folder; created when missing
   * @param options durability and quotas
   */
  constructor(dir: string, options: FileStoreOptions = {}) {
    this.#dir = dir;
    this.#sync = (options.durability ?? 'fsync') === 'fsync';
    this.#maxBytes = options.maxBytes ?? Infinity;
    this.#maxBytesPerOwner = options.maxBytesPerOwner ?? Infinity;
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

  async write(itemId: string, offset: number, bytes: Uint8Array): Promise<ItemRecord> {
    const slot = await this.#serial(itemId, async (s) => {
      const { record } = s;
      if (offset + bytes.length > record.size) {
        throw new StoreError(
          'out-of-range',
          `bytes ${offset}..${offset + bytes.length} are past size ${record.size}`,
        );
      }
      if (record.complete) return s;
      try {
        s.handle ??= await open(this.#dataPath(itemId), 'r+');
        let done = 0;
        while (done < bytes.length) {
          const { bytesWritten } = await s.handle.write(
            bytes,
            done,
            bytes.length - done,
            offset + done,
          );
          done += bytesWritten;
        }
      } catch (e) {
        throw storageError(e, `could not store bytes of ${itemId}`);
      }
      s.pending = addRange(s.pending, { start: offset, end: offset + bytes.length });
      return s;
    });
    if (slot.record.complete) return slot.record;
    return this.#commit(slot);
  }

  finish(itemId: string, expected?: string): Promise<ItemRecord> {
    return this.#serial(itemId, async (slot) => {
      const { record } = slot;
      if (record.complete) {
        if (expected !== undefined && record.sha256 !== expected)
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
        throw storageError(e, `could not read back ${itemId}`);
      }
      const sha256 = expected ?? actual;
      if (actual !== sha256) {
        // Some stored bytes are wrong and nothing says which: the client must send them all again.
        const reset = { ...record, ranges: [] };
        slot.pending = [];
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

  async remove(itemId: string): Promise<boolean> {
    const slot = await this.#slot(itemId);
    if (!slot || slot.record.complete) return false;
    await slot.queue;
    await slot.committing?.catch(() => undefined);
    await slot.handle?.close().catch(() => undefined);
    this.#slots.delete(itemId);
    (await this.#usage)?.delete(itemId);
    await rm(join(this.#dir, itemId), { recursive: true, force: true });
    return true;
  }

  watch(itemId: string, listener: (record: ItemRecord) => void): () => void {
    this.#changes.on(itemId, listener);
    return () => this.#changes.off(itemId, listener);
  }

  read(itemId: string, start: number, end: number): ReadStream {
    checkId(itemId);
    return createReadStream(this.#dataPath(itemId), { start, end: end - 1 });
  }

  async expire(ttlMs: number): Promise<string[]> {
    const now = Date.now();
    const expired: string[] = [];
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch {
      return expired;
    }
    for (const itemId of names) {
      if (!ITEM_ID_PATTERN.test(itemId)) continue;
      const slot = this.#slots.get(itemId);
      const record = slot?.record ?? (await this.#loadMeta(itemId).catch(() => undefined));
      if (!record || record.complete || now - (record.updatedAt ?? record.createdAt) < ttlMs)
        continue;
      if (slot && (slot.pending.length > 0 || slot.committing)) continue;
      await slot?.queue;
      await slot?.handle?.close().catch(() => undefined);
      this.#slots.delete(itemId);
      (await this.#usage)?.delete(itemId);
      await rm(join(this.#dir, itemId), { recursive: true, force: true });
      expired.push(itemId);
    }
    return expired;
  }

  async close(): Promise<void> {
    for (const slot of this.#slots.values()) {
      await slot.queue.catch(() => undefined);
      await slot.nextCommit?.catch(() => undefined);
      await slot.committing?.catch(() => undefined);
      await slot.handle?.close().catch(() => undefined);
      delete slot.handle;
    }
    this.#slots.clear();
  }

  #set(slot: Slot, record: ItemRecord): void {
    slot.record = record;
    this.#changes.emit(record.itemId, record);
  }

  /**
   * Makes the slot's pending ranges durable. Writes that arrive while a flush runs wait for the
   * next one, which takes them all (group commit).
   */
  #commit(slot: Slot): Promise<ItemRecord> {
    if (!slot.committing) {
      const run = this.#flush(slot).finally(() => {
        if (slot.committing === run) slot.committing = undefined;
      });
      slot.committing = run;
      return run;
    }
    slot.nextCommit ??= slot.committing
      .catch(() => undefined)
      .then(() => {
        slot.nextCommit = undefined;
        return this.#commit(slot);
      });
    return slot.nextCommit;
  }

  async #flush(slot: Slot): Promise<ItemRecord> {
    const taken = slot.pending;
    slot.pending = [];
    if (taken.length === 0) return slot.record;
    try {
      if (this.#sync) await slot.handle?.datasync();
      let ranges = slot.record.ranges;
      for (const r of taken) ranges = addRange(ranges, r);
      const next: ItemRecord = { ...slot.record, ranges, updatedAt: Date.now() };
      await this.#saveMeta(next);
      this.#set(slot, next);
      return next;
    } catch (e) {
      // Nothing of this batch is acknowledged; its bytes may be written again.
      throw storageError(e, `could not store bytes of ${slot.record.itemId}`);
    }
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
      await this.#reserve(itemId, create.size, create.owner ?? '');
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
      try {
        await mkdir(join(this.#dir, itemId), { recursive: true });
        const fh = await open(this.#dataPath(itemId), 'w');
        await fh.close();
        await this.#saveMeta(record);
      } catch (e) {
        (await this.#usage)?.delete(itemId);
        await rm(join(this.#dir, itemId), { recursive: true, force: true }).catch(() => undefined);
        throw storageError(e, `could not create item ${itemId}`);
      }
    }
    const slot: Slot = { record, pending: [], queue: Promise.resolve() };
    this.#slots.set(itemId, slot);
    return slot;
  }

  /** Counts a new item against the quotas, or throws `quota-exceeded`. */
  async #reserve(itemId: string, size: number, owner: string): Promise<void> {
    if (this.#maxBytes === Infinity && this.#maxBytesPerOwner === Infinity) return;
    this.#usage ??= this.#scan();
    const usage = await this.#usage;
    let total = 0;
    let mine = 0;
    for (const u of usage.values()) {
      total += u.size;
      if (u.owner === owner) mine += u.size;
    }
    if (total + size > this.#maxBytes) {
      throw new StoreError(
        'quota-exceeded',
        `the server holds ${total} bytes; ${size} more would pass its limit`,
      );
    }
    if (mine + size > this.#maxBytesPerOwner) {
      throw new StoreError(
        'quota-exceeded',
        `${owner || 'this client'} holds ${mine} bytes; ${size} more would pass the limit`,
      );
    }
    usage.set(itemId, { owner, size });
  }

  async #scan(): Promise<Map<string, { owner: string; size: number }>> {
    const usage = new Map<string, { owner: string; size: number }>();
    const names = await readdir(this.#dir).catch(() => [] as string[]);
    for (const itemId of names) {
      if (!ITEM_ID_PATTERN.test(itemId)) continue;
      const record = await this.#loadMeta(itemId).catch(() => undefined);
      if (record) usage.set(itemId, { owner: record.owner ?? '', size: record.size });
    }
    return usage;
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

  /** Replaces `meta.json` atomically; with `fsync`, durably (file, then folder). */
  async #saveMeta(record: ItemRecord): Promise<void> {
    const folder = join(this.#dir, record.itemId);
    const path = join(folder, 'meta.json');
    const fh = await open(`${path}.tmp`, 'w');
    try {
      await fh.writeFile(JSON.stringify(record));
      if (this.#sync) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(`${path}.tmp`, path);
    if (this.#sync) {
      const dir = await open(folder, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    }
  }
}

/** A store failure: `storage-full` when the disk is full (retryable), else `storage-failed`. */
function storageError(e: unknown, what: string): StoreError {
  if (e instanceof StoreError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  const full = code === 'ENOSPC' || code === 'EDQUOT';
  return new StoreError(
    full ? 'storage-full' : 'storage-failed',
    `${what}: ${full ? 'the disk is full' : (e as Error).message}`,
    {
      cause: e,
    },
  );
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
