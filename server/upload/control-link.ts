/**
 * The upload server's link to its control server (`--control-url`): it connects out, so a server
 * behind NAT needs no open port for it; registers with a registry token made from the shared
 * secret; sends a heartbeat; reports items it completed and verified, and demand from its readers.
 * A broken link is opened again after an exponential backoff with full jitter. So is a link that
 * answers nothing (not even a WebSocket ping) for a heartbeat interval: a NAT or a proxy may forget
 * a connection without telling either end, and the control server drops such a server from its
 * list after three missed heartbeats, so the link must be opened again, not waited on.
 *
 * A server started with `relay` registers as relayed (it has no address browsers can reach) and
 * takes browser connections as relay channels on this link (see `./relay.ts`).
 */
import WebSocket from 'ws';
import {
  decodeRegistryServerMessage,
  encodeRegistryMessage,
  MAX_CONTROL_MESSAGE_LENGTH,
  ProtocolError,
  RELAY_HEADER_BYTES,
  SUBPROTOCOL_REGISTRY_1,
  type ByteRange,
  type DigestMessage,
  type DigestedMessage,
  type RegisterMessage,
  type RegistryClientMessage,
  type RelayServerMessage,
} from '../../src/protocol/index.js';
import { createRegistryToken } from '../tokens.js';
import type { RelayPort } from './relay.js';

/** Where the link hands relay channels: see `RelayChannels`. */
export interface RelayEndpoint {
  /** The link is registered: channels may open on it. */
  attach(port: RelayPort): void;
  /** The link is gone. */
  detach(): void;
  /** A relay message from the control server. */
  message(message: RelayServerMessage): void;
  /**
   * A relay frame from the control server.
   * @throws {ProtocolError} when it is malformed
   */
  frame(bytes: Buffer): void;
}

/** Options of {@link ControlLink}. */
export interface ControlLinkOptions {
  /** The control server's registry URL, such as `ws://control.example:8080/registry`. */
  readonly url: string;
  readonly secret: Uint8Array;
  readonly id: string;
  readonly protocols: readonly string[];
  /** The URLs browsers reach this server at, when known; else the control server uses `port`. */
  readonly advertise?: { readonly url: string; readonly httpUrl: string };
  /** The HTTP base URL the other upload servers reach this server at, when it differs. */
  readonly peerUrl?: string;
  /** The port this server listens on, when it does (asked at each connection). */
  readonly port: () => number | undefined;
  readonly maxItemSize: number;
  /**
   * Register as relayed (`relay: true`, no URL, no port) and take browser connections over the
   * link as relay channels.
   */
  readonly relay?: {
    readonly channels: RelayEndpoint;
    /** Largest message a browser may send, in bytes (`maxMessage`). */
    readonly maxMessage: number;
  };
  readonly log: (event: string, fields?: Record<string, unknown>) => void;
  /**
   * Computes the SHA-256 of an item split across servers, or one step of it (a `digest` request);
   * its answer goes back as `digested`. With it the server registers with `digestSteps`; without
   * it, such requests are answered `unavailable`.
   */
  readonly digest?: (request: DigestMessage) => Promise<DigestedMessage | undefined>;
}

/** Completions kept for the next link while it is down; older ones are dropped. */
const MAX_QUEUED = 1000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;

/** @internal */
export class ControlLink {
  readonly #options: ControlLinkOptions;
  #ws: WebSocket | undefined;
  #registered = false;
  #closed = false;
  #started = false;
  #attempt = 0;
  #retry: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  /** Completions waiting for a registered link. */
  readonly #queue: RegistryClientMessage[] = [];

  constructor(options: ControlLinkOptions) {
    this.#options = options;
  }

  /** Whether the control server has accepted this server's registration on the current link. */
  get registered(): boolean {
    return this.#registered;
  }

