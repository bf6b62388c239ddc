/**
 * File-system storage of items: one folder per item under the data folder, holding `data` (the
 * bytes, written at their offsets), `chunks` (the chunk journal: what is stored, with the CRC-32C of
 * each run of bytes, see `chunk-journal.ts`) and `meta.json` (size, owner, type, name, state).
 *
 * Durability: `write` resolves only once its bytes are durable. With the default policy `fsync`,
 * that is after the data file was flushed (`fdatasync`), then the journal records naming the bytes
 * were appended and flushed: acknowledged bytes survive a crash of the process or of the machine.
 * With `write`, the flushes are skipped: acknowledged bytes survive a crash of the process
 * (`kill -9`), not of the machine. Writes that arrive while a flush runs share the next one (group
 * commit), so flushing costs one round per batch, not per chunk. Readers only ever see durable
 * ranges, and every byte they read is checked against the CRC-32C of its chunk first.
 *
 * Bytes are written once: a write over bytes already stored must carry the same bytes (it is then
 * acknowledged without writing), else it fails with `conflict` and the stored bytes stay.
 */
import { createHash } from 'node:crypto';
import { AheadBudget, DIGEST_AHEAD_BYTES, RunningDigest } from './running-digest.js';
import { EventEmitter } from 'node:events';
import { createReadStream } from 'node:fs';
import {
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  type FileHandle,
} from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  addRange,
  covers,
  ITEM_ID_PATTERN,
  missingRanges,
  type ByteRange,
} from '../../src/protocol/index.js';
import { crc32c } from '../internal/crc32c.js';
import {
  CHUNK_RECORD_BYTES,
  chunksOverlapping,
  decodeChunks,
  encodeChunks,
  insertChunks,
  type Chunk,
} from './chunk-journal.js';

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
    | 'storage-failed'
    | 'locked'
    | 'fragmented';

  constructor(code: StoreError['code'], message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}

/** Options of {@link ItemStore.writev}. */
export interface StoreWriteOptions {
  /**
   * `false`: the bytes need not be durable yet; a later write that commits makes them so.
   * @default true
   */
  readonly commit?: boolean;
  /** The CRC-32C of the parts joined, when the caller knows it (it is computed otherwise). */
  readonly crc32c?: number;
}

