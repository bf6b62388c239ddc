/**
 * The page's side of the store Worker (`store-worker.ts`): starts it when first needed, asks it
 * to fetch a part from an upload server and store it (the bytes never come to the page), or hands
 * it a part's buffer to store (transferred, not copied), and answers when the Worker says the part
 * is stored. A Worker that cannot start (no script at its URL, a Content-Security-Policy
 * without `worker-src`, no sync access handles) is not tried again: the store writes from the
 * page's thread. One that failed later, or stopped after a while with nothing to do, is started
 * again when next needed.
 */
import type { PartSource } from './fetch-part.js';
import type { SessionOptions, StoreReply, StoreRequest } from './store-worker.js';

/**
 * The upload server's side of a part fetched in the store Worker failed (its answer, the
 * connection), not the store.
 * @internal
 */
export class PartFetchError extends Error {
  override readonly name = 'PartFetchError';
  /**
   * The way of reading failed (the `dup/2` connection, or the HTTP request before its body), not
   * the body: the other way may do better.
   */
  readonly transport: boolean;

  /**
   * @param message what failed
   * @param transport the way of reading failed
   */
  constructor(message: string, transport: boolean) {
    super(message);
    this.transport = transport;
  }
}

/** How long the Worker has to load and say it is ready, in ms. */
const START_TIMEOUT_MS = 10_000;
/** The Worker stops after this long with nothing to do, in ms. */
const IDLE_MS = 10_000;

type Request =
  Exclude<StoreRequest, { type: 'abort' }> extends infer R
    ? R extends { id: number }
      ? Omit<R, 'id'>
      : never
    : never;

interface Pending {
  resolve(reply: StoreReply): void;
  reject(error: unknown): void;
}

/** The bytes as a view of a whole buffer of their own, ready to be transferred. */
function own(bytes: Uint8Array, copy: boolean): Uint8Array<ArrayBuffer> {
  const whole =
    !copy &&
    bytes.buffer instanceof ArrayBuffer &&
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength;
  return whole ? (bytes as Uint8Array<ArrayBuffer>) : bytes.slice();
}

/**
 * One store Worker, started on demand.
 * @internal
 */
