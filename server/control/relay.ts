/**
 * The control server's side of the relay: browsers that cannot reach an upload server directly
 * (it registered with `relay: true`, having no address of its own) open their WebSocket at
 * `/relay/{serverId}` on the control server, and each becomes a channel on that server's registry
 * link. The upload server decides the upgrade (`relay-accept` with the subprotocol, or
 * `relay-refuse` with an HTTP status), so relayed browsers pass the same checks as direct ones;
 * then every message travels as a relay frame (see `docs/registry-draft.md`).
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  decodeRelayFrame,
  encodeRegistryMessage,
  MAX_RELAY_CHANNEL,
  ProtocolError,
  RELAY_HEADER_BYTES,
  RELAY_KIND,
  RELAY_LINK_LOST,
  truncateUtf8,
  writeRelayHeader,
  type RelayClientMessage,
  type RelayKind,
  type RelayServerMessage,
} from '../../src/protocol/index.js';

/**
 * Path prefix of relayed upload servers (the same as `RELAY_PATH_PREFIX` of the control server,
 * kept here so the registry does not import the control server).
 */
export const RELAY_PREFIX = '/relay/';

/** Options of {@link RelayLink}. */
export interface RelayLinkOptions {
  /** Largest message a browser may send, in bytes (the upload server's `maxMessage`). */
  readonly maxMessage: number;
  /** How long the upload server has to answer `relay-open`; then 504. @default 10000 */
  readonly acceptTimeoutMs?: number;
  /** Channels open or opening at once on the link; more get 503. @default 4096 */
  readonly maxChannels?: number;
}

interface Pending {
  readonly req: IncomingMessage;
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly offered: readonly string[];
  readonly timer: NodeJS.Timeout;
  readonly onGone: () => void;
}

interface Channel {
  readonly id: number;
  /** Until the upload server answers `relay-open`. */
  pending: Pending | undefined;
  /** Once the browser's upgrade completed. */
  ws: WebSocket | undefined;
  /** The upload server paused the channel (`relay-pause`). */
  pausedByServer: boolean;
}

/**
 * The relay channels of one linked upload server.
 * @internal
 */
export class RelayLink {
  readonly #link: WebSocket;
  readonly #wss: WebSocketServer;
  readonly #channels = new Map<number, Channel>();
  /** The subprotocol the upload server chose, by upgrade request. */
  readonly #chosen = new WeakMap<IncomingMessage, string>();
  readonly #acceptTimeoutMs: number;
  readonly #maxChannels: number;
  /** Pause every browser while more than this waits to be written to the link... */
  readonly #high: number;
  /** ...and resume them once it is down to this. */
  readonly #low: number;
  #next = 1;
  #congested = false;
  #closed = false;

