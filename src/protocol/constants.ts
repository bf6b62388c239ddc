/**
 * Wire constants shared by the browser engine and the reference servers.
 * Everything here is part of the documented contract in `docs/protocol.md`.
 */

/** Protocol names as the `/.well-known/ws-uploader` document and the control server spell them. */
export const PROTOCOL = {
  DUP_2: 'dup/2',
  /** The older WebSocket protocol: one upload per socket, JSON control, binary data. */
  DUP_1: 'dup/1',
  /** tus 1.0.0 at `/tus/`. */
  TUS_1: 'tus/1',
  /** Plain HTTP: `POST /uploads` (multipart/form-data), `PUT`/`HEAD /uploads/{itemId}`. */
  HTTP_1: 'http/1',
} as const;
/** A data-protocol name, such as `'dup/2'`. */
export type ProtocolName = (typeof PROTOCOL)[keyof typeof PROTOCOL];

/**
 * `Sec-WebSocket-Protocol` tokens. A `/` is not allowed in that header, so each protocol
 * has a token of its own.
 */
export const SUBPROTOCOL_DUP_2 = 'ws-uploader.dup.v2';
/** `Sec-WebSocket-Protocol` token of dup/1. */
export const SUBPROTOCOL_DUP_1 = 'ws-uploader.dup.v1';
/** `Sec-WebSocket-Protocol` token of the control protocol, version 1. */
export const SUBPROTOCOL_CONTROL_1 = 'ws-uploader.control.v1';
/** `Sec-WebSocket-Protocol` token of the registry link (upload server to control server), version 1. */
export const SUBPROTOCOL_REGISTRY_1 = 'ws-uploader.registry.v1';

/** dup/2 frame types, the first byte of every binary frame. */
export const FRAME = {
  HELLO: 0x01,
  OPEN: 0x02,
  DATA: 0x03,
  FINISH: 0x04,
  CANCEL: 0x05,
  PING: 0x06,
  READ: 0x07,
  WELCOME: 0x81,
  OPENED: 0x82,
  ACK: 0x83,
  COMPLETE: 0x84,
  PONG: 0x85,
  BYTES: 0x86,
  ERROR: 0x8f,
} as const;
/** A dup/2 frame type byte. */
export type FrameType = (typeof FRAME)[keyof typeof FRAME];

/** Length of a SHA-256 digest in bytes. */
export const SHA256_BYTES = 32;
/** Largest token accepted in a HELLO frame or a control `hello`, in bytes. */
export const MAX_TOKEN_BYTES = 8192;
/** Largest item id, in characters. */
export const MAX_ITEM_ID_LENGTH = 128;
/** Item ids: letters, digits, `_` and `-` only, so they are safe as file names and in URLs. */
export const ITEM_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
/** Largest media type in an OPEN frame, in bytes. */
export const MAX_MIME_BYTES = 255;
/** Largest file name in an OPEN frame, in bytes. */
export const MAX_NAME_BYTES = 1024;
/** Largest error message carried in an ERROR frame, in bytes. */
export const MAX_ERROR_MESSAGE_BYTES = 1024;
/** Largest number of ranges in one OPENED frame. */
export const MAX_RANGES_PER_FRAME = 4096;
/** Largest upload id (upload ids are 1..2^32-1; 0 means "the connection"). */
export const MAX_UPLOAD_ID = 0xffff_ffff;
/** One item may be at most this large unless a server advertises less. 500 MiB. */
export const DEFAULT_MAX_ITEM_SIZE = 500 * 1024 * 1024;
/** Largest DATA payload a server accepts unless it advertises otherwise. 1 MiB. */
export const DEFAULT_MAX_CHUNK = 1024 * 1024;
/**
 * Unacknowledged bytes a client may have in flight per socket unless advertised otherwise, and the
 * reference server's default. 16 MiB: the server acknowledges bytes once they are durable, and on
 * a fast link 8 MiB was sent before the flushes of the first ones ended.
 */
export const DEFAULT_WINDOW = 16 * 1024 * 1024;
/** Largest control message, in UTF-16 code units of its JSON text. */
export const MAX_CONTROL_MESSAGE_LENGTH = 1024 * 1024;
/** Largest number of items in one `publish`. */
export const MAX_PUBLISH_ITEMS = 1000;
/** Largest inline content of one item in a control message, in bytes (before base64). 256 KiB. */
export const MAX_INLINE_BYTES = 256 * 1024;
/** Largest body of a control `message`, in UTF-16 code units. 64 Ki. */
export const MAX_MESSAGE_BODY_LENGTH = 64 * 1024;

/**
 * Error codes carried in dup/2 ERROR frames (u16 on the wire) and in control `error`
 * messages (by name). See `docs/protocol.md` for when each is sent and whether to retry.
 */
export const WIRE_ERROR = {
  'bad-frame': 1,
  'unknown-upload': 2,
  'out-of-range': 3,
  'checksum-mismatch': 4,
  'digest-mismatch': 5,
  incomplete: 6,
  conflict: 7,
  unauthorized: 8,
  'storage-failed': 9,
  'too-large': 10,
  'window-exceeded': 11,
  'upload-id-in-use': 12,
  'not-ready': 13,
  internal: 14,
  'quota-exceeded': 15,
  'storage-full': 16,
  'too-many-uploads': 17,
  locked: 18,
  superseded: 19,
  fragmented: 20,
  'not-found': 21,
} as const;
/** Name of a wire error code, such as `'checksum-mismatch'`. */
export type WireErrorCode = keyof typeof WIRE_ERROR;

/** Wire errors after which sending the same thing again later can succeed. */
export const RETRYABLE_WIRE_ERRORS: ReadonlySet<WireErrorCode> = new Set<WireErrorCode>([
  'checksum-mismatch',
  // The server forgot the item's ranges: sending everything again can succeed.
  'digest-mismatch',
  'storage-failed',
  'storage-full',
  'too-many-uploads',
  // Another connection is still writing the item: it lets go, or its lock times out.
  'locked',
  'not-ready',
  'internal',
]);

/** WebSocket close codes used by both protocols, beyond the standard 1000/1001/1009/1011. */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL: 1011,
  /** Sent by a client: the server acknowledged nothing for too long while bytes were in flight. */
  STALLED: 4000,
  PROTOCOL_VIOLATION: 4002,
  AUTH_TIMEOUT: 4001,
  AUTH_FAILED: 4003,
  UNSUPPORTED_PROTOCOL: 4005,
  IDLE_TIMEOUT: 4008,
  REPLACED: 4009,
  /** A relayed connection whose upload server's registry link was lost. */
  RELAY_LINK_LOST: 4010,
} as const;
/** A WebSocket close code named in {@link CLOSE}. */
export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];
