/**
 * The engine's side of resume records: each item's record written and dropped in order, failures
 * reported without ever reaching an upload, the Web Locks that tell pages which of them holds an
 * item, and the checks that a file given back is the one remembered.
 */
import { sha256 } from 'hash-wasm';
import { ResumeError } from '../errors.js';
import type { ResumeRecord, ResumeStore } from './resume-store.js';

/** Bytes at each end of a file whose SHA-256 a record keeps: 64 KiB. */
export const RESUME_CHECK_BYTES = 64 * 1024;

/** Prefix of the Web Locks a page holds on the items it holds. */
const LOCK_PREFIX = 'ws-uploader-item:';

/** A remembered item found again, its file read from its handle, and its lock taken. */
export interface Restorable {
  readonly record: ResumeRecord;
  readonly file: File;
  /** Lets go of the item's lock. */
  readonly release: () => void;
}

/**
 * Keeps the resume records of the items an engine holds.
 * @internal
 */
export class ResumeKeeper {
  readonly #store: ResumeStore;
  readonly #failed: (error: ResumeError) => void;
  /** Each item's last operation: the next one waits for it. */
  readonly #ops = new Map<string, Promise<void>>();
  /** Locks on the items this page holds, taken or being taken. */
  readonly #locks = new Map<string, Promise<(() => void) | undefined>>();

  /**
   * @param store where records are kept
   * @param failed told of each background write or delete that failed
   */
  constructor(store: ResumeStore, failed: (error: ResumeError) => void) {
    this.#store = store;
    this.#failed = failed;
  }

