/**
 * Errors of ws-uploader. Every error has a stable `code`, listed in `docs/protocol.md`.
 * @module
 */
import { RETRYABLE_WIRE_ERRORS, type WireErrorCode } from './protocol/constants.js';
import type { ControlErrorCode } from './protocol/control.js';
import { WsUploaderError } from './protocol/errors.js';

export { WsUploaderError, ProtocolError, type ProtocolErrorCode } from './protocol/errors.js';

/** Codes of {@link TransportError}. */
export type TransportErrorCode =
  | 'socket-closed'
  | 'socket-failed'
  | 'connect-timeout'
  | 'no-servers'
  /** Bytes were in flight and the server acknowledged none for `stallTimeoutMs`. */
  | 'stalled';

/**
 * A connection failed or closed. Retrying later can succeed.
 */
export class TransportError extends WsUploaderError {
  declare readonly code: TransportErrorCode;
  /** The server involved, when there is one. */
  readonly serverId: string | undefined;
  /** The WebSocket close code, when the socket closed. */
  readonly closeCode: number | undefined;

  /**
   * @param code what failed
   * @param message details
   * @param context the server and close code
   */
  constructor(
    code: TransportErrorCode,
    message: string,
    context: { serverId?: string; closeCode?: number; cause?: unknown } = {},
  ) {
    super(code, message, { cause: context.cause });
    this.name = 'TransportError';
    this.serverId = context.serverId;
    this.closeCode = context.closeCode;
  }
}

/**
 * A server reported an error. `retryable` says whether sending again later can succeed.
 */
export class ServerError extends WsUploaderError {
  declare readonly code: WireErrorCode | ControlErrorCode;
  /** The server that reported it (`'control'` for the control server). */
  readonly serverId: string;
  /** The item involved, when there is one. */
  readonly itemId: string | undefined;
  /** Whether the same request may succeed later. */
  readonly retryable: boolean;

  /**
   * @param code the server's code
   * @param message the server's message
   * @param context which server and item
   */
  constructor(
    code: WireErrorCode | ControlErrorCode,
    message: string,
    context: { serverId: string; itemId?: string },
  ) {
    super(code, message);
    this.name = 'ServerError';
    this.serverId = context.serverId;
    this.itemId = context.itemId;
    this.retryable = RETRYABLE_WIRE_ERRORS.has(code as WireErrorCode);
  }
}

/**
 * Codes of {@link ResumeError}.
 * - `file-mismatch`: the file given to resume an item is not the one remembered.
 * - `file-unreadable`: the file (or its handle) cannot be read.
 * - `resume-not-found`: no unfinished item of that id is remembered.
 * - `resume-storage-failed`: the resume records could not be read or written (IndexedDB failed);
 *   uploads go on, but may not be resumed after a reload.
 */
export type ResumeErrorCode =
  'file-mismatch' | 'file-unreadable' | 'resume-not-found' | 'resume-storage-failed';

/**
 * Resuming an unfinished item after a reload failed, or its record could not be kept.
 */
export class ResumeError extends WsUploaderError {
  declare readonly code: ResumeErrorCode;
  /** The item involved, when there is one. */
  readonly itemId: string | undefined;
  /**
   * For `file-mismatch`: what differs between the remembered file and the one given (`name`,
   * `size`, `mime`, `lastModified`, `head` or `tail`: the SHA-256 of its first or last 64 KiB).
   */
  readonly mismatch: readonly string[];

  /**
   * @param code what failed
   * @param message details
   * @param context the item, what differs, and the cause
   */
  constructor(
    code: ResumeErrorCode,
    message: string,
    context: { itemId?: string; mismatch?: readonly string[]; cause?: unknown } = {},
  ) {
    super(code, message, { cause: context.cause });
    this.name = 'ResumeError';
    this.itemId = context.itemId;
    this.mismatch = context.mismatch ?? [];
  }
}

/** Codes of {@link DownloadError}. */
export type DownloadErrorCode =
  /** No live upload server holds some of the item's bytes (and the store does not have them). */
  | 'unavailable'
  /** A part could not be read from any server that holds it, after retries. */
  | 'fetch-failed'
  /** The whole item's SHA-256 differs from the one the control server recorded. */
  | 'digest-mismatch'
  /** The browser's storage has no room for the item. */
  | 'quota-exceeded'
  /** The store could not write or read (evicted by the browser, say). */
  | 'storage-failed';

/**
 * Downloading an item failed. Parts stored before the failure stay: a later download of the same
 * item fetches only the rest.
 */
export class DownloadError extends WsUploaderError {
  declare readonly code: DownloadErrorCode;
  /** The item. */
  readonly itemId: string;
  /** The upload server involved, when there is one. */
  readonly serverId: string | undefined;

  /**
   * @param code what failed
   * @param message details
   * @param context the item, the server and the cause
   */
  constructor(
    code: DownloadErrorCode,
    message: string,
    context: { itemId: string; serverId?: string; cause?: unknown },
  ) {
    super(code, message, { cause: context.cause });
    this.name = 'DownloadError';
    this.itemId = context.itemId;
    this.serverId = context.serverId;
  }
}

/**
 * An option is missing, of the wrong type or contradicts another. Thrown at construction.
 */
export class ConfigError extends TypeError {
  /** Always `'config-invalid'`. */
  readonly code = 'config-invalid';

  /** @param message which option and why */
  constructor(message: string) {
    super(`ws-uploader: ${message}`);
    this.name = 'ConfigError';
  }
}
