/**
 * Codec of the control protocol: JSON text frames between the browser and the control server.
 * Each message is one JSON object with a `type`. Unknown fields are ignored (so later minor
 * versions can add some); unknown types and wrong field types are rejected.
 */
import {
  MAX_INLINE_BYTES,
  MAX_MESSAGE_BODY_LENGTH,
  MAX_PUBLISH_ITEMS,
  MAX_TOKEN_BYTES,
  type WireErrorCode,
} from './constants.js';
import {
  arr,
  bad,
  id,
  idValue,
  int,
  num,
  obj,
  optStr,
  parseObject,
  sha,
  str,
  type Obj,
} from './json-fields.js';
import type { ByteRange } from './ranges.js';

/** What kind of data an item is. */
export type ItemKind = 'file' | 'text' | 'clipboard';

/** Metadata a browser publishes about an item it holds. */
export interface ItemMeta {
  /** Stable id, `[A-Za-z0-9_-]{1,128}`, chosen by the browser. */
  readonly itemId: string;
  /** File name or a label; at most 1024 characters. */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /** Media type; empty when unknown. */
  readonly mime: string;
  /** What kind of data it is. */
  readonly kind: ItemKind;
  /** `lastModified` of a file, milliseconds since the epoch. */
  readonly lastModified?: number;
  /**
   * The item's bytes, base64 (RFC 4648 §4, with padding), for a small item carried inline through
   * the control server instead of being uploaded: at most the `inlineMax` of `welcome`.
   */
  readonly content?: string;
}

/** Who a `message` goes to: exactly one of a client, a user (all their browsers) or a room. */
export type MessageTarget =
  { readonly clientId: string } | { readonly userId: string } | { readonly room: string };

/** Who sent a `message`: a browser, or the app (through the control server) when absent. */
export interface MessageSender {
  readonly clientId: string;
  readonly userId: string;
}

/** An upload server as the control server describes it to a browser. */
export interface ServerInfo {
  /** Server id, unique in the deployment. */
  readonly id: string;
  /** WebSocket URL of the server's data endpoint (`ws:` or `wss:`). */
  readonly url: string;
  /** HTTP base URL where finished items are served (`GET {httpUrl}/files/{itemId}`). */
  readonly httpUrl: string;
  /** Data protocols the server speaks, best first, such as `['dup/2']`. */
  readonly protocols: readonly string[];
  /** Token for this client on this server; sent in the first frame, never in a URL. */
  readonly token: string;
  /** When the token expires, milliseconds since the epoch. */
  readonly tokenExpiresAt: number;
}

/** A range of an item and the server it goes to. */
export interface TargetRange extends ByteRange {
  readonly serverId: string;
}

/** Round-trip time a browser measured to one upload server. */
export interface ProbeResult {
  readonly serverId: string;
  /** Smoothed round-trip time in milliseconds. */
  readonly rttMs: number;
  /** Bytes per second the browser stored on that server lately, when it sent any. */
  readonly throughput?: number;
}

