/**
 * The headless downloader: gets an item back, by parts, from every upload server that holds some
 * of it at once, into browser storage, and verifies it. Never holds the item in memory; parts
 * stored survive a reload, and a stored item is there with every server down.
 */
import { ConfigError, DownloadError, TransportError } from '../errors.js';
import { HASH_WORKER_MIN, hashWorkerFactory, ItemHasher } from '../engine/item-hasher.js';
import type { ItemLocation } from '../engine/types.js';
import type { ItemHolder, ItemMeta } from '../protocol/control.js';
import { toHex } from '../protocol/hex.js';
import { rangeBytes } from '../protocol/ranges.js';
import { defaultItemStore, OpfsItemStore, withoutContent, type ItemStore } from './item-store.js';
import { pageWriter, type ItemWriter } from './item-writer.js';
import { PartFetchError } from './store-worker-client.js';
import { Dup2Reader } from './dup2-reader.js';
import { DEFAULT_STALL_MS, fetchPart, PartRequestError } from './fetch-part.js';
import { PartHasher } from './part-hasher.js';
import { planParts, uncovered, type PartToFetch } from './part-plan.js';
import { ITEMS_PATH, type ItemNotice, type LocateRequest } from './worker-messages.js';

/** Options of {@link WsDownloader}. */
export interface DownloaderOptions {
  /**
   * Where an item can be read: an engine (its `locate()`, which asks the control server), or a
   * function that answers the same way.
   */
  readonly locate:
    { locate(itemId: string): Promise<ItemLocation> } | ((itemId: string) => Promise<ItemLocation>);
  /**
   * Where items are kept.
   * @default the origin private file system (`new OpfsItemStore()`: parts written in its Worker,
   *   and hashed there unless `integrity` is `'transport'`), else IndexedDB
   */
  readonly store?: ItemStore;
  /**
   * Bytes per part (one `Range` request, or `READ`s within the server's window, each).
   * @default 32 MiB where the store's Worker fetches the parts (each streamed into its file, never
   *   held whole); 4 MiB where the page's thread does (each held whole until stored), and for the
   *   service worker's ranges
   */
  readonly partSize?: number;
  /** Parts in flight per upload server. @default 3 */
  readonly perServer?: number;
  /** Delays between attempts at a part, in ms; one attempt more than delays. @default [250, 1000, 3000] */
  readonly retryDelays?: readonly number[];
  /**
   * An HTTP `Range` body that sends nothing for this long, in ms, is given up (a connection that
   * died without closing) and the part tried again; `dup/2` connections have a silence watch of
   * their own.
   * @default 30000
   */
  readonly stallTimeout?: number;
  /**
   * Where the SHA-256 is computed when the parts are written from the page's thread (IndexedDB,
   * or an `OpfsItemStore` without its Worker), as the engine's `hashWorker` option; an
   * `OpfsItemStore` that writes in its Worker hashes the parts there.
   * @default true
   */
  readonly hashWorker?: boolean | string | URL;
  /**
   * How parts are read: `'auto'` over HTTP `Range` (in the store's Worker, read into buffers used
   * again: the fastest way in browsers), and over `dup/2` (`READ`) from a holder whose HTTP
   * request said its bytes are not to be had that way (no answer; 404, 405, 501, 502 or 504, as
   * from a relayed server; not the range asked for) when it speaks `dup/2`; `'dup2'` over `dup/2`
   * (each chunk's CRC-32C checked on the way) from a holder that speaks it, and over HTTP from the
   * others and from one whose `dup/2` connections keep failing; `'http'` always over HTTP `Range`.
   * What checks the bytes is `integrity`'s, whichever way they come.
   * @default 'auto'
   */
  readonly transport?: DownloadTransport;
  /**
   * What checks the bytes downloaded: `'sha256'` hashes every byte as it is stored (in a hash
   * Worker) and checks the item's SHA-256 against the upload servers' before the download
   * resolves; `'transport'` hashes nothing and takes the upload servers' SHA-256: the transfer
   * is guarded by TLS (and by each chunk's CRC-32C over `dup/2`), and the server checks the
   * stored bytes it serves against their CRC-32C. An item still uploading, whose SHA-256 is not
   * known yet, is hashed either way. The store keeps an item with its SHA-256 whichever way it was
   * checked, and takes it as verified afterwards (`get()`, the service worker, another downloader
   * on the same store).
   * @default 'sha256'
   */
  readonly integrity?: DownloadIntegrity;
}

