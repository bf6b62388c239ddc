/**
 * Codec of the Data Upload Protocol, version 1 (`dup/1`): the older, simpler protocol. One upload
 * per WebSocket; JSON text frames for control, binary frames for the bytes, written where the last
 * `open` or `seek` put the cursor. No per-chunk checksum: the SHA-256 at `finish` guards the item
 * (a `finish` without one asks the server to compute it, and then nothing but the transport does).
 */
import {
  ITEM_ID_PATTERN,
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
  MAX_TOKEN_BYTES,
  WIRE_ERROR,
  type WireErrorCode,
} from './constants.js';
import { ProtocolError } from './errors.js';
import type { ByteRange } from './ranges.js';
import { utf8Length } from './utf8.js';

/** Messages a dup/1 client sends as text frames. */
export type Dup1ClientMessage =
  | { readonly type: 'hello'; readonly token: string }
  | {
      readonly type: 'open';
      readonly itemId: string;
      readonly size: number;
      readonly mime: string;
      readonly name: string;
    }
  | { readonly type: 'seek'; readonly offset: number }
  /** Without `sha256`, the server computes the item's SHA-256 and reports it in `complete`. */
  | { readonly type: 'finish'; readonly sha256?: string | undefined }
  | { readonly type: 'ping'; readonly time: number };

/** Messages a dup/1 server sends as text frames. */
export type Dup1ServerMessage =
  | {
      readonly type: 'welcome';
      readonly serverId: string;
      readonly maxChunk: number;
      readonly window: number;
      readonly maxItemSize: number;
    }
  | { readonly type: 'opened'; readonly complete: boolean; readonly ranges: readonly ByteRange[] }
  | { readonly type: 'ack'; readonly start: number; readonly end: number }
  | { readonly type: 'complete'; readonly sha256: string }
  | { readonly type: 'pong'; readonly time: number; readonly serverTime: number }
  | { readonly type: 'error'; readonly code: WireErrorCode; readonly message: string };

/** Largest dup/1 text frame, in characters. */
export const MAX_DUP1_MESSAGE_LENGTH = 16 * 1024;

/**
 * Encodes a dup/1 text message.
 * @param message a client or server message
 */
export function encodeDup1Message(message: Dup1ClientMessage | Dup1ServerMessage): string {
  // Ranges travel as [start, end] pairs.
  if (message.type === 'opened')
    return JSON.stringify({ ...message, ranges: rangesToPairs(message.ranges) });
  return JSON.stringify(message);
}

/**
 * Decodes a text frame a dup/1 client sent.
 * @throws {ProtocolError} `message-invalid-json`, `message-invalid` or `frame-too-large`
 */
export function decodeDup1ClientMessage(text: string): Dup1ClientMessage {
  const o = parse(text);
  switch (o['type']) {
    case 'hello': {
      const token = o['token'];
      if (typeof token !== 'string' || token.length === 0 || utf8Length(token) > MAX_TOKEN_BYTES)
        bad('token must be 1..8192 bytes');
      return { type: 'hello', token };
    }
    case 'open': {
      const itemId = o['itemId'];
      if (typeof itemId !== 'string' || !ITEM_ID_PATTERN.test(itemId))
        bad('itemId must match [A-Za-z0-9_-]{1,128}');
      const mime = o['mime'] ?? '';
      const name = o['name'] ?? '';
      if (typeof mime !== 'string' || utf8Length(mime) > MAX_MIME_BYTES)
        bad('mime must be at most 255 bytes');
      if (typeof name !== 'string' || utf8Length(name) > MAX_NAME_BYTES)
        bad('name must be at most 1024 bytes');
      return { type: 'open', itemId, size: int(o, 'size'), mime, name };
    }
    case 'seek':
      return { type: 'seek', offset: int(o, 'offset') };
    case 'finish': {
      // Absent: the server computes the digest.
      const sha256 = o['sha256'];
      if (sha256 === undefined) return { type: 'finish' };
      if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256))
        bad('sha256 must be 64 lowercase hex digits');
      return { type: 'finish', sha256 };
    }
    case 'ping': {
      const time = o['time'];
      if (typeof time !== 'number' || !Number.isFinite(time)) bad('time must be a number');
      return { type: 'ping', time };
    }
    default:
      return bad(`unknown dup/1 message type ${JSON.stringify(o['type'])}`);
  }
}

/**
 * Decodes a text frame a dup/1 server sent.
 * @throws {ProtocolError} `message-invalid-json`, `message-invalid` or `frame-too-large`
 */
export function decodeDup1ServerMessage(text: string): Dup1ServerMessage {
  const o = parse(text);
  switch (o['type']) {
    case 'welcome': {
      const serverId = o['serverId'];
      if (typeof serverId !== 'string' || serverId.length === 0) bad('serverId must be a string');
      return {
        type: 'welcome',
        serverId,
        maxChunk: int(o, 'maxChunk'),
        window: int(o, 'window'),
        maxItemSize: int(o, 'maxItemSize'),
      };
    }
    case 'opened': {
      const ranges = o['ranges'];
      if (!Array.isArray(ranges)) bad('ranges must be an array');
      return {
        type: 'opened',
        complete: o['complete'] === true,
        ranges: ranges.map((r: unknown) => {
          if (!Array.isArray(r) || r.length !== 2) bad('each range is [start, end]');
          const [start, end] = r as unknown[];
          if (
            !Number.isSafeInteger(start) ||
            !Number.isSafeInteger(end) ||
            (end as number) <= (start as number) ||
            (start as number) < 0
          ) {
            bad('each range is [start, end] with start < end');
          }
          return { start: start as number, end: end as number };
        }),
      };
    }
    case 'ack': {
      const start = int(o, 'start');
      const end = int(o, 'end');
      if (end <= start) bad('ack end must be greater than start');
      return { type: 'ack', start, end };
    }
    case 'complete': {
      const sha256 = o['sha256'];
      if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256))
        bad('sha256 must be 64 lowercase hex digits');
      return { type: 'complete', sha256 };
    }
    case 'pong': {
      const time = o['time'];
      const serverTime = o['serverTime'];
      if (typeof time !== 'number' || typeof serverTime !== 'number')
        bad('time and serverTime must be numbers');
      return { type: 'pong', time, serverTime };
    }
    case 'error': {
      const code = o['code'];
      const message = o['message'];
      if (typeof code !== 'string' || !(code in WIRE_ERROR)) bad('code must be a wire error code');
      if (typeof message !== 'string') bad('message must be a string');
      return { type: 'error', code: code as WireErrorCode, message };
    }
    default:
      return bad(`unknown dup/1 message type ${JSON.stringify(o['type'])}`);
  }
}

/** The ranges of an `opened` message as JSON pairs. */
export function rangesToPairs(ranges: readonly ByteRange[]): [number, number][] {
  return ranges.map((r) => [r.start, r.end]);
}

function parse(text: string): Record<string, unknown> {
  if (text.length > MAX_DUP1_MESSAGE_LENGTH)
    throw new ProtocolError('frame-too-large', 'dup/1 message over 16 KiB');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtocolError('message-invalid-json', 'dup/1 message is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ProtocolError('message-invalid-json', 'dup/1 message is not a JSON object');
  return v as Record<string, unknown>;
}

function int(o: Record<string, unknown>, field: string): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    bad(`${field} must be a non-negative integer`);
  return v;
}

function bad(message: string): never {
  throw new ProtocolError('message-invalid', message);
}
