/**
 * Codec of the registry protocol: JSON text frames on the link an upload server opens to the
 * control server (`--control-url`). Over it the upload server registers (id, protocols, where
 * browsers reach it), keeps a heartbeat, reports items it has stored and verified, and reports
 * demand (a reader waits for ranges it lacks). Unknown fields are ignored; unknown types and wrong
 * field types are rejected, as in the control protocol.
 */
import { MAX_RANGES_PER_FRAME, MAX_TOKEN_BYTES } from './constants.js';
import {
  arr,
  bad,
  id,
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

/** register: the upload server's first message; authenticates it and says where it is. */
export interface RegisterMessage {
  readonly type: 'register';
  /** A JWT signed with the shared secret, audience `ws-uploader:registry`, `sub` = `id`. */
  readonly token: string;
  /** The server id, unique in the deployment. */
  readonly id: string;
  /** Data protocols it speaks, best first, such as `['dup/2', 'dup/1']`. */
  readonly protocols: readonly string[];
  /** Its WebSocket URL as browsers reach it, when it knows one (advertised). */
  readonly url?: string;
  /** Its HTTP base URL as browsers reach it, when it knows one (advertised). */
  readonly httpUrl?: string;
  /** The port it listens on, so the control server can build a URL from the address it sees. */
  readonly port?: number;
  /** Largest item it accepts, in bytes. */
  readonly maxItemSize?: number;
}
/** heartbeat: the upload server is alive. */
export interface HeartbeatMessage {
  readonly type: 'heartbeat';
}
/** stored: the upload server holds these ranges of an item (all of it, verified, when complete). */
export interface StoredMessage {
  readonly type: 'stored';
  readonly itemId: string;
  /** The item's size, in bytes. */
  readonly size: number;
  /** Ranges stored, sorted, not overlapping. */
  readonly ranges: readonly ByteRange[];
  /** Whether the whole item is stored and its SHA-256 verified. */
  readonly complete: boolean;
  /** Hex SHA-256 of the whole item, when complete. */
  readonly sha256?: string;
}
/** demand: a reader waits for ranges of an item that the upload server does not hold. */
export interface DemandMessage {
  readonly type: 'demand';
  readonly itemId: string;
  readonly ranges: readonly ByteRange[];
}

/** registered: the control server accepted the upload server. */
export interface RegisteredMessage {
  readonly type: 'registered';
  /** Send a heartbeat at least this often, in ms; the server is dropped after three missed. */
  readonly heartbeatMs: number;
  /** The WebSocket URL browsers are given for this server. */
  readonly url: string;
  /** The HTTP base URL browsers are given for this server. */
  readonly httpUrl: string;
}
/** error: the control server refused a message (and closes the link when it refuses `register`). */
export interface RegistryErrorMessage {
  readonly type: 'error';
  readonly code: RegistryErrorCode;
  readonly message: string;
}

/** Error codes of registry `error` messages. */
export type RegistryErrorCode =
  | 'bad-message'
  | 'auth-failed'
  | 'auth-timeout'
  | 'not-registered'
  | 'no-endpoint'
  | 'duplicate-id';

/** Messages an upload server sends on its registry link. */
export type RegistryClientMessage =
  RegisterMessage | HeartbeatMessage | StoredMessage | DemandMessage;
/** Messages the control server sends on a registry link. */
export type RegistryServerMessage = RegisteredMessage | RegistryErrorMessage;

/**
 * Encodes a registry message as JSON text.
 * @param message a message of either side
 */
export function encodeRegistryMessage(
  message: RegistryClientMessage | RegistryServerMessage,
): string {
  return JSON.stringify(message);
}

/**
 * Decodes and validates a message an upload server sent (what the control server receives).
 * @param text one text WebSocket message
 * @throws {ProtocolError} `message-invalid-json`, `message-invalid` or `frame-too-large`
 */
export function decodeRegistryClientMessage(text: string): RegistryClientMessage {
  const o = parseObject(text);
  switch (o['type']) {
    case 'register': {
      const url = optStr(o, 'url', 2048);
      const httpUrl = optStr(o, 'httpUrl', 2048);
      if (url !== undefined && !/^wss?:\/\//.test(url)) bad('url must be a ws: or wss: URL');
      if (httpUrl !== undefined && !/^https?:\/\//.test(httpUrl))
        bad('httpUrl must be an http: or https: URL');
      if ((url === undefined) !== (httpUrl === undefined))
        bad('url and httpUrl go together: both or neither');
      const port = o['port'] === undefined ? undefined : num(o, 'port', 1, 65535);
      if (port !== undefined && !Number.isInteger(port)) bad('port must be an integer');
      const maxItemSize = o['maxItemSize'] === undefined ? undefined : int(o, 'maxItemSize');
      return {
        type: 'register',
        token: str(o, 'token', 1, MAX_TOKEN_BYTES),
        id: id(o, 'id'),
        protocols: protocols(o),
        ...(url === undefined ? {} : { url }),
        ...(httpUrl === undefined ? {} : { httpUrl }),
        ...(port === undefined ? {} : { port }),
        ...(maxItemSize === undefined ? {} : { maxItemSize }),
      };
    }
    case 'heartbeat':
      return { type: 'heartbeat' };
    case 'stored': {
      const size = int(o, 'size');
      const ranges = rangeList(o, size);
      const complete = o['complete'];
      if (typeof complete !== 'boolean') bad('complete must be a boolean');
      const whole = ranges.length === 1 && ranges[0]!.start === 0 && ranges[0]!.end === size;
      if (complete && size > 0 && !whole) bad('a complete item has the one range [0, size)');
      const digest = o['sha256'] === undefined ? undefined : sha(o, 'sha256');
      if (complete && digest === undefined) bad('a complete item needs its sha256');
      return {
        type: 'stored',
        itemId: id(o, 'itemId'),
        size,
        ranges,
        complete,
        ...(digest === undefined ? {} : { sha256: digest }),
      };
    }
    case 'demand': {
      const ranges = rangeList(o, Number.MAX_SAFE_INTEGER);
      if (ranges.length === 0) bad('ranges is empty');
      return { type: 'demand', itemId: id(o, 'itemId'), ranges };
    }
    default:
      return bad(`unknown registry message type ${JSON.stringify(o['type'])}`);
  }
}

/**
 * Decodes and validates a message the control server sent (what an upload server receives).
 * @param text one text WebSocket message
 * @throws {ProtocolError} `message-invalid-json`, `message-invalid` or `frame-too-large`
 */
export function decodeRegistryServerMessage(text: string): RegistryServerMessage {
  const o = parseObject(text);
  switch (o['type']) {
    case 'registered': {
      const url = str(o, 'url', 1, 2048);
      const httpUrl = str(o, 'httpUrl', 1, 2048);
      if (!/^wss?:\/\//.test(url)) bad('url must be a ws: or wss: URL');
      if (!/^https?:\/\//.test(httpUrl)) bad('httpUrl must be an http: or https: URL');
      return {
        type: 'registered',
        heartbeatMs: num(o, 'heartbeatMs', 100, 3_600_000),
        url,
        httpUrl,
      };
    }
    case 'error':
      return {
        type: 'error',
        code: str(o, 'code', 1, 64) as RegistryErrorCode,
        message: str(o, 'message', 0, 1024),
      };
    default:
      return bad(`unknown registry message type ${JSON.stringify(o['type'])}`);
  }
}

function protocols(o: Obj): string[] {
  const list = arr(o, 'protocols', 32).map((p, i) => {
    if (typeof p !== 'string' || !/^[a-z0-9-]{1,24}\/[0-9]{1,4}$/.test(p))
      bad(`protocols[${i}] must be a protocol name such as dup/2`);
    return p;
  });
  if (list.length === 0) bad('protocols is empty');
  return list;
}

/** Sorted, non-overlapping, non-empty ranges within `[0, size)`. */
function rangeList(o: Obj, size: number): ByteRange[] {
  let cursor = 0;
  return arr(o, 'ranges', MAX_RANGES_PER_FRAME).map((v, i) => {
    const r = obj(v, `ranges[${i}]`);
    const start = int(r, 'start');
    const end = int(r, 'end');
    if (end <= start) bad(`ranges[${i}]: end must be greater than start`);
    if (start < cursor) bad(`ranges[${i}] overlaps or is out of order`);
    if (end > size) bad(`ranges[${i}] ends past the item's size`);
    cursor = end;
    return { start, end };
  });
}
