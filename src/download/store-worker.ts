/**
 * The store Worker: writes the parts of an `OpfsItemStore` into the origin private file system
 * off the page's main thread, through `FileSystemSyncAccessHandle`s (which only a dedicated Worker
 * has), and hashes the parts of an item being downloaded as it stores them, so the page hands each
 * part's buffer over once and never touches its bytes again.
 *
 * A part goes to a file of its own under a temporary name (`{start}-{end}.part.{random}.tmp`),
 * written whole at its offset, flushed and closed, then renamed to `{start}-{end}.part`: the sync
 * access handle's exclusive lock is held only on the temporary file, for the time of one write, so
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
  /** Hash the parts of an item of `size` bytes stored from now on with this session number. */
  | {
      readonly type: 'open';
      readonly id: number;
      readonly session: number;
      readonly itemId: string;
      readonly size: number;
    }
  /** The session's SHA-256, once all parts are stored (bytes it did not see are read back). */
  | { readonly type: 'digest'; readonly id: number; readonly session: number }
  /** Forget a session (no answer). */
  | { readonly type: 'close'; readonly session: number };

/** What the store Worker answers. */
export type StoreReply =
  /** Loaded; `ok` where it can write with sync access handles. */
  | { readonly type: 'ready'; readonly ok: boolean }
  /** The request `id` is done; a `digest` request gets the 32-byte digest. */
  | { readonly type: 'done'; readonly id: number; readonly digest?: Uint8Array }
  /** The request `id` failed: the error's name (a `DOMException` name) and message. */
  | {
      readonly type: 'failed';
      readonly id: number;
      readonly name: string;
      readonly message: string;
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
  onmessage: ((event: MessageEvent<StoreRequest>) => void) | null;
  postMessage(message: StoreReply, transfer?: Transferable[]): void;
};

/** A rename onto a part another context is writing (`createWritable()`) is tried this often. */
const MOVE_ATTEMPTS = 20;
const MOVE_RETRY_MS = 50;
/** Temporary files older than this are left over from a write that never finished, in ms. */
const STALE_MS = 60_000;
const TEMP = /^\d+-\d+\.part\.[\w-]+\.tmp$/;

/** Reads stored parts back, for the hashing. */
const reader = new OpfsItemStore({ worker: false });
/** Hashing sessions: the hasher of each item being downloaded. */
const sessions = new Map<number, PartHasher>();

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Writes a part to a temporary file and renames it into place. */
async function put(itemId: string, start: number, bytes: Uint8Array): Promise<void> {
  const dir = await opfsItemFolder(itemId, false);
  if (!dir) throw new DOMException(`no item ${itemId} in the store`, 'NotFoundError');
  const name = partFileName(start, start + bytes.length);
  const temp = `${name}.${crypto.randomUUID()}.tmp`;
  const file = (await dir.getFileHandle(temp, { create: true })) as WorkerFileHandle;
  try {
    const handle = await file.createSyncAccessHandle();
    try {
      for (let at = 0; at < bytes.length;) {
        const written = handle.write(bytes.subarray(at), { at });
        if (written <= 0) throw new DOMException('the file took no bytes', 'InvalidStateError');
        at += written;
      }
      handle.flush();
    } finally {
      handle.close();
    }
    // Another context stored the same part meanwhile: this copy goes.
    if (!(await moveIntoPlace(dir, file, name, bytes.length)))
      await dir.removeEntry(temp).catch(() => undefined);
  } catch (e) {
    await dir.removeEntry(temp).catch(() => undefined);
    throw e;
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

async function open(session: number, itemId: string, size: number): Promise<void> {
  // Loaded on demand: a page whose Worker cannot resolve hash-wasm still has its writes here.
  const { PartHasher } = await import('./part-hasher.js');
  await sweep(itemId).catch(() => undefined);
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
      undefined, // this thread hashes
    ),
  );
}

async function answer(request: Exclude<StoreRequest, { type: 'close' }>): Promise<StoreReply> {
  switch (request.type) {
    case 'put':
      await put(request.itemId, request.start, request.bytes);
      if (request.session !== undefined)
        sessions.get(request.session)?.offer(request.start, request.bytes);
      return { type: 'done', id: request.id };
    case 'open':
      await open(request.session, request.itemId, request.size);
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