  /** Opens the link (and keeps it open until {@link close}). */
  start(): void {
    if (this.#closed || this.#started) return;
    this.#started = true;
    void this.#connect();
  }

  /** Reports an item stored whole and verified. Kept for the next link while this one is down. */
  complete(itemId: string, sha256: string, size: number): void {
    const message: RegistryClientMessage = {
      type: 'stored',
      itemId,
      size,
      ranges: size > 0 ? [{ start: 0, end: size }] : [],
      complete: true,
      sha256,
    };
    this.#report(message);
  }

  /** Reports that a reader waits for ranges this server lacks (dropped while the link is down). */
  demand(itemId: string, ranges: readonly ByteRange[]): void {
    if (this.#registered)
      this.#send({ type: 'demand', itemId, ranges: ranges.map((r) => ({ ...r })) });
  }

  /** Closes the link for good. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    clearInterval(this.#heartbeat);
    this.#ws?.close(1001, 'upload server closing');
    this.#ws = undefined;
    this.#registered = false;
    this.#options.relay?.channels.detach();
  }

  async #connect(): Promise<void> {
    const o = this.#options;
    const token = await createRegistryToken(o.secret, o.id);
    if (this.#closed) return;
    const port = o.port();
    const relay = o.relay;
    const register: RegisterMessage = {
      type: 'register',
      token,
      id: o.id,
      protocols: [...o.protocols],
      maxItemSize: o.maxItemSize,
      ...(o.peerUrl === undefined ? {} : { peerUrl: o.peerUrl }),
      ...(o.digest ? { digestSteps: true } : {}),
      ...(relay
        ? { relay: true, maxMessage: relay.maxMessage }
        : { ...(o.advertise ?? {}), ...(port === undefined ? {} : { port }) }),
    };
    const ws = new WebSocket(o.url, SUBPROTOCOL_REGISTRY_1, {
      perMessageDeflate: false,
      // A relayed browser message with its relay header, or a JSON message.
      maxPayload: Math.max(
        MAX_CONTROL_MESSAGE_LENGTH * 3,
        (relay?.maxMessage ?? 0) + RELAY_HEADER_BYTES,
      ),
    });
    this.#ws = ws;
    // Whether anything came from the control server since the last ping: its pong, a message, or
    // bytes of a large relay frame still arriving.
    let answered = true;
    ws.on('upgrade', (res) => res.socket.on('data', () => (answered = true)));
    ws.on('pong', () => (answered = true));
    ws.on('open', () => ws.send(encodeRegistryMessage(register)));
    ws.on('message', (data, isBinary) => {
      answered = true;
      let message;
      try {
        if (isBinary) {
          if (!relay || !this.#registered)
            throw new ProtocolError('message-invalid', 'a relay frame on a link without relay');
          relay.channels.frame(data as Buffer);
          return;
        }
        message = decodeRegistryServerMessage(data.toString());
      } catch (e) {
        o.log('control-link', {
          state: 'bad-message',
          message: e instanceof ProtocolError ? `${e.code}: ${e.message}` : String(e),
        });
        ws.close(4002, 'bad message');
        return;
      }
      if (message.type === 'error') {
        o.log('control-link', { state: 'refused', code: message.code, message: message.message });
        return;
      }
      if (message.type === 'relay-open' || message.type === 'relay-close') {
        if (relay && this.#registered) relay.channels.message(message);
        else if (message.type === 'relay-open')
          this.#send({ type: 'relay-refuse', channel: message.channel, status: 404 });
        return;
      }
      if (message.type === 'digest') {
        if (this.#registered) this.#digest(message);
        return;
      }
      if (this.#registered) return;
      this.#registered = true;
      this.#attempt = 0;
      o.log('control-link', { state: 'registered', url: message.url });
      clearInterval(this.#heartbeat);
      answered = true;
      this.#heartbeat = setInterval(() => {
        // Nothing came back for a whole interval: the link is dead, whether or not it was closed.
        if (!answered) {
          o.log('control-link', { state: 'dead' });
          ws.terminate();
          return;
        }
        answered = false;
        ws.ping();
        this.#send({ type: 'heartbeat' });
      }, message.heartbeatMs);
      this.#heartbeat.unref();
      relay?.channels.attach({
        message: (m) => this.#send(m),
        frame: (bytes, cb) => {
          if (ws.readyState === WebSocket.OPEN) ws.send(bytes, cb);
          else cb?.(new Error('registry link closed'));
        },
        get bufferedAmount() {
          return ws.bufferedAmount;
        },
      });
      for (const queued of this.#queue.splice(0)) this.#send(queued);
    });
    ws.on('error', (e) => o.log('control-link', { state: 'error', message: e.message }));
    ws.on('close', (code) => {
      if (this.#ws !== ws) return;
      this.#ws = undefined;
      this.#registered = false;
      clearInterval(this.#heartbeat);
      relay?.channels.detach();
      if (this.#closed) return;
      // Full jitter: anywhere between 0 and the exponential cap, so servers do not come back in step.
      const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.#attempt++);
      const delay = Math.random() * cap;
      o.log('control-link', { state: 'closed', code, retryMs: Math.round(delay) });
      this.#retry = setTimeout(() => void this.#connect(), delay);
      this.#retry.unref();
    });
  }

  /** Runs a `digest` request; its answer waits for a registered link like a completion. */
  #digest(request: DigestMessage): void {
    const run =
      this.#options.digest?.(request) ??
      Promise.resolve<DigestedMessage | undefined>({
        type: 'digested',
        itemId: request.itemId,
        code: 'unavailable',
        message: 'this server computes no digests',
      });
    void run.then(
      // None for a request replaced by a later one (which answers instead).
      (answer) => answer && this.#report(answer),
      (e: unknown) =>
        this.#report({
          type: 'digested',
          itemId: request.itemId,
          code: 'unavailable',
          message: String(e).slice(0, 1024),
        }),
    );
  }

  #report(message: RegistryClientMessage): void {
    if (this.#registered) this.#send(message);
    else {
      this.#queue.push(message);
      if (this.#queue.length > MAX_QUEUED) this.#queue.shift();
    }
  }

  #send(message: RegistryClientMessage): void {
    const ws = this.#ws;
    if (ws?.readyState === WebSocket.OPEN) ws.send(encodeRegistryMessage(message));
  }
}
