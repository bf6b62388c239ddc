/**
 * The headless engine: the control channel, the socket pool, the latency probe and the part
 * scheduler behind one `EventTarget`. It never touches the DOM.
 */
import type {
  ControlServerMessage,
  ItemKind,
  ItemMeta,
  MessageTarget,
} from '../protocol/control.js';
import {
  ITEM_ID_PATTERN,
  MAX_MESSAGE_BODY_LENGTH,
  MAX_PUBLISH_ITEMS,
} from '../protocol/constants.js';
import { ConfigError, ResumeError, ServerError, TransportError } from '../errors.js';
import { ControlChannel } from './control-channel.js';
import { EngineEvent, type EngineEventDetails, type EngineEventType } from './events.js';
import { resolveOptions, type EngineOptions, type ResolvedEngineOptions } from './options.js';
import { LocalDataPlane, type DataPlane } from './data-plane.js';
import { WorkerDataPlane } from './data-worker-client.js';
import { TaskRunner } from './task-runner.js';
import { HeldItems } from './held-items.js';
import { ControlRequests } from './control-requests.js';
import { InlinePublisher } from './inline-publisher.js';
import { checkRoom, checkTarget, receivedItem } from './message-content.js';
import { checkItemId, isBlob, metaOf, newItemId } from './held-item.js';
import { checkFile, fileOf, lockItem, ResumeKeeper } from './resume-keeper.js';
import { isFileHandle } from './resume-store.js';
import {
  ConnectionState,
  ItemState,
  type ItemLocation,
  type ItemStatus,
  type OutgoingMessage,
  type ServerStatus,
  type TransmitTask,
  type UnfinishedItem,
  type UploadResult,
} from './types.js';

