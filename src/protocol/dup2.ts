/**
 * Codec of the Data Upload Protocol, version 2 (`dup/2`): binary WebSocket frames.
 * Layouts are in `docs/protocol.md`; all integers are big-endian, `u64` values are limited to
 * `Number.MAX_SAFE_INTEGER`.
 */
import {
  FRAME,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_ITEM_ID_LENGTH,
  MAX_RANGES_PER_FRAME,
  MAX_TOKEN_BYTES,
  MAX_UPLOAD_ID,
  SHA256_BYTES,
  WIRE_ERROR,
  type WireErrorCode,
  ITEM_ID_PATTERN,
  DEFAULT_MAX_CHUNK,
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
} from './constants.js';
import { ProtocolError } from './errors.js';
import type { ByteRange } from './ranges.js';
import { truncateUtf8, utf8Length } from './utf8.js';

/** HELLO: the first frame a client sends; carries its token. */
export interface HelloFrame {
  readonly type: 'hello';
  readonly token: string;
}
/** OPEN: starts or resumes the upload of an item under a client-chosen upload id. */
export interface OpenFrame {
  readonly type: 'open';
  readonly uploadId: number;
  readonly itemId: string;
  readonly size: number;
  /** Media type of the item (at most 255 bytes; empty when unknown). Kept from the first OPEN. */
  readonly mime: string;
  /** File name of the item (at most 1024 bytes; may be empty). Kept from the first OPEN. */
  readonly name: string;
}
/** DATA: bytes of an open upload at an offset, with the CRC-32C of the payload. */
export interface DataFrame {
  readonly type: 'data';
  readonly uploadId: number;
  readonly offset: number;
  readonly crc32c: number;
  readonly payload: Uint8Array;
}
/**
 * FINISH: the client has sent every byte. With `sha256`, the server verifies the SHA-256 of the
 * whole item against it; without (a 5-byte frame), the server computes the SHA-256 of what it
 * stores and reports it in COMPLETE.
 */
export interface FinishFrame {
  readonly type: 'finish';
  readonly uploadId: number;
  readonly sha256?: Uint8Array | undefined;
}
/** CANCEL: the client gives up an upload; the server forgets the upload id. */
export interface CancelFrame {
  readonly type: 'cancel';
  readonly uploadId: number;
}
/** PING: asks for a PONG echoing `time`, for round-trip measurement. */
export interface PingFrame {
  readonly type: 'ping';
  readonly time: number;
}
/**
 * READ: asks for the stored bytes `start..end` (half-open) of an item, under a client-chosen id
 * from the same space as upload ids. Answered by BYTES frames covering the range in order, or by
 * an ERROR with the id.
 */
export interface ReadFrame {
  readonly type: 'read';
  readonly readId: number;
  readonly itemId: string;
  readonly start: number;
  readonly end: number;
}
/** WELCOME: the server accepted the token; states its id and limits. */
export interface WelcomeFrame {
  readonly type: 'welcome';
  readonly serverId: string;
  readonly maxChunk: number;
  readonly window: number;
  readonly maxItemSize: number;
}
/** OPENED: the upload id is bound; `ranges` are the bytes the server already stores. */
export interface OpenedFrame {
  readonly type: 'opened';
  readonly uploadId: number;
  readonly complete: boolean;
  readonly ranges: readonly ByteRange[];
}
/** ACK: the bytes `start..end` of the upload are stored. */
export interface AckFrame {
  readonly type: 'ack';
  readonly uploadId: number;
  readonly start: number;
  readonly end: number;
}
/**
 * COMPLETE: the item is whole; `sha256` is its SHA-256, verified against FINISH's or, after a
 * FINISH without one, computed by the server.
 */
export interface CompleteFrame {
  readonly type: 'complete';
  readonly uploadId: number;
  readonly sha256: Uint8Array;
}
/** PONG: answer to a PING. */
export interface PongFrame {
  readonly type: 'pong';
  readonly time: number;
  readonly serverTime: number;
}
/** BYTES: stored bytes of an item for a READ, at an offset, with the CRC-32C of the payload. */
export interface BytesFrame {
  readonly type: 'bytes';
  readonly readId: number;
  readonly offset: number;
  readonly crc32c: number;
  readonly payload: Uint8Array;
}
/**
 * ERROR: something failed; `uploadId` is the upload or read id it ends, 0 for the connection as a
 * whole.
 */
