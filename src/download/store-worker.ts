/**
 * The store Worker: writes the parts of an `OpfsItemStore` into the origin private file system
 * off the page's main thread, through `FileSystemSyncAccessHandle`s (which only a dedicated Worker
 * has), and hashes the parts of an item being downloaded as it stores them (in a hash Worker of its
 * own). The downloader's parts it fetches from the upload servers itself (`fetch`: an HTTP `Range`
 * GET, or `dup/2` `READ`s on a connection of its own per server), writing each piece to the part's
 * file as it streams in: those bytes never reach the page, and a part is never held whole. A part
 * the page stores (`put`) has its buffer handed over, not copied.
 *
 * A part goes to a file of its own under a temporary name (`{start}-{end}.part.{random}.tmp`),
 * written at its offsets and closed, then renamed to `{start}-{end}.part`: the sync
 * access handle's exclusive lock is held only on the temporary file, while the part is written, so
 * readers in other pages and in the service worker read the parts as before, and never see one
 * half written. The Worker answers once the part is renamed into place.
 *
 * Messages in are {@link StoreRequest}s; it answers each with `done` or `failed` (with the
 * `DOMException` name, so the page tells a full quota from other failures), after first saying
 * `ready` once it has loaded (`ok: false` where there are no sync access handles). Built as
 * `store-worker.js` next to the store's module, and as `dist/bundle/store-worker.js` next to the
 * bundle; `OpfsItemStore` starts it.
 * @module
 */
import { OpfsItemStore, opfsItemFolder, partFileName } from './item-store.js';
import { TransportError } from '../errors.js';
import type { Dup2Reader, ReadSink } from './dup2-reader.js';
import { BufferPool } from './buffer-pool.js';
import { PartRequestError, readBody, requestPart, type PartSource } from './fetch-part.js';
import { StoreWorkerClient } from './store-worker-client.js';
import type { PartHasher } from './part-hasher.js';

/** What the store Worker is asked. */
export type StoreRequest =
  /** Store a part of an item begun in the store (its buffer transferred); hash it in `session`. */
  | {
      readonly type: 'put';
      readonly id: number;
      readonly itemId: string;
      readonly start: number;
      readonly bytes: Uint8Array<ArrayBuffer>;
      readonly session?: number | undefined;
    }
  /**
   * Fetch a part from an upload server, over HTTP (a `Range` GET) or `dup/2` (`READ`s on a
   * connection of the session's to that server, made when first needed), and store it as it
   * streams in, hashed in `session`; answered with `done` once it is stored, or `failed` (`stage`
   * says whether the server or the store failed).
   */
  | {
      readonly type: 'fetch';
      readonly id: number;
      readonly itemId: string;
      readonly via: 'http' | 'dup2';
      readonly source: PartSource;
      readonly start: number;
      readonly end: number;
      readonly session?: number | undefined;
      /** Longest wait for the next piece of an HTTP body, in ms. */
      readonly stallMs?: number | undefined;
    }
  /** Flush the file `name` of the item's folder to the disk (asked of the Worker's twin). */
  | { readonly type: 'flush'; readonly id: number; readonly itemId: string; readonly name: string }
  /** Stop the fetch of request `target` (answered `failed`, an `AbortError`). */
  | { readonly type: 'abort'; readonly target: number }
  /** Start a session for an item of `size` bytes: its parts stored from now on with this number. */
  | ({
      readonly type: 'open';
      readonly id: number;
      readonly session: number;
      readonly itemId: string;
      readonly size: number;
    } & SessionOptions)
  /** The session's SHA-256, once all parts are stored (bytes it did not see are read back). */
  | { readonly type: 'digest'; readonly id: number; readonly session: number }
  /** Forget a session (no answer). */
  | { readonly type: 'close'; readonly session: number };

