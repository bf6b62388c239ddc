/**
 * The reference upload server: dup/2 over WebSocket, finished items over HTTP, items on disk.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import {
  CLOSE,
  DEFAULT_MAX_CHUNK,
  DEFAULT_MAX_ITEM_SIZE,
  DEFAULT_WINDOW,
  DATA_HEADER_BYTES,
  ITEM_ID_PATTERN,
  MAX_TOKEN_BYTES,
  PROTOCOL,
  SUBPROTOCOL_DUP_1,
  SUBPROTOCOL_DUP_2,
} from '../../src/protocol/index.js';
import { listen, pathOf, shutdown, upgradeOn } from '../internal/http-server.js';
import { logFor, type Logger } from '../internal/log.js';
import { CLOCK_LEEWAY_SECONDS, secretKey, uploadAudience, verifyToken } from '../tokens.js';
import { grantOf, readGrantOf } from './grant.js';
import { BufferBudget } from './buffer-budget.js';
import { DigestJobs } from './digest-job.js';
import { ControlLink, type ControlLinkOptions } from './control-link.js';
import { Dup1Session } from './dup1-session.js';
import { Dup2Session } from './dup2-session.js';
import { FileStore, type ItemStore } from './file-store.js';
import { serveItem, type Demand, type FileRouteOptions } from './file-route.js';
import { handleUploads, type HttpUploadOptions } from './http-uploads.js';
import { handleTus, TUS_PATH, type TusOptions } from './tus.js';
import { ItemLocks } from './item-locks.js';
import { RelayChannels, RelaySocket } from './relay.js';
import {
  authorizeRead,
  CROSS_ORIGIN_RESOURCE_POLICIES,
  READ_ACCESS_MODES,
  type CrossOriginResourcePolicy,
  type ReadAccess,
  type ReadAccessOptions,
} from './read-access.js';

/** Options of {@link createUploadServer}. */
export interface UploadServerOptions {
  /** Server id, unique in the deployment; upload tokens name it. `[A-Za-z0-9_-]{1,128}`. */
  readonly id: string;
  /** Shared secret with the control server (at least 32 bytes), used to verify upload tokens. */
  readonly secret: string | Uint8Array;
  /** Folder where items are stored. Required unless `store` is given. */
  readonly dataDir?: string;
  /** Storage backend. @default a FileStore on `dataDir` */
  readonly store?: ItemStore;
  /**
   * With the default FileStore: `fsync` acknowledges bytes once they survive a crash of the
   * machine; `write` once they survive a crash of the process. @default 'fsync'
   */
  readonly durability?: 'fsync' | 'write';
  /** With the default FileStore: largest sum of all item sizes, in bytes. @default Infinity */
  readonly maxBytes?: number;
  /** With the default FileStore: largest sum of one user's item sizes, in bytes. @default Infinity */
  readonly maxBytesPerOwner?: number;
  /** Partial items that stored nothing for this long are deleted, in ms. @default 86400000 (24 h) */
  readonly partialTtlMs?: number;
  /**
   * How long a writer waits for the connection it takes an item over from (a second tab, a stale
   * socket) to finish its started writes; then it gets `locked` (retryable), in ms. @default 10000
   */
  readonly lockTimeoutMs?: number;
  /** An existing HTTP server to attach to; otherwise one is created (call `listen`). */
  readonly server?: Server;
  /** Largest item, in bytes. @default 524288000 (500 MiB) */
  readonly maxItemSize?: number;
  /** Largest DATA payload, in bytes. @default 1048576 (1 MiB) */
  readonly maxChunk?: number;
  /** Unacknowledged bytes a client may have in flight per connection. @default 16777216 (16 MiB) */
  readonly window?: number;
  /** Time a client has to send HELLO after connecting, in ms. @default 10000 */
  readonly authTimeoutMs?: number;
  /**
   * The control server's registry URL (`ws://…/registry`). The server then connects out to it,
   * registers (so it needs no port the control server can reach), keeps a heartbeat, and reports
   * completed items and demand. Without it, the control server must list this server by hand.
   */
  readonly controlUrl?: string;
  /**
   * This server's HTTP base URL as browsers reach it (`https://up-1.example`); its WebSocket URL
   * is the same with `ws:`/`wss:` and `/dup`. Sent when registering; without it the control server
   * uses the address the link comes from and the port this server listens on.
   */
  readonly publicUrl?: string;
  /**
   * With `controlUrl`: this server's HTTP base URL as the other upload servers reach it, where it
   * differs from the one browsers use (`http://10.0.0.5:8081` on a private network, say). Sent when
   * registering; another server that computes the digest of an item split across them reads this
   * server's ranges there. @default the URL browsers use
   */
  readonly peerUrl?: string;
  /**
   * With `controlUrl`: this server cannot be reached by browsers (behind NAT, no public port), so
   * it registers as relayed and browsers reach it through the control server at
   * `/relay/{id}`, over the link this server opens. The link starts when the server is created:
   * `listen()` is then only needed for local HTTP (reads, health). Goes without `publicUrl`.
   * @default false
   */
  readonly relay?: boolean;
  /** Called when an item becomes complete and verified. */
  readonly onComplete?: (itemId: string, sha256: string, size: number) => void;
  /**
   * Called when a reader asks `GET /files/{itemId}` (or a dup/2 `READ`) for bytes not stored yet
   * and waits for them:
   * the hook that lets the control server ask the uploading browser for those ranges first.
   */
  readonly onDemand?: (demand: Demand) => void;
  /**
   * Who may read `GET`/`HEAD /files/{itemId}`. `token`: a read token (see `createReadToken`:
   * `scope: "read"`, this server's upload audience, optionally `items`) in
   * `Authorization: Bearer` or in the `access_token` query parameter; without one `401`, with an
   * upload token or one for other items `403`. `public`: anyone who knows the URL (item ids from the
   * reference client are 128 random bits, but a leaked URL stays readable). The same goes for a
   * dup/2 `READ`: with `token`, only a connection whose `HELLO` carried a read token reads (and
   * cannot upload); with `public`, any welcomed connection reads. @default 'token'
   */
  readonly readAccess?: ReadAccess;
  /**
   * `Cross-Origin-Resource-Policy` of `/files` responses. `same-site` lets pages of this server's
   * site (same registrable domain) embed items in `<img>`/`<video>`; an app on another site must set
   * `cross-origin`, or browsers refuse to show the items on its pages. @default 'same-site'
   */
  readonly crossOriginResourcePolicy?: CrossOriginResourcePolicy;
  /**
   * How long such a reader waits before a 503 with `Retry-After` (dup/2: `ERROR` `not-ready`), in
   * ms. @default 10000
   */
  readonly holdMs?: number;
  /**
   * How long a digest of an item split across servers (asked by the control server) waits for one
   * piece of the item to be stored, here or on a peer, before it gives up, in ms. @default 600000
   */
  readonly digestWaitMs?: number;
  /** `Retry-After` of that 503, in seconds. @default 2 */
  readonly retryAfterSeconds?: number;
  /**
   * Protocols to speak, of `dup/2`, `dup/1`, `tus/1` and `http/1` (both WebSocket versions share
   * `/dup`, told apart by `Sec-WebSocket-Protocol`). @default all of them
   */
  readonly protocols?: readonly string[];
  /** Largest number of ranges in one `Range` header; more and the whole item is sent. @default 16 */
  readonly maxRanges?: number;
  /**
   * Bytes received and not yet stored, over all connections; past it the server stops reading
   * from every connection until half is stored. @default 67108864 (64 MiB)
   */
  readonly maxBufferedBytes?: number;
  /** Upload ids one client (token `sub`) may have bound at once, over all its connections. @default 64 */
  readonly maxUploadsPerClient?: number;
  /** WebSocket connections one IP address may hold at once; more get 429 before the upgrade. @default 64 */
  readonly maxConnectionsPerIp?: number;
  /**
   * Origins whose pages may open WebSockets to this server (exact match, such as
   * `https://app.example`); others get 403 before the upgrade. Requests without `Origin` (not from a
   * browser) are let through: they still need a token. @default any origin
   */
  readonly allowedOrigins?: readonly string[];
  /**
   * A connection that sends nothing for this long is closed with 4008, in ms. Any bytes count, not
   * only whole messages, so a large frame arriving slowly keeps its connection. @default 120000
   */
  readonly idleTimeoutMs?: number;
  /** Interval of WebSocket pings; a peer that misses one is dropped, in ms. @default 30000 */
  readonly heartbeatMs?: number;
  /** On `close()`, how long connections may take to make received bytes durable, in ms. @default 10000 */
  readonly drainMs?: number;
  /** Receives one structured entry per event (connections, completions, errors, HTTP requests). */
  readonly logger?: Logger;
}