export interface ErrorFrame {
  readonly type: 'error';
  readonly uploadId: number;
  readonly code: WireErrorCode;
  readonly message: string;
}

/** Frames a client sends. */
export type Dup2ClientFrame =
  HelloFrame | OpenFrame | DataFrame | FinishFrame | CancelFrame | PingFrame | ReadFrame;
/** Frames a server sends. */
export type Dup2ServerFrame =
  WelcomeFrame | OpenedFrame | AckFrame | CompleteFrame | PongFrame | ErrorFrame | BytesFrame;
/** Any dup/2 frame. */
export type Dup2Frame = Dup2ClientFrame | Dup2ServerFrame;

/** Limits checked while decoding. */
export interface Dup2DecodeLimits {
  /** Largest DATA (or BYTES) payload accepted. @default DEFAULT_MAX_CHUNK (1 MiB) */
  readonly maxChunk?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const WIRE_ERROR_BY_NUMBER = new Map<number, WireErrorCode>(
  Object.entries(WIRE_ERROR).map(([k, v]) => [v, k as WireErrorCode]),
);
const TWO_32 = 0x1_0000_0000;

/** Bytes of the DATA header before the payload. */
export const DATA_HEADER_BYTES = 1 + 4 + 8 + 4;

/**
 * Encodes a dup/2 frame.
 * @param frame the frame; its fields must be within the documented ranges
 * @param target a buffer to write the frame into when it is large enough, so a sender can reuse one
 *   buffer for every DATA frame; the result is then a view of it, valid until it is written again
 * @returns the bytes to send as one binary WebSocket message
 * @throws {ProtocolError} `frame-invalid-field` or `frame-too-large` when a field is out of range
 */
export function encodeDup2Frame(frame: Dup2Frame, target?: Uint8Array): Uint8Array {
  const size = frameSize(frame);
  const w = new Writer(size, target !== undefined && target.length >= size ? target : undefined);
  switch (frame.type) {
    case 'hello':
      w.u8(FRAME.HELLO);
      w.string16(frame.token, MAX_TOKEN_BYTES, 'token', 1);
      break;
    case 'open':
      w.u8(FRAME.OPEN);
      w.uploadId(frame.uploadId);
      w.u64(frame.size, 'size');
      w.string16(checkItemId(frame.itemId), MAX_ITEM_ID_LENGTH, 'itemId', 1);
      w.string16(frame.mime, MAX_MIME_BYTES, 'mime', 0);
      w.string16(frame.name, MAX_NAME_BYTES, 'name', 0);
      break;
    case 'data':
    case 'bytes': {
      // One layout: DATA from a client, BYTES (for a READ) from a server.
      const data = frame.type === 'data';
      if (frame.payload.length === 0) invalid(`${data ? 'DATA' : 'BYTES'} payload is empty`);
      w.u8(data ? FRAME.DATA : FRAME.BYTES);
      w.uploadId(data ? frame.uploadId : frame.readId);
      w.u64(frame.offset, 'offset');
      if (frame.offset + frame.payload.length > Number.MAX_SAFE_INTEGER) invalid('offset + length');
      w.u32(frame.crc32c, 'crc32c');
      w.bytes(frame.payload);
      break;
    }
    case 'finish':
      w.u8(FRAME.FINISH);
      w.uploadId(frame.uploadId);
      if (frame.sha256 !== undefined) w.digest(frame.sha256);
      break;
    case 'cancel':
      w.u8(FRAME.CANCEL);
      w.uploadId(frame.uploadId);
      break;
    case 'ping':
      w.u8(FRAME.PING);
      w.f64(frame.time, 'time');
      break;
    case 'read':
      w.u8(FRAME.READ);
      w.uploadId(frame.readId);
      w.u64(frame.start, 'start');
      w.u64(frame.end, 'end');
      if (!(frame.end > frame.start)) invalid('READ end must be greater than start');
      w.string16(checkItemId(frame.itemId), MAX_ITEM_ID_LENGTH, 'itemId', 1);
      break;
    case 'welcome':
      w.u8(FRAME.WELCOME);
      w.u32(frame.maxChunk, 'maxChunk', 1);
      w.u32(frame.window, 'window', 1);
      w.u64(frame.maxItemSize, 'maxItemSize');
      w.string16(frame.serverId, MAX_ITEM_ID_LENGTH, 'serverId', 1);
      break;
    case 'opened':
      w.u8(FRAME.OPENED);
      w.uploadId(frame.uploadId);
      w.u8(frame.complete ? 1 : 0);
      if (frame.ranges.length > MAX_RANGES_PER_FRAME) tooLarge('OPENED has too many ranges');
      w.u16(frame.ranges.length);
      for (const r of frame.ranges) {
        if (!(r.end > r.start)) invalid('range end must be greater than start');
        w.u64(r.start, 'range start');
        w.u64(r.end, 'range end');
      }
      break;
    case 'ack':
      w.u8(FRAME.ACK);
      w.uploadId(frame.uploadId);
      if (!(frame.end > frame.start)) invalid('ACK end must be greater than start');
      w.u64(frame.start, 'start');
      w.u64(frame.end, 'end');
      break;
    case 'complete':
      w.u8(FRAME.COMPLETE);
      w.uploadId(frame.uploadId);
      w.digest(frame.sha256);
      break;
    case 'pong':
      w.u8(FRAME.PONG);
      w.f64(frame.time, 'time');
      w.f64(frame.serverTime, 'serverTime');
      break;
    case 'error': {
      const code = WIRE_ERROR[frame.code];
      if (code === undefined) invalid(`unknown error code ${String(frame.code)}`);
      w.u8(FRAME.ERROR);
      w.u32(frame.uploadId, 'uploadId');
      w.u16(code);
      w.string16(
        truncateUtf8(frame.message, MAX_ERROR_MESSAGE_BYTES),
        MAX_ERROR_MESSAGE_BYTES,
        'message',
        0,
      );
      break;
    }
    default:
      invalid(`unknown frame type ${String((frame as { type: unknown }).type)}`);
  }
  return w.done();
}

/**
 * Decodes a frame that a client sent (what a server receives).
 * @param bytes one binary WebSocket message
 * @param limits limits to enforce
 * @throws {ProtocolError} for anything that is not a valid client frame
 */
export function decodeDup2ClientFrame(
  bytes: Uint8Array,
  limits?: Dup2DecodeLimits,
): Dup2ClientFrame {
  const frame = decodeDup2Frame(bytes, limits);
  if (bytes[0]! & 0x80)
    throw new ProtocolError('frame-unknown-type', `type 0x${hex(bytes[0]!)} is a server frame`);
  return frame as Dup2ClientFrame;
}

/** A client frame decoded from a message's fragments, and a DATA payload's pieces. */
export interface Dup2ClientFragments {
  /** The frame; a DATA frame's `payload` here is only its first piece. */
  readonly frame: Dup2ClientFrame;
  /** A DATA frame's whole payload, in pieces, in order; the first is `frame.payload`. */
  readonly parts?: readonly Uint8Array[];
}

/**
 * Decodes a client's message that came as several WebSocket frames, from their payloads in order
 * (a receiver's fragments), without joining a DATA payload: browsers send a large message as many
 * frames, and joining them is a copy of every byte. A DATA frame whose header is whole in the
 * first fragment comes back with its payload's pieces in `parts`, checked as
 * {@link decodeDup2ClientFrame} checks a whole payload; any other message is joined and decoded
 * by it.
 * @param fragments the payloads of one message's WebSocket frames, in order
 * @param limits limits to enforce (`maxChunk` bounds the whole DATA payload)
 * @throws {ProtocolError} for anything that is not a valid client frame
 */
export function decodeDup2ClientFragments(
  fragments: readonly Uint8Array[],
  limits: Dup2DecodeLimits = {},
): Dup2ClientFragments {
  const first = fragments[0];
  if (
    fragments.length < 2 ||
    first === undefined ||
    first[0] !== FRAME.DATA ||
    first.length <= DATA_HEADER_BYTES
  )
    return { frame: decodeDup2ClientFrame(joined(fragments), limits) };
  let length = first.length - DATA_HEADER_BYTES;
  for (let i = 1; i < fragments.length; i++) length += fragments[i]!.length;
  const max = limits.maxChunk ?? DEFAULT_MAX_CHUNK;
  if (length > max) tooLarge(`DATA payload of ${length} bytes is over ${max}`);
  const frame = decodeDup2ClientFrame(first, limits);
  if (frame.type !== 'data') invalid('not a DATA frame');
  if (frame.offset + length > Number.MAX_SAFE_INTEGER) invalid('offset + length');
  return { frame, parts: [frame.payload, ...fragments.slice(1)] };
}

/** The fragments as one buffer (the only one itself). */
function joined(fragments: readonly Uint8Array[]): Uint8Array {
  if (fragments.length === 1) return fragments[0]!;
  let length = 0;
  for (const f of fragments) length += f.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const f of fragments) {
    out.set(f, at);
    at += f.length;
  }
  return out;
}

