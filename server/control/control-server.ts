/**
 * The reference control server: authenticates browsers, hands out the upload-server list with
 * scoped tokens, records published items, plans where they go and tracks completion.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CLOSE,
  DEFAULT_MAX_ITEM_SIZE,
  decodeControlClientMessage,
  decodeControlServerMessage,
  encodeControlMessage,
  ITEM_ID_PATTERN,
  PROTOCOL,
  ProtocolError,
  SUBPROTOCOL_CONTROL_1,
  SUBPROTOCOL_REGISTRY_1,
  type ControlClientMessage,
  type ControlErrorCode,
  type ControlServerMessage,
  type ItemMeta,
  type ServerInfo,
  type TargetRange,
  type ByteRange,
  type MessageTarget,
  type ReceivedMessage,
  type TransmitReason,
  MAX_INLINE_BYTES,
  MAX_MESSAGE_BODY_LENGTH,
  MAX_REGISTRY_MESSAGE,
  addRange,
  covers,
} from '../../src/protocol/index.js';
import { listen, pathOf, upgradeOn, shutdown } from '../internal/http-server.js';
import { logFor, type Logger } from '../internal/log.js';
import {
  CLOCK_LEEWAY_SECONDS,
  CONTROL_AUDIENCE,
  secretKey,
  signToken,
  uploadAudience,
  verifyToken,
} from '../tokens.js';

/** Longest delay a Node timer holds. */
const MAX_TIMER_MS = 2 ** 31 - 1;
import { defaultPlanner, validatePlan, type Planner, type PlannerServer } from './planner.js';
import {
  MemoryControlStore,
  type ControlStore,
  type ItemInfo,
  type TaskRecord,
} from './control-store.js';
import { UploadServerRegistry, type UploadServerEndpoint } from './registry.js';
import { SplitDigests } from './split-digests.js';
import { RELAY_PREFIX } from './relay.js';
import { handleItemPost } from './item-post.js';

/** Browsers reach a relayed upload server at `{RELAY_PATH_PREFIX}{serverId}` on the control server. */
export const RELAY_PATH_PREFIX = RELAY_PREFIX;

/** Checks an app-given message target: exactly one of clientId, userId or room. */
function checkTarget(to: MessageTarget): void {
  const keys = ['clientId', 'userId', 'room'].filter(
    (k) => typeof (to as Record<string, unknown>)[k] === 'string',
  );
  if (keys.length !== 1)
    throw new TypeError('ws-uploader: a message goes to exactly one of clientId, userId or room');
}

/** Priority of tasks made from demand: above everything an app or the planner asks for. */
export const DEMAND_PRIORITY = 1_000_000;

/** SHA-256 of no bytes. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export type { UploadServerEndpoint } from './registry.js';

/** Who a browser is, as `authenticate` says. */
export interface AuthenticatedUser {
  readonly userId: string;
  /**
   * When the credential expires, ms since the epoch. The browser must send a fresh one with
   * `auth` before then, or its session is closed (`auth-expired`, 4003). @default never
   */
  readonly expiresAt?: number;
}

export type {
  ItemInfo,
  ItemState,
  TaskRecord,
  SessionRecord,
  ControlStore,
} from './control-store.js';
export { MemoryControlStore } from './control-store.js';

/** Who sent a message or asks to join a room. */
export interface ControlClient {
  readonly clientId: string;
  readonly userId: string;
}

/** What a browser asks that the app may refuse (see {@link ControlServerOptions.allow}). */
export type ClientRequest =
  | { readonly action: 'message'; readonly to: MessageTarget }
  | { readonly action: 'join'; readonly room: string }
  /** `locate`: read an item; `ownerId` is the user who published it. */
  | { readonly action: 'read'; readonly itemId: string; readonly ownerId: string };

/** A message the app sends to browsers with {@link ControlServer.send}. */
export interface AppMessage {
  readonly body?: string;
  /** An inline item, with `content`. */
  readonly item?: ItemMeta;
}

/** Options of {@link ControlServer.requestTransmit}. */
export interface TransmitOptions {
  /** Higher runs first. @default 0 */
  readonly priority?: number;
  /** Wanted by then, milliseconds since the epoch (a hint for the browser's scheduler). */
  readonly deadline?: number;
}

/** A step in the life of a transmit task, as the control server sees it. */
export interface TaskEvent {
  /**
   * `sent`: the `transmit` went out; `accepted`: the browser took it; `progress`: it reported bytes
   * stored; `complete` and `fail`: it ended.
   */
  readonly type: 'sent' | 'accepted' | 'progress' | 'complete' | 'fail';
  readonly taskId: string;
  readonly itemId: string;
  /** The browser that runs it. */
  readonly clientId: string;
  /** Bytes of the task stored, for `progress`. */
  readonly bytesStored?: number;
  /** The error code the browser reported, for `fail`. */
  readonly code?: string;
}

