/**
 * Browser connections that reach this upload server through the control server's relay: each is a
 * channel on the registry link (see `docs/registry-draft.md`). A {@link RelaySocket} stands for
 * one of them and behaves, for the dup/2 and dup/1 sessions, like the `ws` WebSocket of a direct
 * connection: the same authentication, limits, acknowledgements and close codes apply.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import {
  decodeRelayFrame,
  RELAY_HEADER_BYTES,
  RELAY_KIND,
  writeRelayHeader,
  type RelayClientMessage,
  type RelayKind,
  type RelayServerMessage,
  MAX_REGISTRY_MESSAGE,
} from '../../src/protocol/index.js';

/** What a relay channel needs of the registry link it travels on. */
export interface RelayPort {
  /** Sends a relay message (JSON text) on the link. */
  message(message: RelayClientMessage): void;
  /** Sends a relay frame (binary) on the link. */
  frame(bytes: Uint8Array, cb?: (err?: Error) => void): void;
  /** Bytes queued on the link and not yet written to its socket. */
  readonly bufferedAmount: number;
}

/** `ws` close codes that a close frame may not carry. */
const NO_STATUS = 1005;
const ABNORMAL = 1006;

/**
 * A browser's WebSocket as it reaches this server through the relay: the subset of `ws`'s
 * `WebSocket` the sessions use (`send`, `close`, `terminate`, `ping`, `pong`, `pause`, `resume`,
 * `readyState`, `protocol`, `bufferedAmount`, and the events `message`, `close`, `error`, `ping`,
 * `pong`).
 */
export class RelaySocket extends EventEmitter {
  /** `readyState` before the handshake (never, for a relayed socket). */
  readonly CONNECTING = 0;
  /** `readyState` while open. */
  readonly OPEN = 1;
  /** `readyState` once `close` was called and the browser has not closed yet. */
  readonly CLOSING = 2;
  /** `readyState` once closed. */
  readonly CLOSED = 3;
  /** The negotiated subprotocol, such as `ws-uploader.dup.v2`. */
  readonly protocol: string;
  /** The channel on the registry link. */
  readonly channel: number;
  readonly #port: RelayPort;
  /**
   * Largest message this socket can send to the browser: what fits in one message of the registry
   * link with its relay header. A session sending large messages (dup/2 BYTES) keeps under it.
   */
  readonly maxMessage: number;
  readonly #maxPayload: number;
  readonly #maxQueued: number;
  readonly #onClosed: () => void;
  #state: 0 | 1 | 2 | 3 = 1;
  #paused = false;
  /** Messages received while paused (or not yet emitted after a resume), in order. */
  readonly #queue: { data: Buffer; isBinary: boolean }[] = [];
  #queued = 0;
  #flushing = false;
  /** The browser's close, held back until the messages before it are emitted. */
  #peerClose: { code: number; reason: string } | undefined;

  /**
   * @param channel the channel number
   * @param protocol the negotiated subprotocol
   * @param port the link
   * @param limits `maxPayload`: largest message (else close 1009); `maxQueued`: bytes held while
   *   paused before the channel is dropped (the control server stops reading a paused channel
   *   within one link round trip, so this is only reached by a peer that ignores it)
   * @param onClosed told once when the socket is closed for good
   */
  constructor(
    channel: number,
    protocol: string,
    port: RelayPort,
    limits: { maxPayload: number; maxQueued: number },
    onClosed: () => void,
  ) {
    super();
    this.channel = channel;
    this.protocol = protocol;
    this.maxMessage = MAX_REGISTRY_MESSAGE - RELAY_HEADER_BYTES;
    this.#port = port;
    this.#maxPayload = limits.maxPayload;
    this.#maxQueued = limits.maxQueued;
    this.#onClosed = onClosed;
  }

  /** `OPEN`, `CLOSING` or `CLOSED`. */
  get readyState(): number {
    return this.#state;
  }

  /** Bytes waiting to be written to the registry link (shared by every channel of the link). */
  get bufferedAmount(): number {
    return this.#state === this.CLOSED ? 0 : this.#port.bufferedAmount;
  }

  /** Whether reading is paused. */
  get isPaused(): boolean {
    return this.#paused;
  }

  /**
   * Sends a message to the browser: text for a string, binary otherwise. One over
   * {@link maxMessage} is not sent (the control server would drop the link, and every channel on
   * it): the channel is dropped instead.
   * @param data the message
   * @param cb called once it is on the link, or with an error when the socket is not open or the
   *   message too large
   */
  send(
    data: string | Uint8Array | ArrayBuffer,
    cb?: ((err?: Error) => void) | Record<string, unknown>,
    cb2?: (err?: Error) => void,
  ): void {
    const done = typeof cb === 'function' ? cb : cb2;
    if (this.#state !== this.OPEN) {
      done?.(new Error(`WebSocket is not open: readyState ${this.#state}`));
      return;
    }
    const text = typeof data === 'string';
    const payload = text
      ? Buffer.from(data)
      : data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : data;
    if (payload.length > this.maxMessage) {
      const error = new RangeError(
        `relay channel: a message of ${payload.length} bytes is over ${this.maxMessage}`,
      );
      this.#error(error);
      this.terminate();
      done?.(error);
      return;
    }
    this.#frame(text ? RELAY_KIND.TEXT : RELAY_KIND.BINARY, payload, done);
  }