/** A running upload server. */
export interface UploadServer {
  /** Its id. */
  readonly id: string;
  /** The HTTP server it serves on. */
  readonly httpServer: Server;
  /** Its storage. */
  readonly store: ItemStore;
  /**
   * Starts listening when the server was created without `server`.
   * @param port TCP port, 0 for any free one @default 0
   * @param host interface @default '127.0.0.1'
   * @returns the base URLs: `http` for HTTP, `ws` for the dup/2 WebSocket endpoint
   */
  listen(port?: number, host?: string): Promise<{ http: string; ws: string }>;
  /** Closes every connection and the HTTP server (when it created it), then the store. */
  close(): Promise<void>;
}

/** Path of the dup/2 WebSocket endpoint. */
export const DUP_PATH = '/dup';

/**
 * Creates an upload server.
 * @param options see {@link UploadServerOptions}
 * @throws {TypeError} on missing or contradictory options
 * @example
 * const server = createUploadServer({ id: 'eu-1', secret: process.env.SECRET, dataDir: './data' });
 * const { ws } = await server.listen(8081);
 */
export function createUploadServer(options: UploadServerOptions): UploadServer {
  if (typeof options.id !== 'string' || !ITEM_ID_PATTERN.test(options.id)) {
    throw new TypeError('ws-uploader: upload server `id` must match [A-Za-z0-9_-]{1,128}');
  }
  const key = secretKey(options.secret);
  if (!options.store && !options.dataDir)
    throw new TypeError('ws-uploader: upload server needs `dataDir` or `store`');
  const maxItemSize = positive(options.maxItemSize, DEFAULT_MAX_ITEM_SIZE, 'maxItemSize');
  const maxChunk = positive(options.maxChunk, DEFAULT_MAX_CHUNK, 'maxChunk');
  const window = positive(options.window, DEFAULT_WINDOW, 'window');
  if (window < maxChunk) throw new TypeError('ws-uploader: `window` must be at least `maxChunk`');
  const authTimeoutMs = positive(options.authTimeoutMs, 10_000, 'authTimeoutMs');
  const store =
    options.store ??
    new FileStore(options.dataDir!, {
      ...(options.durability ? { durability: options.durability } : {}),
      ...(options.maxBytes !== undefined
        ? { maxBytes: positive(options.maxBytes, 0, 'maxBytes') }
        : {}),
      ...(options.maxBytesPerOwner !== undefined
        ? { maxBytesPerOwner: positive(options.maxBytesPerOwner, 0, 'maxBytesPerOwner') }
        : {}),
      onCorrupt: (itemId, range) => log('corrupt-bytes', { itemId, range }),
    });
  if (
    options.durability !== undefined &&
    options.durability !== 'fsync' &&
    options.durability !== 'write'
  ) {
    throw new TypeError("ws-uploader: `durability` must be 'fsync' or 'write'");
  }
  const partialTtlMs = positive(options.partialTtlMs, 86_400_000, 'partialTtlMs');
  const locks = new ItemLocks(positive(options.lockTimeoutMs, 10_000, 'lockTimeoutMs'));
  // Abandoned partial items expire; the sweep runs a few times per lifetime, at most every 10 min.
  // An item someone is writing is never abandoned, however slow they are.
  const sweeper = setInterval(
    () =>
      void store
        .expire(partialTtlMs, (itemId) => locks.tryAcquire(itemId))
        .then(
          (ids) => ids.length > 0 && log('expired', { items: ids }),
          () => undefined,
        ),
    Math.min(partialTtlMs / 4, 600_000),
  );
  sweeper.unref();
  const audience = uploadAudience(options.id);
  const readAccess = options.readAccess ?? 'token';
  if (!READ_ACCESS_MODES.includes(readAccess))
    throw new TypeError("ws-uploader: `readAccess` must be 'token' or 'public'");
  const crossOriginResourcePolicy = options.crossOriginResourcePolicy ?? 'same-site';
  if (!CROSS_ORIGIN_RESOURCE_POLICIES.includes(crossOriginResourcePolicy))
    throw new TypeError(
      "ws-uploader: `crossOriginResourcePolicy` must be 'same-site', 'same-origin' or 'cross-origin'",
    );
  const reads: ReadAccessOptions = {
    mode: readAccess,
    verify: (token) => verifyToken(key, token, audience),
    crossOriginResourcePolicy,
  };
  const usedOnce = new Map<string, number>();

  const known: string[] = [PROTOCOL.DUP_2, PROTOCOL.DUP_1, PROTOCOL.TUS_1, PROTOCOL.HTTP_1];
  const enabled = new Set(options.protocols ?? known);
  for (const p of enabled) {
    if (!known.includes(p))
      throw new TypeError(
        `ws-uploader: unknown protocol ${JSON.stringify(p)}; use ${known.join(', ')}`,
      );
  }
  const ownsServer = !options.server;
  const httpServer = options.server ?? createServer();
  // A DATA frame of maxChunk bytes, or a HELLO with the largest token.
  const maxPayload = Math.max(maxChunk + DATA_HEADER_BYTES, MAX_TOKEN_BYTES + 3);
  // The best version both sides speak: dup/2, then dup/1.
  const chooseProtocol = (offered: Set<string>): string | false =>
    enabled.has(PROTOCOL.DUP_2) && offered.has(SUBPROTOCOL_DUP_2)
      ? SUBPROTOCOL_DUP_2
      : enabled.has(PROTOCOL.DUP_1) && offered.has(SUBPROTOCOL_DUP_1)
        ? SUBPROTOCOL_DUP_1
        : false;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload,
    perMessageDeflate: false,
    handleProtocols: chooseProtocol,
  });
  const drainMs = positive(options.drainMs, 10_000, 'drainMs');
  const log = logFor(options.id, options.logger);
  // Browsers that come through the control server's relay: admitted, and handed to the sessions,
  // exactly as direct ones (see the `connection` listeners and `admit` below).
  const relay = options.relay
    ? new RelayChannels({
        admit: (req) => admit(req),
        protocol: chooseProtocol,
        connect: (ws, req) => wss.emit('connection', ws, req),
        maxPayload,
        maxQueued: 2 * window + maxPayload,
        log,
      })
    : undefined;
  const digests = new DigestJobs({
    store,
    waitMs: positive(options.digestWaitMs, 600_000, 'digestWaitMs'),
    log,
  });
  const link = controlLinkOf(
    options,
    key,
    [...enabled],
    maxItemSize,
    log,
    () => {
      const address = httpServer.address();
      return address !== null && typeof address === 'object' ? address.port : undefined;
    },
    relay && { channels: relay, maxMessage: maxPayload },
    (request) => digests.run(request),
  );
  const refuse = (_req: IncomingMessage, socket: Duplex): void => void socket.destroy();
  const holdMs = positive(options.holdMs, 10_000, 'holdMs');
  // A reader (GET /files or a dup/2 READ) waits for bytes not stored yet: ask for them first.
  const onDemand = (demand: Demand): void => {
    log('demand', { itemId: demand.itemId, ranges: demand.ranges });
    options.onDemand?.(demand);
    link?.demand(demand.itemId, demand.ranges);
  };
  const ctx = {
    log,
    serverId: options.id,
    store,
    maxChunk,
    window,
    maxItemSize,
    authTimeoutMs,
    verify: async (token: string) => {
      const claims = await verifyToken(key, token, audience);
      const grant = claims && grantOf(claims);
      if (!grant) return undefined;
      if (grant.onceId !== undefined) {
        // A single-use token is remembered until it expires, and refused the second time.
        const now = Date.now();
        for (const [id, until] of usedOnce) if (until < now) usedOnce.delete(id);
        if (usedOnce.has(grant.onceId)) return undefined;
        usedOnce.set(grant.onceId, grant.expiresAt + CLOCK_LEEWAY_SECONDS * 1000);
      }
      return grant;
    },
    // A dup/2 connection that only reads says HELLO with a read token.
    verifyRead: async (token: string) => {
      const claims = await verifyToken(key, token, audience);
      return claims && readGrantOf(claims);
    },
    readAccess,
    holdMs,
    onDemand,
    maxUploadsPerClient: positive(options.maxUploadsPerClient, 64, 'maxUploadsPerClient'),
    uploadsByClient: new Map<string, number>(),
    idleTimeoutMs: positive(options.idleTimeoutMs, 120_000, 'idleTimeoutMs'),
    heartbeatMs: positive(options.heartbeatMs, 30_000, 'heartbeatMs'),
    budget: new BufferBudget(
      positive(options.maxBufferedBytes, 64 * 1024 * 1024, 'maxBufferedBytes'),
    ),
    locks,
    onComplete: (itemId: string, sha256: string, size: number) => {
      options.onComplete?.(itemId, sha256, size);
      link?.complete(itemId, sha256, size);
    },
  };
  const uploads: HttpUploadOptions = {
    store,
    maxItemSize,
    chunk: maxChunk,
    verify: ctx.verify,
    log,
    locks,
    // Items completed over HTTP are reported like those of dup/2 and dup/1.
    onComplete: ctx.onComplete,
  };
  const tus: TusOptions = { ...uploads, partialTtlMs };
  const sessions = new Set<Dup2Session | Dup1Session>();
  wss.on('connection', (ws, req: IncomingMessage) => {
    log('connection', { protocol: ws.protocol || null, remote: req.socket.remoteAddress });
    if (ws.protocol !== SUBPROTOCOL_DUP_2 && ws.protocol !== SUBPROTOCOL_DUP_1) {
      ws.close(CLOSE.UNSUPPORTED_PROTOCOL, `speak ${SUBPROTOCOL_DUP_2} or ${SUBPROTOCOL_DUP_1}`);
      return;
    }
    // The TCP connection, whose bytes count as activity; a relayed browser has none of its own.
    const socket = req.socket instanceof Socket ? req.socket : undefined;
    // A relayed socket sends over the registry link, whose messages the control server caps.
    const relayed: unknown = ws;
    const maxMessage = relayed instanceof RelaySocket ? relayed.maxMessage : undefined;
    const session =
      ws.protocol === SUBPROTOCOL_DUP_2
        ? new Dup2Session(ws, ctx, socket, maxMessage)
        : new Dup1Session(ws, ctx, socket);
    sessions.add(session);
    ws.on('close', () => sessions.delete(session));
  });

  const allowedOrigins = options.allowedOrigins ? new Set(options.allowedOrigins) : undefined;
  const maxConnectionsPerIp = positive(options.maxConnectionsPerIp, 64, 'maxConnectionsPerIp');
  const connectionsByIp = new Map<string, number>();
  // Checked before the upgrade completes: a refused browser never gets a WebSocket.
  const admit = (req: IncomingMessage): number | undefined => {
    const origin = req.headers.origin;
    if (allowedOrigins && origin !== undefined && !allowedOrigins.has(origin)) return 403;
    const ip = req.socket.remoteAddress ?? '';
    if ((connectionsByIp.get(ip) ?? 0) >= maxConnectionsPerIp) return 429;
    return undefined;
  };
  wss.on('connection', (ws, req: IncomingMessage) => {
    const ip = req.socket.remoteAddress ?? '';
    connectionsByIp.set(ip, (connectionsByIp.get(ip) ?? 0) + 1);
    ws.on('close', () => {
      const n = (connectionsByIp.get(ip) ?? 1) - 1;
      if (n > 0) connectionsByIp.set(ip, n);
      else connectionsByIp.delete(ip);
    });
  });
  const onUpgrade = upgradeOn(DUP_PATH, wss, ownsServer, (req) => {
    const status = admit(req);
    if (status !== undefined)
      log('upgrade-refused', {
        status,
        origin: req.headers.origin,
        remote: req.socket.remoteAddress,
      });
    return status;
  });
  const files: FileRouteOptions = {
    store,
    maxRanges: positive(options.maxRanges, 16, 'maxRanges'),
    holdMs,
    retryAfterSeconds: positive(options.retryAfterSeconds, 2, 'retryAfterSeconds'),
    onDemand,
    crossOriginResourcePolicy,
    tokenProtected: readAccess === 'token',
  };
  const started = Date.now();
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const t0 = performance.now();
    // The path only: a query string could carry something secret.
    res.on('finish', () =>
      log('http', {
        method: req.method,
        path: pathOf(req),
        range: req.headers.range,
        status: res.statusCode,
        ms: Math.round(performance.now() - t0),
      }),
    );
    handleHttp(req, res, files, reads, uploads, tus, {
      id: options.id,
      maxItemSize,
      maxChunk,
      window,
      started,
      protocols: [...enabled],
    }).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  };
  httpServer.on('upgrade', onUpgrade);
  httpServer.on('request', onRequest);
  // A relayed server is reachable once registered, whether it listens or not.
  if (relay) link?.start();

  return {
    id: options.id,
    httpServer,
    store,
    async listen(port = 0, host = '127.0.0.1') {
      const base = await listen(httpServer, port, host);
      link?.start();
      return { http: `http://${base}`, ws: `ws://${base}${DUP_PATH}` };
    },
    async close() {
      clearInterval(sweeper);
      httpServer.off('upgrade', onUpgrade);
      // New upgrades are refused while the connections drain.
      if (ownsServer) httpServer.on('upgrade', refuse);
      relay?.stop();
      log('shutdown', { connections: sessions.size });
      await Promise.all([...sessions].map((s) => s.drain(drainMs)));
      // After the drain: relayed connections drain over the link, and completions reach it.
      link?.close();
      digests.close();
      httpServer.off('request', onRequest);
      await shutdown(wss, httpServer, ownsServer);
      await store.close();
    },
  };
}