/** Stored bytes read back, with their CRC-32C when the store knows it. */
export interface StoredBytes {
  readonly bytes: Buffer;
  /** The CRC-32C of `bytes`, when known. */
  readonly crc32c?: number;
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
  /**
   * Stores bytes at an offset; resolves once they are durable per the store's policy. Bytes that
   * are stored already must be the same (else `conflict`, and nothing is written).
   * @param crc the CRC-32C of `bytes` when the caller knows it (it is computed otherwise)
   */
  write(itemId: string, offset: number, bytes: Uint8Array, crc?: number): Promise<ItemRecord>;
  /**
   * Optional. Stores `parts`, one after the other, at an offset, as `write` would store them
   * joined, without joining them first. With `commit: false` it resolves once the bytes are
   * written but before they are durable (they are not in the item's ranges yet); the next write of
   * the item that commits (the default) makes them durable with its own, and `writev` of no parts
   * commits them alone. The server stores an HTTP body this way, flushing in the background.
   * Without it, the server joins the parts and calls `write`.
   */
  writev?(
    itemId: string,
    offset: number,
    parts: readonly Uint8Array[],
    options?: StoreWriteOptions,
  ): Promise<ItemRecord>;
  /**
   * Verifies the whole item against `sha256` (hex) and marks it complete; without `sha256`, marks
   * it complete with the digest of what is stored (a client that sends none: a dup/2 FINISH without
   * a digest, an http/1 completion without `Repr-Digest`, tus), each byte it reads back checked
   * against the checksum it was stored with first (bytes changed at rest: `storage-failed`, and the
   * item forgets them). `incomplete` while any byte is missing.
   */
  finish(itemId: string, sha256?: string): Promise<ItemRecord>;
  /** Deletes a partial item; `false` when there is none (or it is complete). */
  remove(itemId: string): Promise<boolean>;
  /**
   * Reads `start..end` (half-open) of the stored bytes of an item, each checked against what was
   * stored. Bytes changed at rest end the stream with `storage-failed`, and the item forgets them
   * (it is no longer complete), so they can be uploaded again.
   */
  read(itemId: string, start: number, end: number): Readable;
  /**
   * Optional. Reads as `read` does, each piece with its CRC-32C when the store knows it (a whole
   * stored chunk), so a `dup/2` read need not compute it again. Without it, the server uses `read`.
   */
  readChunks?(itemId: string, start: number, end: number): AsyncIterable<StoredBytes>;
  /**
   * Calls `listener` with the item's record each time it changes (bytes stored, completed, reset).
   * @returns a function that stops the calls
   */
  watch(itemId: string, listener: (record: ItemRecord) => void): () => void;
  /**
   * Deletes partial items that stored nothing for `ttlMs`. With `lock`, each item is deleted
   * while holding what `lock` returns (a release function), and skipped when it returns
   * `undefined` (someone is writing the item).
   * @returns the ids of the deleted items
   */
  expire(
    ttlMs: number,
    lock?: (itemId: string) => Promise<(() => void) | undefined>,
  ): Promise<string[]>;
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
  /**
   * Bytes held in memory, over all items, at most, when they arrive ahead of a gap (HTTP parts sent
   * side by side), to feed each item's running SHA-256 in order once the gap fills; what does not
   * fit is read back from disk a few MiB at a time as the upload goes on. Room for one item is
   * made by letting go the bytes of the item that held bytes least recently. `0` holds none and
   * reads back nothing early: bytes past a gap are read back when the item completes.
   * @default 33554432 (32 MiB)
   */
  readonly digestAheadBytes?: number;
  /** Largest sum of the sizes of all items, in bytes. @default Infinity */
  readonly maxBytes?: number;
  /** Largest sum of the sizes of one owner's items, in bytes. @default Infinity */
  readonly maxBytesPerOwner?: number;
  /** Told when stored bytes no longer match their CRC-32C (changed at rest). */
  readonly onCorrupt?: (itemId: string, range: ByteRange) => void;
  /**
   * Complete items whose state is kept in memory; past it the oldest are forgotten (and read from
   * disk again when asked for). Partial items are always kept. @default 4096
   */
  readonly maxCachedItems?: number;
}

interface Slot {
  /** What is durable: what readers and OPENED see. */
  record: ItemRecord;
  /** Durable chunks, sorted, not overlapping. */
  chunks: Chunk[];
  /** Chunks written but not yet durable. */
  pending: Chunk[];
  /** Chunks the running flush is making durable. */
  flushing: Chunk[];
  /** Valid bytes of the journal file. */
  journalBytes: number;
  /** The journal may have bytes past `journalBytes` (a failed append): cut them first. */
  journalTorn: boolean;
  handle?: FileHandle;
  journal?: FileHandle;
  queue: Promise<unknown>;
  /** The flush running now, and the one writes arriving meanwhile wait for. */
  committing?: Promise<ItemRecord> | undefined;
  nextCommit?: Promise<ItemRecord> | undefined;
  /** SHA-256 of a prefix, fed as bytes are written, so completing the item reads little back. */
  hash: RunningDigest | undefined;
  /** Whether bytes the digest let go are being read back for it. */
  catchingUp?: boolean;
}

/** The fields of `meta.json`: an item record without what the journal says. */
type Meta = Omit<ItemRecord, 'ranges' | 'updatedAt'>;