/**
 * Decodes a frame that a server sent (what a client receives).
 * @param bytes one binary WebSocket message
 * @param limits limits to enforce (`maxChunk` bounds BYTES payloads)
 * @throws {ProtocolError} for anything that is not a valid server frame
 */
export function decodeDup2ServerFrame(
  bytes: Uint8Array,
  limits?: Dup2DecodeLimits,
): Dup2ServerFrame {
  const frame = decodeDup2Frame(bytes, limits);
  if (!(bytes[0]! & 0x80))
    throw new ProtocolError('frame-unknown-type', `type 0x${hex(bytes[0]!)} is a client frame`);
  return frame as Dup2ServerFrame;
}

/**
 * Decodes any dup/2 frame.
 * @param bytes one binary WebSocket message
 * @param limits limits to enforce
 * @throws {ProtocolError} with a documented code; never any other error
 */
export function decodeDup2Frame(bytes: Uint8Array, limits: Dup2DecodeLimits = {}): Dup2Frame {
  if (bytes.length === 0) throw new ProtocolError('frame-empty', 'empty frame');
  const r = new Reader(bytes);
  const type = r.u8();
  let frame: Dup2Frame;
  switch (type) {
    case FRAME.HELLO:
      frame = { type: 'hello', token: r.string16(MAX_TOKEN_BYTES, 'token', 1) };
      break;
    case FRAME.OPEN: {
      const uploadId = r.uploadId();
      const size = r.u64('size');
      const itemId = r.string16(MAX_ITEM_ID_LENGTH, 'itemId', 1);
      if (!ITEM_ID_PATTERN.test(itemId)) invalid('itemId has characters outside [A-Za-z0-9_-]');
      const mime = r.string16(MAX_MIME_BYTES, 'mime', 0);
      const name = r.string16(MAX_NAME_BYTES, 'name', 0);
      frame = { type: 'open', uploadId, itemId, size, mime, name };
      break;
    }
    case FRAME.DATA:
    case FRAME.BYTES: {
      const name = type === FRAME.DATA ? 'DATA' : 'BYTES';
      const id = r.uploadId();
      const offset = r.u64('offset');
      const crc = r.u32();
      const payload = r.rest();
      const max = limits.maxChunk ?? DEFAULT_MAX_CHUNK;
      if (payload.length === 0) invalid(`${name} payload is empty`);
      if (payload.length > max)
        tooLarge(`${name} payload of ${payload.length} bytes is over ${max}`);
      if (offset + payload.length > Number.MAX_SAFE_INTEGER) invalid('offset + length');
      return type === FRAME.DATA
        ? { type: 'data', uploadId: id, offset, crc32c: crc, payload }
        : { type: 'bytes', readId: id, offset, crc32c: crc, payload };
    }
    case FRAME.READ: {
      const readId = r.uploadId();
      const start = r.u64('start');
      const end = r.u64('end');
      if (!(end > start)) invalid('READ end must be greater than start');
      const itemId = r.string16(MAX_ITEM_ID_LENGTH, 'itemId', 1);
      if (!ITEM_ID_PATTERN.test(itemId)) invalid('itemId has characters outside [A-Za-z0-9_-]');
      frame = { type: 'read', readId, itemId, start, end };
      break;
    }
    case FRAME.FINISH: {
      // 5 bytes: no digest, the server computes it; else 37, with the digest.
      const uploadId = r.uploadId();
      frame = r.atEnd()
        ? { type: 'finish', uploadId }
        : { type: 'finish', uploadId, sha256: r.digest() };
      break;
    }
    case FRAME.CANCEL:
      frame = { type: 'cancel', uploadId: r.uploadId() };
      break;
    case FRAME.PING:
      frame = { type: 'ping', time: r.f64('time') };
      break;
    case FRAME.WELCOME: {
      const maxChunk = r.u32();
      const window = r.u32();
      const maxItemSize = r.u64('maxItemSize');
      const serverId = r.string16(MAX_ITEM_ID_LENGTH, 'serverId', 1);
      if (maxChunk === 0 || window === 0) invalid('maxChunk and window must be positive');
      frame = { type: 'welcome', serverId, maxChunk, window, maxItemSize };
      break;
    }
    case FRAME.OPENED: {
      const uploadId = r.uploadId();
      const flags = r.u8();
      if (flags > 1) invalid('unknown OPENED flags');
      const count = r.u16();
      if (count > MAX_RANGES_PER_FRAME) tooLarge('OPENED has too many ranges');
      const ranges: ByteRange[] = [];
      for (let i = 0; i < count; i++) {
        const start = r.u64('range start');
        const end = r.u64('range end');
        if (!(end > start)) invalid('range end must be greater than start');
        ranges.push({ start, end });
      }
      frame = { type: 'opened', uploadId, complete: flags === 1, ranges };
      break;
    }
    case FRAME.ACK: {
      const uploadId = r.uploadId();
      const start = r.u64('start');
      const end = r.u64('end');
      if (!(end > start)) invalid('ACK end must be greater than start');
      frame = { type: 'ack', uploadId, start, end };
      break;
    }
    case FRAME.COMPLETE:
      frame = { type: 'complete', uploadId: r.uploadId(), sha256: r.digest() };
      break;
    case FRAME.PONG:
      frame = { type: 'pong', time: r.f64('time'), serverTime: r.f64('serverTime') };
      break;
    case FRAME.ERROR: {
      const uploadId = r.u32();
      const number = r.u16();
      const code = WIRE_ERROR_BY_NUMBER.get(number);
      if (code === undefined) invalid(`unknown error code ${number}`);
      const message = r.string16(MAX_ERROR_MESSAGE_BYTES, 'message', 0);
      frame = { type: 'error', uploadId, code, message };
      break;
    }
    default:
      throw new ProtocolError('frame-unknown-type', `unknown frame type 0x${hex(type)}`);
  }
  r.end();
  return frame;
}

