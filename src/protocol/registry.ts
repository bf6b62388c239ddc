/**
 * Codec of the registry protocol: JSON text frames on the link an upload server opens to the
 * control server (`--control-url`). Over it the upload server registers (id, protocols, where
 * browsers reach it), keeps a heartbeat, reports items it has stored and verified, and reports
 * demand (a reader waits for ranges it lacks). Unknown fields are ignored; unknown types and wrong
 * field types are rejected, as in the control protocol.
 *
 * A server that registers with `relay: true` is reached through the control server: each browser
 * WebSocket to `/relay/{serverId}` becomes a relay channel on the link (`relay-open`,
 * `relay-accept` or `relay-refuse`, `relay-pause`/`relay-resume`, `relay-close` as JSON text) and
 * its messages travel as binary relay frames (see {@link encodeRelayFrame}).
 */
import { CLOSE, MAX_RANGES_PER_FRAME, MAX_TOKEN_BYTES } from './constants.js';
import { ProtocolError } from './errors.js';
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
import { utf8Length } from './utf8.js';

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
  /**
   * Its HTTP base URL as the other upload servers reach it (an address on a private network),
   * when it differs from the one browsers use: where they read its ranges of a split item.
   */
  readonly peerUrl?: string;
  /** Largest item it accepts, in bytes. */
  readonly maxItemSize?: number;
  /**
   * The server cannot be reached by browsers and takes their connections as relay channels over
   * this link; it is listed at `/relay/{id}` on the control server. Goes without `url`, `httpUrl`
   * and `port`.
   */
  readonly relay?: boolean;
  /**
   * Largest WebSocket message it accepts from a browser, in bytes; the control server refuses
   * larger ones on relay channels (close 1009). @default {@link DEFAULT_RELAY_MAX_MESSAGE}
   */
  readonly maxMessage?: number;
  /**
   * It takes `digest` requests for part of an item (`from`, and `sources` ending before `size`)
   * and answers them with the SHA-256 state reached, so several servers can hash an item in turn.
   */
  readonly digestSteps?: boolean;
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

/**
 * digested: the SHA-256 of a whole item, computed by this server for a `digest` request (with
 * `sha256`), or why it could not be (with `code` and `message`).
 */
export interface DigestedMessage {
  readonly type: 'digested';
  readonly itemId: string;
  /** Hex SHA-256 of the whole item (a request whose `sources` end at `size`). */
  readonly sha256?: string;
  /** The SHA-256 state after the request's last source (a request whose `sources` end earlier). */
  readonly state?: DigestState;
  /** Why there is no digest: see {@link DigestFailureCode}. */
  readonly code?: DigestFailureCode;
  readonly message?: string;
}
/**
 * Why a `digest` request failed: `unavailable` (a peer did not answer, or not with the bytes),
 * `timeout` (bytes did not arrive in time), `storage-failed` (this server could not read its own
 * bytes, or they failed their CRC-32C).
 */
export type DigestFailureCode = 'unavailable' | 'timeout' | 'storage-failed';

/**
 * SHA-256 part way through an item: the intermediate hash value H0..H7 of FIPS 180-4 (each word
 * big-endian, 64 lowercase hex digits) after its first `offset` bytes, a multiple of 64.
 */
export interface DigestState {
  readonly offset: number;
  readonly hash: string;
}
/** A server that holds ranges of an item, as a `digest` request names it. */
export interface DigestPeer {
  /** The item's URL on that server: `{httpUrl}/files/{itemId}`. */
  readonly url: string;
  /** A read token for the item on that server, sent as `Authorization: Bearer`. */
  readonly token: string;
}
/** One range of an item in a `digest` request: this server's own, or read from `peers[peer]`. */
export interface DigestSource {
  readonly start: number;
  readonly end: number;
  /** Index into `peers`; absent: the range is (or will be) stored on this server. */
  readonly peer?: number;
}
/**
 * digest: compute the SHA-256 of a whole item split across servers, reading the ranges in order,
 * each once it is stored (from this server's store or from a peer, over HTTP with `Prefer:
 * no-demand`), and answer `digested`. A later `digest` for the same item replaces this one.
 */