/** How a session's parts are hashed. */
export interface SessionOptions {
  /**
   * Whether they are hashed (else the session only keeps its `dup/2` connections, and has no
   * digest). @default true
   */
  readonly hash?: boolean;
  /**
   * Bytes of later parts held for the hash's turn at most (what is not held is read back from the
   * store). @default the hasher's
   */
  readonly held?: number;
}

/** What the store Worker answers. */
export type StoreReply =
  /** Loaded; `ok` where it can write with sync access handles. */
  | { readonly type: 'ready'; readonly ok: boolean }
  /** The request `id` is done; a `digest` request gets the 32-byte digest. */
  | { readonly type: 'done'; readonly id: number; readonly digest?: Uint8Array }
  /**
   * The request `id` failed: the error's name (a `DOMException` name) and message; a `fetch` says
   * whether it was the upload server (`fetch`) or the store (`store`), and `transport` when the
   * way of reading failed (the `dup/2` connection, or the HTTP request before its body), so that
   * the other way may do better.
   */
  | {
      readonly type: 'failed';
      readonly id: number;
      readonly name: string;
      readonly message: string;
      readonly stage?: 'fetch' | 'store';
      readonly transport?: boolean;
    };

// What is used here of the Worker's global scope and of the file system API, typed (the project
// compiles against the DOM lib, which has neither sync access handles nor `move()`).
interface SyncAccessHandle {
  write(buffer: Uint8Array, options: { at: number }): number;
  flush(): void;
  close(): void;
}
interface WorkerFileHandle extends FileSystemFileHandle {
  createSyncAccessHandle(): Promise<SyncAccessHandle>;
  move(name: string): Promise<void>;
}
const scope = globalThis as unknown as {
  readonly name: string;
  readonly location: Location;
  onmessage: ((event: MessageEvent<StoreRequest>) => void) | null;
  postMessage(message: StoreReply, transfer?: Transferable[]): void;
};

/** A rename onto a part another context is writing (`createWritable()`) is tried this often. */
const MOVE_ATTEMPTS = 20;
const MOVE_RETRY_MS = 50;
/** Temporary files older than this are left over from a write that never finished, in ms. */
const STALE_MS = 60_000;
const TEMP = /^\d+-\d+\.part\.[\w-]+\.tmp$/;

/** The name of the store Worker's twin, which flushes the parts this one wrote. */
const FLUSHER_NAME = 'ws-uploader-store-flush';
/**
 * The twin: this script in a Worker of its own (`undefined` in the twin itself, or where Workers
 * cannot start here: parts are then flushed on this thread).
 */
const flusher =
  scope.name === FLUSHER_NAME || typeof Worker === 'undefined'
    ? undefined
    : new StoreWorkerClient(new URL(scope.location.href), FLUSHER_NAME);

/** Reads stored parts back, for the hashing. */
const reader = new OpfsItemStore({ worker: false });
/** Sessions of the items being downloaded, each with its hasher unless it hashes nothing. */
const sessions = new Map<number, PartHasher | undefined>();
/** The buffers HTTP bodies are read into, given back once written and hashed. */
const pool = new BufferPool();

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A part's file being written: bytes go in at offsets from the part's start. */
interface PartFile {
  write(at: number, bytes: Uint8Array): void;
  /** Closed and renamed into place (or dropped where the same part is there). */
  finish(): Promise<void>;
  /** Closed and removed. */
  discard(): Promise<void>;
}