/** The link to the control server, when `controlUrl` is set. */
function controlLinkOf(
  options: UploadServerOptions,
  secret: Uint8Array,
  protocols: readonly string[],
  maxItemSize: number,
  log: (event: string, fields?: Record<string, unknown>) => void,
  port: () => number | undefined,
  relay: ControlLinkOptions['relay'],
  digest: ControlLinkOptions['digest'],
): ControlLink | undefined {
  if (options.controlUrl === undefined) {
    if (options.relay) throw new TypeError('ws-uploader: `relay` needs `controlUrl`');
    return undefined;
  }
  if (!/^wss?:\/\/[^/]/.test(options.controlUrl))
    throw new TypeError('ws-uploader: `controlUrl` must be a ws: or wss: URL');
  if (options.relay && options.publicUrl !== undefined)
    throw new TypeError('ws-uploader: a `relay` server has no `publicUrl`');
  let advertise: { url: string; httpUrl: string } | undefined;
  if (options.publicUrl !== undefined) {
    if (!/^https?:\/\/[^/]/.test(options.publicUrl))
      throw new TypeError('ws-uploader: `publicUrl` must be an http: or https: URL');
    const httpUrl = options.publicUrl.replace(/\/+$/, '');
    advertise = { httpUrl, url: `${httpUrl.replace(/^http/, 'ws')}${DUP_PATH}` };
  }
  if (options.peerUrl !== undefined && !/^https?:\/\/[^/]/.test(options.peerUrl))
    throw new TypeError('ws-uploader: `peerUrl` must be an http: or https: URL');
  return new ControlLink({
    url: options.controlUrl,
    secret,
    id: options.id,
    protocols,
    ...(advertise ? { advertise } : {}),
    ...(options.peerUrl === undefined ? {} : { peerUrl: options.peerUrl.replace(/\/+$/, '') }),
    port,
    maxItemSize,
    log,
    ...(relay ? { relay } : {}),
    ...(digest ? { digest } : {}),
  });
}