export interface DigestMessage {
  readonly type: 'digest';
  readonly itemId: string;
  readonly size: number;
  readonly peers: readonly DigestPeer[];
  /**
   * Sorted and contiguous, from `from.offset` (0 without `from`) to `size`, or to an earlier
   * multiple of 64: then the answer is the state there instead of the item's SHA-256.
   */
  readonly sources: readonly DigestSource[];
  /** Continue from this state (the sources start at its `offset`); absent: from the first byte. */
  readonly from?: DigestState;
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
/** relay-open: a browser asks to connect through the relay; answer `relay-accept` or `relay-refuse`. */
export interface RelayOpenMessage {
  readonly type: 'relay-open';
  /** The channel number, 1..2^32−1, never reused on this link. */
  readonly channel: number;
  /** The `Sec-WebSocket-Protocol` tokens the browser offered, in its order. */
  readonly protocols: readonly string[];
  /** The browser's IP address as the control server sees it. */
  readonly remote: string;
  /** The browser's `Origin` header, when it sent one. */
  readonly origin?: string;
}
/** relay-accept: the upload server takes the channel with this subprotocol (empty: none). */
export interface RelayAcceptMessage {
  readonly type: 'relay-accept';
  readonly channel: number;
  /** One of the offered tokens, or `''` to complete the upgrade without a subprotocol. */
  readonly protocol: string;
}
/** relay-refuse: the upload server refuses the channel; the browser gets this HTTP status. */
export interface RelayRefuseMessage {
  readonly type: 'relay-refuse';
  readonly channel: number;
  /** HTTP status, 400..599 (403 origin not allowed, 429 too many connections, 503 closing). */
  readonly status: number;
}
/** relay-close: one side of a channel closed (either direction). */
export interface RelayCloseMessage {
  readonly type: 'relay-close';
  readonly channel: number;
  /** WebSocket close code, 1000..4999; 1005 no code, 1006 closed without a close frame. */
  readonly code: number;
  /** Close reason, at most 123 bytes of UTF-8. */
  readonly reason: string;
}
/** relay-pause / relay-resume: the upload server stops (or starts again) reading a channel. */
export interface RelayFlowMessage {
  readonly type: 'relay-pause' | 'relay-resume';
  readonly channel: number;
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

/** Relay messages an upload server sends. */
export type RelayClientMessage =
  RelayAcceptMessage | RelayRefuseMessage | RelayCloseMessage | RelayFlowMessage;
/** Relay messages the control server sends. */
export type RelayServerMessage = RelayOpenMessage | RelayCloseMessage;

/** Messages an upload server sends on its registry link. */
export type RegistryClientMessage =
  | RegisterMessage
  | HeartbeatMessage
  | StoredMessage
  | DemandMessage
  | DigestedMessage
  | RelayClientMessage;
/** Messages the control server sends on a registry link. */
export type RegistryServerMessage =
  RegisteredMessage | RegistryErrorMessage | DigestMessage | RelayServerMessage;

/**
 * Largest browser message on a relay channel when `register` names no `maxMessage`: a `dup/2`
 * DATA frame of the default 1 MiB chunk.
 */
export const DEFAULT_RELAY_MAX_MESSAGE = 1024 * 1024 + 17;
/**
 * Largest message on the registry link from an upload server, in bytes: 1 MiB. A relayed server's
 * messages to its browsers (relay frames of `RELAY_HEADER_BYTES` and a `dup/2` frame) stay within it.
 */
export const MAX_REGISTRY_MESSAGE = 1024 * 1024;
/** Most peers one `digest` request names. */
export const MAX_DIGEST_PEERS = 64;
/** Largest `maxMessage` a server may register: 64 MiB. */
export const MAX_RELAY_MESSAGE = 64 * 1024 * 1024;
/** Bytes of a relay frame before its payload: `u32` channel, `u8` kind. */
export const RELAY_HEADER_BYTES = 5;
/** Largest relay channel number. */
export const MAX_RELAY_CHANNEL = 0xffff_ffff;
/** Close code of relayed browser connections when the upload server's link is lost. */
export const RELAY_LINK_LOST = CLOSE.RELAY_LINK_LOST;

/** What a relay frame carries: the WebSocket opcode of the browser-side message. */
export const RELAY_KIND = {
  TEXT: 0x01,
  BINARY: 0x02,
  PING: 0x09,
  PONG: 0x0a,
} as const;
/** A relay frame kind byte. */
export type RelayKind = (typeof RELAY_KIND)[keyof typeof RELAY_KIND];

/** One WebSocket message (or ping, pong) of a relay channel. */
export interface RelayFrame {
  /** The channel, 1..2^32−1. */
  readonly channel: number;
  readonly kind: RelayKind;
  /** The message's bytes (UTF-8 for text); at most 125 for ping and pong. */
  readonly payload: Uint8Array;
}

const KINDS: ReadonlySet<number> = new Set(Object.values(RELAY_KIND));

/**
 * Encodes a relay frame: `u32` channel (big-endian), `u8` kind, then the payload. Sent as one
 * binary WebSocket message on the registry link.
 * @param frame the frame
 * @throws {ProtocolError} `frame-invalid-field` for a channel out of 1..2^32−1 or an unknown kind,
 *   `frame-too-large` for a ping or pong over 125 bytes
 */
export function encodeRelayFrame(frame: RelayFrame): Uint8Array {
  checkRelayFrame(frame.channel, frame.kind, frame.payload.length);
  const out = new Uint8Array(RELAY_HEADER_BYTES + frame.payload.length);
  writeRelayHeader(out, frame.channel, frame.kind);
  out.set(frame.payload, RELAY_HEADER_BYTES);
  return out;
}

/**
 * Writes the 5-byte header of a relay frame at the start of `into` (so a caller can put the
 * payload after it without another copy).
 * @param into at least {@link RELAY_HEADER_BYTES} bytes
 * @param channel 1..2^32−1
 * @param kind a {@link RELAY_KIND}
 */
export function writeRelayHeader(into: Uint8Array, channel: number, kind: RelayKind): void {
  checkRelayFrame(channel, kind, 0);
  const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
  view.setUint32(0, channel);
  view.setUint8(4, kind);
}

/**
 * Decodes a relay frame. The payload is a view into `bytes`, not a copy.
 * @param bytes one binary WebSocket message of the registry link
 * @throws {ProtocolError} `frame-truncated` under 5 bytes, `frame-invalid-field` for channel 0 or an
 *   unknown kind, `frame-too-large` for a ping or pong over 125 bytes
 */
export function decodeRelayFrame(bytes: Uint8Array): RelayFrame {
  if (bytes.length < RELAY_HEADER_BYTES)
    throw new ProtocolError(
      'frame-truncated',
      `a relay frame has at least ${RELAY_HEADER_BYTES} bytes`,
    );
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const channel = view.getUint32(0);
  const kind = view.getUint8(4);
  checkRelayFrame(channel, kind, bytes.length - RELAY_HEADER_BYTES);
  return {
    channel,
    kind: kind as RelayKind,
    payload: bytes.subarray(RELAY_HEADER_BYTES),
  };
}

function checkRelayFrame(channel: number, kind: number, length: number): void {
  if (!Number.isInteger(channel) || channel < 1 || channel > MAX_RELAY_CHANNEL)
    throw new ProtocolError('frame-invalid-field', 'relay channel must be 1..2^32-1');
  if (!KINDS.has(kind))
    throw new ProtocolError('frame-invalid-field', `unknown relay frame kind ${kind}`);
  if ((kind === RELAY_KIND.PING || kind === RELAY_KIND.PONG) && length > 125)
    throw new ProtocolError('frame-too-large', 'a relayed ping or pong carries at most 125 bytes');
}

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
      const peerUrl = optStr(o, 'peerUrl', 2048);
      if (peerUrl !== undefined && !/^https?:\/\//.test(peerUrl))
        bad('peerUrl must be an http: or https: URL');
      const port = o['port'] === undefined ? undefined : num(o, 'port', 1, 65535);
      if (port !== undefined && !Number.isInteger(port)) bad('port must be an integer');
      const maxItemSize = o['maxItemSize'] === undefined ? undefined : int(o, 'maxItemSize');
      const relay = o['relay'] === undefined ? undefined : bool(o, 'relay');
      if (relay && (url !== undefined || port !== undefined))
        bad('a relayed server sends no url, httpUrl or port');
      const maxMessage =
        o['maxMessage'] === undefined ? undefined : num(o, 'maxMessage', 1, MAX_RELAY_MESSAGE);
      if (maxMessage !== undefined && !Number.isInteger(maxMessage))
        bad('maxMessage must be an integer');
      const digestSteps = o['digestSteps'] === undefined ? undefined : bool(o, 'digestSteps');
      return {
        type: 'register',
        token: str(o, 'token', 1, MAX_TOKEN_BYTES),
        id: id(o, 'id'),
        protocols: protocols(o),
        ...(url === undefined ? {} : { url }),
        ...(httpUrl === undefined ? {} : { httpUrl }),
        ...(port === undefined ? {} : { port }),
        ...(peerUrl === undefined ? {} : { peerUrl }),
        ...(maxItemSize === undefined ? {} : { maxItemSize }),
        ...(relay === undefined ? {} : { relay }),
        ...(maxMessage === undefined ? {} : { maxMessage }),
        ...(digestSteps === undefined ? {} : { digestSteps }),
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
    case 'digested': {
      const itemId = id(o, 'itemId');
      if (o['sha256'] !== undefined) return { type: 'digested', itemId, sha256: sha(o, 'sha256') };
      if (o['state'] !== undefined)
        return { type: 'digested', itemId, state: digestState(obj(o['state'], 'state'), 'state') };
      const code = o['code'];
      if (code !== 'unavailable' && code !== 'timeout' && code !== 'storage-failed')
        bad('a digested message has sha256, state, or code unavailable, timeout or storage-failed');
      return { type: 'digested', itemId, code, message: str(o, 'message', 0, 1024) };
    }
    case 'relay-accept': {
      const protocol = str(o, 'protocol', 0, 64);
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]*$/.test(protocol))
        bad('protocol must be a Sec-WebSocket-Protocol token');
      return { type: 'relay-accept', channel: channel(o), protocol };
    }
    case 'relay-refuse': {
      const status = num(o, 'status', 400, 599);
      if (!Number.isInteger(status)) bad('status must be an integer');
      return { type: 'relay-refuse', channel: channel(o), status };
    }
    case 'relay-close':
      return relayClose(o);
    case 'relay-pause':
    case 'relay-resume':
      return { type: o['type'], channel: channel(o) };
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
    case 'digest': {
      const size = int(o, 'size');
      const peers = arr(o, 'peers', MAX_DIGEST_PEERS).map((v, i) => {
        const p = obj(v, `peers[${i}]`);
        const url = str(p, 'url', 1, 2048);
        if (!/^https?:\/\//.test(url)) bad(`peers[${i}].url must be an http: or https: URL`);
        return { url, token: str(p, 'token', 1, MAX_TOKEN_BYTES) };
      });
      const from =
        o['from'] === undefined ? undefined : digestState(obj(o['from'], 'from'), 'from');
      if (from && from.offset > size) bad('from.offset is past the item');
      let cursor = from?.offset ?? 0;
      const sources = arr(o, 'sources', MAX_RANGES_PER_FRAME).map((v, i) => {
        const r = obj(v, `sources[${i}]`);
        const start = int(r, 'start');
        const end = int(r, 'end');
        if (start !== cursor) bad(`sources[${i}] must start where the one before ends`);
        if (end <= start) bad(`sources[${i}]: end must be greater than start`);
        cursor = end;
        if (r['peer'] === undefined) return { start, end };
        const peer = int(r, 'peer');
        if (peer >= peers.length) bad(`sources[${i}].peer names no peer`);
        return { start, end, peer };
      });
      if (sources.length === 0) bad('sources is empty');
      if (cursor > size) bad('sources end past the item');
      if (cursor < size && cursor % 64 !== 0)
        bad("sources must end at the item's size or at a multiple of 64");
      return {
        type: 'digest',
        itemId: id(o, 'itemId'),
        size,
        peers,
        sources,
        ...(from === undefined ? {} : { from }),
      };
    }
    case 'relay-open': {
      const offered = arr(o, 'protocols', 32).map((p, i) => {
        if (typeof p !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/.test(p))
          bad(`protocols[${i}] must be a Sec-WebSocket-Protocol token`);
        return p;
      });
      const origin = optStr(o, 'origin', 2048);
      return {
        type: 'relay-open',
        channel: channel(o),
        protocols: offered,
        remote: str(o, 'remote', 0, 64),
        ...(origin === undefined ? {} : { origin }),
      };
    }
    case 'relay-close':
      return relayClose(o);
    default:
      return bad(`unknown registry message type ${JSON.stringify(o['type'])}`);
  }
}

function bool(o: Obj, field: string): boolean {
  const v = o[field];
  if (typeof v !== 'boolean') bad(`${field} must be a boolean`);
  return v;
}

function channel(o: Obj): number {
  const v = num(o, 'channel', 1, MAX_RELAY_CHANNEL);
  if (!Number.isInteger(v)) bad('channel must be an integer');
  return v;
}

function relayClose(o: Obj): RelayCloseMessage {
  const code = num(o, 'code', 1000, 4999);
  if (!Number.isInteger(code)) bad('code must be an integer');
  const reason = str(o, 'reason', 0, 123);
  if (utf8Length(reason) > 123) bad('reason must have at most 123 bytes of UTF-8');
  return { type: 'relay-close', channel: channel(o), code, reason };
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

/** A {@link DigestState}: `offset` a multiple of 64, `hash` 64 lowercase hex digits. */
function digestState(o: Obj, field: string): DigestState {
  const offset = int(o, 'offset');
  if (offset % 64 !== 0) bad(`${field}.offset must be a multiple of 64`);
  return { offset, hash: sha(o, 'hash') };
}
