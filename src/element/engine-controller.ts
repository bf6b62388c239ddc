/**
 * Bridges the headless engine to a Lit host: owns the engine, keeps a snapshot of its state for
 * rendering, and re-dispatches engine events as `ws-*` DOM events on the host.
 */
import type { ReactiveController, ReactiveControllerHost } from 'lit';
import { WsUploaderEngine } from '../engine/engine.js';
import type { EngineOptions } from '../engine/options.js';
import {
  ConnectionState,
  type ItemStatus,
  type ServerStatus,
  type UploadResult,
} from '../engine/types.js';
import { WsMessageEvent } from '../events/ws-message-event.js';
import { WsPublishEvent } from '../events/ws-publish-event.js';
import { WsServerChangeEvent } from '../events/ws-server-change-event.js';
import { WsTransmitRequestEvent } from '../events/ws-transmit-request-event.js';
import { WsUploadCompleteEvent } from '../events/ws-upload-complete-event.js';
import { WsUploadErrorEvent } from '../events/ws-upload-error-event.js';
import { WsDegradedEvent } from '../events/ws-degraded-event.js';
import { WsUploadProgressEvent } from '../events/ws-upload-progress-event.js';

/** @internal */
export class EngineController implements ReactiveController {
  readonly host: ReactiveControllerHost & HTMLElement;
  readonly #message: (code: string) => string;
  #engine: WsUploaderEngine | undefined;
  #unsubscribe: (() => void)[] = [];
  #servers: readonly ServerStatus[] = [];
  #items: readonly ItemStatus[] = [];
  #state: ConnectionState = ConnectionState.CLOSED;
  readonly #pendingProgress = new Map<string, ItemStatus>();
  #frame = 0;

  /**
   * @param host the element
   * @param message maps an error code to a localized message
   */
  constructor(host: ReactiveControllerHost & HTMLElement, message: (code: string) => string) {
    (this.host = host).addController(this);
    this.#message = message;
  }

  /** The running engine, if any. */
  get engine(): WsUploaderEngine | undefined {
    return this.#engine;
  }

  /** Upload servers. */
  get servers(): readonly ServerStatus[] {
    return this.#servers;
  }

  /** Items. */
  get items(): readonly ItemStatus[] {
    return this.#items;
  }

  /** Takes the engine's items again (after a call that changed them). */
  refresh(): void {
    if (this.#engine) this.#items = this.#engine.items;
    this.host.requestUpdate();
  }

  /** Control connection state. */
  get state(): ConnectionState {
    return this.#state;
  }

  hostConnected(): void {
    // The element's Task (re)connects once it has options.
  }

  hostDisconnected(): void {
    // A move in the DOM disconnects and reconnects in one task: keep the engine through it.
    queueMicrotask(() => {
      if (!this.host.isConnected) this.stop();
    });
  }

  /**
   * Replaces the engine with one made from `options` and connects it.
   * @param options engine options
   * @param signal aborts the wait for the handshake
   */
  async connect(options: EngineOptions, signal: AbortSignal): Promise<void> {
    this.stop();
    const engine = new WsUploaderEngine(options);
    this.#engine = engine;
    this.#subscribe(engine);
    await engine.start(signal);
  }

  /** Stops the engine. */
  stop(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
    this.#engine?.stop();
    this.#engine = undefined;
    if (this.#frame) cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    this.#pendingProgress.clear();
    this.#state = ConnectionState.CLOSED;
    this.#servers = [];
    this.#items = [];
  }

  #subscribe(engine: WsUploaderEngine): void {
    const host = this.host;
    const refresh = (): void => {
      this.#items = engine.items;
      host.requestUpdate();
    };
    this.#unsubscribe.push(
      engine.on('state', (e) => {
        this.#state = e.detail.state;
        host.requestUpdate();
      }),
      engine.on('servers', (e) => {
        this.#servers = e.detail.servers;
        host.requestUpdate();
        host.dispatchEvent(new WsServerChangeEvent({ servers: e.detail.servers }));
      }),
      engine.on('publish', (e) => {
        host.dispatchEvent(new WsPublishEvent({ items: e.detail.items }));
      }),
      engine.on('transmit-request', (e) => {
        const { taskId, itemId, ranges, priority, reason } = e.detail.task;
        const event = new WsTransmitRequestEvent(
          { taskId, itemId, ranges, priority, reason },
          e.detail.retarget,
        );
        // The app may decline the task: the engine then does not run it.
        if (!host.dispatchEvent(event)) e.preventDefault();
      }),
      engine.on('message', (e) => host.dispatchEvent(new WsMessageEvent(e.detail))),
      engine.on('cancel', refresh),
      engine.on('unpublished', refresh),
      engine.on('restore', refresh),
      engine.on('progress', (e) => {
        this.#items = engine.items;
        host.requestUpdate();
        this.#pendingProgress.set(e.detail.item.itemId, e.detail.item);
        this.#frame ||= requestAnimationFrame(() => this.#flushProgress());
      }),
      engine.on('complete', (e) => {
        this.#flushProgress();
        refresh();
        host.dispatchEvent(new WsUploadCompleteEvent(this.#completeDetail(e.detail)));
      }),
      engine.on('degraded', (e) => {
        console.warn(`ws-uploader: ${e.detail.message}; the page's thread sends the bytes`);
        host.dispatchEvent(new WsDegradedEvent(e.detail));
      }),
      engine.on('error', (e) => {
        const { error, itemId } = e.detail;
        refresh();
        host.dispatchEvent(
          new WsUploadErrorEvent({
            itemId,
            serverId: (error as { serverId?: string }).serverId,
            code: error.code,
            message: this.#message(error.code),
            error,
          }),
        );
      }),
    );
  }

  #flushProgress(): void {
    if (this.#frame) cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    for (const item of this.#pendingProgress.values()) {
      if (item.bytesTotal === 0) continue;
      const { itemId, bytesSent, bytesStored, bytesTotal, bytesByServer = {} } = item;
      this.host.dispatchEvent(
        new WsUploadProgressEvent({ itemId, bytesSent, bytesStored, bytesTotal, bytesByServer }),
      );
    }
    this.#pendingProgress.clear();
  }

  #completeDetail(result: UploadResult): WsUploadCompleteEvent['detail'] {
    const byId = new Map(this.#servers.map((s) => [s.id, s]));
    return {
      itemId: result.itemId,
      name: result.name,
      size: result.size,
      // The engine completes only whole items, which always carry their digest.
      sha256: result.sha256 ?? '',
      servers: result.servers.map((id) => ({
        id,
        url: `${(byId.get(id)?.httpUrl ?? '').replace(/\/$/, '')}/files/${encodeURIComponent(result.itemId)}`,
      })),
    };
  }
}