/** Opens a temporary file for the part `[start, end)`, renamed to the part's name by `finish()`. */
async function partFile(itemId: string, start: number, end: number): Promise<PartFile> {
  const dir = await opfsItemFolder(itemId, false);
  if (!dir) throw new DOMException(`no item ${itemId} in the store`, 'NotFoundError');
  const name = partFileName(start, end);
  const temp = `${name}.${crypto.randomUUID()}.tmp`;
  const file = (await dir.getFileHandle(temp, { create: true })) as WorkerFileHandle;
  let handle: SyncAccessHandle | undefined;
  const remove = () => dir.removeEntry(temp).catch(() => undefined);
  try {
    handle = await file.createSyncAccessHandle();
  } catch (e) {
    await remove();
    throw e;
  }
  const close = (): void => {
    handle?.close();
    handle = undefined;
  };
  return {
    write(at, bytes) {
      if (!handle) throw new DOMException('the part is closed', 'InvalidStateError');
      for (let done = 0; done < bytes.length;) {
        const written = handle.write(bytes.subarray(done), { at: at + done });
        if (written <= 0) throw new DOMException('the file took no bytes', 'InvalidStateError');
        done += written;
      }
    },
    async finish() {
      try {
        // On the disk before it takes its name. A flush here would stop this thread for as long
        // as the disk takes (8 % of a download's rate): the twin flushes, and this thread goes on
        // receiving the other parts meanwhile.
        const twin = (await flusher?.available()) ? flusher : undefined;
        if (!twin) handle?.flush();
        close();
        await twin?.flush(itemId, temp);
        // Another context stored the same part meanwhile: this copy goes.
        if (!(await moveIntoPlace(dir, file, name, end - start))) await remove();
      } catch (e) {
        close();
        await remove();
        throw e;
      }
    },
    async discard() {
      close();
      await remove();
    },
  };
}

/** Writes a part to a temporary file and renames it into place. */
async function put(itemId: string, start: number, bytes: Uint8Array): Promise<void> {
  const file = await partFile(itemId, start, start + bytes.length);
  try {
    file.write(0, bytes);
  } catch (e) {
    await file.discard();
    throw e;
  }
  await file.finish();
}

/** A failure of the upload server's side of a fetch (its answer, the connection). */
class FetchFailure extends Error {
  override readonly name = 'FetchFailure';
  /** The way of reading failed (the `dup/2` connection, the HTTP request), not the body. */
  readonly transport: boolean;
  constructor(message: string, transport = false) {
    super(message);
    this.transport = transport;
  }
}

/** Errors of the store's own (the file system), as opposed to the upload server's side. */
const storeFailures = new WeakSet<object>();
/** Marks `e` as a failure of the store, and gives it back to be thrown. */
const ofStore = (e: unknown): unknown => {
  if (typeof e === 'object' && e !== null) storeFailures.add(e);
  return e;
};
const isStoreFailure = (e: unknown): boolean =>
  typeof e === 'object' && e !== null && storeFailures.has(e);

/** Fetches that are running, by request id, to stop them. */
const fetches = new Map<number, AbortController>();
/** Each session's `dup/2` connections, by server and token. */
const readers = new Map<number, Map<string, Dup2Reader>>();

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Streams the part from its server into `sink`, over HTTP or the session's `dup/2` connection. */
async function streamPart(
  request: Extract<StoreRequest, { type: 'fetch' }>,
  sink: ReadSink,
  signal: AbortSignal,
): Promise<void> {
  const { itemId, source, start, end } = request;
  if (request.via === 'dup2') {
    if (source.wsUrl === undefined) throw new FetchFailure(`${source.serverId} has no dup/2 URL`);
    const session = request.session ?? 0;
    // No module to speak dup/2 with, or (below) a URL the WebSocket refuses: HTTP may do better.
    const { Dup2Reader } = await import('./dup2-reader.js').catch((e: unknown) => {
      throw new FetchFailure(`${source.serverId}: ${message(e)}`, true);
    });
    // A session closed while this request waited opens no connection that nothing would close.
    if (request.session !== undefined && !sessions.has(session))
      throw new DOMException('the download was closed', 'AbortError');
    const own = readers.get(session) ?? new Map<string, Dup2Reader>();
    readers.set(session, own);
    const key = `${source.serverId} ${source.token}`;
    let reader = own.get(key);
    if (!reader || reader.closed) {
      try {
        reader = new Dup2Reader(source.serverId, source.wsUrl, source.token, source.tokenExpiresAt);
      } catch (e) {
        throw new FetchFailure(`${source.serverId}: ${message(e)}`, true);
      }
      own.set(key, reader);
    }
    await reader.stream(itemId, { start, end }, sink, signal).catch((e: unknown) => {
      if (signal.aborted || isStoreFailure(e) || e instanceof FetchFailure) throw e;
      throw new FetchFailure(message(e), e instanceof TransportError);
    });
    return;
  }
  const response = await requestPart(itemId, source, { start, end }, signal, request.stallMs).catch(
    (e: unknown) => {
      throw signal.aborted ? e : new FetchFailure(message(e), e instanceof PartRequestError);
    },
  );
  await readBody(response, source, sink, request.stallMs, pool).catch((e: unknown) => {
    if (signal.aborted || isStoreFailure(e) || e instanceof FetchFailure) throw e;
    throw new FetchFailure(`${source.serverId}: ${message(e)}`);
  });
}

