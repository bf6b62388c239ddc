/**
 * The headless engine: the control channel, the socket pool, the latency probe and the part
 * scheduler behind one `EventTarget`. It never touches the DOM.
 */
import type { ControlServerMessage, ItemKind, ItemMeta, TargetRange } from '../protocol/control.js';
import { MAX_PUBLISH_ITEMS } from '../protocol/constants.js';
import { ServerError, TransportError, WsUploaderError } from '../errors.js';
import { ControlChannel } from './control-channel.js';
import { EngineEvent, type EngineEventDetails, type EngineEventType } from './events.js';
import { resolveOptions, type EngineOptions, type ResolvedEngineOptions } from './options.js';
import { PartScheduler, type TaskProgress } from './part-scheduler.js';
import { SocketPool } from './socket-pool.js';
import {
  ConnectionState,
  ItemState,
  type ItemStatus,
  type ServerStatus,
  type TransmitTask,
  type UploadResult,
} from './types.js';

interface Held {
  readonly blob: Blob;
  status: ItemStatus;
}

/**
 * Uploads what a control server asks for, to the upload servers it names.
 *
 * Listen for `state`, `servers`, `publish`, `transmit-request`, `progress`, `complete` and
 * `error` ({@link EngineEventDetails}).
 *
 * @example
 * const engine = new WsUploaderEngine({ controlUrl: 'wss://app.example/control', authToken });
 * engine.addEventListener('complete', (e) => console.log(e.detail.sha256));
 * await engine.start();
 * engine.addFiles(input.files);
 */
export class WsUploaderEngine extends EventTarget {
  readonly #options: ResolvedEngineOptions;
  readonly #control: ControlChannel;
  readonly #pool: SocketPool;
  readonly #scheduler: PartScheduler;
  readonly #items = new Map<string, Held>();
  #servers: readonly ServerStatus[] = [];
  #abort = new AbortController();
  #started: Promise<void> | undefined;
  #resolveStarted: (() => void) | undefined;
  #rejectStarted: ((e: unknown) => void) | undefined;
  /** The last task of each item; a new task for an item waits for the one before. */
  readonly #tasks = new Map<string, Promise<UploadResult>>();