function checkItemId(itemId: string): string {
  if (!ITEM_ID_PATTERN.test(itemId)) invalid('itemId must match [A-Za-z0-9_-]{1,128}');
  return itemId;
}

function frameSize(frame: Dup2Frame): number {
  switch (frame.type) {
    case 'hello':
      return 3 + utf8Length(frame.token);
    case 'open':
      return (
        1 + 4 + 8 + 6 + utf8Length(frame.itemId) + utf8Length(frame.mime) + utf8Length(frame.name)
      );
    case 'data':
    case 'bytes':
      return DATA_HEADER_BYTES + frame.payload.length;
    case 'read':
      return 1 + 4 + 8 + 8 + 2 + utf8Length(frame.itemId);
    case 'finish':
      return frame.sha256 === undefined ? 5 : 1 + 4 + SHA256_BYTES;
    case 'complete':
      return 1 + 4 + SHA256_BYTES;
    case 'cancel':
      return 5;
    case 'ping':
      return 9;
    case 'welcome':
      return 1 + 4 + 4 + 8 + 2 + utf8Length(frame.serverId);
    case 'opened':
      return 1 + 4 + 1 + 2 + 16 * frame.ranges.length;
    case 'ack':
      return 1 + 4 + 16;
    case 'pong':
      return 17;
    case 'error':
      return 1 + 4 + 2 + 2 + MAX_ERROR_MESSAGE_BYTES;
    default:
      return 0;
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

function invalid(message: string): never {
  throw new ProtocolError('frame-invalid-field', message);
}

function tooLarge(message: string): never {
  throw new ProtocolError('frame-too-large', message);
}

/** Sequential big-endian writer into a buffer sized up front. */
class Writer {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #pos = 0;

  constructor(size: number, target?: Uint8Array) {
    this.#buf = target ? target.subarray(0, size) : new Uint8Array(size);
    this.#view = new DataView(this.#buf.buffer, this.#buf.byteOffset, size);
  }

  u8(v: number): void {
    this.#view.setUint8(this.#pos, v);
    this.#pos += 1;
  }

  u16(v: number): void {
    this.#view.setUint16(this.#pos, v);
    this.#pos += 2;
  }

  u32(v: number, field: string, min = 0): void {
    if (!Number.isInteger(v) || v < min || v > 0xffff_ffff)
      invalid(`${field} must be an integer in ${min}..2^32-1`);
    this.#view.setUint32(this.#pos, v);
    this.#pos += 4;
  }

  uploadId(v: number): void {
    if (!Number.isInteger(v) || v < 1 || v > MAX_UPLOAD_ID)
      invalid('uploadId must be an integer in 1..2^32-1');
    this.u32(v, 'uploadId');
  }

  u64(v: number, field: string): void {
    if (!Number.isSafeInteger(v) || v < 0) invalid(`${field} must be a safe non-negative integer`);
    this.#view.setUint32(this.#pos, Math.floor(v / TWO_32));
    this.#view.setUint32(this.#pos + 4, v % TWO_32);
    this.#pos += 8;
  }

  f64(v: number, field: string): void {
    if (!Number.isFinite(v)) invalid(`${field} must be finite`);
    this.#view.setFloat64(this.#pos, v);
    this.#pos += 8;
  }

  bytes(b: Uint8Array): void {
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  digest(b: Uint8Array): void {
    if (b.length !== SHA256_BYTES) invalid('sha256 must be 32 bytes');
    this.bytes(b);
  }

  string16(s: string, maxBytes: number, field: string, minBytes: number): void {
    const b = encoder.encode(s);
    if (b.length > maxBytes) tooLarge(`${field} is over ${maxBytes} bytes`);
    if (b.length < minBytes) invalid(`${field} is empty`);
    this.u16(b.length);
    this.bytes(b);
  }

  done(): Uint8Array {
    return this.#pos === this.#buf.length ? this.#buf : this.#buf.slice(0, this.#pos);
  }
}

/** Sequential big-endian reader that throws `frame-truncated` instead of reading past the end. */
class Reader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #pos = 0;

  constructor(buf: Uint8Array) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  #need(n: number): void {
    if (this.#pos + n > this.#buf.length) {
      throw new ProtocolError(
        'frame-truncated',
        `frame ends at byte ${this.#buf.length}, needs ${this.#pos + n}`,
      );
    }
  }

  u8(): number {
    this.#need(1);
    return this.#view.getUint8(this.#pos++);
  }

  u16(): number {
    this.#need(2);
    const v = this.#view.getUint16(this.#pos);
    this.#pos += 2;
    return v;
  }

  u32(): number {
    this.#need(4);
    const v = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return v;
  }

  uploadId(): number {
    const v = this.u32();
    if (v === 0) invalid('uploadId 0 is reserved');
    return v;
  }

  u64(field: string): number {
    this.#need(8);
    const hi = this.#view.getUint32(this.#pos);
    const lo = this.#view.getUint32(this.#pos + 4);
    this.#pos += 8;
    if (hi > 0x1f_ffff) invalid(`${field} is over 2^53-1`);
    return hi * TWO_32 + lo;
  }

  f64(field: string): number {
    this.#need(8);
    const v = this.#view.getFloat64(this.#pos);
    this.#pos += 8;
    if (!Number.isFinite(v)) invalid(`${field} must be finite`);
    return v;
  }

  digest(): Uint8Array {
    this.#need(SHA256_BYTES);
    const d = this.#buf.slice(this.#pos, this.#pos + SHA256_BYTES);
    this.#pos += SHA256_BYTES;
    return d;
  }

  string16(maxBytes: number, field: string, minBytes: number): string {
    const len = this.u16();
    if (len > maxBytes) tooLarge(`${field} is over ${maxBytes} bytes`);
    if (len < minBytes) invalid(`${field} is empty`);
    this.#need(len);
    const bytes = this.#buf.subarray(this.#pos, this.#pos + len);
    this.#pos += len;
    try {
      return decoder.decode(bytes);
    } catch {
      return invalid(`${field} is not valid UTF-8`);
    }
  }

  atEnd(): boolean {
    return this.#pos === this.#buf.length;
  }

  rest(): Uint8Array {
    const b = this.#buf.subarray(this.#pos);
    this.#pos = this.#buf.length;
    return b;
  }

  end(): void {
    if (this.#pos !== this.#buf.length) {
      throw new ProtocolError(
        'frame-trailing-bytes',
        `${this.#buf.length - this.#pos} bytes after the frame`,
      );
    }
  }
}