/** hello: first client message; authenticates. */
export interface HelloMessage {
  readonly type: 'hello';
  readonly token: string;
  /** Session id from an earlier `welcome`, to resume. */
  readonly sessionId?: string;
}
/** auth: a fresh credential for the session, before the one of `hello` expires. */
export interface AuthMessage {
  readonly type: 'auth';
  readonly token: string;
}
/** publish: the browser holds these items. */
export interface PublishMessage {
  readonly type: 'publish';
  readonly items: readonly ItemMeta[];
}
/** unpublish: the browser no longer offers these items. */
export interface UnpublishMessage {
  readonly type: 'unpublish';
  readonly itemIds: readonly string[];
}
/** message: a short message, and maybe an inline item, for other browsers. */
export interface SendMessage {
  readonly type: 'message';
  /** Chosen by the browser; echoed in `sent`. */
  readonly id?: string;
  readonly to: MessageTarget;
  /** The text, at most 65 536 characters. */
  readonly body?: string;
  /** An inline item this browser published, delivered with its content. */
  readonly itemId?: string;
}
/** join: the browser enters a room (it then receives messages sent to it). */
export interface JoinMessage {
  readonly type: 'join';
  readonly room: string;
}
/** leave: the browser leaves a room. */
export interface LeaveMessage {
  readonly type: 'leave';
  readonly room: string;
}
/** locate: where can this browser read an item (any user's, as the app allows)? */
export interface LocateMessage {
  readonly type: 'locate';
  /** Chosen by the browser; echoed in `located`, or as the `ref` of an `error`. */
  readonly id: string;
  readonly itemId: string;
}
/** probe: measured round-trip times to upload servers. */
export interface ProbeMessage {
  readonly type: 'probe';
  readonly results: readonly ProbeResult[];
}
/** accept: the browser took a task from `transmit` and will run it. */
export interface AcceptMessage {
  readonly type: 'accept';
  readonly taskId: string;
  readonly itemId: string;
}
/** progress: bytes of a task stored so far. */
export interface ProgressMessage {
  readonly type: 'progress';
  readonly taskId: string;
  readonly itemId: string;
  readonly bytesStored: number;
}
/** complete: a task is done; the servers hold its ranges, verified. */
export interface CompleteMessage {
  readonly type: 'complete';
  readonly taskId: string;
  readonly itemId: string;
  /** Hex SHA-256 of the whole item: required when the task's ranges cover the whole item. */
  readonly sha256?: string;
  readonly servers: readonly string[];
}
/** fail: a task could not be done. */
export interface FailMessage {
  readonly type: 'fail';
  readonly taskId: string;
  readonly itemId: string;
  readonly code: string;
  readonly message: string;
}

/** welcome: the control server accepted the hello. */
export interface WelcomeMessage {
  readonly type: 'welcome';
  readonly sessionId: string;
  readonly clientId: string;
  readonly servers: readonly ServerInfo[];
  readonly limits: WelcomeLimits;
  /** Whether the `sessionId` of `hello` was resumed (the control server still knows its items). */
  readonly resumed?: boolean;
}
/** What a control server accepts. */
export interface WelcomeLimits {
  readonly maxItemSize: number;
  /** Largest item carried inline (`content` in `publish`), in bytes; 0: none. */
  readonly inlineMax?: number;
}
/** authed: the credential of `auth` was accepted. */
export interface AuthedMessage {
  readonly type: 'authed';
}
/** unpublished: the control server forgot these items. */
export interface UnpublishedMessage {
  readonly type: 'unpublished';
  readonly itemIds: readonly string[];
}
/** message: a message from another browser or from the app. */
export interface ReceivedMessage {
  readonly type: 'message';
  /** The sending browser; absent when the app sent it. */
  readonly from?: MessageSender;
  /** The `id` the sender chose, when it chose one. */
  readonly id?: string;
  readonly body?: string;
  /** An inline item, with its `content`. */
  readonly item?: ItemMeta;
}
/** sent: a `message` with an `id` was delivered to this many browsers. */
export interface SentMessage {
  readonly type: 'sent';
  readonly id: string;
  readonly delivered: number;
}
/** An upload server that holds (or is receiving) ranges of an item, and a read token for it. */
export interface ItemHolder {
  readonly serverId: string;
  /** HTTP base URL: the item is at `{httpUrl}/files/{itemId}`. */
  readonly httpUrl: string;
  /** Its `dup/2` WebSocket URL, when it speaks `dup/2`: the item can be read there with `READ`. */
  readonly wsUrl?: string;
  /** The byte ranges it holds, or will hold once the upload reaches them; sorted, not overlapping. */
  readonly ranges: readonly ByteRange[];
  /** A read token for this item on this server (`Authorization: Bearer` or `access_token`). */
  readonly token: string;
  /** When the token expires, milliseconds since the epoch. */
  readonly tokenExpiresAt: number;
}
/** located: where an item can be read, answering `locate`. */
export interface LocatedMessage {
  readonly type: 'located';
  readonly id: string;
  /** The item's metadata; an inline item's `content` too. */
  readonly item: ItemMeta;
  /**
   * `stored` (verified on its servers), `uploading` (a missing range read from a holder is
   * demanded from the uploading browser), `published` (waiting to be planned), `failed`.
   */
  readonly state: 'published' | 'uploading' | 'stored' | 'failed';
  /** Hex SHA-256, once stored. */
  readonly sha256?: string;
  /** Live upload servers that hold it, each with its ranges; none for an inline item. */
  readonly holders: readonly ItemHolder[];
}
/** cancel: stop a task (its item was unpublished, re-planned or the app cancelled it). */
export interface CancelMessage {
  readonly type: 'cancel';
  readonly taskId: string;
  readonly itemId: string;
  readonly reason: string;
}
/** servers: the upload-server list changed. */
export interface ServersMessage {
  readonly type: 'servers';
  readonly servers: readonly ServerInfo[];
}
/** published: the control server recorded these items. */
export interface PublishedMessage {
  readonly type: 'published';
  readonly itemIds: readonly string[];
}
/** transmit: upload these ranges of an item to these servers. */
export interface TransmitMessage {
  readonly type: 'transmit';
  readonly taskId: string;
  readonly itemId: string;
  readonly ranges: readonly TargetRange[];
  /** Higher runs first. */
  readonly priority: number;
  /** Wanted by then, milliseconds since the epoch (a hint: a reader waits, say). */
  readonly deadline?: number;
  /** Why: `publish` (the plan), `request` (the app), `demand` (a reader), `replan` (failover). */
  readonly reason?: TransmitReason;
  /**
   * The data protocol to send this task with, when the control server asks for one: `http/1` is
   * one `multipart/form-data` POST of the whole item to the server's `/uploads`. Absent: the
   * browser's choice. A browser that does not speak the named protocol uses its own choice.
   */
  readonly protocol?: string;
  /**
   * `server`: an upload server computes the item's SHA-256 (it reads the ranges other servers
   * hold from them), so a browser in `transport` integrity sends no digest for this task and waits
   * for `completed` to learn it. Absent: the browser reports the digest of a task that covers the
   * whole item (as before this field).
   */
  readonly digest?: 'server';
}
/** Why a `transmit` was sent. */
export type TransmitReason = 'publish' | 'request' | 'demand' | 'replan';
/** completed: the control server recorded that an item is stored. */
export interface CompletedMessage {
  readonly type: 'completed';
  readonly itemId: string;
  readonly sha256: string;
  readonly servers: readonly string[];
}
/** error: a request failed; `ref` names the item or task when there is one. */
export interface ControlErrorMessage {
  readonly type: 'error';
  readonly code: ControlErrorCode;
  readonly message: string;
  readonly ref?: string;
}