  /**
   * @param options see {@link EngineOptions}
   * @throws {ConfigError} when an option is missing or invalid
   */
  constructor(options: EngineOptions) {
    super();
    this.#options = resolveOptions(options);
    this.#pool = new SocketPool(this.#options, {
      change: (servers) => {
        this.#servers = servers;
        this.#emit('servers', { servers });
      },
      probe: (results) => this.#control.send({ type: 'probe', results }),
    });
    this.#scheduler = new PartScheduler(this.#options, this.#pool);
    this.#control = new ControlChannel(this.#options, {
      message: (m) => this.#onControl(m),
      state: (state) => this.#emit('state', { state }),
      error: (error, fatal) => {
        if (fatal) this.#rejectStarted?.(error);
        this.#emit('error', { error });
      },
    });
  }

  /** State of the control connection. */
  get state(): ConnectionState {
    return this.#control.state;
  }

  /** The upload servers, their state and RTT. */
  get servers(): readonly ServerStatus[] {
    return this.#servers;
  }

  /** Items added to this engine. */
  get items(): readonly ItemStatus[] {
    return [...this.#items.values()].map((h) => h.status);
  }

  /**
   * Connects to the control server (and through it to the upload servers).
   * @param signal aborts the wait (the engine keeps trying until {@link WsUploaderEngine.stop})
   * @returns resolves on the first `welcome`; rejects when the credential is refused
   */
  start(signal?: AbortSignal): Promise<void> {
    if (!this.#started) {
      if (this.#abort.signal.aborted) this.#abort = new AbortController();
      this.#started = new Promise<void>((resolve, reject) => {
        this.#resolveStarted = resolve;
        this.#rejectStarted = reject;
      });
      // Marked handled here; callers still see the rejection through the promise returned.
      this.#started.catch(() => undefined);
      this.#control.open();
    }
    if (!signal) return this.#started;
    return Promise.race([
      this.#started,
      new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      }),
    ]);
  }

  /** Closes every connection and aborts running tasks. */
  stop(): void {
    this.#rejectStarted?.(new DOMException('the engine was stopped', 'AbortError'));
    this.#resolveStarted = undefined;
    this.#rejectStarted = undefined;
    this.#abort.abort();
    this.#control.close();
    this.#pool.close();
    this.#started = undefined;
  }

  /**
   * Adds files (or blobs) and publishes their metadata to the control server.
   * @param files what to add
   * @param kind what kind of data it is @default 'file'
   * @returns the new items
   */
  addFiles(files: Iterable<Blob> | ArrayLike<Blob>, kind: ItemKind = 'file'): ItemStatus[] {
    const added: ItemStatus[] = [];
    for (const blob of Array.from(files as ArrayLike<Blob>)) {
      const file = blob as Partial<File>;
      const status: ItemStatus = {
        itemId: newItemId(),
        // Within the control protocol's limits (docs/protocol.md, publish).
        name: (typeof file.name === 'string' ? file.name : 'blob').slice(0, 1024),
        size: blob.size,
        mime: blob.type.length <= 255 ? blob.type : '',
        kind,
        state: ItemState.PUBLISHING,
        bytesSent: 0,
        bytesStored: 0,
        bytesTotal: blob.size,
        sha256: undefined,
        servers: [],
        errorCode: undefined,
      };
      this.#items.set(status.itemId, { blob, status });
      added.push(status);
    }
    if (added.length > 0) this.publish(added.map((s) => s.itemId));
    return added;
  }

  /**
   * Publishes items' metadata to the control server (again). While the control channel is not
   * open, items wait and are published on the next `welcome`.
   * @param itemIds items added earlier @default every item not yet complete
   */
  publish(itemIds?: readonly string[]): void {
    if (this.#control.state !== ConnectionState.OPEN) return;
    const ids =
      itemIds ??
      [...this.#items.values()]
        .filter(
          (h) => h.status.state !== ItemState.COMPLETE && h.status.state !== ItemState.UPLOADING,
        )
        .map((h) => h.status.itemId);
    const items: ItemMeta[] = [];
    for (const id of ids) {
      const held = this.#items.get(id);
      if (!held) continue;
      const { itemId, name, size, mime, kind } = held.status;
      const lastModified = (held.blob as Partial<File>).lastModified;
      items.push(
        typeof lastModified === 'number'
          ? { itemId, name, size, mime, kind, lastModified }
          : { itemId, name, size, mime, kind },
      );
    }
    for (let i = 0; i < items.length; i += MAX_PUBLISH_ITEMS) {
      const batch = items.slice(i, i + MAX_PUBLISH_ITEMS);
      this.#control.send({ type: 'publish', items: batch });
      this.#emit('publish', { items: batch });
    }
  }

  /**
   * Uploads ranges of an item to the servers named, without the control server asking.
   * @param task the item, ranges and targets
   * @returns the item's digest and servers once every range is stored
   */
  transmit(task: TransmitTask): Promise<UploadResult> {
    return this.#execute(
      {
        taskId: task.taskId ?? newItemId(),
        itemId: task.itemId,
        ranges: task.ranges,
        priority: task.priority ?? 0,
      },
      false,
    );
  }

  /**
   * Adds a typed listener.
   * @param type event name
   * @param listener receives an {@link EngineEvent}
   */
  on<K extends EngineEventType>(type: K, listener: (event: EngineEvent<K>) => void): () => void {
    const l = listener as EventListener;
    this.addEventListener(type, l);
    return () => this.removeEventListener(type, l);
  }

  #onControl(message: ControlServerMessage): void {
    switch (message.type) {
      case 'welcome':
        this.#pool.update(message.servers);
        this.#resolveStarted?.();
        // Items added while disconnected, and after a reconnect those not yet being uploaded.
        this.publish(
          this.items
            .filter((s) => s.state === ItemState.PUBLISHING || s.state === ItemState.PUBLISHED)
            .map((s) => s.itemId),
        );
        return;
      case 'servers':
        this.#pool.update(message.servers);
        return;
      case 'published':
        for (const id of message.itemIds)
          this.#update(id, (s) =>
            s.state === ItemState.PUBLISHING ? { ...s, state: ItemState.PUBLISHED } : s,
          );
        return;
      case 'transmit':
        // Taken: the control server knows the task reached a page that holds the item.
        if (this.#items.has(message.itemId))
          this.#control.send({ type: 'accept', taskId: message.taskId, itemId: message.itemId });
        this.#execute(
          {
            taskId: message.taskId,
            itemId: message.itemId,
            ranges: message.ranges,
            priority: message.priority,
          },
          true,
        ).catch(() => undefined);
        return;
      case 'completed': {
        // The control server knows the item is stored (an empty item, or one stored earlier):
        // nothing to send. An item this page is uploading completes through its own task.
        const held = this.#items.get(message.itemId);
        if (!held || held.status.state === ItemState.COMPLETE || this.#tasks.has(message.itemId))
          return;
        this.#update(message.itemId, (s) => ({
          ...s,
          state: ItemState.COMPLETE,
          sha256: message.sha256,
          servers: message.servers,
        }));
        const { itemId, name, size } = held.status;
        this.#emit('complete', {
          itemId,
          name,
          size,
          sha256: message.sha256,
          servers: message.servers,
        });
        return;
      }
      case 'error': {
        const error = new ServerError(message.code, message.message, {
          serverId: 'control',
          ...(message.ref === undefined ? {} : { itemId: message.ref }),
        });
        if (message.ref !== undefined && this.#items.has(message.ref))
          this.#fail(message.ref, error);
        else this.#emit('error', { error });
        return;
      }
    }
  }

  /**
   * Runs a task after any earlier task of the same item, so an item is never sent twice at once;
   * the later task resumes from what the earlier one stored.
   */
  #execute(task: Required<TransmitTask>, fromControl: boolean): Promise<UploadResult> {
    const before = this.#tasks.get(task.itemId);
    const run = (before ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => this.#runTask(task, fromControl));
    this.#tasks.set(task.itemId, run);
    const forget = (): void => {
      if (this.#tasks.get(task.itemId) === run) this.#tasks.delete(task.itemId);
    };
    run.then(forget, forget);
    return run;
  }

  async #runTask(task: Required<TransmitTask>, fromControl: boolean): Promise<UploadResult> {
    const held = this.#items.get(task.itemId);
    if (!held) {
      const error = new ServerError('unknown-item', `no item ${task.itemId} in this page`, {
        serverId: 'control',
        itemId: task.itemId,
      });
      if (fromControl) this.#reportFail(task, error);
      throw error;
    }
    this.#emit('transmit-request', { task });
    this.#update(task.itemId, (s) => ({ ...s, state: ItemState.UPLOADING, errorCode: undefined }));
    let reportedAt = -Infinity;
    const onProgress = (p: TaskProgress): void => {
      // The control server hears about progress at most once a second per task.
      const now = this.#options.clock.now();
      if (fromControl && now - reportedAt >= PROGRESS_REPORT_MS && p.bytesStored < p.bytesTotal) {
        reportedAt = now;
        this.#control.send({
          type: 'progress',
          taskId: task.taskId,
          itemId: task.itemId,
          bytesStored: p.bytesStored,
        });
      }
      this.#update(task.itemId, (s) => ({
        ...s,
        bytesSent: Math.max(s.bytesSent, p.bytesSent),
        bytesStored: Math.max(s.bytesStored, p.bytesStored),
        bytesTotal: p.bytesTotal,
      }));
    };
    try {
      const result = await this.#scheduler.run(
        { itemId: task.itemId, name: held.status.name, blob: held.blob },
        task.ranges as TargetRange[],
        task.priority,
        onProgress,
        this.#abort.signal,
      );
      this.#update(task.itemId, (s) => ({
        ...s,
        state: ItemState.COMPLETE,
        sha256: result.sha256,
        servers: result.servers,
      }));
      if (fromControl) {
        this.#control.send({
          type: 'complete',
          taskId: task.taskId,
          itemId: task.itemId,
          sha256: result.sha256,
          servers: [...result.servers],
        });
      }
      this.#emit('complete', result);
      return result;
    } catch (e) {
      const error =
        e instanceof WsUploaderError
          ? e
          : new TransportError('socket-failed', String(e), { cause: e });
      if (this.#abort.signal.aborted) throw error; // Aborts are not errors.
      if (fromControl) this.#reportFail(task, error);
      this.#fail(task.itemId, error);
      throw error;
    }
  }

  /** Tells the control server a task failed (within the message's limits). */
  #reportFail(task: Required<TransmitTask>, error: WsUploaderError): void {
    this.#control.send({
      type: 'fail',
      taskId: task.taskId,
      itemId: task.itemId,
      code: error.code.slice(0, 64),
      message: error.message.slice(0, 1024),
    });
  }

  #fail(itemId: string, error: WsUploaderError): void {
    this.#update(itemId, (s) => ({ ...s, state: ItemState.FAILED, errorCode: error.code }));
    this.#emit('error', { error, itemId });
  }

  #update(itemId: string, fn: (s: ItemStatus) => ItemStatus): void {
    const held = this.#items.get(itemId);
    if (!held) return;
    held.status = fn(held.status);
    this.#emit('progress', { item: held.status });
  }

  #emit<K extends EngineEventType>(type: K, detail: EngineEventDetails[K]): void {
    this.dispatchEvent(new EngineEvent(type, detail));
  }
}

/** Least time between two `progress` reports of one task to the control server, in ms. */
const PROGRESS_REPORT_MS = 1000;

/** A random item id: 16 random bytes in base64url (22 characters). */
function newItemId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
