/**
 * Where downloaded items are kept, for offline use: each item as its parts (one record or file per
 * fetched part, written whole or not at all, so a crash loses at most the parts in flight), its
 * metadata and, once verified, its SHA-256. The item is read back as one `Blob` made of the
 * parts, never copied into memory. The origin private file system where the browser has it
 * (parts written in the store's Worker through sync access handles where one starts, else from
 * the page's thread), IndexedDB otherwise.
 */
import type { ItemMeta } from '../protocol/control.js';
import { addRange, type ByteRange } from '../protocol/ranges.js';
import type { ItemWriter } from './item-writer.js';
import { StoreWorkerClient } from './store-worker-client.js';
import type { SessionOptions } from './store-worker.js';

/** What the store knows of an item. */
export interface StoredItem {
  /** The item's metadata (without inline `content`). */
  readonly meta: ItemMeta;
  /** The parts stored, sorted and merged. */
  readonly ranges: readonly ByteRange[];
  /** Hex SHA-256, once the whole item was verified against it. */
  readonly sha256?: string;
}

/** A store for downloaded items. */
export interface ItemStore {
  /** Where it keeps the bytes: `opfs`, `indexeddb`, or another name. */
  readonly kind: string;
  /** The item's record, or `undefined` when the store has none. */
  get(itemId: string): Promise<StoredItem | undefined>;
  /** Every item the store holds. */
  list(): Promise<StoredItem[]>;
  /** Starts keeping an item (again): its metadata; parts stored earlier stay. */
  begin(meta: ItemMeta): Promise<void>;
  /** Stores one part; once this resolves the part survives a reload. */
  put(itemId: string, start: number, bytes: Uint8Array): Promise<void>;
  /** Marks the whole item verified. */
  verified(itemId: string, sha256: string): Promise<void>;
  /** The stored bytes of the item, parts in order (gaps are missing from the `Blob`). */
  blob(itemId: string): Promise<Blob>;
  /** Bytes `[start, end)` of the item when the store has all of them, else `undefined`. */
  slice(itemId: string, start: number, end: number): Promise<Blob | undefined>;
  /** Forgets an item and its bytes. */
  delete(itemId: string): Promise<void>;
}

const ROOT = 'ws-uploader-items';
const META = 'meta.json';
const PART = /^(\d+)-(\d+)\.part$/;
/** A part file of the wrong size this old is left over from a crash, in ms. */
const TORN_AFTER_MS = 60_000;

/**
 * The name of the file of a part of an item in the origin private file system.
 * @internal
 */
export function partFileName(start: number, end: number): string {
  return `${start}-${end}.part`;
}

/**
 * The folder of an item in the origin private file system; `undefined` when there is none and
 * `create` is false.
 * @internal
 */
export async function opfsItemFolder(
  itemId: string,
  create: boolean,
): Promise<FileSystemDirectoryHandle | undefined> {
  const root = await (
    await navigator.storage.getDirectory()
  ).getDirectoryHandle(ROOT, {
    create: true,
  });
  try {
    return await root.getDirectoryHandle(itemId, { create });
  } catch (e) {
    if ((e as DOMException).name === 'NotFoundError') return undefined;
    throw e;
  }
}

/**
 * An item's metadata without inline `content`.
 * @internal
 */
export function withoutContent(meta: ItemMeta): ItemMeta {
  const plain: { -readonly [K in keyof ItemMeta]: ItemMeta[K] } = { ...meta };
  delete plain.content;
  return plain;
}

/** A stored part: its range and how to get its bytes. */
interface Piece {
  readonly start: number;
  readonly end: number;
  bytes(): Promise<Blob>;
}

/** Bytes `[start, end)` from parts sorted by start, or `undefined` when some are missing. */
async function sliceOf(
  pieces: readonly Piece[],
  start: number,
  end: number,
): Promise<Blob | undefined> {
  const out: Blob[] = [];
  let at = start;
  for (const p of pieces) {
    if (at >= end) break;
    if (p.end <= at || p.start > at) continue;
    const bytes = await p.bytes();
    const to = Math.min(end, p.end);
    out.push(bytes.slice(at - p.start, to - p.start));
    at = to;
  }
  return at >= end ? new Blob(out) : undefined;
}

function mergeAll(ranges: readonly ByteRange[]): ByteRange[] {
  return [...ranges].sort((a, b) => a.start - b.start).reduce<ByteRange[]>(addRange, []);
}