/** {@link ItemStore} on the local file system. */
export class FileStore implements ItemStore {
  readonly #dir: string;
  readonly #sync: boolean;
  readonly #digestAhead: number;
  readonly #aheadBudget: AheadBudget;
  readonly #maxBytes: number;
  readonly #maxBytesPerOwner: number;
  readonly #onCorrupt: ((itemId: string, range: ByteRange) => void) | undefined;
  readonly #maxCached: number;
  readonly #slots = new Map<string, Slot>();
  readonly #loading = new Map<string, Promise<Slot | undefined>>();
  /** Items whose files are being deleted. */
  readonly #deleting = new Map<string, Promise<void>>();
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
    this.#digestAhead = options.digestAheadBytes ?? DIGEST_AHEAD_BYTES;
    this.#aheadBudget = new AheadBudget(this.#digestAhead);
    this.#maxBytes = options.maxBytes ?? Infinity;
    this.#maxBytesPerOwner = options.maxBytesPerOwner ?? Infinity;
    this.#onCorrupt = options.onCorrupt;
    this.#maxCached = options.maxCachedItems ?? 4096;
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

  write(itemId: string, offset: number, bytes: Uint8Array, crc?: number): Promise<ItemRecord> {
    return this.#write(itemId, offset, [bytes], crc, true);
  }

  writev(
    itemId: string,
    offset: number,
    parts: readonly Uint8Array[],
    options: StoreWriteOptions = {},
  ): Promise<ItemRecord> {
    return this.#write(itemId, offset, parts, options.crc32c, options.commit ?? true);
  }