/**
 * Uploads what a control server asks for, to the upload servers it names; sends and receives
 * short messages and small inline items through the control server.
 *
 * Listen for `state`, `servers`, `publish`, `transmit-request`, `progress`, `complete`, `cancel`,
 * `unpublished`, `restore`, `message` and `error` ({@link EngineEventDetails}).
 *
 * Unfinished uploads outlive the page (the `resume` option): after a reload, items added from
 * file handles are taken up again on `start()`, and {@link WsUploaderEngine.unfinished} lists
 * the others until the user picks their files again ({@link WsUploaderEngine.resumeFile}).
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
  /** Connections to the upload servers and the tasks sending over them (in the data Worker). */
  readonly #plane: DataPlane;
  readonly #items: HeldItems;
  #servers: readonly ServerStatus[] = [];
  #abort = new AbortController();
  #started: Promise<void> | undefined;
  #resolveStarted: (() => void) | undefined;
  #rejectStarted: ((e: unknown) => void) | undefined;
  /** Transmit tasks queued or running. */
  readonly #tasks: TaskRunner;
  /** Messages waiting for `sent`, `locate`s for `located`, calls for the channel to open. */
  readonly #requests = new ControlRequests();
  /** Items asked to be unpublished, until the control server answers. */
  readonly #unpublishing = new Set<string>();
  /** Rooms joined; joined again after every reconnect (the control server forgets them). */
  readonly #rooms = new Set<string>();
  #clientId: string | undefined;
  /** Small items published with their bytes. */
  readonly #inline: InlinePublisher;
  /** Resume records of the items held; none when the `resume` option is off. */
  readonly #resume: ResumeKeeper | undefined;
  /** The last `start()`'s pass over the records, taking up items whose handles can be read. */
  #restoring: Promise<void> | undefined;

  /**
   * @param options see {@link EngineOptions}
   * @throws {ConfigError} when an option is missing or invalid
   */
  constructor(options: EngineOptions) {
    super();
    this.#options = resolveOptions(options);
    const { resume } = this.#options;
    this.#resume =
      typeof resume === 'object'
        ? new ResumeKeeper(resume.store!, (error) => this.#emit('error', { error }))
        : undefined;
    const handlers = {
      change: (servers: ServerStatus[]) => {
        this.#servers = servers;
        this.#emit('servers', { servers });
      },
      probe: (results: { serverId: string; rttMs: number; throughput?: number }[]) =>
        this.#control.send({ type: 'probe', results }),
    };
    const script = this.#options.dataWorker;
    this.#plane = script
      ? new WorkerDataPlane(
          script,
          this.#options,
          {
            hashWorker:
              options.hashWorker instanceof URL
                ? options.hashWorker.href
                : (options.hashWorker ?? true),
            askRetry: options.onShouldRetry !== undefined,
          },
          {
            ...handlers,
            degraded: (message) => this.#emit('degraded', { reason: 'data-worker', message }),
          },
        )
      : new LocalDataPlane(this.#options, handlers);
    this.#items = new HeldItems(this.#resume, {
      changed: (item) => this.#emit('progress', { item }),
      failed: (itemId, error) => this.#emit('error', { error, itemId }),
      forget: (itemId) => this.#plane.forget(itemId),
      stopTasks: (itemId) => this.#tasks.stopItem(itemId),
    });
    this.#tasks = new TaskRunner(this.#plane, this.#options.clock, {
      held: (itemId) => this.#items.get(itemId),
      update: (itemId, fn) => this.#items.update(itemId, fn),
      fail: (itemId, error) => this.#items.fail(itemId, error),
      finished: (held) => this.#items.finished(held),
      send: (message) => this.#control.send(message),
      dispatch: (event) => this.dispatchEvent(event),
      stopped: () => this.#abort.signal,
    });
    this.#inline = new InlinePublisher({
      items: () => this.#items.values(),
      held: (itemId) => this.#items.get(itemId),
      hold: (blob, kind, forInline) => this.#items.hold(blob, kind, forInline),
      forget: (itemId) => this.#items.delete(itemId),
      publish: (itemIds) => this.publish(itemIds),
      isOpen: () => this.#control.state === ConnectionState.OPEN,
      send: (message) => this.#control.send(message),
      published: (items) => this.#emit('publish', { items }),
      update: (itemId, fn) => this.#items.update(itemId, fn),
      fail: (itemId, error) => this.#items.fail(itemId, error),
      refuseMessages: (itemId, error) => this.#requests.refuseItem(itemId, error),
      inlineMax: () => this.#options.inlineMax,
    });
    this.#control = new ControlChannel(this.#options, {
      message: (m) => this.#onControl(m),
      state: (state) => {
        // Answers to what was sent on a lost connection never come.
        if (state === ConnectionState.DOWN || state === ConnectionState.CLOSED)
          this.#requests.refuseAll(
            new TransportError('socket-closed', 'the control connection closed', {
              serverId: 'control',
            }),
          );
        this.#emit('state', { state });
      },
      error: (error, fatal) => {
        if (fatal) {
          this.#rejectStarted?.(error);
          this.#requests.refuseWaiters(error);
        }
        this.#emit('error', { error });
      },
    });
  }

  /** State of the control connection. */
  get state(): ConnectionState {
    return this.#control.state;
  }

  /** This browser's client id (from the last `welcome`): where other browsers send messages. */
  get clientId(): string | undefined {
    return this.#clientId;
  }

  /** Rooms joined with {@link WsUploaderEngine.join}. */
  get rooms(): readonly string[] {
    return [...this.#rooms];
  }

  /** The upload servers: their state, RTT and throughput. */
  get servers(): readonly ServerStatus[] {
    // Measured now: throughput moves with every acknowledgement, between `servers` events.
    return this.#servers.length === 0 ? this.#servers : this.#plane.statuses();
  }

  /**
   * Where the bytes are read, checked and sent: `'worker'` in the data Worker, `'page'` on the
   * page's main thread (the `dataWorker` option is off, or the Worker could not start: see the
   * `degraded` event).
   */
  get dataThread(): 'worker' | 'page' {
    return this.#plane instanceof WorkerDataPlane && this.#plane.inWorker ? 'worker' : 'page';
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
      this.#restoring = this.#restore();
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

  /** Closes every connection and aborts running tasks; pending sends reject with an `AbortError`. */
  stop(): void {
    const stopped = new DOMException('the engine was stopped', 'AbortError');
    this.#rejectStarted?.(stopped);
    this.#resolveStarted = undefined;
    this.#rejectStarted = undefined;
    this.#requests.refuseWaiters(stopped);
    this.#requests.refuseAll(stopped);
    // Paused tasks do not outlive the engine: they are the control server's again on a new start.
    for (const held of this.#items.values()) {
      for (const waiting of held.paused?.splice(0) ?? []) waiting.reject(stopped);
      if (held.paused) {
        delete held.paused;
        this.#items.update(held.status.itemId, (s) =>
          s.state === ItemState.PAUSED ? { ...s, state: ItemState.PUBLISHED } : s,
        );
      }
    }
    this.#abort.abort();
    this.#control.close();
    this.#plane.close();
    this.#started = undefined;
  }

  /**
   * Changes the options that need no new connection, for what runs from now on: `chunkSize` (the
   * next chunks), `maxParallel` (more tasks start at once when it grows; running ones go on when
   * it shrinks) and `inlineMax` (the next items added). Items and uploads carry on.
   * @param options the options to change; absent ones stay
   * @throws {ConfigError} on an invalid value (nothing changes then)
   */
  configure(options: Pick<EngineOptions, 'chunkSize' | 'maxParallel' | 'inlineMax'>): void {
    const checked = resolveOptions({
      controlUrl: this.#options.controlUrl,
      auth: this.#options.auth,
      ...options,
    });
    if (options.chunkSize !== undefined) this.#options.chunkSize = checked.chunkSize;
    if (options.maxParallel !== undefined) this.#options.maxParallel = checked.maxParallel;
    if ('inlineMax' in options) this.#options.inlineMax = checked.inlineMax;
    this.#plane.configure({
      ...(options.chunkSize === undefined ? {} : { chunkSize: checked.chunkSize }),
      ...(options.maxParallel === undefined ? {} : { maxParallel: checked.maxParallel }),
    });
  }

  /**
   * Adds files (or blobs) and publishes their metadata to the control server. Those of at most
   * `inlineMax` bytes (the option, capped by the control server's) are published inline, with
   * their bytes: the control server keeps them and nothing is uploaded.
   * @param files what to add
   * @param kind what kind of data it is @default 'file'
   * @returns the new items
   */
  addFiles(files: Iterable<Blob> | ArrayLike<Blob>, kind: ItemKind = 'file'): ItemStatus[] {
    const added = Array.from(
      files as ArrayLike<Blob>,
      (blob) => this.#items.hold(blob, kind).status,
    );
    if (added.length > 0) this.publish(added.map((s) => s.itemId));
    return added;
  }

  /**
   * Adds a text snippet (UTF-8, `text/plain`) as an item of kind `text`, as
   * {@link WsUploaderEngine.addFiles} does.
   * @param text the text
   * @param name its name @default 'text.txt'
   * @returns the new item
   * @throws {ConfigError} when `text` is not a string
   */
  addText(text: string, name = 'text.txt'): ItemStatus {
    if (typeof text !== 'string') throw new ConfigError('addText takes a string');
    return this.addFiles(
      [new File([text], name, { type: 'text/plain;charset=utf-8' })],
      'text',
    )[0]!;
  }

  /**
   * Adds bytes as an item of kind `file`, as {@link WsUploaderEngine.addFiles} does. The bytes are
   * copied: changing them afterwards does not change the item.
   * @param bytes the bytes
   * @param options its name and media type @default `{ name: 'bytes.bin', type: 'application/octet-stream' }`
   * @returns the new item
   * @throws {ConfigError} when `bytes` is not an `ArrayBuffer` or a view of one
   */
  addBytes(
    bytes: ArrayBuffer | ArrayBufferView,
    options: { name?: string; type?: string } = {},
  ): ItemStatus {
    if (!(bytes instanceof ArrayBuffer) && !ArrayBuffer.isView(bytes))
      throw new ConfigError('addBytes takes an ArrayBuffer or a view of one');
    const copy = ArrayBuffer.isView(bytes)
      ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice()
      : new Uint8Array(bytes.slice(0));
    const { name = 'bytes.bin', type = 'application/octet-stream' } = options;
    return this.addFiles([new File([copy], name, { type })])[0]!;
  }

  /**
   * Adds what a paste or a drop carries (`ClipboardEvent.clipboardData`, `DragEvent.dataTransfer`)
   * as items of kind `clipboard`: its files (a pasted screenshot is an `image/png` file), or, when
   * it has none, its plain text.
   * @param data the clipboard's or the drop's data
   * @returns the new items (none when it carries neither files nor text)
   */
  addClipboard(data: DataTransfer): ItemStatus[] {
    const files = Array.from(data.files);
    if (files.length > 0) return this.addFiles(files, 'clipboard');
    const text = data.getData('text/plain');
    if (text === '') return [];
    return this.addFiles(
      [new File([text], 'pasted.txt', { type: 'text/plain;charset=utf-8' })],
      'clipboard',
    );
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
      if (this.#inline.goesInline(held)) {
        void this.#inline.start(held);
      } else {
        this.#items.remember(held);
        items.push(metaOf(held));
      }
    }
    for (let i = 0; i < items.length; i += MAX_PUBLISH_ITEMS) {
      const batch = items.slice(i, i + MAX_PUBLISH_ITEMS);
      this.#control.send({ type: 'publish', items: batch });
      this.#emit('publish', { items: batch });
    }
  }

  /**
   * Tries failed items again: they are published again, and the control server plans them anew;
   * the upload goes on from what the upload servers hold. While the control channel is down they
   * wait, and are published on the next `welcome`.
   * @param itemIds items @default every failed item
   * @returns the items tried again
   */
  retry(itemIds?: readonly string[]): ItemStatus[] {
    const ids = [...this.#items.values()]
      .filter(
        (h) =>
          h.status.state === ItemState.FAILED && (!itemIds || itemIds.includes(h.status.itemId)),
      )
      .map((h) => h.status.itemId);
    for (const id of ids)
      this.#items.update(id, (s) => ({ ...s, state: ItemState.PUBLISHING, errorCode: undefined }));
    if (ids.length > 0) this.publish(ids);
    return ids.map((id) => this.#items.get(id)!.status);
  }

  /**
   * Stops offering items: their tasks stop (quietly), the engine forgets them, and the control
   * server is asked to forget them too (`unpublished` follows).
   * @param itemIds items of this user (ones this engine does not hold are passed on too)
   * @throws {ConfigError} when an id is not a valid item id
   */
  unpublish(itemIds: readonly string[]): void {
    for (const id of itemIds) checkItemId(id);
    for (const id of itemIds) {
      this.#items.drop(id);
      this.#resume?.drop(id);
      this.#unpublishing.add(id);
    }
    for (let i = 0; i < itemIds.length; i += MAX_PUBLISH_ITEMS)
      this.#control.send({ type: 'unpublish', itemIds: itemIds.slice(i, i + MAX_PUBLISH_ITEMS) });
  }

  /**
   * Pauses items: their running tasks stop where they are (what the servers acknowledged stays
   * stored), and their tasks, running or coming, wait for {@link WsUploaderEngine.resume}. Not an
   * error: no `error` event, and the control server keeps the tasks. An item that is complete or
   * unknown is left alone.
   * @param itemIds the items; every item when omitted
   */
  pause(itemIds?: readonly string[]): void {
    for (const held of this.#items.select(itemIds)) {
      if (held.paused || held.status.state === ItemState.COMPLETE) continue;
      held.paused = [];
      this.#tasks.pauseItem(held.status.itemId);
      this.#items.update(held.status.itemId, (s) => ({ ...s, state: ItemState.PAUSED }));
    }
  }

  /**
   * Resumes paused items: their tasks run again, from what the servers already hold.
   * @param itemIds the items; every paused item when omitted
   */
  resume(itemIds?: readonly string[]): void {
    for (const held of this.#items.select(itemIds)) {
      const waiting = held.paused;
      if (!waiting) continue;
      delete held.paused;
      this.#items.update(held.status.itemId, (s) =>
        s.state === ItemState.PAUSED ? { ...s, state: ItemState.PUBLISHED } : s,
      );
      for (const { task, fromControl, resolve, reject } of waiting)
        this.#tasks.execute(task, fromControl).then(resolve, reject);
    }
  }

  /**
   * Cancels items: their tasks stop (not an error), the engine forgets them and the control server
   * is asked to forget them too (as {@link WsUploaderEngine.unpublish}); bytes an upload server
   * stored of an unfinished item are deleted by that server once they expire.
   * @param itemIds the items
   * @throws {ConfigError} when an id is not a valid item id
   */
  cancel(itemIds: readonly string[]): void {
    this.unpublish(itemIds);
  }

  /**
   * Adds files from File System Access handles (`showOpenFilePicker()`, a dropped item's
   * `getAsFileSystemHandle()`, an origin-private file) and publishes them, as
   * {@link WsUploaderEngine.addFiles} does. The handles are remembered with the items (the
   * `resume` option), so a page loaded again takes the items up on `start()` without asking while
   * the handles' read permission holds.
   * @param handles file handles
   * @param kind what kind of data it is @default 'file'
   * @returns the new items
   * @throws {ConfigError} (as a rejection) when one is not a file handle
   * @throws {ResumeError} (as a rejection) `file-unreadable` when a handle gives no file (none of
   *   them is added then)
   */
  async addFileHandles(
    handles: Iterable<FileSystemFileHandle> | ArrayLike<FileSystemFileHandle>,
    kind: ItemKind = 'file',
  ): Promise<ItemStatus[]> {
    const list = Array.from(handles as ArrayLike<FileSystemFileHandle>);
    if (!list.every(isFileHandle))
      throw new ConfigError('addFileHandles() takes FileSystemFileHandle objects');
    const files = await Promise.all(list.map((handle) => fileOf(handle)));
    const added = files.map((file, i) => {
      const held = this.#items.hold(file, kind);
      held.handle = list[i]!;
      return held.status;
    });
    if (added.length > 0) this.publish(added.map((s) => s.itemId));
    return added;
  }

  /**
   * Unfinished items that earlier pages remembered (the `resume` option) and that no page holds
   * now: their files are gone (a reload drops a picked `File`) or their handles need the user's
   * permission again. Ask for each file and pass it to {@link WsUploaderEngine.resumeFile}, or
   * drop it with {@link WsUploaderEngine.forget}. After `start()`, waits for the items whose handles
   * can be read to be taken up (they are not listed).
   * @returns oldest first; none when the `resume` option is off
   * @throws {ResumeError} (as a rejection) `resume-storage-failed` when the records cannot be read
   */
  async unfinished(): Promise<UnfinishedItem[]> {
    if (!this.#resume) return [];
    await this.#restoring;
    // Not those another page holds (an open tab, say): not this page's to offer.
    const records = await this.#resume.waiting((id) => this.#items.has(id));
    return records.map(({ itemId, name, size, mime, kind, lastModified, createdAt, handle }) => ({
      itemId,
      name,
      size,
      mime,
      kind,
      lastModified,
      createdAt,
      ...(handle ? { handle } : {}),
    }));
  }

  /**
   * Takes up a remembered unfinished item again with the file the user picked (or a handle to
   * it): checks that it is the same file (name, size, type, last modification, and the SHA-256 of
   * its first and last 64 KiB), then holds it under its old id and publishes it; the upload goes on
   * from what the upload servers hold. An item this engine holds already is left as it is.
   * @param itemId an item of {@link WsUploaderEngine.unfinished}
   * @param file the file, or a handle to it (remembered with the item then)
   * @returns the item
   * @throws {ConfigError} (as a rejection) when the id or the file is not valid
   * @throws {ResumeError} (as a rejection) `file-mismatch` when it is another file (`mismatch`
   *   says what differs; nothing is sent and the record stays: to upload it all the same, add it
   *   as a new item), `file-unreadable`, `resume-not-found` when no such item is remembered (or
   *   the `resume` option is off), `resume-storage-failed`
   */
  async resumeFile(itemId: string, file: File | FileSystemFileHandle): Promise<ItemStatus> {
    checkItemId(itemId);
    const handle = isFileHandle(file) ? file : undefined;
    if (!handle && !isBlob(file))
      throw new ConfigError('resumeFile() takes a File or a FileSystemFileHandle');
    const holding = this.#items.get(itemId);
    if (holding) return holding.status;
    const keeper = this.#resume;
    if (!keeper) throw new ResumeError('resume-not-found', 'the resume option is off', { itemId });
    const record = await keeper.get(itemId);
    if (!record)
      throw new ResumeError('resume-not-found', `no unfinished item ${itemId} is remembered`, {
        itemId,
      });
    const blob = handle ? await fileOf(handle, itemId) : (file as File);
    await checkFile(record, blob);
    // Another page may hold it (the user picked it there too): this one takes it all the same.
    const release = await lockItem(itemId);
    const again = this.#items.get(itemId);
    if (again) {
      release?.();
      return again.status;
    }
    const held = this.#items.hold(blob, record.kind, false, itemId);
    held.remembered = true;
    if (release) keeper.adopt(itemId, release);
    if (handle) {
      held.handle = handle;
      keeper.save({ ...record, handle });
    }
    this.publish([itemId]);
    return held.status;
  }

  /**
   * Drops the resume record of an item: no page will take it up again. An item this engine holds
   * goes on uploading, no longer remembered ({@link WsUploaderEngine.cancel} stops it).
   * @param itemId the item
   * @throws {ConfigError} (as a rejection) when the id is not a valid item id
   * @throws {ResumeError} (as a rejection) `resume-storage-failed` when the record cannot be dropped
   */
  async forget(itemId: string): Promise<void> {
    checkItemId(itemId);
    const held = this.#items.get(itemId);
    if (held) held.remembered = false;
    await this.#resume?.forget(itemId);
  }

  /**
   * Enters a room: messages sent to it reach this browser. Kept across reconnects. When the app
   * refuses, an `error` event with code `forbidden` and `room` follows, and the room is dropped.
   * @param room `[A-Za-z0-9_-]{1,128}`
   * @throws {ConfigError} when the name is invalid
   */
  join(room: string): void {
    checkRoom(room);
    this.#rooms.add(room);
    if (this.#control.state === ConnectionState.OPEN) this.#control.send({ type: 'join', room });
  }

  /**
   * Leaves a room.
   * @param room a room joined earlier
   * @throws {ConfigError} when the name is invalid
   */
  leave(room: string): void {
    checkRoom(room);
    this.#rooms.delete(room);
    if (this.#control.state === ConnectionState.OPEN) this.#control.send({ type: 'leave', room });
  }

  /**
   * Sends a short message and/or a small item (with its bytes) to another browser, every browser
   * of a user, or a room, through the control server. An item is published inline first unless
   * the same `Blob` already was. Waits for the control connection when it is reconnecting.
   * @param to `{ clientId }`, `{ userId }` or `{ room }`
   * @param message a `body`, an `item`, or both
   * @returns how many browsers it reached (never the sender itself)
   * @throws {ConfigError} (as a rejection) when the target or message is malformed
   * @throws {ServerError} (as a rejection) the control server's refusal: `forbidden` (the app
   *   does not allow it), `unknown-item`, `too-large` or `quota-exceeded` (the item cannot go
   *   inline)
   * @throws {TransportError} (as a rejection) `socket-closed` when the engine is not started or
   *   the connection closed before the answer (the message may have been delivered)
   */
  async send(to: MessageTarget, message: OutgoingMessage): Promise<number> {
    const target = checkTarget(to);
    const { body, item } = message ?? {};
    if (body === undefined && item === undefined)
      throw new ConfigError('a message needs a body or an item');
    if (body !== undefined && (typeof body !== 'string' || body.length > MAX_MESSAGE_BODY_LENGTH))
      throw new ConfigError(
        `a message body is a string of at most ${MAX_MESSAGE_BODY_LENGTH} characters`,
      );
    await this.#whenOpen();
    const itemId = item === undefined ? undefined : await this.#inline.itemFor(item);
    await this.#whenOpen();
    // Published again after a reconnect meanwhile: the message goes after it.
    if (itemId !== undefined) await this.#items.get(itemId)?.publishing;
    const id = newItemId();
    return this.#requests.wait<number>(
      id,
      () =>
        this.#control.send({
          type: 'message',
          id,
          to: target,
          ...(body === undefined ? {} : { body }),
          ...(itemId === undefined ? {} : { itemId }),
        }),
      itemId,
    );
  }

  /**
   * Asks the control server where an item can be read: any user's item, as the app allows
   * (`allow` with action `read` on the reference control server). The answer names the live
   * upload servers that hold it, each with its byte ranges and a read token; an item still
   * uploading is located too (a range not uploaded yet, read from a holder, is demanded from the
   * uploading browser), and an inline item comes with its bytes.
   * @param itemId the item
   * @returns where it is
   * @throws {ConfigError} (as a rejection) when `itemId` is not an item id
   * @throws {ServerError} (as a rejection) `unknown-item`, or `forbidden` when the app does not
   *   let this user read it
   * @throws {TransportError} (as a rejection) `socket-closed` when the engine is not started or
   *   the connection closed before the answer
   */
  async locate(itemId: string): Promise<ItemLocation> {
    if (typeof itemId !== 'string' || !ITEM_ID_PATTERN.test(itemId))
      throw new ConfigError(`${JSON.stringify(itemId)} is not an item id`);
    await this.#whenOpen();
    const id = newItemId();
    return this.#requests.wait<ItemLocation>(id, () =>
      this.#control.send({ type: 'locate', id, itemId }),
    );
  }

  /**
   * Uploads ranges of an item to the servers named, without the control server asking.
   * @param task the item, ranges and targets
   * @returns the item's digest and servers once every range is stored; rejects with an
   *   `AbortError` when the task is stopped (engine stopped, item unpublished)
   */
  transmit(task: TransmitTask): Promise<UploadResult> {
    return this.#tasks.execute(
      {
        taskId: task.taskId ?? newItemId(),
        itemId: task.itemId,
        ranges: task.ranges,
        priority: task.priority ?? 0,
        reason: 'page',
      },
      false,
    );
  }

  /**
   * Adds a typed listener.
   * @param type event name
   * @param listener receives an {@link EngineEvent}
   * @returns a function that removes the listener
   */
  on<K extends EngineEventType>(type: K, listener: (event: EngineEvent<K>) => void): () => void {
    const l = listener as EventListener;
    this.addEventListener(type, l);
    return () => this.removeEventListener(type, l);
  }

  #onControl(message: ControlServerMessage): void {
    switch (message.type) {
      case 'welcome': {
        this.#clientId = message.clientId;
        this.#inline.serverMax = message.limits.inlineMax ?? 0;
        this.#plane.update(message.servers);
        this.#resolveStarted?.();
        for (const room of this.#rooms) this.#control.send({ type: 'join', room });
        // Items added while disconnected; after a reconnect that did not resume the session (the
        // control server forgot this browser's tasks), also those waiting for a task, and those
        // of its tasks, which stop (quietly: their ids mean nothing to the new session) and are
        // planned anew (the new tasks resume from what the upload servers hold).
        const waiting: ItemState[] = message.resumed
          ? [ItemState.PUBLISHING]
          : [ItemState.PUBLISHING, ItemState.PUBLISHED];
        const again = new Set(
          this.items.filter((s) => waiting.includes(s.state)).map((s) => s.itemId),
        );
        if (message.resumed === false) {
          for (const itemId of this.#tasks.stopControlTasks()) again.add(itemId);
        }
        this.publish([...again]);
        this.#requests.opened();
        return;
      }
      case 'authed':
        return;
      case 'servers':
        this.#plane.update(message.servers);
        return;
      case 'published':
        for (const id of message.itemIds)
          this.#items.update(id, (s) =>
            s.state === ItemState.PUBLISHING ? { ...s, state: ItemState.PUBLISHED } : s,
          );
        return;
      case 'unpublished':
        for (const id of message.itemIds) {
          this.#unpublishing.delete(id);
          this.#items.drop(id);
          this.#resume?.drop(id);
        }
        this.#emit('unpublished', { itemIds: message.itemIds });
        return;
      case 'transmit': {
        if (this.#tasks.has(message.taskId)) return; // The same task again.
        // Taken: the control server knows the task reached a page that holds the item.
        if (this.#items.has(message.itemId))
          this.#control.send({ type: 'accept', taskId: message.taskId, itemId: message.itemId });
        this.#tasks
          .execute(
            {
              taskId: message.taskId,
              itemId: message.itemId,
              ranges: message.ranges,
              priority: message.priority,
              reason: message.reason ?? 'publish',
              ...(message.deadline === undefined ? {} : { deadline: message.deadline }),
              ...(message.protocol === undefined ? {} : { protocol: message.protocol }),
              ...(message.digest === undefined ? {} : { digest: message.digest }),
            },
            true,
          )
          .catch(() => undefined);
        return;
      }
      case 'cancel':
        this.#tasks.cancel(message.taskId, message.itemId, message.reason);
        return;
      case 'completed': {
        // The control server knows the item is stored (inline, empty, or stored earlier): nothing
        // to send. An item this page is uploading completes through its own task.
        const held = this.#items.get(message.itemId);
        if (!held || held.status.state === ItemState.COMPLETE || this.#tasks.busy(message.itemId))
          return;
        this.#items.finished(held);
        const { itemId, name, size } = held.status;
        this.#items.update(itemId, (s) => ({
          ...s,
          state: ItemState.COMPLETE,
          bytesSent: size,
          bytesStored: size,
          bytesTotal: size,
          sha256: message.sha256,
          servers: message.servers,
        }));
        this.#emit('complete', {
          itemId,
          name,
          size,
          sha256: message.sha256,
          servers: message.servers,
        });
        return;
      }
      case 'message': {
        const { from, id, body, item } = message;
        this.#emit('message', {
          ...(from === undefined ? {} : { from }),
          ...(id === undefined ? {} : { id }),
          ...(body === undefined ? {} : { body }),
          ...(item === undefined ? {} : { item: receivedItem(item) }),
        });
        return;
      }
      case 'located': {
        const { item, state, sha256, holders } = message;
        const location: ItemLocation = {
          item,
          state,
          ...(sha256 === undefined ? {} : { sha256 }),
          holders,
        };
        this.#requests.answer(message.id, location);
        return;
      }
      case 'sent': {
        this.#requests.answer(message.id, message.delivered);
        return;
      }
      case 'error':
        this.#onError(message.code, message.message, message.ref);
        return;
    }
  }

  /** An `error` from the control server, given to whatever it answers. */
  #onError(code: string, text: string, ref: string | undefined): void {
    const error = new ServerError(code as ServerError['code'], text, {
      serverId: 'control',
      ...(ref !== undefined && this.#items.has(ref) ? { itemId: ref } : {}),
    });
    if (ref === undefined) {
      this.#emit('error', { error });
      return;
    }
    // A `locate` or a message with this id.
    if (this.#requests.refuse(ref, error)) return;
    if (code === 'unknown-item') {
      // A message's item is refused under the item's id, not the message's.
      if (this.#inline.answersRefusal(ref)) return;
      if (this.#requests.refuseItem(ref, error) > 0) return;
      // Unpublishing an item the control server did not know: forgotten all the same.
      if (this.#unpublishing.delete(ref)) return;
    }
    if (code === 'unknown-task' && this.#tasks.lateCancelAnswered(ref)) return;
    if (code === 'forbidden' && this.#rooms.has(ref)) {
      this.#rooms.delete(ref);
      this.#emit('error', { error, room: ref });
      return;
    }
    const held = this.#items.get(ref);
    if (held?.inline && (code === 'too-large' || code === 'quota-exceeded')) {
      this.#inline.refused(held, error);
      return;
    }
    if (held) this.#items.fail(ref, error);
    else this.#emit('error', { error });
  }

  /** Resolves once the control channel is open (now, or after the reconnect under way). */
  #whenOpen(): Promise<void> {
    return this.#requests.whenOpen(
      this.#control.state === ConnectionState.OPEN,
      this.#started !== undefined,
    );
  }

  /**
   * Takes up the remembered items whose handles can be read without asking (and that no other
   * page holds, and whose file is the one remembered), under their ids, and publishes them.
   */
  async #restore(): Promise<void> {
    // Held and published at once: a `welcome` in between would publish them twice.
    const restored = await this.#items.restore();
    if (restored.length === 0) return;
    this.#emit('restore', { items: restored });
    this.publish(restored.map((s) => s.itemId));
  }

  #emit<K extends EngineEventType>(type: K, detail: EngineEventDetails[K]): void {
    this.dispatchEvent(new EngineEvent(type, detail));
  }
}