  /** Sends a WebSocket ping to the browser (answered with a `pong` event). */
  ping(data?: Uint8Array | string): void {
    if (this.#state === this.OPEN) this.#frame(RELAY_KIND.PING, control(data));
  }

  /** Sends a WebSocket pong to the browser. */
  pong(data?: Uint8Array | string): void {
    if (this.#state === this.OPEN) this.#frame(RELAY_KIND.PONG, control(data));
  }

  /**
   * Starts the closing handshake: the browser is sent this close; the `close` event comes once it
   * has closed (or the link is lost).
   * @param code close code (none: the browser sees 1005)
   * @param reason close reason, at most 123 bytes
   */
  close(code?: number, reason?: string): void {
    if (this.#state !== this.OPEN) return;
    this.#state = this.CLOSING;
    this.#port.message({
      type: 'relay-close',
      channel: this.channel,
      code: code ?? NO_STATUS,
      reason: code === undefined ? '' : (reason ?? ''),
    });
  }

  /** Drops the connection at once: the browser's socket is destroyed, `close` (1006) follows. */
  terminate(): void {
    if (this.#state === this.CLOSED) return;
    this.#port.message({ type: 'relay-close', channel: this.channel, code: ABNORMAL, reason: '' });
    this.#finish(ABNORMAL, '');
  }

  /**
   * Stops emitting `message` events, and asks the control server to stop reading from the browser
   * (messages already on their way are held until {@link resume}).
   */
  pause(): void {
    if (this.#paused || this.#state === this.CLOSED) return;
    this.#paused = true;
    this.#port.message({ type: 'relay-pause', channel: this.channel });
  }

  /** Emits the held messages and reads from the browser again. */
  resume(): void {
    if (!this.#paused || this.#state === this.CLOSED) return;
    this.#paused = false;
    this.#port.message({ type: 'relay-resume', channel: this.channel });
    this.#scheduleFlush();
  }

  /**
   * A relay frame for this channel arrived.
   * @internal
   */
  receive(kind: RelayKind, payload: Buffer): void {
    if (this.#state === this.CLOSED) return;
    if (kind === RELAY_KIND.PING) {
      this.pong(payload);
      this.emit('ping', payload);
      return;
    }
    if (kind === RELAY_KIND.PONG) {
      this.emit('pong', payload);
      return;
    }
    if (payload.length > this.#maxPayload) {
      // What `ws` does with a message over maxPayload.
      this.#error(
        Object.assign(new RangeError('Max payload size exceeded'), {
          code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
        }),
      );
      this.close(1009, 'Max payload size exceeded');
      return;
    }
    const isBinary = kind === RELAY_KIND.BINARY;
    if (!this.#paused && this.#queue.length === 0) {
      this.emit('message', payload, isBinary);
      return;
    }
    this.#queue.push({ data: payload, isBinary });
    this.#queued += payload.length;
    if (this.#queued > this.#maxQueued) {
      this.#error(new Error('relay channel: too many bytes received while paused'));
      this.terminate();
    }
  }

  /**
   * The browser closed (or the control server dropped it). Held until the messages received
   * before it are emitted, as a paused `ws` socket reads the close frame only once resumed.
   * @internal
   */
  peerClosed(code: number, reason: string): void {
    if (this.#state === this.CLOSED) return;
    this.#peerClose = { code, reason };
    if (this.#queue.length === 0) this.#finish(code, reason);
  }

  /**
   * The registry link is gone: closed at once (1006), held messages dropped.
   * @internal
   */
  linkLost(): void {
    this.#finish(ABNORMAL, '');
  }

  /** An `error` event, when someone listens (a socket refused for its protocol has no session). */
  #error(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  #frame(kind: RelayKind, payload: Uint8Array, cb?: (err?: Error) => void): void {
    const bytes = Buffer.allocUnsafe(RELAY_HEADER_BYTES + payload.length);
    writeRelayHeader(bytes, this.channel, kind);
    bytes.set(payload, RELAY_HEADER_BYTES);
    this.#port.frame(bytes, cb);
  }

  #scheduleFlush(): void {
    if (this.#flushing || this.#queue.length === 0) return;
    this.#flushing = true;
    // Not from inside resume(): the caller may be resuming many sockets in a loop.
    setImmediate(() => {
      this.#flushing = false;
      while (!this.#paused && this.#state !== this.CLOSED && this.#queue.length > 0) {
        const { data, isBinary } = this.#queue.shift()!;
        this.#queued -= data.length;
        this.emit('message', data, isBinary);
      }
      if (this.#queue.length === 0 && this.#peerClose)
        this.#finish(this.#peerClose.code, this.#peerClose.reason);
    });
  }

  #finish(code: number, reason: string): void {
    if (this.#state === this.CLOSED) return;
    this.#state = this.CLOSED;
    this.#queue.length = 0;
    this.#queued = 0;
    this.#onClosed();
    // As with `ws`, `close` comes after the call that caused it has returned.
    setImmediate(() => this.emit('close', code, Buffer.from(reason)));
  }
}

function control(data: Uint8Array | string | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  return typeof data === 'string' ? Buffer.from(data) : data;
}

/** What the upload server does with a browser that comes through the relay. */
export interface RelayChannelsOptions {
  /**
   * The checks a direct connection passes before its upgrade (allowed origins, connections per
   * IP): an HTTP status to refuse with, or `undefined`.
   */
  readonly admit: (req: IncomingMessage) => number | undefined;
  /** The subprotocol to speak of those offered, or `false` for none (then closed with 4005). */
  readonly protocol: (offered: Set<string>) => string | false;
  /** Hands an accepted connection to the same code as a direct one. */
  readonly connect: (ws: WebSocket, req: IncomingMessage) => void;
  /** Largest message from a browser, in bytes (the direct endpoint's `maxPayload`). */
  readonly maxPayload: number;
  /** Bytes a paused channel may hold before it is dropped. */
  readonly maxQueued: number;
  readonly log: (event: string, fields?: Record<string, unknown>) => void;
}

/**
 * The relay channels of one upload server, over whichever registry link is current: opens a
 * {@link RelaySocket} for each `relay-open` the checks admit, routes frames to it, and closes them
 * all when the link is lost.
 * @internal
 */
export class RelayChannels {
  readonly #options: RelayChannelsOptions;
  readonly #sockets = new Map<number, RelaySocket>();
  #port: RelayPort | undefined;
  #accepting = true;

  /** @param options see {@link RelayChannelsOptions} */
  constructor(options: RelayChannelsOptions) {
    this.#options = options;
  }

  /** Relayed connections now open. */
  get size(): number {
    return this.#sockets.size;
  }

  /** A link is registered: channels may open on it. */
  attach(port: RelayPort): void {
    this.detach();
    this.#port = port;
  }

  /** The link is gone: every relayed connection closes (1006). */
  detach(): void {
    this.#port = undefined;
    for (const socket of [...this.#sockets.values()]) socket.linkLost();
    this.#sockets.clear();
  }

  /** New channels are refused with 503 from now on (the server is shutting down). */
  stop(): void {
    this.#accepting = false;
  }

  /** A relay message from the control server. */
  message(message: RelayServerMessage): void {
    const port = this.#port;
    if (!port) return;
    if (message.type === 'relay-close') {
      this.#sockets.get(message.channel)?.peerClosed(message.code, message.reason);
      return;
    }
    const { channel } = message;
    // What the connection handler reads of a request: the peer's address and its Origin.
    const req = {
      headers: message.origin === undefined ? {} : { origin: message.origin },
      socket: { remoteAddress: message.remote },
      url: `/relay/${channel}`,
    } as unknown as IncomingMessage;
    const refuse = (status: number): void => {
      this.#options.log('upgrade-refused', {
        status,
        origin: message.origin,
        remote: message.remote,
        relay: channel,
      });
      port.message({ type: 'relay-refuse', channel, status });
    };
    if (!this.#accepting || this.#sockets.has(channel)) {
      refuse(503);
      return;
    }
    const status = this.#options.admit(req);
    if (status !== undefined) {
      refuse(status);
      return;
    }
    const protocol = this.#options.protocol(new Set(message.protocols)) || '';
    port.message({ type: 'relay-accept', channel, protocol });
    const socket = new RelaySocket(
      channel,
      protocol,
      port,
      { maxPayload: this.#options.maxPayload, maxQueued: this.#options.maxQueued },
      () => this.#sockets.delete(channel),
    );
    this.#sockets.set(channel, socket);
    this.#options.connect(socket as unknown as WebSocket, req);
  }

  /**
   * A relay frame from the control server.
   * @throws {ProtocolError} for a malformed frame
   */
  frame(bytes: Buffer): void {
    const frame = decodeRelayFrame(bytes);
    const socket = this.#sockets.get(frame.channel);
    if (!socket) return;
    const payload = Buffer.from(
      frame.payload.buffer,
      frame.payload.byteOffset,
      frame.payload.length,
    );
    try {
      socket.receive(frame.kind, payload);
    } catch (e) {
      // A fault of this connection's session: it must not take the link (and every other
      // relayed connection) down with it.
      this.#options.log('relay-error', { channel: frame.channel, message: String(e) });
      socket.terminate();
    }
  }
}
