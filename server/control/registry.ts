/**
 * The control server's registry of upload servers: the ones configured by hand, and the ones that
 * connect out to the control server over a registry link (`ws-uploader.registry.v1`), register,
 * keep a heartbeat and leave the list when it stops. Linked servers also report the items they
 * have stored and verified, and demand from their readers. Servers that register with
 * `relay: true` are listed at `/relay/{id}` on the control server, and browsers reach them through
 * their link (see `./relay.ts`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import {
  CLOSE,
  DEFAULT_RELAY_MAX_MESSAGE,
  decodeRegistryClientMessage,
  encodeRegistryMessage,
  PROTOCOL,
  ProtocolError,
  SUBPROTOCOL_REGISTRY_1,
  type DemandMessage,
  type DigestedMessage,
  type DigestMessage,
  type RegistryErrorCode,
  type RegistryServerMessage,
  type RelayClientMessage,
  type StoredMessage,
} from '../../src/protocol/index.js';
import { pathOf } from '../internal/http-server.js';
import { REGISTRY_AUDIENCE, verifyToken } from '../tokens.js';
import { DUP_PATH } from '../upload/upload-server.js';
import { RELAY_PREFIX, RelayLink, relayUrls } from './relay.js';

/** An upload server the control server tells browsers about. */
export interface UploadServerEndpoint {
  /** Server id (the one the upload server was started with). */
  readonly id: string;
  /** Its dup/2 WebSocket URL, as browsers reach it. */
  readonly url: string;
  /** Its HTTP base URL, as browsers reach it. */
  readonly httpUrl: string;
  /**
   * Its HTTP base URL as the other upload servers reach it, where it differs from `httpUrl` (a
   * private network address): where one of them reads its ranges of a split item to compute the
   * item's digest. @default httpUrl
   */
  readonly peerUrl?: string;
  /** Protocols it speaks. @default ['dup/2'] */
  readonly protocols?: readonly string[];
}

/** What the registry tells its owner. */
export interface RegistryEvents {
  /** The list of servers changed (one joined, left or moved). */
  change(): void;
  /** A linked server reports what it holds of an item. */
  stored(serverId: string, message: StoredMessage): void;
  /** A linked server's reader waits for ranges it lacks. */
  demand(serverId: string, message: DemandMessage): void;
  /** A linked server answers a `digest` request. */
  digested(serverId: string, message: DigestedMessage): void;
}

/** Options of {@link UploadServerRegistry}. */
export interface RegistryOptions {
  readonly key: Uint8Array;
  /** Heartbeat interval asked of linked servers, in ms; three missed drop the server. */
  readonly heartbeatMs: number;
  /** Time a link has to send `register`, in ms. */
  readonly registerTimeoutMs: number;
  readonly events: RegistryEvents;
  /**
   * The control server's HTTP base URL as browsers reach it (`https://control.example`), for the
   * URLs of relayed servers. @default from the `Host` of each registry link's request
   */
  readonly relayBaseUrl?: string;
  /** How long a relayed server has to answer a browser's `relay-open`, in ms. @default 10000 */
  readonly relayAcceptTimeoutMs?: number;
}

interface Link {
  readonly ws: WebSocket;
  readonly endpoint: UploadServerEndpoint;
  /** For a server registered with `relay: true`: its browsers' channels. */
  readonly relay: RelayLink | undefined;
  /** It registered with `digestSteps`: it computes a digest's steps over its own ranges. */
  readonly digestSteps: boolean;
  /** Dropped when it fires: reset by every message. */
  watchdog: NodeJS.Timeout;
}

/** @internal */
export class UploadServerRegistry {
  readonly #static = new Map<string, UploadServerEndpoint>();
  readonly #links = new Map<string, Link>();
  readonly #options: RegistryOptions;

  /**
   * @param endpoints servers configured by hand, always listed
   * @param options see {@link RegistryOptions}
   */
  constructor(endpoints: readonly UploadServerEndpoint[], options: RegistryOptions) {
    this.#options = options;
    for (const s of endpoints) this.#static.set(s.id, s);
  }