/** What checks the bytes downloaded: see {@link DownloaderOptions.integrity}. */
export type DownloadIntegrity = 'sha256' | 'transport';

/** How the downloader reads parts: see {@link DownloaderOptions.transport}. */
export type DownloadTransport = 'auto' | 'dup2' | 'http';

/** An item in the store. */
export interface DownloadedItem {
  readonly meta: ItemMeta;
  /**
   * The item's hex SHA-256: computed over the bytes stored and equal to the upload servers'
   * (`integrity: 'sha256'`), or the upload servers' (`'transport'`).
   */
  readonly sha256: string;
  /** The bytes, read from the store (no copy in memory). */
  readonly blob: Blob;
}

/** Details of each downloader event. */
export interface DownloaderEventDetails {
  /** More of an item is stored. */
  progress: {
    readonly itemId: string;
    readonly bytesStored: number;
    readonly bytesTotal: number;
    /** Bytes fetched from each upload server in this download. */
    readonly bytesByServer: Readonly<Record<string, number>>;
  };
  /** An item is stored and verified. */
  complete: { readonly item: DownloadedItem };
}

/** A downloader event. */
export class DownloaderEvent<K extends keyof DownloaderEventDetails> extends Event {
  /** What happened. */
  readonly detail: DownloaderEventDetails[K];

  /**
   * @param type the event name
   * @param detail its detail
   */
  constructor(type: K, detail: DownloaderEventDetails[K]) {
    super(type);
    this.detail = detail;
  }
}

/** Read tokens this close to their expiry are renewed first (and a new connection made), in ms. */
const RENEW_BEFORE_MS = 30_000;
/** Failed `dup/2` connections to a holder after which it is read over HTTP `Range`. */
const WS_FAILURES_BEFORE_HTTP = 2;
/** Bytes of later parts held for the hash, at least and at most (see `#held`). */
const MIN_HELD = 16 * 1024 * 1024;
const MAX_HELD = 128 * 1024 * 1024;
/** Failed HTTP requests to a holder after which it is read over `dup/2` (with `'auto'`). */
const HTTP_FAILURES_BEFORE_WS = 1;

const DEFAULTS = { partSize: 4 * 1024 * 1024, perServer: 3, retryDelays: [250, 1000, 3000] };
/**
 * Bytes per part where the store's Worker fetches them: each is written as it streams in, so a
 * large part costs no memory, and fewer requests (fewer part files) run faster.
 */
const WORKER_PART_SIZE = 32 * 1024 * 1024;

/**
 * Downloads items into browser storage and gives them back offline.
 * @example
 * const downloader = new WsDownloader({ locate: engine });
 * downloader.on('progress', (e) => bar.value = e.detail.bytesStored / e.detail.bytesTotal);
 * const { blob } = await downloader.download(itemId);
 * video.src = URL.createObjectURL(blob);
 */
export class WsDownloader extends EventTarget {
  readonly #locate: (itemId: string) => Promise<ItemLocation>;
  readonly #store: Promise<ItemStore>;
  /** The `partSize` option, when given. */
  readonly #partSize: number | undefined;
  readonly #perServer: number;
  readonly #retryDelays: readonly number[];
  readonly #stallTimeout: number;
  readonly #hashWorker: boolean | string | URL;
  readonly #transport: DownloadTransport;
  readonly #integrity: DownloadIntegrity;
  readonly #running = new Map<string, Promise<DownloadedItem>>();