/** Options of {@link OpfsItemStore}. */
export interface OpfsItemStoreOptions {
  /**
   * Where parts are written: `true` in a Worker of the store's, started from `store-worker.js`
   * next to this module (the package ships it next to its modules, and as one file in
   * `dist/bundle/store-worker.js`), through `FileSystemSyncAccessHandle`s; there the downloader's
   * parts are fetched by the Worker itself and never reach the page's thread (a part written with
   * `put()` has its buffer handed over, not copied); a URL string or `URL` for a copy of that script served
   * elsewhere; `false` from the page's thread (`createWritable()`). Where the Worker cannot start
   * (no script at the URL, a Content-Security-Policy without `worker-src`, no sync access handles,
   * a service worker), the page's thread writes, as with `false`; {@link OpfsItemStore.writeThread}
   * tells which.
   * @default true
   */
  readonly worker?: boolean | string | URL;
}

/**
 * Parts as files of the origin private file system: `ws-uploader-items/{itemId}/{start}-{end}.part`.
 * Each part is written whole or not at all, so readers in other pages and in the service worker
 * never see one half written: in the store's Worker to a file under another name, then renamed
 * into place (not flushed: a part a crash of the machine cut short is found by its size, and
 * dropped); from the page's thread with `createWritable()` (a swap file moved into place
 * on close).
 */
export class OpfsItemStore implements ItemStore {
  readonly kind = 'opfs';
  readonly #worker: StoreWorkerClient | undefined;

  /** @param options see {@link OpfsItemStoreOptions} */
  constructor(options: OpfsItemStoreOptions = {}) {
    const worker = options.worker ?? true;
    this.#worker =
      worker === false || typeof Worker === 'undefined'
        ? undefined
        : new StoreWorkerClient(
            worker === true ? new URL('./store-worker.js', import.meta.url) : worker,
          );
  }

  /**
   * Where this store writes parts: `'worker'` (its Worker, through sync access handles; started
   * now if it is not running) or `'page'` (the thread that called, with `createWritable()`: the
   * `worker` option was `false`, or the Worker cannot start here).
   */
  async writeThread(): Promise<'worker' | 'page'> {
    return (await this.#worker?.available()) ? 'worker' : 'page';
  }

  /**
   * Stores an item's parts in the store's Worker and hashes them there as they are stored (unless
   * told not to), for the downloader; `undefined` where the Worker cannot do it (the caller then
   * uses `put()`).
   * @param itemId the item, begun
   * @param size its size
   * @param options how the parts are hashed (without `hash`, the writer's `digest()` fails)
   * @internal
   */
  async writer(
    itemId: string,
    size: number,
    options?: SessionOptions,
  ): Promise<ItemWriter | undefined> {
    const client = this.#worker;
    const session = await client?.open(itemId, size, options);
    if (!client || session === undefined) return undefined;
    return {
      thread: 'worker',
      put: async (start, bytes) => {
        // Handed over (transferred) to the Worker; written here if it is gone and cannot start.
        if (!(await client.put(itemId, start, bytes, { session })))
          await this.#putHere(itemId, start, bytes);
      },
      fetch: (via, source, part, signal, stallMs) =>
        client.fetch(itemId, via, source, part, { session, signal, stallMs }),
      digest: () => client.digest(session),
      close: () => client.close(session),
    };
  }

  async #write(
    dir: FileSystemDirectoryHandle,
    name: string,
    data: Blob | Uint8Array,
  ): Promise<void> {
    const file = await dir.getFileHandle(name, { create: true });
    // Written to a swap file and moved into place on close: all or nothing.
    const w = await file.createWritable();
    try {
      await w.write(data as FileSystemWriteChunkType);
      await w.close();
    } catch (e) {
      await w.abort().catch(() => undefined);
      throw e;
    }
  }