export class StoreWorkerClient {
  readonly #url: string | URL;
  readonly #name: string;
  /** The Worker, once it said it is ready; `undefined` where it cannot run. */
  #started: Promise<Worker | undefined> | undefined;
  #current: Worker | undefined;
  /** It could not start: never tried again. */
  #unavailable = false;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #nextSession = 1;
  readonly #sessions = new Set<number>();
  #idle: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param url the Worker's script
   * @param name the Worker's name (`FLUSHER_NAME`: the store Worker's own twin, which flushes)
   */
  constructor(url: string | URL, name = 'ws-uploader-store') {
    this.#url = url;
    this.#name = name;
  }

  /** Whether the Worker runs (it is started if it does not). */
  async available(): Promise<boolean> {
    return (await this.#worker()) !== undefined;
  }

  /**
   * Writes a part in the Worker.
   * @param itemId the item, begun
   * @param start the part's offset
   * @param bytes its bytes: handed over when they are a whole buffer and `copy` is not set
   * @param options `copy` sends a copy (the caller keeps the bytes); `session` hashes the part
   * @returns `false`, the bytes untouched, when no Worker can run
   * @throws {DOMException} (as a rejection) what the Worker's write failed with
   */
  async put(
    itemId: string,
    start: number,
    bytes: Uint8Array,
    options: { copy?: boolean; session?: number } = {},
  ): Promise<boolean> {
    const reply = await this.#call(() => {
      const part = own(bytes, options.copy ?? false);
      return [{ type: 'put', itemId, start, bytes: part, session: options.session }, [part.buffer]];
    });
    return reply !== undefined;
  }

  /**
   * Fetches a part in the Worker, over HTTP (a `Range` GET) or `dup/2` (`READ`s on the session's
   * connection to the server), and stores it as it streams in.
   * @param itemId the item, begun
   * @param via how
   * @param source the upload server and its read token
   * @param part the bytes
   * @param options `session` hashes the part (and holds the `dup/2` connections); `signal` stops
   *   the fetch; `stallMs` is the longest wait for the next piece of an HTTP body
   * @returns `false` when no Worker can run (nothing was fetched)
   * @throws {PartFetchError} (as a rejection) when the server's side failed
   * @throws {DOMException} (as a rejection) what the store failed with, or an `AbortError`
   */
  async fetch(
    itemId: string,
    via: 'http' | 'dup2',
    source: PartSource,
    part: { readonly start: number; readonly end: number },
    options: { session?: number; signal?: AbortSignal; stallMs?: number | undefined } = {},
  ): Promise<boolean> {
    const { signal } = options;
    signal?.throwIfAborted();
    let posted: { worker: Worker; id: number } | undefined;
    const abort = (): void => {
      const message: StoreRequest = { type: 'abort', target: posted?.id ?? 0 };
      if (posted) posted.worker.postMessage(message);
    };
    signal?.addEventListener('abort', abort, { once: true });
    try {
      const reply = await this.#call(
        () => [
          {
            type: 'fetch',
            itemId,
            via,
            source: {
              serverId: source.serverId,
              httpUrl: source.httpUrl,
              ...(source.wsUrl === undefined ? {} : { wsUrl: source.wsUrl }),
              token: source.token,
              tokenExpiresAt: source.tokenExpiresAt,
            },
            start: part.start,
            end: part.end,
            session: options.session,
            stallMs: options.stallMs,
          },
          [],
        ],
        (worker, id) => {
          posted = { worker, id };
          if (signal?.aborted) abort();
        },
      );
      return reply !== undefined;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  /**
   * Flushes a file of the item's folder to the disk (the store Worker asks its twin, so that it
   * goes on receiving meanwhile).
   * @param itemId the item
   * @param name the file, closed by the one that wrote it
   * @returns `false` when no Worker can run (nothing was flushed)
   * @throws {DOMException} (as a rejection) what the flush failed with
   */
  async flush(itemId: string, name: string): Promise<boolean> {
    return (await this.#call(() => [{ type: 'flush', itemId, name }, []])) !== undefined;
  }

  /**
   * Starts a session for an item whose parts the Worker stores, hashing them as they are stored
   * unless told not to.
   * @param itemId the item
   * @param size its size
   * @param options how the parts are hashed (with `hash`, `digest()` gives the SHA-256)
   * @returns the session to give `put()`, `digest()` and `close()`; `undefined` where the Worker
   *   cannot run or cannot hash
   */
  async open(
    itemId: string,
    size: number,
    options: SessionOptions = {},
  ): Promise<number | undefined> {
    const session = this.#nextSession++;
    this.#sessions.add(session);
    try {
      const reply = await this.#call(() => [
        { type: 'open', session, itemId, size, ...options },
        [],
      ]);
      if (reply) return session;
    } catch {
      // No hashing in the Worker: the caller hashes.
    }
    this.#sessions.delete(session);
    this.#whenIdle();
    return undefined;
  }

  /**
   * The SHA-256 of the session's item: the parts the Worker stored, and what it reads back.
   * @throws {Error} (as a rejection) when the Worker cannot give it (it failed, the store lost bytes)
   */
  async digest(session: number): Promise<Uint8Array> {
    const reply = await this.#call(() => [{ type: 'digest', session }, []]);
    if (reply?.type !== 'done' || !reply.digest)
      throw new Error('the store Worker has stopped: no digest');
    return reply.digest;
  }

  /** Ends a session (its hashing stops). */
  close(session: number): void {
    if (!this.#sessions.delete(session)) return;
    const message: StoreRequest = { type: 'close', session };
    this.#current?.postMessage(message);
    this.#whenIdle();
  }

  /**
   * Posts the request `make` gives to the running Worker (started first), and waits for its
   * answer; `undefined` when no Worker can run (`make` was not called).
   */
  async #call(
    make: () => [Request, Transferable[]],
    posted?: (worker: Worker, id: number) => void,
  ): Promise<StoreReply | undefined> {
    for (;;) {
      const worker = await this.#worker();
      if (!worker) return undefined;
      // Stopped while this waited (idle, failed): a new one.
      if (worker !== this.#current) continue;
      clearTimeout(this.#idle);
      const id = this.#nextId++;
      const [request, transfer] = make();
      return new Promise<StoreReply>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject });
        worker.postMessage({ ...request, id } as StoreRequest, transfer);
        posted?.(worker, id);
      });
    }
  }

  #worker(): Promise<Worker | undefined> {
    if (this.#unavailable) return Promise.resolve(undefined);
    this.#started ??= this.#start();
    return this.#started;
  }

  #start(): Promise<Worker | undefined> {
    return new Promise((resolve) => {
      let worker: Worker;
      try {
        worker = new Worker(this.#url, { type: 'module', name: this.#name });
      } catch {
        // Refused outright (a Content-Security-Policy, a bad URL).
        this.#unavailable = true;
        this.#started = undefined;
        resolve(undefined);
        return;
      }
      let ready = false;
      const unavailable = (): void => {
        clearTimeout(timer);
        worker.terminate();
        this.#unavailable = true;
        this.#started = undefined;
        resolve(undefined);
      };
      const timer = setTimeout(unavailable, START_TIMEOUT_MS);
      worker.onerror = (event) => {
        // A script that failed to load or run: not the page's error.
        event.preventDefault();
        if (ready) this.#failed(worker, new Error(event.message || 'the store Worker failed'));
        else unavailable();
      };
      worker.onmessageerror = () =>
        this.#failed(worker, new Error('the store Worker answered unreadably'));
      worker.onmessage = (event: MessageEvent<StoreReply>) => {
        const reply = event.data;
        if (reply.type === 'ready') {
          if (!reply.ok) return unavailable();
          clearTimeout(timer);
          ready = true;
          this.#current = worker;
          resolve(worker);
          return;
        }
        const pending = this.#pending.get(reply.id);
        if (!pending) return;
        this.#pending.delete(reply.id);
        if (reply.type === 'failed')
          pending.reject(
            reply.stage === 'fetch' && reply.name !== 'AbortError'
              ? new PartFetchError(reply.message, reply.transport ?? false)
              : new DOMException(reply.message, reply.name),
          );
        else pending.resolve(reply);
        this.#whenIdle();
      };
    });
  }

  /** The Worker failed: what it was asked fails, and the next request starts another. */
  #failed(worker: Worker, error: Error): void {
    if (worker !== this.#current) return;
    worker.terminate();
    this.#current = undefined;
    this.#started = undefined;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
  }

  /** Stops the Worker after a while with no request and no session open. */
  #whenIdle(): void {
    clearTimeout(this.#idle);
    if (this.#pending.size > 0 || this.#sessions.size > 0 || !this.#current) return;
    const worker = this.#current;
    this.#idle = setTimeout(() => {
      if (this.#pending.size > 0 || this.#sessions.size > 0 || worker !== this.#current) return;
      worker.terminate();
      this.#current = undefined;
      this.#started = undefined;
    }, IDLE_MS);
  }
}