/** Error codes of control `error` messages. */
export type ControlErrorCode =
  | 'bad-message'
  | 'auth-failed'
  | 'auth-timeout'
  | 'not-authenticated'
  | 'unknown-item'
  | 'unknown-task'
  | 'too-large'
  | 'no-servers'
  | 'unverified'
  | 'forbidden'
  | 'auth-expired'
  | WireErrorCode;

/** Messages a browser sends to the control server. */
export type ControlClientMessage =
  | HelloMessage
  | AuthMessage
  | PublishMessage
  | UnpublishMessage
  | SendMessage
  | JoinMessage
  | LeaveMessage
  | ProbeMessage
  | LocateMessage
  | AcceptMessage
  | ProgressMessage
  | CompleteMessage
  | FailMessage;
/** Messages the control server sends to a browser. */
export type ControlServerMessage =
  | WelcomeMessage
  | AuthedMessage
  | ServersMessage
  | PublishedMessage
  | UnpublishedMessage
  | TransmitMessage
  | CancelMessage
  | CompletedMessage
  | ReceivedMessage
  | SentMessage
  | LocatedMessage
  | ControlErrorMessage;

/**
 * Encodes a control message as JSON text.
 * @param message a client or server message
 */
export function encodeControlMessage(message: ControlClientMessage | ControlServerMessage): string {
  return JSON.stringify(message);
}

/**
 * Decodes and validates a message a browser sent (what the control server receives).
 * @param text one text WebSocket message
 * @throws {ProtocolError} `message-invalid-json` or `message-invalid`
 */
