/**
 * What the part scheduler and the socket pool need from a connection to an upload server,
 * whatever protocol carries the bytes (`dup/2`, `dup/1` or HTTP parts).
 */
import type { ServerInfo } from '../protocol/control.js';
import type { ByteRange } from '../protocol/ranges.js';
import type { TransportError, WsUploaderError } from '../errors.js';

/** Data protocols the engine speaks, as servers name them. */
export type DataProtocol = 'dup/2' | 'dup/1' | 'http/1';

/** Every protocol the engine speaks, in its default order of preference. */
export const DATA_PROTOCOLS: readonly DataProtocol[] = ['dup/2', 'dup/1', 'http/1'];

/** Hears about one upload's acknowledgements and failures. */
export interface UploadListener {
  /** The server holds `start..end` durably. */
  ack(start: number, end: number): void;
  /** The upload failed (its upload id is gone). */
  error(error: WsUploaderError): void;
}

/** An upload opened on a server. */
export interface OpenedUpload {
  /** The transport's handle for the upload. */
  readonly uploadId: number;
  /** Whether the server holds the whole item, verified. */
  readonly complete: boolean;
  /** What the server already holds. */
  readonly ranges: readonly ByteRange[];
}

/** What the scheduler tells a transport about the item when it opens an upload. */
export interface UploadMeta {
  /** The item's id. */
  readonly itemId: string;
  /** Its size in bytes. */
  readonly size: number;
  /** Its media type (empty when unknown). */
  readonly mime: string;
  /** Its file name. */
  readonly name: string;
  /** The whole item. */
  readonly blob: Blob;
  /**
   * The engine never sent this item to this server (its id was made in this page, and no earlier
   * upload of it ran there): the transport may skip asking what the server holds, and start
   * sending at once. Sending bytes the server holds anyway does no harm.
   */
  readonly fresh?: boolean;
}

/**
 * One connection to an upload server.
 * @internal
 */
export interface Transport {
  /**
   * The server, with this client's token: the newest one, as the control server renews it
   * (new connections and HTTP requests use it).
   */
  info: ServerInfo;
  /** The protocol that carries the bytes. */
  readonly protocol: DataProtocol;
  /** Whether the last connection was closed for stalling. */
  readonly stalled: boolean;
  /** Whether the connection is up. */
  readonly isOpen: boolean;
  /**
   * Whether {@link Transport.sendData} takes the slice as a `Blob` (the browser streams it from the
   * file) rather than as bytes read into the page.
   */
  readonly takesBlobs: boolean;
  /**
   * Bytes per send, given the engine's `chunkSize` and the bytes per second the server took lately.
   */
  chunkSize(requested: number, throughput: number | undefined): number;
  /**
   * Connects and authenticates.
   * @throws {TransportError | ServerError} when the server cannot be reached or refuses the token
   */
  connect(): Promise<void>;
  /** Measures one round trip, in ms. */
  ping(): Promise<number>;
  /** Opens (or resumes) the upload of an item. */
  open(item: UploadMeta, listener: UploadListener): Promise<OpenedUpload>;
  /**
   * Waits until `bytes` more of an upload may be sent; `signal` ends the wait early (the caller
   * checks why).
   */
  waitForRoom(uploadId: number, bytes: number, signal?: AbortSignal): Promise<void>;
  /**
   * Sends a slice of an open upload: bytes, or a `Blob` when {@link Transport.takesBlobs}. The
   * bytes are the caller's again when it returns (a transport copies what it keeps).
   */
  sendData(uploadId: number, offset: number, payload: Uint8Array | Blob): void;
  /**
   * Completes the item on the server: with `sha256`, the server verifies the whole item against it
   * (integrity `sha256`); without, it computes the digest itself (integrity `transport`).
   * @returns the SHA-256 the server verified or computed
   */
  finish(uploadId: number, sha256: Uint8Array | undefined): Promise<Uint8Array>;
  /** Forgets an upload (and tells the server). */
  release(uploadId: number): void;
  /** Closes the connection. */
  close(): void;
}

/** Called once when a transport's connection is lost after it was open. */
export type TransportCloseHandler = (error: TransportError) => void;
