/**
 * Codec of the control protocol: JSON text frames between the browser and the control server.
 * Each message is one JSON object with a `type`. Unknown fields are ignored (so later minor
 * versions can add some); unknown types and wrong field types are rejected.
 */
import { MAX_PUBLISH_ITEMS, MAX_TOKEN_BYTES, type WireErrorCode } from './constants.js';
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
}

/** hello: first client message; authenticates. */
export interface HelloMessage {
  readonly type: 'hello';
  readonly token: string;
  /** Session id from an earlier `welcome`, to resume. */
  readonly sessionId?: string;
}
/** publish: the browser holds these items. */
export interface PublishMessage {
  readonly type: 'publish';
  readonly items: readonly ItemMeta[];
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
  /** Hex SHA-256 of the whole item. */
  readonly sha256: string;
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
  readonly limits: { readonly maxItemSize: number };
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
}
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
  | WireErrorCode;

/** Messages a browser sends to the control server. */
export type ControlClientMessage =
  | HelloMessage
  | PublishMessage
  | ProbeMessage
  | AcceptMessage
  | ProgressMessage
  | CompleteMessage
  | FailMessage;
/** Messages the control server sends to a browser. */
export type ControlServerMessage =
  | WelcomeMessage
  | ServersMessage
  | PublishedMessage
  | TransmitMessage
  | CompletedMessage
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
    case 'publish': {
      const items = arr(o, 'items', MAX_PUBLISH_ITEMS).map((v, i) => itemMeta(v, `items[${i}]`));
      return { type: 'publish', items };
    }
    case 'probe': {
      const results = arr(o, 'results', 1000).map((v, i) => {
        const p = obj(v, `results[${i}]`);
        return { serverId: id(p, 'serverId'), rttMs: num(p, 'rttMs', 0, 3_600_000) };
      });
      return { type: 'probe', results };
    }
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
        sha256: sha(o, 'sha256'),
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
        limits: { maxItemSize: int(limits, 'maxItemSize') },
      };
    }
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
      return {
        type: 'transmit',
        taskId: id(o, 'taskId'),
        itemId: id(o, 'itemId'),
        ranges,
        priority: num(o, 'priority', -1e6, 1e6),
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
  return o['lastModified'] === undefined
    ? meta
    : { ...meta, lastModified: num(o, 'lastModified', 0, 8.64e15) };
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