export function decodeControlClientMessage(text: string): ControlClientMessage {
  const o = parseObject(text);
  switch (o['type']) {
    case 'hello': {
      const token = str(o, 'token', 1, MAX_TOKEN_BYTES);
      const sessionId = optStr(o, 'sessionId', 200);
      return sessionId === undefined
        ? { type: 'hello', token }
        : { type: 'hello', token, sessionId };
    }
    case 'auth':
      return { type: 'auth', token: str(o, 'token', 1, MAX_TOKEN_BYTES) };
    case 'publish': {
      const items = arr(o, 'items', MAX_PUBLISH_ITEMS).map((v, i) => itemMeta(v, `items[${i}]`));
      return { type: 'publish', items };
    }
    case 'unpublish':
      return { type: 'unpublish', itemIds: idList(o, 'itemIds', MAX_PUBLISH_ITEMS) };
    case 'message': {
      const messageId = optStr(o, 'id', 200);
      const body = optBody(o);
      const itemId = o['itemId'] === undefined ? undefined : id(o, 'itemId');
      if (body === undefined && itemId === undefined) bad('a message needs a body or an itemId');
      return {
        type: 'message',
        ...(messageId === undefined ? {} : { id: messageId }),
        to: target(o),
        ...(body === undefined ? {} : { body }),
        ...(itemId === undefined ? {} : { itemId }),
      };
    }
    case 'join':
    case 'leave':
      return { type: o['type'], room: id(o, 'room') };
    case 'probe': {
      const results = arr(o, 'results', 1000).map((v, i) => {
        const p = obj(v, `results[${i}]`);
        const result = { serverId: id(p, 'serverId'), rttMs: num(p, 'rttMs', 0, 3_600_000) };
        return p['throughput'] === undefined
          ? result
          : { ...result, throughput: num(p, 'throughput', 0, 1e12) };
      });
      return { type: 'probe', results };
    }
    case 'locate':
      return { type: 'locate', id: str(o, 'id', 1, 200), itemId: id(o, 'itemId') };
    case 'accept':
      return { type: 'accept', taskId: id(o, 'taskId'), itemId: id(o, 'itemId') };
    case 'progress':
      return {
        type: 'progress',
        taskId: id(o, 'taskId'),
        itemId: id(o, 'itemId'),
        bytesStored: int(o, 'bytesStored'),
      };
    case 'complete':
      return {
        type: 'complete',
        taskId: id(o, 'taskId'),
        itemId: id(o, 'itemId'),
        ...(o['sha256'] === undefined ? {} : { sha256: sha(o, 'sha256') }),
        servers: arr(o, 'servers', 1000).map((v, i) => idValue(v, `servers[${i}]`)),
      };
    case 'fail':
      return {
        type: 'fail',
        taskId: id(o, 'taskId'),
        itemId: id(o, 'itemId'),
        code: str(o, 'code', 1, 64),
        message: str(o, 'message', 0, 1024),
      };
    default:
      return bad(`unknown client message type ${JSON.stringify(o['type'])}`);
  }
}

/**
 * Decodes and validates a message the control server sent (what a browser receives).
 * @param text one text WebSocket message
 * @throws {ProtocolError} `message-invalid-json` or `message-invalid`
 */