  /**
   * @param link the registry link of a server registered with `relay: true`
   * @param options see {@link RelayLinkOptions}
   */
  constructor(link: WebSocket, options: RelayLinkOptions) {
    this.#link = link;
    this.#acceptTimeoutMs = options.acceptTimeoutMs ?? 10_000;
    this.#maxChannels = options.maxChannels ?? 4096;
    this.#high = Math.max(4 * 1024 * 1024, 2 * options.maxMessage);
    this.#low = this.#high / 4;
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: options.maxMessage,
      perMessageDeflate: false,
      handleProtocols: (_offered, req) => this.#chosen.get(req) || false,
    });
  }

  /** Channels open or opening. */
  get size(): number {
    return this.#channels.size;
  }

  /** A browser's upgrade request for this server: asks the upload server, then completes it. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    if (this.#closed || this.#link.readyState !== this.#link.OPEN) {
      refuse(socket, 503);
      return;
    }
    if (this.#channels.size >= this.#maxChannels || this.#next > MAX_RELAY_CHANNEL) {
      refuse(socket, 503);
      return;
    }
    const offered = offeredProtocols(req);
    const origin = req.headers.origin;
    if (
      req.method !== 'GET' ||
      req.headers.upgrade?.toLowerCase() !== 'websocket' ||
      !/^[+/0-9A-Za-z]{22}==$/.test(req.headers['sec-websocket-key'] ?? '') ||
      offered === undefined ||
      (origin !== undefined && (origin.length === 0 || origin.length > 2048))
    ) {
      refuse(socket, 400);
      return;
    }
    const id = this.#next++;
    const channel: Channel = { id, pending: undefined, ws: undefined, pausedByServer: false };
    const onGone = (): void => {
      if (this.#channels.get(id) !== channel || channel.ws) return;
      this.#forget(channel);
      this.#send({ type: 'relay-close', channel: id, code: 1006, reason: '' });
    };
    const timer = setTimeout(() => {
      if (this.#channels.get(id) !== channel || channel.ws) return;
      this.#forget(channel);
      refuse(socket, 504);
      this.#send({ type: 'relay-close', channel: id, code: 1006, reason: '' });
    }, this.#acceptTimeoutMs);
    channel.pending = { req, socket, head, offered, timer, onGone };
    socket.once('close', onGone);
    this.#channels.set(id, channel);
    this.#send({
      type: 'relay-open',
      channel: id,
      protocols: offered,
      remote: (req.socket.remoteAddress ?? '').slice(0, 64),
      ...(origin === undefined ? {} : { origin }),
    });
  }

  /**
   * A relay message of the upload server.
   * @throws {ProtocolError} when it names a channel never opened or answers one twice
   */
  message(message: RelayClientMessage): void {
    const channel = this.#channel(message.channel);
    if (!channel) return;
    const { pending, ws } = channel;
    switch (message.type) {
      case 'relay-accept': {
        if (!pending) throw new ProtocolError('message-invalid', `channel ${channel.id} is open`);
        if (message.protocol !== '' && !pending.offered.includes(message.protocol))
          throw new ProtocolError('message-invalid', 'relay-accept names a protocol not offered');
        clearTimeout(pending.timer);
        channel.pending = undefined;
        this.#chosen.set(pending.req, message.protocol);
        // If the request turns out invalid, ws answers 400 and destroys the socket: onGone.
        this.#wss.handleUpgrade(pending.req, pending.socket, pending.head, (opened) => {
          pending.socket.off('close', pending.onGone);
          this.#opened(channel, opened);
        });
        return;
      }
      case 'relay-refuse':
        if (!pending) throw new ProtocolError('message-invalid', `channel ${channel.id} is open`);
        this.#forget(channel);
        refuse(pending.socket, message.status);
        return;
      case 'relay-close':
        if (pending) {
          this.#forget(channel);
          refuse(pending.socket, 502);
        } else if (ws) closeBrowser(ws, message.code, message.reason);
        return;
      case 'relay-pause':
      case 'relay-resume':
        channel.pausedByServer = message.type === 'relay-pause';
        if (ws) this.#flow(channel);
        return;
    }
  }

  /**
   * A relay frame of the upload server: a message (or ping, pong) for its browser.
   * @throws {ProtocolError} when it is malformed or names a channel never opened
   */
  frame(bytes: Buffer): void {
    const frame = decodeRelayFrame(bytes);
    const channel = this.#channel(frame.channel);
    if (!channel) return;
    const ws = channel.ws;
    if (!ws) throw new ProtocolError('frame-invalid-field', `channel ${channel.id} is not open`);
    if (ws.readyState !== ws.OPEN) return;
    const payload = Buffer.from(
      frame.payload.buffer,
      frame.payload.byteOffset,
      frame.payload.length,
    );
    if (frame.kind === RELAY_KIND.PING) ws.ping(payload);
    else if (frame.kind === RELAY_KIND.PONG) ws.pong(payload);
    else ws.send(payload, { binary: frame.kind === RELAY_KIND.BINARY });
  }

  /**
   * The link is lost or replaced (or the control server closes): every relayed browser is closed,
   * every pending one refused with 503.
   * @param code close code for the browsers: {@link RELAY_LINK_LOST}, or 1001 when the control
   *   server shuts down
   * @param reason close reason
   */
  close(code: number = RELAY_LINK_LOST, reason = 'upload server link lost'): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const channel of [...this.#channels.values()]) {
      this.#forget(channel);
      if (channel.pending) refuse(channel.pending.socket, 503);
      channel.ws?.close(code, reason);
    }
  }

  #opened(channel: Channel, ws: WebSocket): void {
    if (this.#channels.get(channel.id) !== channel) {
      ws.close(RELAY_LINK_LOST, 'upload server link lost');
      return;
    }
    channel.ws = ws;
    const id = channel.id;
    this.#flow(channel);
    ws.on('error', () => undefined);
    ws.on('message', (data, isBinary) =>
      this.#forward(id, isBinary ? RELAY_KIND.BINARY : RELAY_KIND.TEXT, data as Buffer),
    );
    ws.on('pong', (data) => this.#forward(id, RELAY_KIND.PONG, data));
    ws.on('close', (code, reason) => {
      if (this.#channels.get(id) !== channel) return;
      this.#forget(channel);
      this.#send({
        type: 'relay-close',
        channel: id,
        code,
        reason: truncateUtf8(reason.toString(), 123),
      });
    });
  }

  /** The channel of a message, `undefined` when it is already gone; throws when never opened. */
  #channel(id: number): Channel | undefined {
    if (id >= this.#next)
      throw new ProtocolError('frame-invalid-field', `relay channel ${id} was never opened`);
    return this.#channels.get(id);
  }

  #forget(channel: Channel): void {
    this.#channels.delete(channel.id);
    if (channel.pending) {
      clearTimeout(channel.pending.timer);
      channel.pending.socket.off('close', channel.pending.onGone);
    }
  }

  /** Sends a browser's message to the upload server; pauses every browser while the link lags. */
  #forward(channel: number, kind: RelayKind, data: Buffer): void {
    if (this.#link.readyState !== this.#link.OPEN) return;
    const frame = Buffer.allocUnsafe(RELAY_HEADER_BYTES + data.length);
    writeRelayHeader(frame, channel, kind);
    data.copy(frame, RELAY_HEADER_BYTES);
    this.#link.send(frame, () => {
      if (this.#congested && this.#link.bufferedAmount <= this.#low) {
        this.#congested = false;
        for (const c of this.#channels.values()) if (c.ws) this.#flow(c);
      }
    });
    if (!this.#congested && this.#link.bufferedAmount > this.#high) {
      this.#congested = true;
      for (const c of this.#channels.values()) if (c.ws) this.#flow(c);
    }
  }

  /** Reads from a browser unless the link lags or the upload server paused its channel. */
  #flow(channel: Channel): void {
    const ws = channel.ws!;
    const stop = this.#congested || channel.pausedByServer;
    if (stop && !ws.isPaused) ws.pause();
    else if (!stop && ws.isPaused) ws.resume();
  }

  #send(message: RelayServerMessage): void {
    if (this.#link.readyState === this.#link.OPEN) this.#link.send(encodeRegistryMessage(message));
  }
}