  /**
   * Writes the record of an item in the background, with the SHA-256 of its file's ends, and
   * takes the item's lock.
   */
  remember(record: Omit<ResumeRecord, 'headSha256' | 'tailSha256'>, file: Blob): void {
    this.#background(record.itemId, async (s) => s.put({ ...record, ...(await fileEnds(file)) }));
    if (!this.#locks.has(record.itemId)) this.#locks.set(record.itemId, lockItem(record.itemId));
  }

  /** Writes a record as it is, in the background. */
  save(record: ResumeRecord): void {
    this.#background(record.itemId, (s) => s.put(record));
  }

  /** Drops a record in the background. */
  drop(itemId: string): void {
    this.#background(itemId, (s) => s.delete(itemId));
  }

  /**
   * Drops a record, after the item's writes.
   * @throws {ResumeError} (as a rejection) `resume-storage-failed`
   */
  forget(itemId: string): Promise<void> {
    return this.#op(itemId, (s) => s.delete(itemId));
  }

  /**
   * The record of an item.
   * @throws {ResumeError} (as a rejection) `resume-storage-failed`
   */
  async get(itemId: string): Promise<ResumeRecord | undefined> {
    try {
      return await this.#store.get(itemId);
    } catch (e) {
      throw storageError(e, itemId);
    }
  }

  /**
   * Records of items no page holds: not this one (`held`), nor another (by its lock). Oldest
   * first.
   * @throws {ResumeError} (as a rejection) `resume-storage-failed`
   */
  async waiting(held: (itemId: string) => boolean): Promise<ResumeRecord[]> {
    let records: ResumeRecord[];
    try {
      records = await this.#store.list();
    } catch (e) {
      throw storageError(e);
    }
    const locked = await lockedItems();
    return records
      .filter((r) => !held(r.itemId) && !locked.has(r.itemId))
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * Records whose handle reads without asking and gives the file remembered, of items no page
   * holds; each with its lock taken. A file changed since, or gone, is left for `waiting()`.
   */
  async restorable(held: (itemId: string) => boolean): Promise<Restorable[]> {
    let records: ResumeRecord[];
    try {
      records = await this.#store.list();
    } catch (e) {
      this.#failed(storageError(e));
      return [];
    }
    const found: Restorable[] = [];
    for (const record of records) {
      const { itemId, handle } = record;
      if (!handle || held(itemId) || !(await canRead(handle))) continue;
      const release = await lockItem(itemId);
      if (!release) continue; // Another page holds it.
      const file = await handle.getFile().catch(() => undefined);
      const differ = file ? await compareFile(record, file).catch(() => ['unreadable']) : [];
      if (file && differ.length === 0) found.push({ record, file, release });
      else release();
    }
    return found;
  }

  /** Takes over a lock taken for an item this page now holds. */
  adopt(itemId: string, release: () => void): void {
    this.unlock(itemId);
    this.#locks.set(itemId, Promise.resolve(release));
  }

  /** Lets go of an item's lock, if this page holds it. */
  unlock(itemId: string): void {
    const lock = this.#locks.get(itemId);
    this.#locks.delete(itemId);
    void lock?.then((release) => release?.());
  }

  #background(itemId: string, op: (store: ResumeStore) => Promise<void>): void {
    this.#op(itemId, op).catch(this.#failed);
  }

  /** Runs an operation after the item's earlier ones; rejects with a {@link ResumeError}. */
  #op(itemId: string, op: (store: ResumeStore) => Promise<void>): Promise<void> {
    const run = (this.#ops.get(itemId) ?? Promise.resolve()).then(() => op(this.#store));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#ops.set(itemId, settled);
    void settled.then(() => {
      if (this.#ops.get(itemId) === settled) this.#ops.delete(itemId);
    });
    return run.catch((e: unknown) => {
      throw storageError(e, itemId);
    });
  }
}

/**
 * Checks that a file is the one a record remembers.
 * @throws {ResumeError} (as a rejection) `file-mismatch` (with what differs), `file-unreadable`
 */
export async function checkFile(record: ResumeRecord, file: File): Promise<void> {
  const { itemId } = record;
  let mismatch: FileMismatch[];
  try {
    mismatch = await compareFile(record, file);
  } catch (e) {
    throw new ResumeError('file-unreadable', `cannot read the file for item ${itemId}`, {
      itemId,
      cause: e,
    });
  }
  if (mismatch.length > 0)
    throw new ResumeError(
      'file-mismatch',
      `the file is not the one remembered for item ${itemId}: ${mismatch.join(', ')} differ`,
      { itemId, mismatch },
    );
}

/**
 * The file behind a handle.
 * @throws {ResumeError} (as a rejection) `file-unreadable`
 */
export async function fileOf(handle: FileSystemFileHandle, itemId?: string): Promise<File> {
  try {
    return await handle.getFile();
  } catch (e) {
    throw new ResumeError('file-unreadable', `cannot get the file of handle ${handle.name}`, {
      ...(itemId === undefined ? {} : { itemId }),
      cause: e,
    });
  }
}

/** A failure of the store, as reported. */
function storageError(e: unknown, itemId?: string): ResumeError {
  if (e instanceof ResumeError) return e;
  return new ResumeError('resume-storage-failed', `resume records: ${String(e)}`, {
    ...(itemId === undefined ? {} : { itemId }),
    cause: e,
  });
}

/** Hex SHA-256 of the first and last {@link RESUME_CHECK_BYTES} of a file. */
export async function fileEnds(blob: Blob): Promise<{ headSha256: string; tailSha256: string }> {
  const head = blob.slice(0, Math.min(blob.size, RESUME_CHECK_BYTES));
  const tail = blob.slice(Math.max(0, blob.size - RESUME_CHECK_BYTES), blob.size);
  const [headSha256, tailSha256] = await Promise.all([
    head.arrayBuffer().then((b) => sha256(new Uint8Array(b))),
    tail.arrayBuffer().then((b) => sha256(new Uint8Array(b))),
  ]);
  return { headSha256, tailSha256 };
}

/** A property of a file a record and the file given to resume it disagree on. */
export type FileMismatch = 'name' | 'size' | 'mime' | 'lastModified' | 'head' | 'tail';

/**
 * What differs between a record and a file: first the metadata (name, size, type, last
 * modification), then, when the size is the same, the SHA-256 of its first and last 64 KiB.
 * @returns nothing when it is the same file
 * @throws the read's error when the file cannot be read
 */
export async function compareFile(record: ResumeRecord, file: File): Promise<FileMismatch[]> {
  const differ: FileMismatch[] = [];
  if (itemName(file.name) !== record.name) differ.push('name');
  if (file.size !== record.size) differ.push('size');
  if (itemMime(file.type) !== record.mime) differ.push('mime');
  if (file.lastModified !== record.lastModified) differ.push('lastModified');
  if (file.size !== record.size) return differ;
  const ends = await fileEnds(file);
  if (ends.headSha256 !== record.headSha256) differ.push('head');
  if (ends.tailSha256 !== record.tailSha256) differ.push('tail');
  return differ;
}

/** A file's name as an item carries it (within the control protocol's 1024 characters). */
export function itemName(name: string): string {
  return name.slice(0, 1024);
}

/** A media type as an item carries it (none past the protocol's 255 characters). */
export function itemMime(type: string): string {
  return type.length <= 255 ? type : '';
}

/**
 * Whether a handle can be read without asking the user: its read permission is granted, or it
 * has no permission API (an origin-private file, say).
 */
export async function canRead(handle: FileSystemFileHandle): Promise<boolean> {
  const query = (handle as PermissionAware).queryPermission;
  if (typeof query !== 'function') return true;
  try {
    return (await query.call(handle, { mode: 'read' })) === 'granted';
  } catch {
    return false;
  }
}

/** The permission part of the File System Access API (Chromium); not in TypeScript's DOM types. */
interface PermissionAware {
  queryPermission?: (descriptor: { mode: 'read' | 'readwrite' }) => Promise<PermissionState>;
}

/**
 * Takes the Web Lock that says this page holds an item, when no other page holds it. The lock is
 * let go by the function returned, or when the page goes away (a reload, a closed tab). Without
 * the Web Locks API every page may take every item.
 * @returns a function letting go of it, or nothing when another page holds the item
 */
export function lockItem(itemId: string): Promise<(() => void) | undefined> {
  const locks = webLocks();
  if (!locks) return Promise.resolve(() => undefined);
  return new Promise((resolve) => {
    locks
      .request(LOCK_PREFIX + itemId, { ifAvailable: true }, (lock) => {
        if (!lock) {
          resolve(undefined);
          return undefined;
        }
        return new Promise<void>((release) => resolve(() => release()));
      })
      // A lock manager that fails (an opaque origin, say) locks nothing.
      .catch(() => resolve(() => undefined));
  });
}

/** Items whose lock a page holds (this one or another), by the Web Locks API. */
export async function lockedItems(): Promise<Set<string>> {
  const locks = webLocks();
  if (!locks) return new Set();
  try {
    const { held = [] } = await locks.query();
    return new Set(
      held
        .map((l) => l.name ?? '')
        .filter((n) => n.startsWith(LOCK_PREFIX))
        .map((n) => n.slice(LOCK_PREFIX.length)),
    );
  } catch {
    return new Set();
  }
}

function webLocks(): LockManager | undefined {
  return typeof navigator === 'object' ? (navigator.locks ?? undefined) : undefined;
}