/** Options of {@link createControlServer}. */
export interface ControlServerOptions {
  /** Secret shared with the upload servers (at least 32 bytes); signs upload tokens. */
  readonly secret: string | Uint8Array;
  /**
   * Upload servers configured by hand (always listed). Upload servers started with a control URL
   * join by themselves over the registry link. @default []
   */
  readonly uploadServers?: readonly UploadServerEndpoint[];
  /**
   * Base URL browsers reach this control server at (`https://app.example`), for the URLs of relayed
   * upload servers (`wss://app.example/relay/<id>`). @default from the `Host` header of each
   * upload server's registry link (`wss` when it came over TLS or with `X-Forwarded-Proto: https`)
   */
  readonly publicUrl?: string;
  /**
   * Path where a page may `POST` a small item as `multipart/form-data` (at most `inlineMax` bytes,
   * with a user credential in `Authorization: Bearer`): it becomes an inline item. @default '/items'
   */
  readonly itemsPath?: string;
  /** Path of the registry endpoint upload servers link to. @default '/registry' */
  readonly registryPath?: string;
  /**
   * Heartbeat interval, in ms. Each browser connection is pinged this often, which keeps NATs and
   * proxies from cutting it while the page is idle; a browser that answered nothing since the last
   * ping is dropped (its session stays resumable). Linked upload servers are asked to send a
   * heartbeat this often; one that misses three leaves the list (browsers get `servers`).
   * @default 10000
   */
  readonly heartbeatMs?: number;
  /**
   * How long a browser's `complete` waits for the linked upload server that took the whole item
   * to report it verified, in ms; past it the item fails with `unverified`. @default 30000
   */
  readonly verifyWaitMs?: number;
  /**
   * How linked upload servers compute the SHA-256 of an item split across them (so browsers need
   * not hash it), where both ways can: `read`, one server reads the others' ranges over HTTP and
   * hashes the whole item (Node's SHA-256, several times faster, but most of the item crosses
   * between servers); `steps`, each hashes its own ranges in turn from the state the one before
   * reached (32 bytes cross, but a SHA-256 that keeps its state costs about 4 ms of CPU per MiB).
   * `read` needs servers that reach each other (none relayed), `steps` servers that registered
   * `digestSteps`; where neither can, the browser hashes the item. @default 'read'
   */
  readonly splitDigest?: 'read' | 'steps';
  /**
   * Where published items, pending tasks and resumable sessions are kept; a store shared by several
   * control-server instances can replace the default. @default a new {@link MemoryControlStore}
   */
  readonly store?: ControlStore;
  /** Where log events go (one object per event; tokens never appear). @default none */
  readonly logger?: Logger;
  /** Called when a linked upload server reports that a reader waits for ranges it lacks. */
  readonly onDemand?: (demand: { serverId: string; itemId: string; ranges: ByteRange[] }) => void;
  /** An existing HTTP server to attach to (only `path` upgrades are taken); otherwise one is created. */
  readonly server?: Server;
  /** Path of the control WebSocket endpoint. @default '/control' */
  readonly path?: string;
  /**
   * Turns the browser's credential into a user; `undefined` refuses it.
   * @default verifies a JWT signed with `secret` whose audience is `ws-uploader:control`
   */
  readonly authenticate?: (token: string) => Promise<AuthenticatedUser | undefined>;
  /** Replaces the default planner (whole item to the lowest-RTT server). */
  readonly plan?: Planner;
  /** Called for each published item. */
  readonly onPublish?: (item: ItemInfo) => void;
  /** Called when an item is stored and verified. */
  readonly onComplete?: (item: ItemInfo) => void;
  /** Called at each step of every transmit task (sent, accepted, progress, complete, fail). */
  readonly onTask?: (event: TaskEvent) => void;
  /** Lifetime of upload tokens, in seconds. @default 3600 */
  readonly uploadTokenTtlSeconds?: number;
  /**
   * Lifetime of the read tokens `located` hands out, in seconds: long enough for a `<video>` to
   * read by ranges. @default 3600
   */
  readonly readTokenTtlSeconds?: number;
  /** Time a browser has to send `hello`, in ms. @default 10000 */
  readonly helloTimeoutMs?: number;
  /** How long to wait for a browser's first probe before planning without it, in ms. @default 1500 */
  readonly probeWaitMs?: number;
  /** Largest item accepted, in bytes. @default 524288000 (500 MiB) */
  readonly maxItemSize?: number;
  /** How long a disconnected browser may resume its session (and its tasks), in ms. @default 600000 */
  readonly sessionResumeMs?: number;
  /**
   * Largest item a browser may publish inline (its bytes in `publish`, relayed through the control
   * server instead of uploaded), in bytes; 0 turns inline items off. At most 262144.
   * @default 65536
   */
  readonly inlineMax?: number;
  /**
   * Items up to this size, planned whole onto a server that speaks `http/1`, are sent as one
   * `multipart/form-data` POST (`transmit.protocol`); a reader's demand for such an item breaks the
   * POST off in favour of parts over WebSocket. 0 turns it off. @default 0
   */
  readonly multipartMax?: number;
  /** Largest sum of the sizes of the inline items held in memory, in bytes. @default 67108864 */
  readonly inlineTotalMax?: number;
  /**
   * Decides whether a browser may send a message to a target or join a room; a refusal is answered
   * with `error` `forbidden`. @default everything is allowed
   */
  readonly allow?: (request: ClientRequest, client: ControlClient) => boolean | Promise<boolean>;
}

/** A running control server. */
export interface ControlServer {
  /** The HTTP server it serves on. */
  readonly httpServer: Server;
  /**
   * Starts listening when created without `server`.
   * @returns the control WebSocket URL
   */
  listen(port?: number, host?: string): Promise<string>;
  /** Published items. */
  items(): Promise<ItemInfo[]>;
  /** The upload servers. */
  servers(): UploadServerEndpoint[];
  /**
   * Asks the browser that holds an item to upload it (or some ranges of it).
   * @returns the task id
   * @throws {Error} (rejects) when the item is unknown or its browser is not connected
   * @throws {TypeError} (rejects) on a bad priority or deadline
   */
  requestTransmit(
    itemId: string,
    ranges?: readonly TargetRange[],
    options?: number | TransmitOptions,
  ): Promise<string>;
  /**
   * Stops a task: the browser running it gets `cancel`.
   * @returns whether the task was pending
   */
  cancelTransmit(taskId: string, reason?: string): Promise<boolean>;
  /**
   * Sends a message (text and/or an inline item) to a browser, every browser of a user, or a room.
   * @returns how many browsers it was sent to
   * @throws {TypeError} when the message is empty or too large, or the target is malformed
   */
  send(to: MessageTarget, message: AppMessage): number;
  /** Closes every connection and the HTTP server when it created it. */
  close(): Promise<void>;
}

interface Session {
  readonly ws: WebSocket;
  readonly clientId: string;
  readonly sessionId: string;
  readonly userId: string;
  readonly rtt: Map<string, number>;
  /** Bytes per second this browser stored lately, by server id. */
  readonly throughput: Map<string, number>;
  /** Upload tokens signed for this browser, by server id, reused while they have most of their life. */
  readonly tokens: Map<string, { token: string; expiresAt: number }>;
  probed: Promise<void>;
  markProbed: () => void;
  /** Renews the upload tokens before they expire. */
  refresh?: NodeJS.Timeout;
  /** Rooms this browser joined. */
  readonly rooms: Set<string>;
  /** Its messages, handled one after the other. */
  queue: Promise<void>;
  /** Closes the session when its credential expires without a fresh `auth`. */
  expiry?: NodeJS.Timeout;
}

/**
 * Creates a control server.
 * @param options see {@link ControlServerOptions}
 * @throws {TypeError} on missing or contradictory options
 * @example
 * const control = createControlServer({ server: appServer, secret, uploadServers: [{ id: 'a', url, httpUrl }] });
 */