/**
 * Fetches a part and writes it to the part's file as it comes, offering each piece to the
 * session's hasher; the file is renamed into place once the whole part is there.
 */
async function fetchInto(request: Extract<StoreRequest, { type: 'fetch' }>): Promise<void> {
  const { itemId, source, start, end } = request;
  const stop = new AbortController();
  fetches.set(request.id, stop);
  try {
    const file = await partFile(itemId, start, end).catch((e: unknown) => {
      throw ofStore(e);
    });
    const hasher = request.session === undefined ? undefined : sessions.get(request.session);
    let received = 0;
    try {
      await streamPart(
        request,
        (at, bytes) => {
          if (at !== received || at + bytes.length > end - start)
            throw new FetchFailure(`${source.serverId} sent bytes out of place`);
          const length = bytes.length;
          try {
            file.write(at, bytes);
          } catch (e) {
            throw ofStore(e);
          }
          // The hasher gives the buffer back to the pool once done with it.
          if (hasher) hasher.offer(start + at, bytes as Uint8Array<ArrayBuffer>);
          else pool.give(bytes.buffer);
          received += length;
        },
        stop.signal,
      );
      if (received !== end - start)
        throw new FetchFailure(`${source.serverId} sent ${received} of ${end - start} bytes`);
    } catch (e) {
      await file.discard();
      throw e;
    }
    await file.finish().catch((e: unknown) => {
      throw ofStore(e);
    });
    hasher?.stored(start, end);
  } finally {
    fetches.delete(request.id);
  }
}

/**
 * Renames the written file to the part's name. Another context writing that part at the same
 * moment (the service worker storing a range a media element asked for) holds it for a moment:
 * tried again, and if that part is then there whole, it is the same bytes.
 * @returns whether the file was renamed (`false`: the part was there already)
 */
async function moveIntoPlace(
  dir: FileSystemDirectoryHandle,
  file: WorkerFileHandle,
  name: string,
  size: number,
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      await file.move(name);
      return true;
    } catch (e) {
      const why = (e as DOMException).name;
      if (why !== 'NoModificationAllowedError' && why !== 'InvalidModificationError') throw e;
      if (attempt >= MOVE_ATTEMPTS) {
        const there = await dir
          .getFileHandle(name)
          .then((h) => h.getFile())
          .catch(() => undefined);
        if (there?.size === size) return false;
        throw e;
      }
      await pause(MOVE_RETRY_MS);
    }
  }
}

/** Flushes a file of the item's folder, closed by the one that wrote it, to the disk. */
async function flush(itemId: string, name: string): Promise<void> {
  const dir = await opfsItemFolder(itemId, false);
  if (!dir) throw new DOMException(`no item ${itemId} in the store`, 'NotFoundError');
  const file = (await dir.getFileHandle(name)) as WorkerFileHandle;
  const handle = await file.createSyncAccessHandle();
  try {
    handle.flush();
  } finally {
    handle.close();
  }
}