/**
 * The relay URLs of a server, as browsers reach the control server: from `base` when the
 * control server is configured with one, else from the `Host` of the registry link's request
 * (`https`/`wss` when it came over TLS or with `X-Forwarded-Proto: https`).
 * @param req the upgrade request of the registry link
 * @param id the server id
 * @param base the control server's public HTTP base URL, such as `https://control.example`
 */
export function relayUrls(
  req: IncomingMessage,
  id: string,
  base?: string,
): { url: string; httpUrl: string } {
  let http = base?.replace(/\/+$/, '');
  if (http === undefined) {
    const forwarded = String(req.headers['x-forwarded-proto'] ?? '')
      .split(',')[0]!
      .trim()
      .toLowerCase();
    const tls = forwarded === 'https' || (req.socket as Partial<TLSSocket>).encrypted === true;
    const header = req.headers.host ?? '';
    const host = /^[A-Za-z0-9.:[\]-]{1,255}$/.test(header)
      ? header
      : `${req.socket.localAddress?.includes(':') ? `[${req.socket.localAddress}]` : req.socket.localAddress}:${req.socket.localPort}`;
    http = `${tls ? 'https' : 'http'}://${host}`;
  }
  const httpUrl = `${http}${RELAY_PREFIX}${id}`;
  return { url: httpUrl.replace(/^http/, 'ws'), httpUrl };
}

/** The dup subprotocols a browser offers, `undefined` when the header is malformed. */
function offeredProtocols(req: IncomingMessage): string[] | undefined {
  const header = req.headers['sec-websocket-protocol'];
  if (header === undefined) return [];
  const list = header
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (list.length > 32 || list.some((p) => !/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/.test(p)))
    return undefined;
  return list;
}

/** Answers an upgrade request with an HTTP status and closes its socket. */
function refuse(socket: Duplex, status: number): void {
  if (socket.destroyed) return;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
  );
}

/** Closes a browser's socket as the upload server closed its side. */
function closeBrowser(ws: WebSocket, code: number, reason: string): void {
  if (code === 1006) ws.terminate();
  else if (code === 1005) ws.close();
  else {
    try {
      ws.close(code, reason);
    } catch {
      // A code a close frame may not carry (1004, 1015...).
      ws.close(1011, 'relay');
    }
  }
}