export function createControlServer(options: ControlServerOptions): ControlServer {
  const key = secretKey(options.secret);
  if (options.uploadServers !== undefined && !Array.isArray(options.uploadServers))
    throw new TypeError('ws-uploader: `uploadServers` must be an array');
  const endpoints = new Map<string, UploadServerEndpoint>();
  for (const s of options.uploadServers ?? []) {
    if (!ITEM_ID_PATTERN.test(s.id))
      throw new TypeError(`ws-uploader: upload server id ${JSON.stringify(s.id)} is invalid`);
    if (endpoints.has(s.id))
      throw new TypeError(`ws-uploader: upload server id ${s.id} is listed twice`);
    if (!/^wss?:\/\//.test(s.url) || !/^https?:\/\//.test(s.httpUrl)) {
      throw new TypeError(
        `ws-uploader: upload server ${s.id} needs a ws(s): url and an http(s): httpUrl`,
      );
    }
    endpoints.set(s.id, s);
  }
  const path = options.path ?? '/control';
  const plan = options.plan ?? defaultPlanner;
  const ttl = options.uploadTokenTtlSeconds ?? 3600;
  const readTtl = options.readTokenTtlSeconds ?? 3600;
  const helloTimeoutMs = options.helloTimeoutMs ?? 10_000;
  const probeWaitMs = options.probeWaitMs ?? 1500;
  const maxItemSize = options.maxItemSize ?? DEFAULT_MAX_ITEM_SIZE;
  const sessionResumeMs = options.sessionResumeMs ?? 600_000;
  const log = logFor('control', options.logger);
  const registryPath = options.registryPath ?? '/registry';
  const itemsPath = options.itemsPath ?? '/items';
  const heartbeatMs = options.heartbeatMs ?? 10_000;
  const verifyWaitMs = options.verifyWaitMs ?? 30_000;
  const inlineMax = options.inlineMax ?? 64 * 1024;
  if (!Number.isSafeInteger(inlineMax) || inlineMax < 0 || inlineMax > MAX_INLINE_BYTES)
    throw new TypeError(`ws-uploader: \`inlineMax\` must be an integer in 0..${MAX_INLINE_BYTES}`);
  const inlineTotalMax = options.inlineTotalMax ?? 64 * 1024 * 1024;
  const multipartMax = options.multipartMax ?? 0;
  if (!(multipartMax >= 0)) throw new TypeError('ws-uploader: `multipartMax` must be at least 0');
  const allow = options.allow ?? (() => true);
  const authenticate =
    options.authenticate ??
    (async (token: string) => {
      const claims = await verifyToken(key, token, CONTROL_AUDIENCE);
      return claims ? { userId: claims.sub, expiresAt: claims.exp * 1000 } : undefined;
    });

  const sessions = new Map<string, Session>();
  const store: ControlStore = options.store ?? new MemoryControlStore();
  /** Items being planned (waiting for probes): not planned a second time meanwhile. */
  const planning = new Set<string>();
  /** The demand being handled for each item (see the registry's `demand` event). */
  const demands = new Map<string, Promise<void>>();
  /** Tasks whose browser said complete, waiting for their upload server's verification. */
  const awaiting = new Map<string, () => Promise<boolean>>();
  /** Browsers in each room. */
  const rooms = new Map<string, Set<Session>>();
  /** Bytes of the inline items held. */
  let inlineBytes = 0;
  if (options.publicUrl !== undefined && !/^https?:\/\/[^/]/.test(options.publicUrl))
    throw new TypeError('ws-uploader: `publicUrl` must be an http: or https: URL');
  const registry = new UploadServerRegistry([...endpoints.values()], {
    key,
    heartbeatMs,
    registerTimeoutMs: helloTimeoutMs,
    ...(options.publicUrl === undefined ? {} : { relayBaseUrl: options.publicUrl }),
    events: {
      change: () => {
        log('servers', { servers: registry.list().map((s) => s.id) });
        // Every browser hears of the new list before any task names a server on it.
        void Promise.all(
          [...sessions.values()].map((session) =>
            serverList(session.clientId, session.userId, session.tokens).then(
              (servers) => send(session.ws, { type: 'servers', servers }),
              () => undefined,
            ),
          ),
        )
          .then(replan)
          .catch((e: unknown) => log('internal-error', { message: String(e) }));
      },
      stored: (serverId, message) => {
        const { itemId, sha256 } = message;
        if (!message.complete || !sha256) return;
        void (async () => {
          // Only items published here: another app's uploads are none of this server's business.
          if (!(await store.getItem(itemId))) return;
          await store.putVerified(itemId, serverId, sha256);
          for (const task of await store.tasks(itemId)) await awaiting.get(task.taskId)?.();
        })().catch((e: unknown) => log('internal-error', { message: String(e) }));
      },
      digested: (serverId, message) => digests.digested(serverId, message),
      demand: (serverId, message) => {
        log('demand', { serverId, itemId: message.itemId, ranges: message.ranges });
        // Demands for one item are handled one after the other, so each sees the tasks of the
        // ones before it and none is sent twice.
        const { itemId } = message;
        const next = (demands.get(itemId) ?? Promise.resolve())
          .then(() => onDemand(serverId, itemId, message.ranges))
          .catch((e: unknown) => log('internal-error', { message: String(e) }));
        demands.set(itemId, next);
        void next.then(() => {
          if (demands.get(itemId) === next) demands.delete(itemId);
        });
      },
    },
  });
  const splitDigest = options.splitDigest ?? 'read';
  if (splitDigest !== 'read' && splitDigest !== 'steps')
    throw new TypeError("ws-uploader: `splitDigest` must be 'read' or 'steps'");
  const digests = new SplitDigests(registry, key, readTtl, splitDigest);
  /** Forgets a task: its record, its digest and any wait for its server's verification. */
  const forgetTask = async (taskId: string): Promise<void> => {
    await store.deleteTask(taskId);
    digests.drop(taskId);
    awaiting.delete(taskId);
  };
  // Sessions past their resume time are forgotten, with the tasks their browsers never finished.
  const sweeper = setInterval(
    () =>
      void (async () => {
        const gone = new Set<string>();
        for (const r of await store.expireSessions(Date.now()))
          if (!sessions.has(r.clientId)) gone.add(r.clientId);
        if (gone.size === 0) return;
        for (const task of await store.tasks()) if (gone.has(task.clientId)) await endTask(task);
      })().catch((e: unknown) => log('internal-error', { message: String(e) })),
    Math.min(60_000, Math.max(1000, sessionResumeMs / 2)),
  );
  sweeper.unref();
  const serverIds = (): Set<string> => new Set(registry.list().map((s) => s.id));

  const ownsServer = !options.server;
  /**
   * The control server's own HTTP routes: `POST {itemsPath}` (and its CORS preflight) and, on a
   * server of its own, everything under /relay/. Returns whether it answered.
   */
  const handleHttp = (req: IncomingMessage, res: ServerResponse): boolean => {
    const at = pathOf(req);
    if (at === itemsPath) {
      // Credentials travel as bearer tokens, never cookies: any page may post, given a token.
      const origin = req.headers.origin;
      if (origin) {
        res.setHeader('Access-Control-Allow-Origin', origin);
        res.setHeader('Vary', 'Origin');
      }
      if (req.method === 'OPTIONS') {
        res.writeHead(204, {
          'Access-Control-Allow-Methods': 'POST',
          'Access-Control-Allow-Headers': 'authorization, content-type',
          'Access-Control-Max-Age': '600',
        });
        res.end();
      } else if (req.method !== 'POST') {
        res.writeHead(405, { Allow: 'POST, OPTIONS' }).end();
      } else {
        handleItemPost(req, res, {
          inlineMax,
          authenticate,
          clientOf: (userId, clientId) =>
            clientId !== undefined && sessions.get(clientId)?.userId === userId ? clientId : '',
          accept: async (owner, meta) => {
            const result = await acceptItem(owner, meta);
            return 'code' in result ? result : { sha256: result.sha256 ?? '' };
          },
        }).catch((e: unknown) => {
          log('internal-error', { message: String(e) });
          if (!res.headersSent) res.writeHead(500).end();
        });
      }
      return true;
    }
    if (ownsServer && at.startsWith(RELAY_PATH_PREFIX)) {
      registry.relayRequest(req, res);
      return true;
    }
    return false;
  };
  // On the app's server, requests for these routes are taken before the app's own listeners see
  // them (which must be attached before the control server is created); all others go on to them.
  const httpServer =
    options.server ??
    createServer((req, res) => {
      if (!handleHttp(req, res)) res.writeHead(404).end();
    });
  const appListeners = ownsServer ? [] : httpServer.listeners('request');
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (handleHttp(req, res)) return;
    for (const listener of appListeners) listener.call(httpServer, req, res);
  };
  if (!ownsServer) {
    httpServer.removeAllListeners('request');
    httpServer.on('request', onRequest);
  }
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 1024 * 1024,
    handleProtocols: (protocols) =>
      protocols.has(SUBPROTOCOL_CONTROL_1) ? SUBPROTOCOL_CONTROL_1 : false,
  });

  const send = (ws: WebSocket, message: ControlServerMessage): void => {
    if (ws.readyState === ws.OPEN) ws.send(encodeControlMessage(message));
  };
  const fail = (ws: WebSocket, code: ControlErrorCode, message: string, ref?: string): void =>
    send(
      ws,
      ref === undefined ? { type: 'error', code, message } : { type: 'error', code, message, ref },
    );

  /** The server list for one browser; tokens come from `tokens` while they have most of their life. */
  const serverList = async (
    clientId: string,
    userId: string,
    tokens: Map<string, { token: string; expiresAt: number }>,
  ): Promise<ServerInfo[]> =>
    Promise.all(
      registry.list().map(async (s) => {
        let cached = tokens.get(s.id);
        if (!cached || cached.expiresAt - Date.now() < ttl * 500) {
          cached = await signToken(key, clientId, uploadAudience(s.id), ttl, {
            scope: 'upload',
            uid: userId,
          });
          tokens.set(s.id, cached);
        }
        const { token, expiresAt } = cached;
        return {
          id: s.id,
          url: s.url,
          httpUrl: s.httpUrl,
          protocols: [...(s.protocols ?? [PROTOCOL.DUP_2])],
          token,
          tokenExpiresAt: expiresAt,
        };
      }),
    );

  /**
   * The live upload servers that hold an item, or are receiving it, with their ranges and a read
   * token for it each: a stored item's plan when its servers stored it (the whole item on each of
   * its servers otherwise), an uploading item's plan (a range not there yet is demanded).
   */
  const holdersOf = async (item: ItemInfo, userId: string) => {
    if (item.inline || item.meta.size === 0) return [];
    const whole = (serverId: string): TargetRange => ({ start: 0, end: item.meta.size, serverId });
    const planned = item.plan ?? [];
    const ranges =
      item.state === 'stored'
        ? planned.length > 0 && planned.every((r) => item.servers.includes(r.serverId))
          ? planned
          : item.servers.map(whole)
        : item.state === 'uploading'
          ? planned
          : [];
    const byServer = new Map<string, ByteRange[]>();
    for (const { start, end, serverId } of ranges)
      byServer.set(serverId, addRange(byServer.get(serverId) ?? [], { start, end }));
    const holders = [];
    for (const [serverId, held] of byServer) {
      const server = registry.get(serverId);
      if (!server) continue; // not live: a reader cannot reach it
      const { token, expiresAt } = await signToken(key, userId, uploadAudience(serverId), readTtl, {
        scope: 'read',
        items: [item.meta.itemId],
      });
      holders.push({
        serverId,
        httpUrl: server.httpUrl,
        ...((server.protocols ?? [PROTOCOL.DUP_2]).includes(PROTOCOL.DUP_2)
          ? { wsUrl: server.url }
          : {}),
        ranges: held,
        token,
        tokenExpiresAt: expiresAt,
      });
    }
    return holders;
  };

  /** An item whose last task ended without storing it waits again: `uploading` → `published`. */
  const settle = async (itemId: string): Promise<void> => {
    const item = await store.getItem(itemId);
    if (item?.state === 'uploading' && (await store.tasks(itemId)).length === 0)
      await store.putItem({ ...item, state: 'published' });
  };

  /** Forgets a task that will not complete, and settles its item. */
  const endTask = async (task: TaskRecord): Promise<void> => {
    await forgetTask(task.taskId);
    await settle(task.itemId);
  };

  const transmit = async (
    session: Session,
    itemId: string,
    ranges: readonly TargetRange[],
    priority: number,
    reason: TransmitReason,
    deadline?: number,
    protocol?: string,
  ): Promise<string> => {
    const taskId = randomUUID();
    await store.putTask({
      taskId,
      itemId,
      clientId: session.clientId,
      ranges,
      reason,
      ...(protocol === undefined ? {} : { protocol }),
    });
    const item = await store.getItem(itemId);
    // An item split across servers: one of them computes its digest as the bytes arrive.
    const serverDigest =
      item !== undefined &&
      item.state !== 'stored' &&
      (await digests.start({ taskId, itemId, ranges }, item.meta.size, session.userId));
    if (item && item.state !== 'stored') {
      // A plan of the whole item (a demand's replan may cover only a reader's ranges).
      const planned =
        (reason === 'publish' || reason === 'replan') &&
        validatePlan(item.meta, ranges, new Set(ranges.map((r) => r.serverId))) === undefined;
      await store.putItem({ ...item, state: 'uploading', ...(planned ? { plan: ranges } : {}) });
    }
    send(session.ws, {
      type: 'transmit',
      taskId,
      itemId,
      ranges,
      priority,
      ...(deadline === undefined ? {} : { deadline }),
      reason,
      ...(protocol === undefined ? {} : { protocol }),
      ...(serverDigest ? { digest: 'server' as const } : {}),
    });
    options.onTask?.({ type: 'sent', taskId, itemId, clientId: session.clientId });
    log('transmit', {
      taskId,
      itemId,
      clientId: session.clientId,
      reason,
      priority,
      servers: [...new Set(ranges.map((r) => r.serverId))],
    });
    return taskId;
  };

  /**
   * A reader waits on `serverId` for ranges of an item it lacks: the browser that holds the item
   * gets a task for them at {@link DEMAND_PRIORITY}, unless one for them is already pending.
   */
  const onDemand = async (
    serverId: string,
    itemId: string,
    ranges: readonly ByteRange[],
  ): Promise<void> => {
    options.onDemand?.({ serverId, itemId, ranges: ranges.map((r) => ({ ...r })) });
    const item = await store.getItem(itemId);
    if (!item) return;
    const session = sessions.get(item.clientId);
    if (!session) return;
    const within = ranges
      .filter((r) => r.start < item.meta.size)
      .map((r) => ({ start: r.start, end: Math.min(r.end, item.meta.size) }));
    // A multipart POST of the item is broken off: the reader's ranges come first, by parts, then
    // the rest of the item, also by parts (the server keeps what the POST stored).
    let rest: TargetRange[] | undefined;
    for (const t of await store.tasks(itemId)) {
      if (t.protocol !== PROTOCOL.HTTP_1) continue;
      await forgetTask(t.taskId);
      send(session.ws, {
        type: 'cancel',
        taskId: t.taskId,
        itemId,
        reason: 'a reader waits: switching to parts over WebSocket',
      });
      rest = [...t.ranges];
    }
    let pending: ByteRange[] = [];
    for (const t of await store.tasks(itemId)) {
      if (t.reason !== 'demand') continue;
      for (const r of t.ranges) if (r.serverId === serverId) pending = addRange(pending, r);
    }
    const wanted = within.filter((r) => !covers(pending, r));
    if (wanted.length > 0) {
      await transmit(
        session,
        itemId,
        wanted.map((r) => ({ ...r, serverId })),
        DEMAND_PRIORITY,
        'demand',
      );
    }
    if (rest) await transmit(session, itemId, rest, 0, 'replan');
  };

  /** Records an item as stored, tells the browser and the app. */
  const complete = async (session: Session, task: TaskRecord, sha256: string): Promise<void> => {
    await forgetTask(task.taskId);
    const item = await store.getItem(task.itemId);
    if (!item) return;
    const servers = [...new Set([...item.servers, ...task.ranges.map((r) => r.serverId)])];
    const stored: ItemInfo = { ...item, state: 'stored', servers, sha256 };
    await store.putItem(stored);
    options.onTask?.({
      type: 'complete',
      taskId: task.taskId,
      itemId: task.itemId,
      clientId: task.clientId,
    });
    send(session.ws, { type: 'completed', itemId: task.itemId, sha256, servers });
    log('item-complete', { itemId: task.itemId, taskId: task.taskId, servers });
    options.onComplete?.(stored);
  };

  /** Marks an item failed and tells the browser why. */
  const failItem = async (
    session: Session,
    task: TaskRecord,
    code: ControlErrorCode,
    why: string,
  ): Promise<void> => {
    await forgetTask(task.taskId);
    const item = await store.getItem(task.itemId);
    if (item) await store.putItem({ ...item, state: 'failed' });
    options.onTask?.({
      type: 'fail',
      taskId: task.taskId,
      itemId: task.itemId,
      clientId: task.clientId,
      code,
    });
    fail(session.ws, code, why, task.itemId);
    log('item-failed', { itemId: task.itemId, taskId: task.taskId, code });
  };

  /**
   * A browser says a task is done. When the whole item went to one linked upload server, that
   * server's own verification decides (waited for up to `verifyWaitMs`); otherwise the browser's
   * word is taken.
   */
  const onComplete = async (
    session: Session,
    task: TaskRecord,
    sha256: string | undefined,
  ): Promise<void> => {
    const item = await store.getItem(task.itemId);
    const whole =
      item !== undefined &&
      covers(
        task.ranges.reduce<ByteRange[]>((merged, r) => addRange(merged, r), []),
        { start: 0, end: item.meta.size },
      );
    if (!whole) {
      // Some ranges (a reader's, say): done, but the item is not stored for that.
      await endTask(task);
      options.onTask?.({
        type: 'complete',
        taskId: task.taskId,
        itemId: task.itemId,
        clientId: task.clientId,
      });
      log('task-complete', { itemId: task.itemId, taskId: task.taskId });
      return;
    }
    if (digests.has(task.taskId)) {
      void confirmSplit(session, task, sha256).catch((e: unknown) =>
        log('internal-error', { message: String(e) }),
      );
      return;
    }
    if (sha256 === undefined) {
      fail(
        session.ws,
        'bad-message',
        'complete of a task that covers the whole item needs its sha256',
        task.taskId,
      );
      return;
    }
    const only = task.ranges[0]!.serverId;
    if (!task.ranges.every((r) => r.serverId === only) || !registry.linked(only)) {
      await complete(session, task, sha256);
      return;
    }
    const check = async (): Promise<boolean> => {
      const digest = await store.getVerified(task.itemId, only);
      if (digest === undefined || !awaiting.has(task.taskId)) return false;
      clearTimeout(timer);
      awaiting.delete(task.taskId);
      if (digest === sha256) await complete(session, task, sha256);
      else
        await failItem(
          session,
          task,
          'digest-mismatch',
          `upload server ${only} verified SHA-256 ${digest}, the browser reported ${sha256}`,
        );
      return true;
    };
    const timer = setTimeout(() => {
      if (!awaiting.delete(task.taskId)) return;
      failItem(session, task, 'unverified', `upload server ${only} did not report the item`).catch(
        (e: unknown) => log('internal-error', { message: String(e) }),
      );
    }, verifyWaitMs);
    timer.unref();
    awaiting.set(task.taskId, check);
    await check();
  };

  /**
   * A browser finished a task that split its item across servers, one of which computes the
   * item's digest: that digest decides (and must match the browser's, when it sent one). A digest
   * that failed is asked for once more (every byte is stored now); without one, the browser's word
   * is taken, and with neither the item fails `unverified`.
   */
  const confirmSplit = async (
    session: Session,
    task: TaskRecord,
    sha256: string | undefined,
  ): Promise<void> => {
    let outcome = await digests.outcome(task.taskId, verifyWaitMs);
    if (outcome && 'code' in outcome && digests.retry(task.taskId)) {
      log('digest-retry', { itemId: task.itemId, code: outcome.code, message: outcome.message });
      outcome = await digests.outcome(task.taskId, verifyWaitMs);
    }
    // Ended meanwhile (cancelled, re-planned, unpublished).
    if (!(await store.tasks(task.itemId)).some((t) => t.taskId === task.taskId)) return;
    if (outcome && 'sha256' in outcome) {
      if (sha256 === undefined || sha256 === outcome.sha256)
        await complete(session, task, outcome.sha256);
      else
        await failItem(
          session,
          task,
          'digest-mismatch',
          `the upload servers hold bytes of SHA-256 ${outcome.sha256}, the browser reported ${sha256}`,
        );
      return;
    }
    const why = outcome ? `${outcome.code}: ${outcome.message}` : 'no answer in time';
    log('digest-unavailable', { itemId: task.itemId, why });
    if (sha256 !== undefined) await complete(session, task, sha256);
    else
      await failItem(
        session,
        task,
        'unverified',
        `the upload servers could not compute the item's SHA-256 (${why})`,
      );
  };

  /** The live servers as one browser measured them. */
  const candidatesFor = (session: Session): PlannerServer[] =>
    [...serverIds()].map((id) => {
      const rttMs = session.rtt.get(id);
      const throughput = session.throughput.get(id);
      return {
        id,
        ...(rttMs === undefined ? {} : { rttMs }),
        ...(throughput === undefined ? {} : { throughput }),
      };
    });

  /**
   * The server list changed: tasks with ranges on servers that left get those ranges moved to
   * live servers (the old task is cancelled, a new one sent with reason `replan`; the browser
   * resumes every server from what it holds), and items waiting without a task are planned.
   */
  const replan = async (): Promise<void> => {
    const live = serverIds();
    for (const task of await store.tasks()) {
      if (task.ranges.every((r) => live.has(r.serverId))) continue;
      const session = sessions.get(task.clientId);
      const item = await store.getItem(task.itemId);
      await forgetTask(task.taskId);
      if (!item) continue;
      if (!session) {
        // Its browser is away: the item waits to be published again.
        await settle(item.meta.itemId);
        continue;
      }
      send(session.ws, {
        type: 'cancel',
        taskId: task.taskId,
        itemId: task.itemId,
        reason: 'an upload server left; re-planned',
      });
      const kept = task.ranges.filter((r) => live.has(r.serverId));
      const lost = task.ranges.filter((r) => !live.has(r.serverId));
      const targets = plan({ ...item.meta, size: item.meta.size }, candidatesFor(session)).map(
        (r) => r.serverId,
      );
      const target = targets[0];
      if (target === undefined) {
        await store.putItem({ ...item, state: 'published' });
        continue;
      }
      const ranges = [...kept, ...lost.map((r) => ({ ...r, serverId: target }))].sort(
        (a, b) => a.start - b.start,
      );
      await transmit(session, task.itemId, ranges, 0, 'replan');
    }
    for (const item of await store.items()) {
      if (item.state !== 'published' || item.meta.size === 0) continue;
      if ((await store.tasks(item.meta.itemId)).length > 0) continue;
      const session = sessions.get(item.clientId);
      if (session && live.size > 0) void planAndTransmit(session, item.meta);
    }
  };

  const planAndTransmit = async (session: Session, meta: ItemMeta): Promise<void> => {
    if (planning.has(meta.itemId)) return;
    planning.add(meta.itemId);
    try {
      await session.probed;
      if (session.ws.readyState !== session.ws.OPEN) return;
      await planNow(session, meta);
    } finally {
      planning.delete(meta.itemId);
    }
  };

  const planNow = async (session: Session, meta: ItemMeta): Promise<void> => {
    // Published again before it was stored: back to the servers that hold some of it (not after
    // a failure, which may have been theirs).
    const known = await store.getItem(meta.itemId);
    const previous = known?.state === 'failed' ? undefined : known?.plan;
    const live = serverIds();
    const reused =
      previous !== undefined &&
      previous.every((r) => live.has(r.serverId)) &&
      validatePlan(meta, previous, live) === undefined;
    const ranges = reused ? previous : plan(meta, candidatesFor(session));
    if (meta.size === 0 || ranges.length === 0) {
      if (meta.size > 0)
        fail(session.ws, 'no-servers', 'no upload server can take this item', meta.itemId);
      return;
    }
    const problem = validatePlan(meta, ranges, serverIds());
    if (problem) {
      fail(session.ws, 'internal', `the planner made an invalid plan: ${problem}`, meta.itemId);
      return;
    }
    // A small item may go as one multipart POST (it switches to parts if a reader waits for it).
    const only = ranges.length === 1 ? registry.get(ranges[0]!.serverId) : undefined;
    // (Not for an item going back to its servers: they hold some of it, only the rest goes.)
    const multipart =
      !reused && meta.size <= multipartMax && only?.protocols?.includes(PROTOCOL.HTTP_1) === true;
    await transmit(
      session,
      meta.itemId,
      ranges,
      0,
      'publish',
      undefined,
      multipart ? PROTOCOL.HTTP_1 : undefined,
    );
  };

  /** Browsers a message to `to` reaches (never the sender itself). */
  const recipients = (to: MessageTarget, sender?: Session): Session[] => {
    let found: Iterable<Session>;
    if ('clientId' in to) {
      const one = sessions.get(to.clientId);
      found = one ? [one] : [];
    } else if ('userId' in to) {
      found = [...sessions.values()].filter((s) => s.userId === to.userId);
    } else {
      found = rooms.get(to.room) ?? [];
    }
    return [...found].filter((s) => s !== sender);
  };

  const deliver = (targets: readonly Session[], message: ReceivedMessage): number => {
    const text = encodeControlMessage(message);
    let delivered = 0;
    for (const target of targets) {
      if (target.ws.readyState !== target.ws.OPEN) continue;
      target.ws.send(text);
      delivered++;
    }
    return delivered;
  };

  /** (Re)starts the timer that closes a session whose credential expired (with the clock leeway). */
  const armExpiry = (session: Session, expiresAt: number | undefined): void => {
    clearTimeout(session.expiry);
    if (expiresAt === undefined || !Number.isFinite(expiresAt)) return;
    const delay = expiresAt + CLOCK_LEEWAY_SECONDS * 1000 - Date.now();
    // Timers hold at most 2^31 - 1 ms (about 24.8 days): a later expiry is armed in steps.
    session.expiry = setTimeout(
      () => {
        if (delay > MAX_TIMER_MS) {
          armExpiry(session, expiresAt);
          return;
        }
        log('auth-expired', { clientId: session.clientId });
        fail(session.ws, 'auth-expired', 'credential expired; send auth with a fresh one before');
        session.ws.close(CLOSE.AUTH_FAILED, 'credential expired');
      },
      Math.max(0, Math.min(delay, MAX_TIMER_MS)),
    );
    session.expiry.unref();
  };

  const leaveRoom = (session: Session, room: string): void => {
    session.rooms.delete(room);
    const members = rooms.get(room);
    members?.delete(session);
    if (members?.size === 0) rooms.delete(room);
  };

  /** Forgets an item: its tasks end, its inline bytes are freed. */
  const forget = async (item: ItemInfo, reason: string): Promise<void> => {
    await store.deleteItem(item.meta.itemId);
    if (item.inline) inlineBytes -= item.meta.size;
    for (const task of await store.tasks(item.meta.itemId)) {
      await forgetTask(task.taskId);
      const holder = sessions.get(task.clientId);
      if (holder)
        send(holder.ws, { type: 'cancel', taskId: task.taskId, itemId: task.itemId, reason });
    }
  };

  /**
   * Records an item a browser (or an HTTP POST) publishes, after the checks of `publish`; an inline
   * or empty item is stored at once.
   * @returns the item as recorded, or why it was refused
   */
  const acceptItem = async (
    owner: ControlClient,
    meta: ItemMeta,
  ): Promise<ItemInfo | { code: ControlErrorCode; message: string }> => {
    const existing = await store.getItem(meta.itemId);
    if (existing && existing.userId !== owner.userId)
      return { code: 'conflict', message: 'item id is taken' };
    if (existing && existing.meta.size !== meta.size)
      return { code: 'conflict', message: 'item id is taken by an item of another size' };
    if (meta.size > maxItemSize)
      return { code: 'too-large', message: `item is over ${maxItemSize} bytes` };
    if (existing?.inline && meta.content !== existing.meta.content)
      return { code: 'conflict', message: 'item id is taken by other inline bytes' };
    if (meta.content !== undefined) {
      if (meta.size > inlineMax)
        return {
          code: 'too-large',
          message: `inline items are limited to ${inlineMax} bytes; upload it instead`,
        };
      if (existing?.inline !== true && inlineBytes + meta.size > inlineTotalMax)
        return {
          code: 'quota-exceeded',
          message: 'the control server holds too many inline bytes; upload it instead',
        };
    }
    let previous = existing;
    if (existing && existing.clientId !== owner.clientId && existing.state === 'uploading') {
      // Published again from another browser: the old one's tasks are orphans.
      for (const task of await store.tasks(meta.itemId)) {
        await forgetTask(task.taskId);
      }
      previous = { ...existing, state: 'published' };
    }
    let info: ItemInfo = previous
      ? { ...previous, meta: previous.inline ? previous.meta : meta, clientId: owner.clientId }
      : {
          meta,
          userId: owner.userId,
          clientId: owner.clientId,
          state: 'published',
          servers: [],
        };
    await store.putItem(info);
    options.onPublish?.(info);
    if (info.state !== 'stored' && (meta.content !== undefined || meta.size === 0)) {
      // An inline item is stored as it arrives, in the control server's memory; an empty one as
      // soon as it is known: there are no bytes to send.
      const inline = meta.content !== undefined;
      info = {
        ...info,
        state: 'stored',
        servers: [],
        sha256: inline
          ? createHash('sha256').update(Buffer.from(meta.content!, 'base64')).digest('hex')
          : EMPTY_SHA256,
        ...(inline ? { inline: true } : {}),
      };
      if (inline) inlineBytes += meta.size;
      await store.putItem(info);
      options.onComplete?.(info);
    }
    return info;
  };

  const onMessage = async (session: Session, message: ControlClientMessage): Promise<void> => {
    switch (message.type) {
      case 'hello':
        fail(session.ws, 'bad-message', 'hello was already sent');
        return;
      case 'publish': {
        const accepted: ItemInfo[] = [];
        for (const meta of message.items) {
          const result = await acceptItem(session, meta);
          if ('code' in result) fail(session.ws, result.code, result.message, meta.itemId);
          else accepted.push(result);
        }
        send(session.ws, { type: 'published', itemIds: accepted.map((i) => i.meta.itemId) });
        for (const item of accepted) {
          if (item.state === 'stored') {
            send(session.ws, {
              type: 'completed',
              itemId: item.meta.itemId,
              sha256: item.sha256!,
              servers: [...item.servers],
            });
          }
        }
        // Not awaited: planning may wait for probes, which are later messages of this browser.
        // A stored item needs nothing; one being uploaded already has its task.
        for (const item of accepted) {
          if (item.state !== 'published' && item.state !== 'failed') continue;
          planAndTransmit(session, item.meta).catch((e: unknown) =>
            log('internal-error', { clientId: session.clientId, message: String(e) }),
          );
        }
        return;
      }
      case 'auth': {
        const user = await authenticate(message.token).catch(() => undefined);
        if (user?.userId !== session.userId) {
          fail(session.ws, 'auth-failed', 'credential refused');
          session.ws.close(CLOSE.AUTH_FAILED, 'auth failed');
          return;
        }
        armExpiry(session, user.expiresAt);
        send(session.ws, { type: 'authed' });
        return;
      }
      case 'unpublish': {
        const removed: string[] = [];
        for (const itemId of message.itemIds) {
          const item = await store.getItem(itemId);
          if (!item || item.userId !== session.userId) {
            fail(session.ws, 'unknown-item', 'no such item of this user', itemId);
            continue;
          }
          await forget(item, 'unpublished');
          removed.push(itemId);
          // The browser that holds it (another of the user's) forgets it too.
          const holder = sessions.get(item.clientId);
          if (holder && holder !== session)
            send(holder.ws, { type: 'unpublished', itemIds: [itemId] });
        }
        send(session.ws, { type: 'unpublished', itemIds: removed });
        return;
      }
      case 'message': {
        const ref = message.id;
        const client = { clientId: session.clientId, userId: session.userId };
        let item: ItemMeta | undefined;
        if (message.itemId !== undefined) {
          const held = await store.getItem(message.itemId);
          if (!held?.inline || held.userId !== session.userId) {
            fail(session.ws, 'unknown-item', 'no such inline item of this user', message.itemId);
            return;
          }
          item = held.meta;
        }
        if (!(await allow({ action: 'message', to: message.to }, client))) {
          fail(session.ws, 'forbidden', 'the app does not allow this message', ref);
          return;
        }
        const delivered = deliver(recipients(message.to, session), {
          type: 'message',
          from: client,
          ...(ref === undefined ? {} : { id: ref }),
          ...(message.body === undefined ? {} : { body: message.body }),
          ...(item === undefined ? {} : { item }),
        });
        if (ref !== undefined) send(session.ws, { type: 'sent', id: ref, delivered });
        return;
      }
      case 'locate': {
        const ref = message.id;
        const client = { clientId: session.clientId, userId: session.userId };
        const item = await store.getItem(message.itemId);
        if (!item) {
          fail(session.ws, 'unknown-item', `no item ${message.itemId}`, ref);
          return;
        }
        const request = { action: 'read' as const, itemId: item.meta.itemId, ownerId: item.userId };
        if (!(await allow(request, client))) {
          fail(session.ws, 'forbidden', 'the app does not allow reading this item', ref);
          return;
        }
        send(session.ws, {
          type: 'located',
          id: ref,
          item: item.meta,
          state: item.state,
          ...(item.sha256 === undefined ? {} : { sha256: item.sha256 }),
          holders: await holdersOf(item, session.userId),
        });
        return;
      }
      case 'join': {
        const client = { clientId: session.clientId, userId: session.userId };
        if (!(await allow({ action: 'join', room: message.room }, client))) {
          fail(session.ws, 'forbidden', 'the app does not allow joining this room', message.room);
          return;
        }
        session.rooms.add(message.room);
        let members = rooms.get(message.room);
        if (!members) rooms.set(message.room, (members = new Set()));
        members.add(session);
        return;
      }
      case 'leave':
        leaveRoom(session, message.room);
        return;
      case 'probe':
        for (const r of message.results)
          if (registry.get(r.serverId)) {
            session.rtt.set(r.serverId, r.rttMs);
            if (r.throughput !== undefined) session.throughput.set(r.serverId, r.throughput);
          }
        // Plan once every server was measured (or when the probe wait runs out).
        if ([...serverIds()].every((id) => session.rtt.has(id))) session.markProbed();
        return;
      case 'accept': {
        const task = await store.getTask(message.taskId);
        if (task?.clientId !== session.clientId || task.itemId !== message.itemId) return;
        options.onTask?.({
          type: 'accepted',
          taskId: task.taskId,
          itemId: task.itemId,
          clientId: task.clientId,
        });
        return;
      }
      case 'progress': {
        const task = await store.getTask(message.taskId);
        const item =
          task?.clientId === session.clientId ? await store.getItem(task.itemId) : undefined;
        if (task && item && item.state === 'uploading') {
          await store.putItem({
            ...item,
            bytesStored: Math.max(item.bytesStored ?? 0, message.bytesStored),
          });
          options.onTask?.({
            type: 'progress',
            taskId: task.taskId,
            itemId: task.itemId,
            clientId: task.clientId,
            bytesStored: message.bytesStored,
          });
        }
        return;
      }
      case 'complete': {
        const task = await store.getTask(message.taskId);
        if (!task || task.clientId !== session.clientId || task.itemId !== message.itemId) {
          // Completion is idempotent: the same report of an item already stored (an answer lost
          // on the way, a retry) gets `completed` again.
          const item = await store.getItem(message.itemId);
          if (
            item?.state === 'stored' &&
            item.userId === session.userId &&
            message.sha256 !== undefined &&
            message.sha256 === item.sha256
          ) {
            send(session.ws, {
              type: 'completed',
              itemId: message.itemId,
              sha256: item.sha256,
              servers: [...item.servers],
            });
            return;
          }
          fail(session.ws, 'unknown-task', 'no such task for this client', message.taskId);
          return;
        }
        if (awaiting.has(task.taskId)) return;
        await onComplete(session, task, message.sha256);
        return;
      }
      case 'fail': {
        const task = await store.getTask(message.taskId);
        if (!task || task.clientId !== session.clientId) return;
        await forgetTask(task.taskId);
        const item = await store.getItem(task.itemId);
        // Declined by the page (its app vetoed the task): the item waits, it did not fail.
        if (item?.state === 'uploading')
          await store.putItem({
            ...item,
            state: message.code === 'declined' ? 'published' : 'failed',
          });
        options.onTask?.({
          type: 'fail',
          taskId: task.taskId,
          itemId: task.itemId,
          clientId: task.clientId,
          code: message.code,
        });
        return;
      }
    }
  };

  wss.on('connection', (ws, req: IncomingMessage) => {
    const remote = req.socket.remoteAddress;
    if (ws.protocol !== SUBPROTOCOL_CONTROL_1) {
      ws.close(CLOSE.UNSUPPORTED_PROTOCOL, `speak ${SUBPROTOCOL_CONTROL_1}`);
      return;
    }
    let session: Session | undefined;
    let authenticating = false;
    const timer = setTimeout(() => {
      fail(ws, 'auth-timeout', 'no hello in time');
      ws.close(CLOSE.AUTH_TIMEOUT, 'no hello in time');
    }, helloTimeoutMs);
    // Pings keep an idle connection open through NATs and proxies with idle timeouts (a paused
    // upload can leave it quiet for minutes), and find browsers that went away without closing.
    let answered = true;
    const heartbeat = setInterval(() => {
      if (!answered) {
        log('heartbeat-timeout', { clientId: session?.clientId, remote });
        ws.terminate();
        return;
      }
      answered = false;
      ws.ping();
    }, heartbeatMs);
    heartbeat.unref();
    ws.on('pong', () => (answered = true));
    ws.on('error', () => undefined);
    ws.on('close', () => {
      clearTimeout(timer);
      clearInterval(heartbeat);
      if (!session) return;
      clearInterval(session.refresh);
      clearTimeout(session.expiry);
      for (const room of [...session.rooms]) leaveRoom(session, room);
      // A session replaced by a newer connection (4009) leaves the record to that one.
      if (sessions.get(session.clientId) !== session) return;
      sessions.delete(session.clientId);
      store
        .putSession({
          sessionId: session.sessionId,
          clientId: session.clientId,
          userId: session.userId,
          expiresAt: Date.now() + sessionResumeMs,
        })
        .catch((e: unknown) => log('internal-error', { message: String(e) }));
    });
    ws.on('message', (data, isBinary) => {
      answered = true;
      let message: ControlClientMessage;
      try {
        if (isBinary) throw new ProtocolError('message-invalid', 'control frames are text');
        message = decodeControlClientMessage(data.toString());
      } catch (e) {
        fail(
          ws,
          'bad-message',
          e instanceof ProtocolError ? `${e.code}: ${e.message}` : 'bad message',
        );
        ws.close(CLOSE.PROTOCOL_VIOLATION, 'bad message');
        return;
      }
      if (session) {
        // One message at a time per browser, in order, even when one waits for a hook.
        const current = session;
        current.queue = current.queue
          .then(() => onMessage(current, message))
          .catch((e: unknown) => {
            log('internal-error', { clientId: current.clientId, message: String(e) });
            fail(ws, 'internal', 'internal error');
          });
        return;
      }
      if (message.type !== 'hello' || authenticating) {
        fail(ws, 'not-authenticated', 'send hello first');
        ws.close(CLOSE.PROTOCOL_VIOLATION, 'hello first');
        return;
      }
      authenticating = true;
      void (async () => {
        const user = await authenticate(message.token).catch(() => undefined);
        clearTimeout(timer);
        if (ws.readyState !== ws.OPEN) return;
        if (!user) {
          log('auth-failed', { remote });
          fail(ws, 'auth-failed', 'credential refused');
          ws.close(CLOSE.AUTH_FAILED, 'auth failed');
          return;
        }
        // A browser that reconnects with its session id keeps its client id, and so its tasks.
        const previous =
          message.sessionId === undefined ? undefined : await store.getSession(message.sessionId);
        const resumed =
          previous && previous.userId === user.userId && previous.expiresAt > Date.now();
        const clientId = resumed ? previous.clientId : randomUUID();
        const sessionId = resumed ? message.sessionId! : randomUUID();
        const live = sessions.get(clientId);
        if (live && live.ws !== ws) live.ws.close(CLOSE.REPLACED, 'session resumed elsewhere');
        let markProbed!: () => void;
        const probed = new Promise<void>((resolve) => {
          markProbed = resolve;
          setTimeout(resolve, probeWaitMs).unref();
        });
        const s: Session = {
          ws,
          clientId,
          sessionId,
          userId: user.userId,
          rtt: new Map(),
          throughput: new Map(),
          tokens: new Map(),
          rooms: new Set(),
          queue: Promise.resolve(),
          probed,
          markProbed,
        };
        const servers = await serverList(clientId, user.userId, s.tokens);
        if (ws.readyState !== ws.OPEN) return;
        session = s;
        sessions.set(clientId, s);
        armExpiry(s, user.expiresAt);
        log('session', { clientId, userId: user.userId, resumed: Boolean(resumed), remote });
        // Fresh upload tokens well before the old ones expire (the browser uses them to reconnect).
        s.refresh = setInterval(() => {
          serverList(clientId, s.userId, s.tokens).then(
            (list) => send(ws, { type: 'servers', servers: list }),
            () => undefined,
          );
        }, ttl * 750);
        s.refresh.unref();
        await store.putSession({ sessionId, clientId, userId: user.userId, expiresAt: Infinity });
        send(ws, {
          type: 'welcome',
          sessionId: s.sessionId,
          clientId,
          servers,
          limits: { maxItemSize, inlineMax },
          resumed: Boolean(resumed),
        });
      })();
    });
  });

  const registryWss = new WebSocketServer({
    noServer: true,
    // Before it registers, a peer is nobody: its messages stay small. A relayed server keeps the
    // BYTES it sends its browsers within this too (see the upload server's relayed sessions).
    maxPayload: MAX_REGISTRY_MESSAGE,
    handleProtocols: (protocols) =>
      protocols.has(SUBPROTOCOL_REGISTRY_1) ? SUBPROTOCOL_REGISTRY_1 : false,
  });
  registryWss.on('connection', (ws, req) => registry.accept(ws, req));
  const routes = new Map([
    [path, upgradeOn(path, wss, false)],
    [registryPath, upgradeOn(registryPath, registryWss, false)],
  ]);
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const at = pathOf(req);
    const route = routes.get(at);
    if (route) route(req, socket, head);
    // Browser connections to an upload server that is reached through its registry link.
    else if (at.startsWith(RELAY_PATH_PREFIX)) registry.relayUpgrade(req, socket, head);
    else if (ownsServer) socket.destroy();
  };
  httpServer.on('upgrade', onUpgrade);

  return {
    httpServer,
    async listen(port = 0, host = '127.0.0.1') {
      return `ws://${await listen(httpServer, port, host)}${path}`;
    },
    items: () => store.items(),
    servers: () => registry.list(),
    async requestTransmit(itemId, ranges, transmitOptions) {
      const { priority = 0, deadline } =
        typeof transmitOptions === 'number'
          ? { priority: transmitOptions }
          : (transmitOptions ?? {});
      if (!Number.isFinite(priority) || Math.abs(priority) > 1e6)
        throw new TypeError('ws-uploader: `priority` must be a number in -1000000..1000000');
      if (deadline !== undefined && !(Number.isFinite(deadline) && deadline >= 0))
        throw new TypeError('ws-uploader: `deadline` must be a time in ms since the epoch');
      const item = await store.getItem(itemId);
      if (!item) throw new Error(`ws-uploader: unknown item ${itemId}`);
      const session = sessions.get(item.clientId);
      if (!session) throw new Error(`ws-uploader: the browser holding ${itemId} is not connected`);
      const planned = ranges ?? plan(item.meta, candidatesFor(session));
      const problem = validatePlan(item.meta, planned, serverIds(), ranges === undefined);
      if (problem) throw new Error(`ws-uploader: cannot transmit ${itemId}: ${problem}`);
      return transmit(session, itemId, planned, priority, 'request', deadline);
    },
    async cancelTransmit(taskId, reason = 'cancelled by the app') {
      if (typeof reason !== 'string' || reason.length > 1024)
        throw new TypeError('ws-uploader: a cancel reason is a string of at most 1024 characters');
      const task = await store.getTask(taskId);
      if (!task) return false;
      const holder = sessions.get(task.clientId);
      if (holder) send(holder.ws, { type: 'cancel', taskId, itemId: task.itemId, reason });
      await endTask(task);
      return true;
    },
    send(to, message) {
      checkTarget(to);
      if (message.body === undefined && message.item === undefined)
        throw new TypeError('ws-uploader: a message needs a body or an item');
      if (message.body !== undefined && message.body.length > MAX_MESSAGE_BODY_LENGTH)
        throw new TypeError(
          `ws-uploader: a message body is at most ${MAX_MESSAGE_BODY_LENGTH} characters`,
        );
      if (message.item !== undefined && message.item.content === undefined)
        throw new TypeError('ws-uploader: an item sent in a message needs its content');
      const received: ReceivedMessage = {
        type: 'message',
        ...(message.body === undefined ? {} : { body: message.body }),
        ...(message.item === undefined ? {} : { item: message.item }),
      };
      // Checked as a browser would receive it, so the app cannot send what browsers refuse.
      try {
        decodeControlServerMessage(encodeControlMessage(received));
      } catch (e) {
        throw new TypeError(`ws-uploader: cannot send this message: ${(e as Error).message}`);
      }
      return deliver(recipients(to), received);
    },
    async close() {
      httpServer.off('upgrade', onUpgrade);
      if (!ownsServer) {
        httpServer.off('request', onRequest);
        for (const listener of appListeners) httpServer.on('request', listener as never);
      }
      clearInterval(sweeper);
      registry.close();
      for (const ws of registryWss.clients) ws.terminate();
      registryWss.close();
      await shutdown(wss, httpServer, ownsServer);
    },
  };
}