  /** The servers browsers are told about: linked ones (live) and those configured by hand. */
  list(): UploadServerEndpoint[] {
    const all = new Map(this.#static);
    for (const [id, link] of this.#links) all.set(id, link.endpoint);
    return [...all.values()];
  }

  /** The server with this id, when listed. */
  get(id: string): UploadServerEndpoint | undefined {
    return this.#links.get(id)?.endpoint ?? this.#static.get(id);
  }

  /** Whether the server reports over a live link (so its completions and demand are heard). */
  linked(id: string): boolean {
    return this.#links.has(id);
  }

  /**
   * Whether the server has a live link and an address of its own (not relayed): other servers can
   * read its items over HTTP.
   */
  reachable(id: string): boolean {
    const link = this.#links.get(id);
    return link !== undefined && link.relay === undefined;
  }

  /**
   * Whether the server has a live link and registered with `digestSteps`: it can hash its own
   * ranges of an item from a state another server reached, and answer with the state it reached.
   */
  digestSteps(id: string): boolean {
    return this.#links.get(id)?.digestSteps ?? false;
  }

  /**
   * Sends a `digest` request over a server's link.
   * @returns whether the server is linked (and the request went)
   */
  digest(id: string, request: DigestMessage): boolean {
    const link = this.#links.get(id);
    if (!link || link.ws.readyState !== link.ws.OPEN) return false;
    send(link.ws, request);
    return true;
  }

  /** Takes a new registry link: it must register within the deadline. */
  accept(ws: WebSocket, req: IncomingMessage): void {
    if (ws.protocol !== SUBPROTOCOL_REGISTRY_1) {
      ws.close(CLOSE.UNSUPPORTED_PROTOCOL, `speak ${SUBPROTOCOL_REGISTRY_1}`);
      return;
    }
    let link: Link | undefined;
    let registering = false;
    const deadline = setTimeout(
      () => this.#refuse(ws, 'auth-timeout', 'no register in time', CLOSE.AUTH_TIMEOUT),
      this.#options.registerTimeoutMs,
    );
    ws.on('error', () => undefined);
    ws.on('close', () => {
      clearTimeout(deadline);
      if (link) this.#drop(link);
    });
    ws.on('message', (data, isBinary) => {
      let message;
      try {
        if (isBinary) {
          // A relay frame: a message for a browser of this relayed server.
          if (!link?.relay)
            throw new ProtocolError('message-invalid', 'binary frames are for relayed servers');
          link.watchdog.refresh();
          link.relay.frame(data as Buffer);
          return;
        }
        message = decodeRegistryClientMessage(data.toString());
        if (link?.relay && message.type.startsWith('relay-')) {
          link.watchdog.refresh();
          link.relay.message(message as RelayClientMessage);
          return;
        }
      } catch (e) {
        const why = e instanceof ProtocolError ? `${e.code}: ${e.message}` : 'bad message';
        this.#refuse(ws, 'bad-message', why, CLOSE.PROTOCOL_VIOLATION);
        return;
      }
      if (link) {
        link.watchdog.refresh();
        if (message.type === 'stored') this.#options.events.stored(link.endpoint.id, message);
        else if (message.type === 'demand') this.#options.events.demand(link.endpoint.id, message);
        else if (message.type === 'digested')
          this.#options.events.digested(link.endpoint.id, message);
        else if (message.type === 'register')
          this.#refuse(ws, 'bad-message', 'already registered', CLOSE.PROTOCOL_VIOLATION);
        else if (message.type !== 'heartbeat')
          this.#refuse(
            ws,
            'bad-message',
            `${message.type}: not a relayed server`,
            CLOSE.PROTOCOL_VIOLATION,
          );
        return;
      }
      if (message.type !== 'register' || registering) {
        this.#refuse(ws, 'not-registered', 'send register first', CLOSE.PROTOCOL_VIOLATION);
        return;
      }
      registering = true;
      void (async () => {
        const claims = await verifyToken(this.#options.key, message.token, REGISTRY_AUDIENCE);
        clearTimeout(deadline);
        if (ws.readyState !== ws.OPEN) return;
        if (!claims || claims.sub !== message.id) {
          this.#refuse(ws, 'auth-failed', 'registry token refused', CLOSE.AUTH_FAILED);
          return;
        }
        // The relay carries WebSocket connections only: a relayed server is listed with the
        // protocols browsers can reach through it.
        const relayed = protocolsOf(message).filter((p) => RELAYED_PROTOCOLS.has(p));
        const endpoint = message.relay
          ? relayed.length > 0
            ? {
                id: message.id,
                ...relayUrls(req, message.id, this.#options.relayBaseUrl),
                protocols: relayed,
                ...(message.peerUrl === undefined ? {} : { peerUrl: message.peerUrl }),
              }
            : undefined
          : endpointOf(message, req);
        if (!endpoint) {
          this.#refuse(
            ws,
            'no-endpoint',
            message.relay
              ? 'the relay carries dup/2 and dup/1 only'
              : 'send url and httpUrl, or port so the control server can use the address it sees, or relay: true',
            CLOSE.PROTOCOL_VIOLATION,
          );
          return;
        }
        // A server that registers again (restarted, or its link broke) replaces its old link.
        const old = this.#links.get(endpoint.id);
        if (old) {
          this.#links.delete(endpoint.id);
          clearTimeout(old.watchdog);
          old.relay?.close();
          old.ws.close(CLOSE.REPLACED, 'registered again');
        }
        const heartbeatMs = this.#options.heartbeatMs;
        link = {
          ws,
          endpoint,
          relay: message.relay
            ? new RelayLink(ws, {
                maxMessage: message.maxMessage ?? DEFAULT_RELAY_MAX_MESSAGE,
                ...(this.#options.relayAcceptTimeoutMs === undefined
                  ? {}
                  : { acceptTimeoutMs: this.#options.relayAcceptTimeoutMs }),
              })
            : undefined,
          digestSteps: message.digestSteps === true,
          watchdog: setTimeout(() => ws.terminate(), heartbeatMs * 3),
        };
        link.watchdog.unref();
        this.#links.set(endpoint.id, link);
        send(ws, {
          type: 'registered',
          heartbeatMs,
          url: endpoint.url,
          httpUrl: endpoint.httpUrl,
        });
        this.#options.events.change();
      })();
    });
  }

  /**
   * An upgrade request of a browser for `/relay/{serverId}`: its messages travel over that
   * server's registry link. 404 when no server of that id is linked with `relay: true`.
   */
  relayUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const relay = this.#relayOf(req);
    if (relay) relay.upgrade(req, socket, head);
    else {
      socket.on('error', () => undefined);
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    }
  }

  /**
   * An HTTP request under `/relay/{serverId}/` (the `httpUrl` of a relayed server, such as
   * `GET /relay/{id}/files/{itemId}`). The relay carries WebSocket connections only: 502, or 404
   * when no such server is relayed.
   */
  relayRequest(req: IncomingMessage, res: ServerResponse): void {
    const known = this.#relayOf(req, true) !== undefined;
    res
      .writeHead(known ? 502 : 404, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store' })
      .end(known ? 'the relay carries WebSocket connections only\n' : 'not found\n');
  }

  /** Closes every link, and every relayed browser with them. */
  close(): void {
    for (const link of this.#links.values()) {
      clearTimeout(link.watchdog);
      link.relay?.close(CLOSE.GOING_AWAY, 'control server closing');
      link.ws.close(CLOSE.GOING_AWAY, 'control server closing');
    }
    this.#links.clear();
  }

  /** The relay of the server a `/relay/{id}` path names (or a path under it, with `below`). */
  #relayOf(req: IncomingMessage, below = false): RelayLink | undefined {
    const path = pathOf(req);
    if (!path.startsWith(RELAY_PREFIX)) return undefined;
    const rest = path.slice(RELAY_PREFIX.length);
    const slash = rest.indexOf('/');
    if (slash >= 0 && !below) return undefined;
    return this.#links.get(slash >= 0 ? rest.slice(0, slash) : rest)?.relay;
  }

  #drop(link: Link): void {
    clearTimeout(link.watchdog);
    link.relay?.close();
    if (this.#links.get(link.endpoint.id) !== link) return;
    this.#links.delete(link.endpoint.id);
    this.#options.events.change();
  }

  #refuse(ws: WebSocket, code: RegistryErrorCode, message: string, close: number): void {
    send(ws, { type: 'error', code, message });
    ws.close(close, code);
  }
}

function send(ws: WebSocket, message: RegistryServerMessage): void {
  if (ws.readyState === ws.OPEN) ws.send(encodeRegistryMessage(message));
}

/**
 * Where browsers reach a registering server: the URLs it advertises, or its port at the address
 * the control server sees the link come from.
 */
function endpointOf(
  message: {
    id: string;
    protocols: readonly string[];
    url?: string;
    httpUrl?: string;
    port?: number;
    peerUrl?: string;
  },
  req: IncomingMessage,
): UploadServerEndpoint | undefined {
  const protocols = protocolsOf(message);
  const peer = message.peerUrl === undefined ? {} : { peerUrl: message.peerUrl };
  if (message.url !== undefined && message.httpUrl !== undefined)
    return { id: message.id, url: message.url, httpUrl: message.httpUrl, protocols, ...peer };
  const address = req.socket.remoteAddress;
  if (message.port === undefined || !address) return undefined;
  const mapped = address.startsWith('::ffff:') ? address.slice(7) : address;
  const host = mapped.includes(':') ? `[${mapped}]` : mapped;
  return {
    id: message.id,
    url: `ws://${host}:${message.port}${DUP_PATH}`,
    httpUrl: `http://${host}:${message.port}`,
    protocols,
    ...peer,
  };
}

/** Protocols a relayed server is listed with: the WebSocket ones (HTTP is not relayed). */
const RELAYED_PROTOCOLS: ReadonlySet<string> = new Set([PROTOCOL.DUP_2, PROTOCOL.DUP_1]);

/** The protocols a server registered with (dup/2 when it named none). */
function protocolsOf(message: { protocols: readonly string[] }): readonly string[] {
  return message.protocols.length > 0 ? message.protocols : [PROTOCOL.DUP_2];
}
