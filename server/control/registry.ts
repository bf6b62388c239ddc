/**
 * The control server's registry of upload servers: the ones configured by hand, and the ones that
 * connect out to the control server over a registry link (`ws-uploader.registry.v1`), register,
 * keep a heartbeat and leave the list when it stops. Linked servers also report the items they
 * have stored and verified, and demand from their readers.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import {
  CLOSE,
  decodeRegistryClientMessage,
  encodeRegistryMessage,
  PROTOCOL,
  ProtocolError,
  SUBPROTOCOL_REGISTRY_1,
  type DemandMessage,
  type RegistryErrorCode,
  type RegistryServerMessage,
  type StoredMessage,
} from '../../src/protocol/index.js';
import { REGISTRY_AUDIENCE, verifyToken } from '../tokens.js';
import { DUP_PATH } from '../upload/upload-server.js';

/** An upload server the control server tells browsers about. */
export interface UploadServerEndpoint {
  /** Server id (the one the upload server was started with). */
  readonly id: string;
  /** Its dup/2 WebSocket URL, as browsers reach it. */
  readonly url: string;
  /** Its HTTP base URL, as browsers reach it. */
  readonly httpUrl: string;
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
}

/** Options of {@link UploadServerRegistry}. */
export interface RegistryOptions {
  readonly key: Uint8Array;
  /** Heartbeat interval asked of linked servers, in ms; three missed drop the server. */
  readonly heartbeatMs: number;
  /** Time a link has to send `register`, in ms. */
  readonly registerTimeoutMs: number;
  readonly events: RegistryEvents;
}

interface Link {
  readonly ws: WebSocket;
  readonly endpoint: UploadServerEndpoint;
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
        if (isBinary) throw new ProtocolError('message-invalid', 'registry frames are text');
        message = decodeRegistryClientMessage(data.toString());
      } catch (e) {
        const why = e instanceof ProtocolError ? `${e.code}: ${e.message}` : 'bad message';
        this.#refuse(ws, 'bad-message', why, CLOSE.PROTOCOL_VIOLATION);
        return;
      }
      if (link) {
        link.watchdog.refresh();
        if (message.type === 'stored') this.#options.events.stored(link.endpoint.id, message);
        else if (message.type === 'demand') this.#options.events.demand(link.endpoint.id, message);
        else if (message.type === 'register')
          this.#refuse(ws, 'bad-message', 'already registered', CLOSE.PROTOCOL_VIOLATION);
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
        const endpoint = endpointOf(message, req);
        if (!endpoint) {
          this.#refuse(
            ws,
            'no-endpoint',
            'send url and httpUrl, or port so the control server can use the address it sees',
            CLOSE.PROTOCOL_VIOLATION,
          );
          return;
        }
        // A server that registers again (restarted, or its link broke) replaces its old link.
        const old = this.#links.get(endpoint.id);
        if (old) {
          this.#links.delete(endpoint.id);
          clearTimeout(old.watchdog);
          old.ws.close(CLOSE.REPLACED, 'registered again');
        }
        const heartbeatMs = this.#options.heartbeatMs;
        link = {
          ws,
          endpoint,
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
   * An upgrade request of a browser for `/relay/{serverId}`: its frames are to travel over that
   * server's registry link. Not implemented yet: refused.
   */
  relayUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    void req;
    void head;
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  }

  /** Closes every link. */
  close(): void {
    for (const link of this.#links.values()) {
      clearTimeout(link.watchdog);
      link.ws.close(CLOSE.GOING_AWAY, 'control server closing');
    }
    this.#links.clear();
  }

  #drop(link: Link): void {
    clearTimeout(link.watchdog);
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
  },
  req: IncomingMessage,
): UploadServerEndpoint | undefined {
  const protocols = message.protocols.length > 0 ? message.protocols : [PROTOCOL.DUP_2];
  if (message.url !== undefined && message.httpUrl !== undefined)
    return { id: message.id, url: message.url, httpUrl: message.httpUrl, protocols };
  const address = req.socket.remoteAddress;
  if (message.port === undefined || !address) return undefined;
  const mapped = address.startsWith('::ffff:') ? address.slice(7) : address;
  const host = mapped.includes(':') ? `[${mapped}]` : mapped;
  return {
    id: message.id,
    url: `ws://${host}:${message.port}${DUP_PATH}`,
    httpUrl: `http://${host}:${message.port}`,
    protocols,
  };
}