  /** @param options see {@link DownloaderOptions} */
  constructor(options: DownloaderOptions) {
    super();
    const { locate } = options;
    this.#locate = typeof locate === 'function' ? locate : (id) => locate.locate(id);
    this.#store = options.store ? Promise.resolve(options.store) : defaultItemStore();
    this.#partSize =
      options.partSize === undefined ? undefined : positive(options.partSize, 0, 'partSize');
    this.#perServer = positive(options.perServer, DEFAULTS.perServer, 'perServer');
    this.#retryDelays = options.retryDelays ?? DEFAULTS.retryDelays;
    this.#stallTimeout = positive(options.stallTimeout, DEFAULT_STALL_MS, 'stallTimeout');
    this.#hashWorker = options.hashWorker ?? true;
    this.#transport = options.transport ?? 'auto';
    if (!['auto', 'dup2', 'http'].includes(this.#transport))
      throw new ConfigError("`transport` must be 'auto', 'dup2' or 'http'");
    this.#integrity = options.integrity ?? 'sha256';
    if (this.#integrity !== 'sha256' && this.#integrity !== 'transport')
      throw new ConfigError("`integrity` must be 'sha256' or 'transport'");
  }

  /** The store the downloader keeps items in. */
  get store(): Promise<ItemStore> {
    return this.#store;
  }

  /**
   * Gets an item into the store (only the parts not stored yet), verifies it, and gives it back.
   * A verified item already stored is given back at once, without asking any server.
   * @param itemId the item
   * @param options `signal` stops it (parts stored stay)
   * @throws {DownloadError} (as a rejection) `unavailable`, `fetch-failed`, `digest-mismatch`,
   *   `quota-exceeded` or `storage-failed`
   * @throws {ServerError} (as a rejection) the control server's refusal (`unknown-item`, `forbidden`)
   */
  download(itemId: string, options: { signal?: AbortSignal } = {}): Promise<DownloadedItem> {
    let running = this.#running.get(itemId);
    if (!running) {
      running = this.#download(itemId, options.signal).finally(() => this.#running.delete(itemId));
      this.#running.set(itemId, running);
    }
    return running;
  }

  /**
   * A verified item from the store, without the network; `undefined` when the store does not hold
   * all of it (never stored, or evicted by the browser).
   * @param itemId the item
   */
  async get(itemId: string): Promise<DownloadedItem | undefined> {
    const store = await this.#store;
    const stored = await store.get(itemId);
    if (!stored?.sha256 || rangeBytes(stored.ranges) !== stored.meta.size) return undefined;
    const blob = await store.blob(itemId);
    if (blob.size !== stored.meta.size) return undefined;
    return { meta: stored.meta, sha256: stored.sha256, blob };
  }

  /**
   * Forgets a stored item and its bytes.
   * @param itemId the item
   */
  async delete(itemId: string): Promise<void> {
    await (await this.#store).delete(itemId);
  }

  /**
   * A URL where the downloader's service worker (see `service-worker.ts`) serves the item with
   * `Range`, for `<video src>`, `<audio src>`, `<img src>` or a link: stored parts from the store,
   * missing ones fetched from the upload servers as they are asked for (while the item is still
   * uploading too), so playback and seeking start at once. The page must be controlled by the
   * worker.
   * @param itemId the item
   * @param registration the worker's registration @default `navigator.serviceWorker.ready`
   * @throws {TypeError} (as a rejection) when no service worker is active
   */
  async url(itemId: string, registration?: ServiceWorkerRegistration): Promise<string> {
    const reg = registration ?? (await navigator.serviceWorker.ready);
    const worker = reg.active;
    if (!worker) throw new TypeError('ws-uploader: no active service worker');
    this.#answerWorker();
    const location = await this.#locate(itemId).catch(() => undefined); // offline: the store only
    if (location) {
      const notice: ItemNotice = {
        type: 'ws-uploader-item',
        location,
        partSize: this.#partSize ?? DEFAULTS.partSize,
      };
      await new Promise<void>((resolve) => {
        const channel = new MessageChannel();
        channel.port1.onmessage = () => resolve();
        worker.postMessage(notice, [channel.port2]);
        setTimeout(resolve, 2000);
      });
    }
    return new URL(`${ITEMS_PATH}${encodeURIComponent(itemId)}`, reg.scope).href;
  }

  #answering = false;

  /** Answers the service worker when, restarted, it asks where an item is. */
  #answerWorker(): void {
    if (this.#answering || typeof navigator === 'undefined' || !navigator.serviceWorker) return;
    this.#answering = true;
    navigator.serviceWorker.addEventListener('message', (e: MessageEvent<LocateRequest>) => {
      if (e.data?.type !== 'ws-uploader-locate' || !e.ports[0]) return;
      const port = e.ports[0];
      this.#locate(e.data.itemId).then(
        (location) =>
          port.postMessage({
            type: 'ws-uploader-item',
            location,
            partSize: this.#partSize ?? DEFAULTS.partSize,
          } satisfies ItemNotice),
        () => port.postMessage(null),
      );
    });
  }

  /**
   * Adds a typed listener.
   * @param type event name
   * @param listener receives a {@link DownloaderEvent}
   * @returns a function that removes the listener
   */
  on<K extends keyof DownloaderEventDetails>(
    type: K,
    listener: (event: DownloaderEvent<K>) => void,
  ): () => void {
    const l = listener as EventListener;
    this.addEventListener(type, l);
    return () => this.removeEventListener(type, l);
  }

  async #download(itemId: string, signal: AbortSignal | undefined): Promise<DownloadedItem> {
    const ready = await this.get(itemId);
    if (ready) return ready;
    const store = await this.#store;
    let location = await this.#locate(itemId);
    const meta = location.item;
    const fail = (code: DownloadError['code'], message: string, more: object = {}) =>
      new DownloadError(code, message, { itemId, ...more });
    const storage = async <T>(work: () => Promise<T>): Promise<T> => {
      try {
        return await work();
      } catch (e) {
        if ((e as DOMException).name === 'QuotaExceededError')
          throw fail('quota-exceeded', `no room to store ${meta.name}`, { cause: e });
        throw fail('storage-failed', `the store failed: ${String(e)}`, { cause: e });
      }
    };
    await storage(() => store.begin(meta));
    if (meta.content !== undefined) {
      // Inline: the bytes came with the answer.
      const bytes = Uint8Array.from(atob(meta.content), (c) => c.charCodeAt(0));
      await storage(() => store.put(itemId, 0, bytes));
    }
    // Parts are hashed as they are stored, in order; what was stored before is read back. In the
    // store's Worker where it has one (it writes the parts, so it has their bytes), else parts
    // are stored from here and hashed by a PartHasher. Nothing is hashed in 'transport'
    // integrity where the servers' SHA-256 is known.
    const hash = this.#integrity === 'sha256' || location.sha256 === undefined;
    const inWorker =
      meta.content === undefined && store instanceof OpfsItemStore
        ? await store
            .writer(itemId, meta.size, {
              hash,
              held: this.#held(location, this.#partSizeFor(true)),
            })
            .catch(() => undefined)
        : undefined;
    const writer =
      inWorker ??
      pageWriter(
        store,
        itemId,
        hash
          ? new PartHasher(
              meta.size,
              async (start, end) => {
                const slice = await storage(() => store.slice(itemId, start, end));
                const bytes = slice && new Uint8Array(await storage(() => slice.arrayBuffer()));
                if (bytes?.length !== end - start)
                  throw fail(
                    'storage-failed',
                    `${meta.name}: bytes ${start}..${end} are not in the store`,
                  );
                return bytes;
              },
              meta.size >= HASH_WORKER_MIN ? hashWorkerFactory(this.#hashWorker) : undefined,
              this.#held(location, this.#partSizeFor(false)),
            )
          : undefined,
      );
    let sha256: string | undefined;
    try {
      if (meta.content === undefined) {
        await this.#checkRoom(itemId, meta, store);
        location = await this.#fetchParts(itemId, location, store, signal, storage, writer);
      }
      if (hash)
        sha256 = toHex(
          await writer.digest().catch(async (e: unknown) => {
            if (e instanceof DownloadError) throw e;
            // The Worker failed: the page's thread hashes the stored item.
            return new ItemHasher(await storage(() => store.blob(itemId))).digest();
          }),
        );
    } finally {
      writer.close();
    }
    const blob = await storage(() => store.blob(itemId));
    if (blob.size !== meta.size)
      throw fail(
        'storage-failed',
        `${meta.name}: the store gave back ${blob.size} of ${meta.size} bytes`,
      );
    // An item read while it was uploading has its digest once it is stored.
    const expected = location.sha256 ?? (await this.#locate(itemId)).sha256;
    if (expected === undefined)
      throw fail('unavailable', `${meta.name} is not stored yet: its digest is not known`);
    sha256 ??= expected;
    if (sha256 !== expected) {
      await store.delete(itemId).catch(() => undefined);
      throw fail('digest-mismatch', `${meta.name} has SHA-256 ${sha256}, not ${expected}`);
    }
    await storage(() => store.verified(itemId, sha256));
    const item: DownloadedItem = { meta: withoutContent(meta), sha256, blob };
    this.dispatchEvent(new DownloaderEvent('complete', { item }));
    return item;
  }

  /**
   * Bytes of later parts the hash holds for its turn: all but one of the parts that stream in side
   * by side (what is not held is read back from the store when the hash reaches it), within
   * bounds.
   */
  #held(location: ItemLocation, partSize: number): number {
    const inFlight = this.#perServer * Math.max(1, location.holders.length);
    return Math.min(MAX_HELD, Math.max(MIN_HELD, (inFlight - 1) * partSize));
  }

  /** Bytes per part, where the store's Worker fetches the parts or where the page does. */
  #partSizeFor(worker: boolean): number {
    return this.#partSize ?? (worker ? WORKER_PART_SIZE : DEFAULTS.partSize);
  }

  async #checkRoom(itemId: string, meta: ItemMeta, store: ItemStore): Promise<void> {
    const stored = rangeBytes((await store.get(itemId))?.ranges ?? []);
    const estimate = await navigator.storage?.estimate?.().catch(() => undefined);
    if (estimate?.quota !== undefined && estimate.usage !== undefined) {
      const room = estimate.quota - estimate.usage;
      if (room < meta.size - stored)
        throw new DownloadError(
          'quota-exceeded',
          `${meta.name} needs ${meta.size - stored} bytes; the browser allows ${room} more`,
          { itemId },
        );
    }
    // Ask that stored items not be evicted under storage pressure (best effort, never a prompt
    // in Chromium).
    void navigator.storage?.persist?.().catch(() => undefined);
  }

  /** Fetches the parts not stored from the holders, at once; gives the last location back. */
  async #fetchParts(
    itemId: string,
    first: ItemLocation,
    store: ItemStore,
    signal: AbortSignal | undefined,
    storage: <T>(work: () => Promise<T>) => Promise<T>,
    writer: ItemWriter,
  ): Promise<ItemLocation> {
    let location = first;
    const size = location.item.size;
    const stored = (await store.get(itemId))?.ranges ?? [];
    const missing = uncovered(size, location.holders, stored);
    if (missing.length > 0)
      throw new DownloadError(
        'unavailable',
        `no live upload server holds bytes ${missing[0]!.start}..${missing[0]!.end} of ${location.item.name}`,
        { itemId },
      );
    const queue: (PartToFetch & {
      serverIds: readonly string[];
      attempt: number;
      tried: Set<string>;
    })[] = planParts(
      size,
      location.holders,
      stored,
      this.#partSizeFor(writer.fetch !== undefined),
    ).map((p) => ({
      ...p,
      attempt: 0,
      tried: new Set<string>(),
    }));
    const stop = new AbortController();
    signal?.addEventListener('abort', () => stop.abort(signal.reason), { once: true });
    let bytesStored = rangeBytes(stored);
    const byServer: Record<string, number> = {};
    const report = (): void => {
      this.dispatchEvent(
        new DownloaderEvent('progress', {
          itemId,
          bytesStored,
          bytesTotal: size,
          bytesByServer: { ...byServer },
        }),
      );
    };
    report();
    let failure: unknown;
    let relocating: Promise<void> | undefined;
    const holder = (serverId: string): ItemHolder | undefined =>
      location.holders.find((h) => h.serverId === serverId);
    // Fresh tokens (and holders) when one expires, once for all parts that need them.
    const relocate = (): Promise<void> =>
      (relocating ??= this.#locate(itemId)
        .then((l) => {
          location = l;
        })
        .finally(() => {
          relocating = undefined;
        }));
    // One dup/2 connection per holder, made when its first part is read, and made again when it
    // closed or its token is about to expire (the one before finishes its reads). With 'auto' a
    // holder is read over HTTP until an HTTP request fails, then over dup/2; with 'dup2' over
    // dup/2 until its WebSocket keeps failing, then over HTTP. A holder failing both ways is read
    // over HTTP (which reports the server's own answer).
    const readers = new Map<string, Dup2Reader>();
    const opened: Dup2Reader[] = [];
    const wsFailures = new Map<string, number>();
    const httpFailures = new Map<string, number>();
    const overHttp = (h: ItemHolder): boolean => {
      if (this.#transport === 'http' || h.wsUrl === undefined) return true;
      if ((wsFailures.get(h.serverId) ?? 0) >= WS_FAILURES_BEFORE_HTTP) return true;
      return (
        this.#transport === 'auto' && (httpFailures.get(h.serverId) ?? 0) < HTTP_FAILURES_BEFORE_WS
      );
    };
    /** Counts a failure of the way `h` was read by, when it was the way (not the body). */
    const failedWay = (h: ItemHolder, http: boolean): void => {
      const failures = http ? httpFailures : wsFailures;
      failures.set(h.serverId, (failures.get(h.serverId) ?? 0) + 1);
    };
    // A part fetched and stored in the store's Worker as it streams in (its connections to the
    // holders are the Worker's); `false` where it cannot (no Worker): the part is read here.
    const fetchInWorker = async (h: ItemHolder, part: PartToFetch): Promise<boolean> => {
      if (!writer.fetch) return false;
      const http = overHttp(h);
      try {
        return await writer.fetch(http ? 'http' : 'dup2', h, part, stop.signal, this.#stallTimeout);
      } catch (e) {
        if (e instanceof PartFetchError) {
          if (e.transport) failedWay(h, http);
          throw e;
        }
        if ((e as DOMException).name === 'AbortError') throw e;
        return storage(() => Promise.reject(e)); // the store failed
      }
    };
    const read = async (h: ItemHolder, part: PartToFetch): Promise<Uint8Array<ArrayBuffer>> => {
      if (overHttp(h) || h.wsUrl === undefined)
        return fetchPart(itemId, h, part, stop.signal, this.#stallTimeout).catch((e: unknown) => {
          if (e instanceof PartRequestError) failedWay(h, true);
          throw e;
        });
      let reader = readers.get(h.serverId);
      if (!reader || reader.closed || reader.tokenExpiresAt - Date.now() < RENEW_BEFORE_MS) {
        reader = new Dup2Reader(h.serverId, h.wsUrl, h.token, h.tokenExpiresAt);
        readers.set(h.serverId, reader);
        opened.push(reader);
      }
      try {
        return await reader.read(itemId, part, stop.signal);
      } catch (e) {
        if (e instanceof TransportError) failedWay(h, false);
        throw e;
      }
    };
    let taken = 0;
    const worker = async (serverId: string): Promise<void> => {
      for (;;) {
        if (failure !== undefined || stop.signal.aborted) return;
        // A part this server holds and has not failed yet.
        const index = queue.findIndex(
          (p) => p.serverIds.includes(serverId) && !p.tried.has(serverId),
        );
        if (index < 0) return;
        const part = queue.splice(index, 1)[0]!;
        taken++;
        try {
          const h = holder(serverId);
          if (!h) throw new Error(`${serverId} no longer holds it`);
          if (h.tokenExpiresAt - Date.now() < RENEW_BEFORE_MS) await relocate();
          const from = holder(serverId) ?? h;
          const length = part.end - part.start;
          if (!(await fetchInWorker(from, part))) {
            const bytes = await read(from, part);
            await storage(() => writer.put(part.start, bytes)); // hands the bytes over
          }
          bytesStored += length;
          byServer[serverId] = (byServer[serverId] ?? 0) + length;
          report();
        } catch (e) {
          if (stop.signal.aborted) return;
          if (e instanceof DownloadError && e.code !== 'fetch-failed') {
            failure ??= e;
            stop.abort();
            return;
          }
          part.tried.add(serverId);
          part.attempt++;
          if (part.attempt > this.#retryDelays.length) {
            failure ??= new DownloadError(
              'fetch-failed',
              `bytes ${part.start}..${part.end} of ${location.item.name} could not be read: ${String(e)}`,
              { itemId, serverId, cause: e },
            );
            stop.abort();
            return;
          }
          // Ask again where the item is: a refused token (HTTP 401/403, dup/2 unauthorized) may
          // have expired, and a server that went down may be back at another address, or gone.
          await relocate().catch(() => undefined);
          await delay(this.#retryDelays[part.attempt - 1]!, stop.signal);
          // Another holder takes it if there is one; else this one again.
          if (part.serverIds.every((id) => part.tried.has(id))) part.tried.clear();
          queue.unshift(part);
        }
      }
    };
    // Workers stop when nothing is left for their server; a part given back after they stopped
    // gets new ones.
    try {
      while (queue.length > 0 && failure === undefined && !stop.signal.aborted) {
        const workers: Promise<void>[] = [];
        taken = 0;
        for (const h of location.holders)
          for (let i = 0; i < this.#perServer; i++) workers.push(worker(h.serverId));
        await Promise.all(workers);
        if (taken === 0 && queue.length > 0) {
          // No server could be asked for what is left (never expected: the parts are moved to
          // the holders below): fail rather than go round without end.
          failure ??= new DownloadError(
            'fetch-failed',
            `no upload server could be asked for bytes ${queue[0]!.start}..${queue[0]!.end} of ${location.item.name}`,
            { itemId },
          );
          break;
        }
        // Parts given back whose servers are no longer holders go to those that hold them now.
        for (const part of queue) {
          const ids = location.holders
            .filter((h) => h.ranges.some((r) => r.start <= part.start && r.end >= part.end))
            .map((h) => h.serverId);
          if (ids.length === 0) {
            failure ??= new DownloadError(
              'unavailable',
              `no live upload server holds bytes ${part.start}..${part.end} of ${location.item.name} any more`,
              { itemId },
            );
            break;
          }
          part.serverIds = ids;
          // Servers tried that are no longer holders do not count; when every holder was tried,
          // they are all tried again.
          for (const id of [...part.tried]) if (!ids.includes(id)) part.tried.delete(id);
          if (ids.every((id) => part.tried.has(id))) part.tried.clear();
        }
      }
    } finally {
      for (const reader of opened) reader.close();
    }
    if (signal?.aborted) throw signal.reason;
    if (failure !== undefined) throw failure;
    return location;
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new ConfigError(`\`${name}\` must be a positive integer`);
  return value;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