/** Removes temporary files of writes that never finished (a page closed mid-write). */
async function sweep(itemId: string): Promise<void> {
  const dir = await opfsItemFolder(itemId, false);
  if (!dir) return;
  const now = Date.now();
  for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) {
    if (!TEMP.test(name)) continue;
    const file = await (await dir.getFileHandle(name)).getFile().catch(() => undefined);
    // One being written (locked) cannot be removed, and is recent anyway.
    if (file && now - file.lastModified > STALE_MS)
      await dir.removeEntry(name).catch(() => undefined);
  }
}

async function open(request: Extract<StoreRequest, { type: 'open' }>): Promise<void> {
  const { session, itemId, size, hash = true, held } = request;
  await sweep(itemId).catch(() => undefined);
  if (!hash) {
    sessions.set(session, undefined);
    return;
  }
  // Loaded on demand: a page whose Worker cannot resolve hash-wasm still has its writes here.
  const { PartHasher } = await import('./part-hasher.js');
  const { hashWorkerFactory } = await import('../engine/item-hasher.js');
  sessions.set(
    session,
    new PartHasher(
      size,
      async (start, end) => {
        const slice = await reader.slice(itemId, start, end);
        const bytes = slice && new Uint8Array(await slice.arrayBuffer());
        if (bytes?.length !== end - start)
          throw new DOMException(
            `bytes ${start}..${end} of ${itemId} are not in the store`,
            'NotFoundError',
          );
        return bytes;
      },
      // A Worker of its own hashes, so that this thread only receives and writes.
      hashWorkerFactory(true),
      held,
      (buffer) => pool.give(buffer),
    ),
  );
}

async function answer(
  request: Exclude<StoreRequest, { type: 'close' } | { type: 'abort' }>,
): Promise<StoreReply> {
  switch (request.type) {
    case 'put': {
      const { itemId, start, bytes } = request;
      const end = start + bytes.length;
      await put(itemId, start, bytes);
      const hasher = request.session === undefined ? undefined : sessions.get(request.session);
      hasher?.offer(start, bytes); // may hand the buffer over
      hasher?.stored(start, end);
      return { type: 'done', id: request.id };
    }
    case 'fetch':
      await fetchInto(request);
      return { type: 'done', id: request.id };
    case 'open':
      await open(request);
      return { type: 'done', id: request.id };
    case 'flush':
      await flush(request.itemId, request.name);
      return { type: 'done', id: request.id };
    case 'digest': {
      const hasher = sessions.get(request.session);
      if (!hasher) throw new DOMException('no such hashing session', 'InvalidStateError');
      return { type: 'done', id: request.id, digest: await hasher.digest() };
    }
  }
}

scope.onmessage = (event) => {
  const request = event.data;
  if (request.type === 'close') {
    sessions.get(request.session)?.close();
    sessions.delete(request.session);
    for (const reader of readers.get(request.session)?.values() ?? []) reader.close();
    readers.delete(request.session);
    return;
  }
  if (request.type === 'abort') {
    fetches.get(request.target)?.abort();
    return;
  }
  answer(request).then(
    (reply) => scope.postMessage(reply),
    (error: unknown) =>
      scope.postMessage({
        type: 'failed',
        id: request.id,
        name: error instanceof Error ? error.name : 'Error',
        message: error instanceof Error ? error.message : String(error),
        ...(request.type === 'fetch'
          ? {
              stage: isStoreFailure(error) ? 'store' : 'fetch',
              transport: error instanceof FetchFailure && error.transport,
            }
          : {}),
      }),
  );
};

/** Whether parts can be written here: sync access handles, and a file system the page may use. */
async function usable(): Promise<boolean> {
  if (
    typeof FileSystemFileHandle === 'undefined' ||
    !('createSyncAccessHandle' in FileSystemFileHandle.prototype)
  )
    return false;
  try {
    await navigator.storage.getDirectory();
    return true;
  } catch {
    return false; // refused (some private windows)
  }
}

void usable().then((ok) => scope.postMessage({ type: 'ready', ok }));