async function handleHttp(
  req: IncomingMessage,
  res: ServerResponse,
  files: FileRouteOptions,
  reads: ReadAccessOptions,
  uploads: HttpUploadOptions,
  tus: TusOptions,
  info: {
    id: string;
    maxItemSize: number;
    maxChunk: number;
    window: number;
    started: number;
    protocols: readonly string[];
  },
): Promise<void> {
  res.setHeader('Access-Control-Allow-Origin', '*');
  const path = pathOf(req);
  // tus answers its own OPTIONS (with its version and extensions).
  if (info.protocols.includes(PROTOCOL.TUS_1) && (await handleTus(req, res, path, tus))) return;
  if (req.method === 'OPTIONS') {
    res
      .writeHead(204, {
        'Access-Control-Allow-Methods': 'GET, HEAD, POST, PUT',
        'Access-Control-Allow-Headers':
          'Range, If-Range, If-None-Match, Authorization, Content-Range, Content-Type, Repr-Digest, Upload-Complete, Item-Type, Item-Name',
        'Access-Control-Max-Age': '600',
      })
      .end();
    return;
  }
  if (info.protocols.includes(PROTOCOL.HTTP_1) && (await handleUploads(req, res, path, uploads)))
    return;
  if (path === '/healthz') {
    if (!isRead(req, res)) return;
    const body = JSON.stringify({
      status: 'ok',
      id: info.id,
      uptimeSeconds: Math.round((Date.now() - info.started) / 1000),
    });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  if (path === '/.well-known/ws-uploader') {
    if (!isRead(req, res)) return;
    const body = JSON.stringify({
      id: info.id,
      protocols: info.protocols,
      endpoints: Object.fromEntries(
        info.protocols.map((p) => [
          p,
          p === PROTOCOL.HTTP_1 ? '/uploads' : p === PROTOCOL.TUS_1 ? TUS_PATH : DUP_PATH,
        ]),
      ),
      limits: { maxItemSize: info.maxItemSize, maxChunk: info.maxChunk, window: info.window },
    });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const match = /^\/files\/([^/]+)$/.exec(path);
  if (match) {
    if (!isRead(req, res)) return;
    const itemId = safeDecode(match[1]!);
    // The read token first: a refused reader learns nothing about the item.
    if (!(await authorizeRead(req, res, itemId, reads))) return;
    if (!ITEM_ID_PATTERN.test(itemId)) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    await serveItem(req, res, itemId, files);
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return '';
  }
}

function isRead(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return true;
  res.writeHead(405, { Allow: 'GET, HEAD' }).end();
  return false;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new TypeError(`ws-uploader: \`${name}\` must be a positive integer`);
  return value;
}