export function decodeControlServerMessage(text: string): ControlServerMessage {
  const o = parseObject(text);
  switch (o['type']) {
    case 'welcome': {
      const limits = obj(o['limits'], 'limits');
      return {
        type: 'welcome',
        sessionId: str(o, 'sessionId', 1, 200),
        clientId: str(o, 'clientId', 1, 200),
        servers: serverList(o),
        limits: {
          maxItemSize: int(limits, 'maxItemSize'),
          ...(limits['inlineMax'] === undefined ? {} : { inlineMax: int(limits, 'inlineMax') }),
        },
        ...(o['resumed'] === undefined ? {} : { resumed: bool(o, 'resumed') }),
      };
    }
    case 'authed':
      return { type: 'authed' };
    case 'unpublished':
      return { type: 'unpublished', itemIds: idList(o, 'itemIds', MAX_PUBLISH_ITEMS) };
    case 'cancel':
      return {
        type: 'cancel',
        taskId: id(o, 'taskId'),
        itemId: id(o, 'itemId'),
        reason: str(o, 'reason', 0, 1024),
      };
    case 'message': {
      const messageId = optStr(o, 'id', 200);
      const body = optBody(o);
      const item = o['item'] === undefined ? undefined : itemMeta(o['item'], 'item');
      let from: MessageSender | undefined;
      if (o['from'] !== undefined) {
        const f = obj(o['from'], 'from');
        from = { clientId: str(f, 'clientId', 1, 200), userId: str(f, 'userId', 1, 200) };
      }
      return {
        type: 'message',
        ...(from === undefined ? {} : { from }),
        ...(messageId === undefined ? {} : { id: messageId }),
        ...(body === undefined ? {} : { body }),
        ...(item === undefined ? {} : { item }),
      };
    }
    case 'sent':
      return { type: 'sent', id: str(o, 'id', 1, 200), delivered: int(o, 'delivered') };
    case 'servers':
      return { type: 'servers', servers: serverList(o) };
    case 'published':
      return {
        type: 'published',
        itemIds: arr(o, 'itemIds', MAX_PUBLISH_ITEMS).map((v, i) => idValue(v, `itemIds[${i}]`)),
      };
    case 'transmit': {
      const ranges = arr(o, 'ranges', 10_000).map((v, i) => {
        const r = obj(v, `ranges[${i}]`);
        const start = int(r, 'start');
        const end = int(r, 'end');
        if (end <= start) bad(`ranges[${i}]: end must be greater than start`);
        return { start, end, serverId: id(r, 'serverId') };
      });
      if (ranges.length === 0) bad('ranges is empty');
      const reason = o['reason'];
      if (
        reason !== undefined &&
        reason !== 'publish' &&
        reason !== 'request' &&
        reason !== 'demand' &&
        reason !== 'replan'
      )
        bad('reason must be publish, request, demand or replan');
      return {
        type: 'transmit',
        taskId: id(o, 'taskId'),
        itemId: id(o, 'itemId'),
        ranges,
        priority: num(o, 'priority', -1e6, 1e6),
        ...(o['deadline'] === undefined ? {} : { deadline: num(o, 'deadline', 0, 8.64e15) }),
        ...(reason === undefined ? {} : { reason }),
        ...(o['protocol'] === undefined ? {} : { protocol: str(o, 'protocol', 1, 32) }),
        ...(o['digest'] === undefined ? {} : { digest: serverDigest(o) }),
      };
    }
    case 'located': {
      const state = o['state'];
      if (
        state !== 'published' &&
        state !== 'uploading' &&
        state !== 'stored' &&
        state !== 'failed'
      )
        bad('state must be published, uploading, stored or failed');
      return {
        type: 'located',
        id: str(o, 'id', 1, 200),
        item: itemMeta(o['item'], 'item'),
        state,
        ...(o['sha256'] === undefined ? {} : { sha256: sha(o, 'sha256') }),
        holders: arr(o, 'holders', 1000).map((v, i) => {
          const h = obj(v, `holders[${i}]`);
          const httpUrl = str(h, 'httpUrl', 1, 2048);
          if (!/^https?:\/\//.test(httpUrl))
            bad(`holders[${i}].httpUrl must be an http: or https: URL`);
          const wsUrl = optStr(h, 'wsUrl', 2048);
          if (wsUrl !== undefined && !/^wss?:\/\//.test(wsUrl))
            bad(`holders[${i}].wsUrl must be a ws: or wss: URL`);
          return {
            serverId: id(h, 'serverId'),
            httpUrl,
            ...(wsUrl === undefined ? {} : { wsUrl }),
            ranges: arr(h, 'ranges', 10_000).map((r, j) => {
              const range = obj(r, `holders[${i}].ranges[${j}]`);
              const start = int(range, 'start');
              const end = int(range, 'end');
              if (end <= start) bad(`holders[${i}].ranges[${j}]: end must be greater than start`);
              return { start, end };
            }),
            token: str(h, 'token', 1, MAX_TOKEN_BYTES),
            tokenExpiresAt: int(h, 'tokenExpiresAt'),
          };
        }),
      };
    }
    case 'completed':
      return {
        type: 'completed',
        itemId: id(o, 'itemId'),
        sha256: sha(o, 'sha256'),
        servers: arr(o, 'servers', 1000).map((v, i) => idValue(v, `servers[${i}]`)),
      };
    case 'error': {
      const ref = optStr(o, 'ref', 200);
      const base = {
        type: 'error' as const,
        code: str(o, 'code', 1, 64) as ControlErrorCode,
        message: str(o, 'message', 0, 1024),
      };
      return ref === undefined ? base : { ...base, ref };
    }
    default:
      return bad(`unknown server message type ${JSON.stringify(o['type'])}`);
  }
}

function itemMeta(v: unknown, field: string): ItemMeta {
  const o = obj(v, field);
  const kind = o['kind'];
  if (kind !== 'file' && kind !== 'text' && kind !== 'clipboard')
    bad(`${field}.kind must be file, text or clipboard`);
  const meta: ItemMeta = {
    itemId: id(o, 'itemId'),
    name: str(o, 'name', 0, 1024),
    size: int(o, 'size'),
    mime: str(o, 'mime', 0, 255),
    kind,
  };
  const lastModified =
    o['lastModified'] === undefined ? undefined : num(o, 'lastModified', 0, 8.64e15);
  const content = o['content'] === undefined ? undefined : inlineContent(o, meta.size);
  return {
    ...meta,
    ...(lastModified === undefined ? {} : { lastModified }),
    ...(content === undefined ? {} : { content }),
  };
}

/** Base64 of exactly `size` bytes, at most {@link MAX_INLINE_BYTES}. */
function inlineContent(o: Obj, size: number): string {
  if (size > MAX_INLINE_BYTES) bad(`inline content is limited to ${MAX_INLINE_BYTES} bytes`);
  const v = str(o, 'content', 0, Math.ceil(MAX_INLINE_BYTES / 3) * 4);
  if (v.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) bad('content must be base64');
  const padding = v.endsWith('==') ? 2 : v.endsWith('=') ? 1 : 0;
  if ((v.length / 4) * 3 - padding !== size) bad('content does not hold size bytes');
  return v;
}

function idList(o: Obj, field: string, max: number): string[] {
  return arr(o, field, max).map((v, i) => idValue(v, `${field}[${i}]`));
}

function optBody(o: Obj): string | undefined {
  return o['body'] === undefined ? undefined : str(o, 'body', 0, MAX_MESSAGE_BODY_LENGTH);
}

function bool(o: Obj, field: string): boolean {
  const v = o[field];
  if (typeof v !== 'boolean') bad(`${field} must be true or false`);
  return v;
}

function target(o: Obj): MessageTarget {
  const t = obj(o['to'], 'to');
  const keys = (['clientId', 'userId', 'room'] as const).filter((k) => t[k] !== undefined);
  if (keys.length !== 1) bad('to names exactly one of clientId, userId or room');
  const key = keys[0]!;
  if (key === 'room') return { room: id(t, 'room') };
  const value = str(t, key, 1, 200);
  return key === 'clientId' ? { clientId: value } : { userId: value };
}

function serverList(o: Obj): ServerInfo[] {
  return arr(o, 'servers', 1000).map((v, i) => {
    const s = obj(v, `servers[${i}]`);
    const url = str(s, 'url', 1, 2048);
    const httpUrl = str(s, 'httpUrl', 1, 2048);
    if (!/^wss?:\/\//.test(url)) bad(`servers[${i}].url must be a ws: or wss: URL`);
    if (!/^https?:\/\//.test(httpUrl)) bad(`servers[${i}].httpUrl must be an http: or https: URL`);
    return {
      id: id(s, 'id'),
      url,
      httpUrl,
      protocols: arr(s, 'protocols', 32).map((p, j) => {
        if (typeof p !== 'string' || p.length === 0 || p.length > 32)
          bad(`servers[${i}].protocols[${j}] must be a name`);
        return p;
      }),
      token: str(s, 'token', 1, MAX_TOKEN_BYTES),
      tokenExpiresAt: int(s, 'tokenExpiresAt'),
    };
  });
}

function serverDigest(o: Obj): 'server' {
  if (o['digest'] !== 'server') bad('digest must be server');
  return 'server';
}
