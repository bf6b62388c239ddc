/**
 * Resume records: what the engine remembers of each unfinished item, so that a page loaded again
 * (a reload, a browser restart) can carry on with it under the same item id. They live in
 * IndexedDB by default; a record holds the file's fingerprint (name, size, type, last
 * modification, and SHA-256 of its first and last 64 KiB) and, when the page had one, a
 * `FileSystemFileHandle` to read the file again without asking the user.
 */
import type { ItemKind } from '../protocol/control.js';
import { ConfigError } from '../errors.js';

/** What the engine remembers of an unfinished item. */
export interface ResumeRecord {
  /** The item's id, published again when it resumes. */
  readonly itemId: string;
  readonly name: string;
  readonly size: number;
  /** The file's media type, as published. */
  readonly mime: string;
  /** The file's `lastModified`, in ms since the epoch. */
  readonly lastModified: number;
  readonly kind: ItemKind;
  /** Hex SHA-256 of the first 64 KiB (all of them when shorter). */
  readonly headSha256: string;
  /** Hex SHA-256 of the last 64 KiB (all of them when shorter). */
  readonly tailSha256: string;
  /** When the item was first remembered, in ms since the epoch. */
  readonly createdAt: number;
  /** A handle to the file, when the page added it from one. */
  readonly handle?: FileSystemFileHandle;
}

/**
 * Where resume records are kept. The engine's default keeps them in IndexedDB; tests or apps
 * may pass their own (for example one that keeps them in memory). A method that fails rejects;
 * the engine reports it and goes on uploading.
 */
export interface ResumeStore {
  /** Adds or replaces the record of `record.itemId`. */
  put(record: ResumeRecord): Promise<void>;
  /** The record of an item, if there is one. */
  get(itemId: string): Promise<ResumeRecord | undefined>;
  /** Every record. */
  list(): Promise<ResumeRecord[]>;
  /** Drops the record of an item (nothing happens when there is none). */
  delete(itemId: string): Promise<void>;
}

/** The `resume` engine option when it is on. */
export interface ResumeOptions {
  /** Name of the IndexedDB database. @default 'ws-uploader' */
  readonly dbName?: string;
  /** Where records are kept instead of IndexedDB; `dbName` is then unused. */
  readonly store?: ResumeStore;
}

/** Name of the default IndexedDB database. */
const DEFAULT_DB_NAME = 'ws-uploader';
const OBJECT_STORE = 'unfinished';

/**
 * The `resume` option, checked: `false` when it is off or IndexedDB is missing (and no store is
 * given), else the store to use.
 * @throws {ConfigError} when it is neither `false`, `true` nor an object with a valid `dbName` or
 *   `store`
 * @internal
 */
export function resolveResume(value: boolean | ResumeOptions | undefined): false | ResumeOptions {
  if (value === false) return false;
  const options: ResumeOptions = value === undefined || value === true ? {} : value;
  if (typeof options !== 'object' || options === null)
    throw new ConfigError('`resume` must be false, true or { dbName, store }');
  const { dbName, store } = options;
  if (dbName !== undefined && (typeof dbName !== 'string' || dbName === ''))
    throw new ConfigError('`resume.dbName` must be a non-empty string');
  if (store !== undefined) {
    const s = store as Partial<Record<keyof ResumeStore, unknown>>;
    if (typeof s !== 'object' || s === null || !METHODS.every((m) => typeof s[m] === 'function'))
      throw new ConfigError(`\`resume.store\` must have ${METHODS.join(', ')}`);
    return { store };
  }
  if (typeof indexedDB === 'undefined') return false;
  return { store: new IndexedDbResumeStore(dbName ?? DEFAULT_DB_NAME) };
}

const METHODS: readonly (keyof ResumeStore)[] = ['put', 'get', 'list', 'delete'];

/**
 * Resume records in an IndexedDB database (one object store keyed by item id). The connection
 * opens on first use; it closes when another page needs to upgrade the database, and opens again
 * on the next call.
 * @internal
 */
export class IndexedDbResumeStore implements ResumeStore {
  readonly #name: string;
  #db: Promise<IDBDatabase> | undefined;

  /** @param dbName the database */
  constructor(dbName: string = DEFAULT_DB_NAME) {
    this.#name = dbName;
  }

  async put(record: ResumeRecord): Promise<void> {
    await this.#run('readwrite', (s) => s.put(record));
  }

  async get(itemId: string): Promise<ResumeRecord | undefined> {
    const found: unknown = await this.#run('readonly', (s) => s.get(itemId));
    return isRecord(found) ? found : undefined;
  }

  async list(): Promise<ResumeRecord[]> {
    const all: unknown[] = await this.#run('readonly', (s) => s.getAll());
    // Anything else (written by another version, say) is skipped, never trusted.
    return all.filter(isRecord);
  }

  async delete(itemId: string): Promise<void> {
    await this.#run('readwrite', (s) => s.delete(itemId));
  }

  /** Runs one request in its own transaction; resolves once the transaction completed. */
  async #run<T>(
    mode: IDBTransactionMode,
    request: (s: IDBObjectStore) => IDBRequest<T>,
  ): Promise<T> {
    const db = await this.#open();
    return new Promise<T>((resolve, reject) => {
      const tx = db.transaction(OBJECT_STORE, mode);
      const req = request(tx.objectStore(OBJECT_STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onabort = () => reject(tx.error ?? new DOMException('transaction aborted', 'AbortError'));
    });
  }

  #open(): Promise<IDBDatabase> {
    if (this.#db) return this.#db;
    const opening = new Promise<IDBDatabase>((resolve, reject) => {
      // No version: a later version of the library may have upgraded it, and still keeps the store.
      const req = indexedDB.open(this.#name);
      req.onupgradeneeded = () => req.result.createObjectStore(OBJECT_STORE, { keyPath: 'itemId' });
      req.onsuccess = () => {
        const db = req.result;
        const forget = (): void => {
          if (this.#db === opening) this.#db = undefined;
        };
        db.onversionchange = () => {
          db.close();
          forget();
        };
        db.onclose = forget;
        resolve(db);
      };
      req.onerror = () => reject(req.error);
    });
    this.#db = opening;
    opening.catch(() => {
      if (this.#db === opening) this.#db = undefined;
    });
    return opening;
  }
}

/** Whether a value read back is a record of this version. */
function isRecord(v: unknown): v is ResumeRecord {
  const r = v as Partial<Record<keyof ResumeRecord, unknown>> | null | undefined;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.itemId === 'string' &&
    typeof r.name === 'string' &&
    typeof r.size === 'number' &&
    typeof r.mime === 'string' &&
    typeof r.lastModified === 'number' &&
    typeof r.kind === 'string' &&
    typeof r.headSha256 === 'string' &&
    typeof r.tailSha256 === 'string' &&
    typeof r.createdAt === 'number' &&
    (r.handle === undefined || isFileHandle(r.handle))
  );
}

/** Whether a value is a `FileSystemFileHandle` (of any realm). */
export function isFileHandle(v: unknown): v is FileSystemFileHandle {
  const h = v as Partial<FileSystemFileHandle> | null;
  return (
    typeof h === 'object' && h !== null && h.kind === 'file' && typeof h.getFile === 'function'
  );
}