  async #write(
    itemId: string,
    offset: number,
    parts: readonly Uint8Array[],
    crc: number | undefined,
    commit: boolean,
  ): Promise<ItemRecord> {
    let length = 0;
    for (const part of parts) length += part.length;
    const end = offset + length;
    const slot = await this.#serial(itemId, async (s) => {
      if (end > s.record.size) {
        throw new StoreError(
          'out-of-range',
          `bytes ${offset}..${end} are past size ${s.record.size}`,
        );
      }
      if (end === offset) return s;
      const known = knownRanges(s);
      const fresh = missingRanges({ start: offset, end }, known);
      const pieces = s.chunks.length + s.pending.length + s.flushing.length + fresh.length;
      if (pieces > maxChunks(s.record.size)) {
        throw new StoreError(
          'fragmented',
          `item ${itemId} would be stored in more than ${maxChunks(s.record.size)} pieces; send larger chunks`,
        );
      }
      try {
        s.handle ??= await open(this.#dataPath(itemId), 'r+');
        // All new (the usual case): the parts as given, without joining them. Else the new pieces
        // of the joined bytes, and the rest must be the very bytes stored (or being stored).
        let writes: { start: number; end: number; parts: readonly Uint8Array[]; crc?: number }[];
        if (fresh.length === 1 && fresh[0]!.start === offset && fresh[0]!.end === end) {
          writes = [{ start: offset, end, parts, ...(crc === undefined ? {} : { crc }) }];
        } else {
          const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
          let at = offset;
          for (const piece of [...fresh, { start: end, end }]) {
            if (piece.start > at)
              await sameBytes(
                s.handle,
                bytes.subarray(at - offset, piece.start - offset),
                at,
                itemId,
              );
            at = piece.end;
          }
          writes = fresh.map((piece) => ({
            ...piece,
            parts: [bytes.subarray(piece.start - offset, piece.end - offset)],
          }));
        }
        for (const piece of writes) {
          await writeAll(s.handle, piece.parts, piece.start);
          let sum = piece.crc;
          if (sum === undefined) {
            sum = 0;
            for (const part of piece.parts) sum = crc32c(part, sum);
          }
          s.pending.push({ start: piece.start, end: piece.end, crc32c: sum });
          s.hash?.offerParts(piece.start, piece.parts);
        }
        // Only when these bytes did not reach the digest (held, or past a gap): not per chunk.
        if (s.hash && s.hash.hashedTo < end) this.#catchUp(s);
        if (s.record.complete && s.handle) {
          // Only compared: a complete item keeps no file open.
          await s.handle.close();
          delete s.handle;
        }
      } catch (e) {
        throw storageError(e, `could not store bytes of ${itemId}`);
      }
      return s;
    });
    if (!commit) return slot.record;
    const record = await this.#commit(slot);
    // Bytes this write found already being stored were in a batch that may have failed since.
    if (!record.complete && !covers(record.ranges, { start: offset, end })) {
      throw new StoreError(
        'storage-failed',
        `bytes ${offset}..${end} of ${itemId} could not be stored; send them again`,
      );
    }
    return record;
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
          await slot.handle.close();
          delete slot.handle;
        }
        // Nothing to compare with: what is read back is checked against the chunks' CRC-32C.
        actual = await this.#digest(slot, expected === undefined);
      } catch (e) {
        throw storageError(e, `could not read back ${itemId}`);
      }
      const sha256 = expected ?? actual;
      if (actual !== sha256) {
        // Some stored bytes are wrong and nothing says which: the client must send them all again.
        await this.#forget(slot, slot.chunks);
        throw new StoreError(
          'digest-mismatch',
          `item ${itemId} has SHA-256 ${actual}, the client sent ${sha256}`,
        );
      }
      const next: ItemRecord = { ...record, complete: true, sha256 };
      await this.#saveMeta(next);
      this.#set(slot, next);
      // Nothing is appended to a complete item's journal.
      await slot.journal?.close().catch(() => undefined);
      delete slot.journal;
      return next;
    });
  }

  async remove(itemId: string): Promise<boolean> {
    const slot = await this.#slot(itemId);
    if (!slot || slot.record.complete) return false;
    await this.#delete(itemId, slot);
    return true;
  }

  watch(itemId: string, listener: (record: ItemRecord) => void): () => void {
    this.#changes.on(itemId, listener);
    return () => this.#changes.off(itemId, listener);
  }

  read(itemId: string, start: number, end: number): Readable {
    checkId(itemId);
    return Readable.from(
      (async function* (chunks) {
        for await (const { bytes } of chunks) yield bytes;
      })(this.#verified(itemId, start, end)),
      { objectMode: false },
    );
  }

  readChunks(itemId: string, start: number, end: number): AsyncIterable<StoredBytes> {
    checkId(itemId);
    return this.#verified(itemId, start, end);
  }

  async expire(
    ttlMs: number,
    lock?: (itemId: string) => Promise<(() => void) | undefined>,
  ): Promise<string[]> {
    const expired: string[] = [];
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch {
      return expired;
    }
    for (const itemId of names) {
      if (!ITEM_ID_PATTERN.test(itemId) || !(await this.#stale(itemId, ttlMs))) continue;
      const unlock = lock ? await lock(itemId) : () => undefined;
      if (!unlock) continue;
      try {
        // Checked again under the lock: a writer may have come meanwhile.
        if (!(await this.#stale(itemId, ttlMs))) continue;
        const slot = this.#slots.get(itemId);
        if (slot && (slot.pending.length > 0 || slot.committing)) continue;
        await this.#delete(itemId, slot);
        expired.push(itemId);
      } finally {
        unlock();
      }
    }
    return expired;
  }

  /** Whether an item is partial and stored nothing for `ttlMs`. */
  async #stale(itemId: string, ttlMs: number): Promise<boolean> {
    const slot = this.#slots.get(itemId);
    if (slot) {
      if (slot.record.complete) return false;
      return Date.now() - (slot.record.updatedAt ?? slot.record.createdAt) >= ttlMs;
    }
    const meta = await this.#loadMeta(itemId).catch(() => undefined);
    if (!meta || meta.complete) return false;
    return Date.now() - (await this.#journalTime(itemId, meta.createdAt)) >= ttlMs;
  }

  /** Deletes an item's files; the item cannot be loaded again until they are gone. */
  async #delete(itemId: string, slot: Slot | undefined): Promise<void> {
    const done = (async () => {
      if (slot) await this.#release(slot);
      this.#slots.delete(itemId);
      (await this.#usage)?.delete(itemId);
      await rm(join(this.#dir, itemId), { recursive: true, force: true });
    })();
    this.#deleting.set(itemId, done);
    try {
      await done;
    } finally {
      this.#deleting.delete(itemId);
      this.#slots.delete(itemId);
    }
  }

  async close(): Promise<void> {
    for (const slot of this.#slots.values()) await this.#release(slot);
    this.#slots.clear();
  }

  /** Waits for the slot's work and closes its files. */
  async #release(slot: Slot): Promise<void> {
    await slot.queue.catch(() => undefined);
    await slot.nextCommit?.catch(() => undefined);
    await slot.committing?.catch(() => undefined);
    slot.hash?.drop();
    await slot.handle?.close().catch(() => undefined);
    await slot.journal?.close().catch(() => undefined);
    delete slot.handle;
    delete slot.journal;
  }

  #set(slot: Slot, record: ItemRecord): void {
    slot.record = record;
    this.#changes.emit(record.itemId, record);
  }

  /**
   * Makes the slot's pending chunks durable. Writes that arrive while a flush runs wait for the
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
    slot.flushing = taken;
    try {
      if (this.#sync) await slot.handle?.datasync();
      slot.journal ??= await open(this.#journalPath(slot.record.itemId), 'a');
      if (slot.journalTorn) {
        await slot.journal.truncate(slot.journalBytes);
        slot.journalTorn = false;
      }
      slot.journalTorn = true;
      await slot.journal.appendFile(encodeChunks(taken));
      if (this.#sync) await slot.journal.datasync();
      slot.journalTorn = false;
      slot.journalBytes += taken.length * CHUNK_RECORD_BYTES;
      insertChunks(slot.chunks, taken);
      let ranges = slot.record.ranges;
      for (const r of taken) ranges = addRange(ranges, r);
      const next: ItemRecord = { ...slot.record, ranges, updatedAt: Date.now() };
      this.#set(slot, next);
      return next;
    } catch (e) {
      // Nothing of this batch is acknowledged; its bytes may be written again, maybe other ones,
      // so the running digest can no longer be trusted.
      slot.hash?.drop();
      slot.hash = undefined;
      throw storageError(e, `could not store bytes of ${slot.record.itemId}`);
    } finally {
      slot.flushing = [];
    }
  }

  /**
   * Feeds the running digest from disk where bytes written are not in it: bytes it let go past its
   * bound, which leave a gap no later write fills. Read a few MiB at a time, while they are still
   * in the page cache, so that completing the item reads little back.
   */
  #catchUp(s: Slot): void {
    const digest = s.hash;
    const handle = s.handle;
    if (!digest || !handle || s.catchingUp || this.#digestAhead === 0) return;
    // Whole chunks from where the digest stands, each checked against its CRC-32C as it is read.
    const from = digest.hashedTo;
    const chunks: Chunk[] = [];
    const startingAt = (at: number): Chunk | undefined =>
      s.pending.find((c) => c.start === at) ??
      s.flushing.find((c) => c.start === at) ??
      s.chunks.find((c) => c.start === at);
    for (let at = from, bytes = 0; bytes < CATCH_UP_BYTES;) {
      const next = startingAt(at);
      if (!next) break;
      chunks.push(next);
      bytes += next.end - next.start;
      at = next.end;
    }
    if (chunks.length === 0) return;
    s.catchingUp = true;
    void (async () => {
      const to = chunks.at(-1)!.end;
      const bytes = Buffer.allocUnsafe(to - from);
      const { bytesRead } = await handle.read(bytes, 0, bytes.length, from);
      if (bytesRead !== bytes.length) return;
      for (const c of chunks)
        // A changed chunk is left for completion, which forgets it.
        if (crc32c(bytes.subarray(c.start - from, c.end - from)) !== c.crc32c) return;
      if (s.hash === digest) digest.offer(from, bytes);
    })()
      .catch(() => undefined) // Closed meanwhile (the item completed): read back at completion.
      .finally(() => {
        s.catchingUp = false;
        if (s.hash === digest && digest.hashedTo > from) this.#catchUp(s);
      });
  }

  /**
   * The SHA-256 of the whole item: the running digest, finished from disk, or all from disk. Runs
   * in the item's queue, with every byte stored.
   * @param checked whether the bytes read back are checked against their chunks' CRC-32C first
   *   (when the digest is not compared with the client's, nothing else would catch bytes changed
   *   at rest): a chunk that does not match is forgotten, and `storage-failed` thrown
   */
  async #digest(slot: Slot, checked: boolean): Promise<string> {
    const { size, itemId } = slot.record;
    const running = slot.hash && slot.hash.hashedTo <= size ? await slot.hash.take() : undefined;
    slot.hash?.drop();
    slot.hash = undefined;
    const hash = running?.hash ?? createHash('sha256');
    const from = running?.from ?? 0;
    if (from < size && !checked) {
      for await (const chunk of createReadStream(this.#dataPath(itemId), {
        start: from,
        end: size - 1,
      }))
        hash.update(chunk as Buffer);
    } else if (from < size) {
      const fh = await open(this.#dataPath(itemId), 'r');
      try {
        for (const c of chunksOverlapping(slot.chunks, from, size)) {
          const bytes = Buffer.allocUnsafe(c.end - c.start);
          const { bytesRead } = await fh.read(bytes, 0, bytes.length, c.start);
          if (bytesRead !== bytes.length || crc32c(bytes) !== c.crc32c) {
            await this.#forget(slot, [c]);
            this.#onCorrupt?.(itemId, { start: c.start, end: c.end });
            throw new StoreError(
              'storage-failed',
              `bytes ${c.start}..${c.end} of ${itemId} changed at rest; they must be uploaded again`,
            );
          }
          hash.update(bytes.subarray(Math.max(from, c.start) - c.start));
        }
      } finally {
        await fh.close();
      }
    }
    return hash.digest('hex');
  }

  /**
   * Forgets chunks (their bytes are wrong): rewrites the journal without them, and the item is no
   * longer complete.
   */
  async #forget(slot: Slot, gone: readonly Chunk[]): Promise<void> {
    // Forgotten already (a reader with an older list of chunks found the same damage).
    if (gone.length > 0 && !gone.some((c) => slot.chunks.includes(c))) return;
    await slot.nextCommit?.catch(() => undefined);
    await slot.committing?.catch(() => undefined);
    const { itemId } = slot.record;
    const chunks = slot.chunks.filter((c) => !gone.includes(c));
    await slot.journal?.close().catch(() => undefined);
    delete slot.journal;
    const path = this.#journalPath(itemId);
    await this.#replace(path, encodeChunks(chunks));
    slot.chunks = chunks;
    slot.journalBytes = chunks.length * CHUNK_RECORD_BYTES;
    slot.journalTorn = false;
    slot.hash?.drop();
    slot.hash = chunks.length === 0 ? new RunningDigest(this.#aheadBudget) : undefined;
    let ranges: ByteRange[] = [];
    for (const c of chunks) ranges = addRange(ranges, c);
    // Counted as just stored: the item waits a whole partialTtlMs for the bytes to come again.
    const next: ItemRecord = { ...slot.record, ranges, complete: false, updatedAt: Date.now() };
    delete (next as { sha256?: string }).sha256;
    if (slot.record.complete) await this.#saveMeta(next);
    this.#set(slot, next);
  }

  /** Yields `[start, end)` of an item, chunk by chunk, each checked against its CRC-32C. */
  async *#verified(itemId: string, start: number, end: number): AsyncGenerator<StoredBytes> {
    if (end <= start) return;
    const slot = await this.#slot(itemId);
    const chunks = slot ? chunksOverlapping(slot.chunks, start, end) : [];
    let at = start;
    for (const c of chunks) {
      if (c.start > at) break;
      at = c.end;
    }
    if (!slot || at < end) {
      throw new StoreError('out-of-range', `bytes ${start}..${end} of ${itemId} are not stored`);
    }
    const fh = await open(this.#dataPath(itemId), 'r');
    try {
      for (const c of chunks) {
        const bytes = Buffer.allocUnsafe(c.end - c.start);
        const { bytesRead } = await fh.read(bytes, 0, bytes.length, c.start);
        if (bytesRead !== bytes.length || crc32c(bytes) !== c.crc32c) {
          await this.#serial(itemId, (s) => this.#forget(s, [c]));
          this.#onCorrupt?.(itemId, { start: c.start, end: c.end });
          throw new StoreError(
            'storage-failed',
            `bytes ${c.start}..${c.end} of ${itemId} changed at rest; they must be uploaded again`,
          );
        }
        const from = Math.max(start, c.start) - c.start;
        const to = Math.min(end, c.end) - c.start;
        // The stored chunk's checksum, just checked, is the piece's when the piece is all of it.
        yield from === 0 && to === bytes.length
          ? { bytes, crc32c: c.crc32c }
          : { bytes: bytes.subarray(from, to) };
      }
    } finally {
      await fh.close();
    }
  }

  #slot(itemId: string, create?: NewItem & { size: number }): Promise<Slot | undefined> {
    const deleting = this.#deleting.get(itemId);
    if (deleting) return deleting.then(() => this.#slot(itemId, create));
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
    let meta = await this.#loadMeta(itemId);
    const slot: Slot = {
      record: undefined as unknown as ItemRecord,
      chunks: [],
      pending: [],
      flushing: [],
      journalBytes: 0,
      journalTorn: false,
      queue: Promise.resolve(),
      hash: new RunningDigest(this.#aheadBudget),
    };
    if (!meta) {
      if (create === undefined) return undefined;
      await this.#reserve(itemId, create.size, create.owner ?? '');
      meta = {
        itemId,
        size: create.size,
        complete: false,
        createdAt: Date.now(),
        ...(create.owner === undefined ? {} : { owner: create.owner }),
        ...(create.mime ? { mime: create.mime } : {}),
        ...(create.name ? { name: create.name } : {}),
      };
      try {
        await mkdir(join(this.#dir, itemId), { recursive: true });
        if (this.#sync) await syncFolder(this.#dir);
        slot.handle = await open(this.#dataPath(itemId), 'w+');
        await (await open(this.#journalPath(itemId), 'w')).close();
        // Its folder is flushed after meta.json is renamed in: the three names are durable.
        await this.#saveMeta(meta);
      } catch (e) {
        await slot.handle?.close().catch(() => undefined);
        (await this.#usage)?.delete(itemId);
        await rm(join(this.#dir, itemId), { recursive: true, force: true }).catch(() => undefined);
        throw storageError(e, `could not create item ${itemId}`);
      }
      slot.record = { ...meta, ranges: [] };
    } else {
      const journal = await readFile(this.#journalPath(itemId)).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Uint8Array(0);
        throw e;
      });
      const { chunks, validBytes } = decodeChunks(journal);
      slot.chunks = latestChunks(chunks);
      slot.journalBytes = validBytes;
      // A record torn by a crash is cut before anything is appended after it.
      slot.journalTorn = validBytes < journal.length;
      let ranges: ByteRange[] = [];
      for (const c of slot.chunks) ranges = addRange(ranges, c);
      const updatedAt = await this.#journalTime(itemId, meta.createdAt);
      slot.record = { ...meta, ranges, updatedAt };
      if (meta.complete && !covers(ranges, { start: 0, end: meta.size })) {
        // Records of a complete item were lost: it is partial again, and its bytes can come again.
        const partial: ItemRecord = { ...slot.record, complete: false };
        delete (partial as { sha256?: string }).sha256;
        slot.record = partial;
      }
    }
    this.#slots.set(itemId, slot);
    this.#evict();
    return slot;
  }

  /** Forgets the oldest complete items with no open file, past `maxCachedItems`. */
  #evict(): void {
    for (const [itemId, slot] of this.#slots) {
      if (this.#slots.size <= this.#maxCached) return;
      if (slot.record.complete && !slot.handle && !slot.journal) this.#slots.delete(itemId);
    }
  }

  /** When bytes were last stored: the journal's modification time. */
  async #journalTime(itemId: string, fallback: number): Promise<number> {
    try {
      return (await stat(this.#journalPath(itemId))).mtimeMs;
    } catch {
      return fallback;
    }
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
      const meta = await this.#loadMeta(itemId).catch(() => undefined);
      if (meta) usage.set(itemId, { owner: meta.owner ?? '', size: meta.size });
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

  #journalPath(itemId: string): string {
    return join(this.#dir, itemId, 'chunks');
  }

  async #loadMeta(itemId: string): Promise<Meta | undefined> {
    try {
      return JSON.parse(await readFile(join(this.#dir, itemId, 'meta.json'), 'utf8')) as Meta;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** Replaces `meta.json` atomically; with `fsync`, durably. */
  async #saveMeta(record: Meta | ItemRecord): Promise<void> {
    const meta: { -readonly [K in keyof ItemRecord]?: ItemRecord[K] } = { ...record };
    delete meta.ranges;
    delete meta.updatedAt;
    await this.#replace(join(this.#dir, record.itemId, 'meta.json'), JSON.stringify(meta));
  }

  /** Replaces a file atomically (write a temporary file, rename it); with `fsync`, durably. */
  async #replace(path: string, content: string | Uint8Array): Promise<void> {
    const fh = await open(`${path}.tmp`, 'w');
    try {
      await fh.writeFile(content);
      if (this.#sync) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(`${path}.tmp`, path);
    if (this.#sync) await syncFolder(join(path, '..'));
  }
}

/**
 * The most chunks (journal records) an item may be stored in: one per 4 KiB on average, and at
 * least 1024, so a client sending tiny chunks cannot make the journal and the server's memory grow
 * far past the item.
 */
export function maxChunks(size: number): number {
  return Math.max(1024, Math.ceil(size / 4096));
}

/** Bytes the running digest reads back from disk at a time to close a gap. */
const CATCH_UP_BYTES = 4 * 1024 * 1024;

/** What is stored or being stored: durable ranges plus the chunks not yet durable. */
function knownRanges(slot: Slot): ByteRange[] {
  let ranges = [...slot.record.ranges];
  for (const c of slot.pending) ranges = addRange(ranges, c);
  for (const c of slot.flushing) ranges = addRange(ranges, c);
  return ranges;
}

/**
 * The chunks of a journal as a sorted list without overlaps: when two records overlap (bytes
 * written again after a flush failed), the later one describes what is on disk.
 */
function latestChunks(chunks: readonly Chunk[]): Chunk[] {
  const sorted = [...chunks].sort((a, b) => a.start - b.start);
  if (sorted.every((c, i) => i === 0 || sorted[i - 1]!.end <= c.start)) return sorted;
  // Rare: overlaps only come from batches whose flush failed after their records were written.
  const kept: Chunk[] = [];
  for (let i = chunks.length - 1; i >= 0; i--) {
    const c = chunks[i]!;
    if (!kept.some((k) => k.start < c.end && c.start < k.end)) kept.push(c);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** Throws `conflict` unless the file holds `bytes` at `position`. */
async function sameBytes(
  fh: FileHandle,
  bytes: Uint8Array,
  position: number,
  itemId: string,
): Promise<void> {
  const stored = Buffer.allocUnsafe(bytes.length);
  const { bytesRead } = await fh.read(stored, 0, stored.length, position);
  if (bytesRead !== bytes.length || !stored.equals(bytes)) {
    throw new StoreError(
      'conflict',
      `bytes ${position}..${position + bytes.length} of ${itemId} are stored with other content`,
    );
  }
}

/** Flushes a folder, so the names created in it survive a crash of the machine. */
async function syncFolder(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Writes `parts` one after the other at `position`, all of them (the system may write less). */
async function writeAll(
  fh: FileHandle,
  parts: readonly Uint8Array[],
  position: number,
): Promise<void> {
  let left = parts.filter((part) => part.length > 0);
  while (left.length > 0) {
    let { bytesWritten } =
      left.length === 1
        ? await fh.write(left[0]!, 0, left[0]!.length, position)
        : await fh.writev(left, position);
    position += bytesWritten;
    let i = 0;
    while (i < left.length && bytesWritten >= left[i]!.length) bytesWritten -= left[i++]!.length;
    left = left.slice(i);
    if (bytesWritten > 0) left[0] = left[0]!.subarray(bytesWritten);
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