  async #parts(dir: FileSystemDirectoryHandle): Promise<{ range: ByteRange; name: string }[]> {
    const parts: { range: ByteRange; name: string }[] = [];
    for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) {
      const m = PART.exec(name);
      if (m) parts.push({ range: { start: Number(m[1]), end: Number(m[2]) }, name });
    }
    return parts.sort((a, b) => a.range.start - b.range.start);
  }

  async get(itemId: string): Promise<StoredItem | undefined> {
    const dir = await opfsItemFolder(itemId, false);
    if (!dir) return undefined;
    let record: { meta: ItemMeta; sha256?: string };
    try {
      record = JSON.parse(await (await (await dir.getFileHandle(META)).getFile()).text()) as {
        meta: ItemMeta;
        sha256?: string;
      };
    } catch {
      return undefined;
    }
    // A part cut short (the machine stopped before its bytes reached the disk: parts written from
    // the page's thread are not flushed) does not count; it is fetched again. It is removed
    // once it is old (a moment ago, it may be one another context is writing).
    const whole: ByteRange[] = [];
    for (const { range, name } of await this.#parts(dir)) {
      const file = await dir
        .getFileHandle(name)
        .then((h) => h.getFile())
        .catch(() => undefined); // removed meanwhile
      if (file?.size === range.end - range.start) whole.push(range);
      else if (file && Date.now() - file.lastModified > TORN_AFTER_MS)
        await dir.removeEntry(name).catch(() => undefined);
    }
    return { ...record, ranges: mergeAll(whole) };
  }

  async list(): Promise<StoredItem[]> {
    const root = await (
      await navigator.storage.getDirectory()
    ).getDirectoryHandle(ROOT, {
      create: true,
    });
    const out: StoredItem[] = [];
    for await (const name of (root as unknown as { keys(): AsyncIterable<string> }).keys()) {
      const item = await this.get(name);
      if (item) out.push(item);
    }
    return out;
  }

  async begin(meta: ItemMeta): Promise<void> {
    const dir = (await opfsItemFolder(meta.itemId, true))!;
    const existing = await this.get(meta.itemId);
    const plain = withoutContent(meta);
    await this.#write(
      dir,
      META,
      new TextEncoder().encode(
        JSON.stringify({ meta: plain, ...(existing?.sha256 ? { sha256: existing.sha256 } : {}) }),
      ),
    );
  }

  /**
   * Stores one part: a copy of its bytes goes to the store's Worker (the caller keeps them), or it
   * is written from this thread (see {@link OpfsItemStore.writeThread}).
   * @param itemId the item, begun
   * @param start the part's offset
   * @param bytes its bytes
   */
  async put(itemId: string, start: number, bytes: Uint8Array): Promise<void> {
    if (!(await this.#worker?.put(itemId, start, bytes, { copy: true })))
      await this.#putHere(itemId, start, bytes);
  }

  async #putHere(itemId: string, start: number, bytes: Uint8Array): Promise<void> {
    const dir = await opfsItemFolder(itemId, false);
    if (!dir) throw new DOMException(`no item ${itemId} in the store`, 'NotFoundError');
    await this.#write(dir, partFileName(start, start + bytes.length), bytes);
  }

  async verified(itemId: string, sha256: string): Promise<void> {
    const dir = await opfsItemFolder(itemId, false);
    const item = await this.get(itemId);
    if (!dir || !item) throw new DOMException(`no item ${itemId} in the store`, 'NotFoundError');
    await this.#write(
      dir,
      META,
      new TextEncoder().encode(JSON.stringify({ meta: item.meta, sha256 })),
    );
  }

  async blob(itemId: string): Promise<Blob> {
    const dir = await opfsItemFolder(itemId, false);
    if (!dir) return new Blob([]);
    const item = await this.get(itemId);
    const files: Blob[] = [];
    let at = 0;
    for (const { range, name } of await this.#parts(dir)) {
      if (range.end <= at) continue; // a part stored twice
      const file = await (await dir.getFileHandle(name)).getFile();
      files.push(range.start < at ? file.slice(at - range.start) : file);
      at = range.end;
    }
    return new Blob(files, { type: item?.meta.mime ?? '' });
  }

  async slice(itemId: string, start: number, end: number): Promise<Blob | undefined> {
    const dir = await opfsItemFolder(itemId, false);
    if (!dir) return undefined;
    const pieces = (await this.#parts(dir)).map(({ range, name }) => ({
      ...range,
      bytes: async () => (await dir.getFileHandle(name)).getFile(),
    }));
    return sliceOf(pieces, start, end);
  }

  async delete(itemId: string): Promise<void> {
    const root = await (
      await navigator.storage.getDirectory()
    ).getDirectoryHandle(ROOT, {
      create: true,
    });
    // A part being written (by the service worker, say) keeps the folder busy for a moment
    // (NoModificationAllowedError), or adds a file to it while it is being emptied (Chromium
    // reports the folder not empty as InvalidModificationError): tried again.
    for (let attempt = 0; ; attempt++) {
      try {
        await root.removeEntry(itemId, { recursive: true });
        return;
      } catch (e) {
        const name = (e as DOMException).name;
        if (name === 'NotFoundError') return;
        const busy = name === 'NoModificationAllowedError' || name === 'InvalidModificationError';
        if (!busy || attempt >= 20) throw e;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
}

/** Parts as `Blob` records in IndexedDB: for browsers without the origin private file system. */
export class IndexedDbItemStore implements ItemStore {
  readonly kind = 'indexeddb';
  readonly #name: string;
  #db: Promise<IDBDatabase> | undefined;

  /** @param name the database @default 'ws-uploader-items' */
  constructor(name = 'ws-uploader-items') {
    this.#name = name;
  }

  #open(): Promise<IDBDatabase> {
    this.#db ??= new Promise((resolve, reject) => {
      const req = indexedDB.open(this.#name, 1);
      req.onupgradeneeded = () => {
        req.result.createObjectStore('items', { keyPath: 'meta.itemId' });
        req.result.createObjectStore('parts', { keyPath: ['itemId', 'start'] });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return this.#db;
  }

  async #run<T>(
    stores: string[],
    mode: IDBTransactionMode,
    work: (tx: IDBTransaction) => IDBRequest<T> | undefined,
  ): Promise<T | undefined> {
    const db = await this.#open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(stores, mode);
      const req = work(tx);
      tx.oncomplete = () => resolve(req?.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  async #parts(itemId: string): Promise<{ start: number; end: number; bytes: Blob }[]> {
    const range = IDBKeyRange.bound([itemId, 0], [itemId, Number.MAX_SAFE_INTEGER]);
    const parts =
      (await this.#run(['parts'], 'readonly', (tx) => tx.objectStore('parts').getAll(range))) ?? [];
    return (parts as { start: number; end: number; bytes: Blob }[]).sort(
      (a, b) => a.start - b.start,
    );
  }

  async get(itemId: string): Promise<StoredItem | undefined> {
    const record = (await this.#run(['items'], 'readonly', (tx) =>
      tx.objectStore('items').get(itemId),
    )) as { meta: ItemMeta; sha256?: string } | undefined;
    if (!record) return undefined;
    const ranges = mergeAll((await this.#parts(itemId)).map(({ start, end }) => ({ start, end })));
    return { ...record, ranges };
  }

  async list(): Promise<StoredItem[]> {
    const records = ((await this.#run(['items'], 'readonly', (tx) =>
      tx.objectStore('items').getAll(),
    )) ?? []) as { meta: ItemMeta }[];
    const out: StoredItem[] = [];
    for (const r of records) {
      const item = await this.get(r.meta.itemId);
      if (item) out.push(item);
    }
    return out;
  }

  async begin(meta: ItemMeta): Promise<void> {
    const existing = await this.get(meta.itemId);
    const plain = withoutContent(meta);
    await this.#run(['items'], 'readwrite', (tx) =>
      tx
        .objectStore('items')
        .put({ meta: plain, ...(existing?.sha256 ? { sha256: existing.sha256 } : {}) }),
    );
  }

  async put(itemId: string, start: number, bytes: Uint8Array): Promise<void> {
    const part = {
      itemId,
      start,
      end: start + bytes.length,
      bytes: new Blob([bytes as Uint8Array<ArrayBuffer>]),
    };
    await this.#run(['parts'], 'readwrite', (tx) => tx.objectStore('parts').put(part));
  }

  async verified(itemId: string, sha256: string): Promise<void> {
    const item = await this.get(itemId);
    if (!item) throw new DOMException(`no item ${itemId} in the store`, 'NotFoundError');
    await this.#run(['items'], 'readwrite', (tx) =>
      tx.objectStore('items').put({ meta: item.meta, sha256 }),
    );
  }

  async blob(itemId: string): Promise<Blob> {
    const item = await this.get(itemId);
    const blobs: Blob[] = [];
    let at = 0;
    for (const { start, end, bytes } of await this.#parts(itemId)) {
      if (end <= at) continue;
      blobs.push(start < at ? bytes.slice(at - start) : bytes);
      at = end;
    }
    return new Blob(blobs, { type: item?.meta.mime ?? '' });
  }

  async slice(itemId: string, start: number, end: number): Promise<Blob | undefined> {
    const pieces = (await this.#parts(itemId)).map((p) => ({
      start: p.start,
      end: p.end,
      bytes: () => Promise.resolve(p.bytes),
    }));
    return sliceOf(pieces, start, end);
  }

  async delete(itemId: string): Promise<void> {
    const range = IDBKeyRange.bound([itemId, 0], [itemId, Number.MAX_SAFE_INTEGER]);
    await this.#run(['items', 'parts'], 'readwrite', (tx) => {
      tx.objectStore('parts').delete(range);
      return tx.objectStore('items').delete(itemId);
    });
  }
}

/**
 * The best store this browser has: the origin private file system, else IndexedDB.
 * @internal
 */
export async function defaultItemStore(): Promise<ItemStore> {
  try {
    if (
      typeof FileSystemFileHandle !== 'undefined' &&
      'createWritable' in FileSystemFileHandle.prototype
    ) {
      await navigator.storage.getDirectory(); // refused in some private windows
      return new OpfsItemStore();
    }
  } catch {
    // No origin private file system here.
  }
  return new IndexedDbItemStore();
}
