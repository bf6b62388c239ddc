/**
 * Public data shapes of the engine.
 */
import type {
  ItemHolder,
  ItemKind,
  ItemMeta,
  MessageSender,
  MessageTarget,
  TargetRange,
  TransmitReason,
} from '../protocol/control.js';

/** State of a connection. */
export const ConnectionState = {
  CONNECTING: 'connecting',
  OPEN: 'open',
  /** Open, but a heartbeat went unanswered or the last connection stalled: used, but watched. */
  DEGRADED: 'degraded',
  DOWN: 'down',
  CLOSED: 'closed',
} as const;
/** One of {@link ConnectionState}. */
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

/** An upload server as the engine sees it. */
export interface ServerStatus {
  readonly id: string;
  readonly url: string;
  readonly httpUrl: string;
  readonly state: ConnectionState;
  /** Smoothed round-trip time, once measured, in ms. */
  readonly rttMs: number | undefined;
  /** Bytes per second it stored lately for this page, once it stored any. */
  readonly throughput: number | undefined;
  /** The data protocol the bytes go over (`dup/2`, `dup/1` or `http/1`), once chosen. */
  readonly protocol: string | undefined;
}

/** Where an item is in its upload. */
export const ItemState = {
  PUBLISHING: 'publishing',
  PUBLISHED: 'published',
  UPLOADING: 'uploading',
  /** Stopped by `pause()`: its tasks wait for `resume()`. */
  PAUSED: 'paused',
  COMPLETE: 'complete',
  FAILED: 'failed',
} as const;
/** One of {@link ItemState}. */
export type ItemState = (typeof ItemState)[keyof typeof ItemState];

/** An item the engine holds. */
export interface ItemStatus {
  readonly itemId: string;
  readonly name: string;
  readonly size: number;
  readonly mime: string;
  readonly kind: ItemKind;
  readonly state: ItemState;
  /** Bytes sent in the current task. */
  readonly bytesSent: number;
  /** Bytes the servers acknowledged as stored (of the current task's ranges). */
  readonly bytesStored: number;
  /** Bytes the current task covers. */
  readonly bytesTotal: number;
  /**
   * Bytes each upload server acknowledged as stored, by server id (for an item split across
   * servers, or moved to another one); never going backwards. Absent before any was stored.
   */
  readonly bytesByServer?: Readonly<Record<string, number>>;
  /** Hex SHA-256, once complete. */
  readonly sha256: string | undefined;
  /** Servers that hold it, once complete. */
  readonly servers: readonly string[];
  /** Error code of the last failure. */
  readonly errorCode: string | undefined;
  /** Whether it was published inline (its bytes are kept by the control server, not uploaded). */
  readonly inline?: boolean;
}

/** A transmit task: which ranges of an item go to which upload server. */
export interface TransmitTask {
  /** Task id; the control server's, or one the engine makes up. */
  readonly taskId?: string;
  readonly itemId: string;
  /** Ranges and their targets; sorted, not overlapping. */
  readonly ranges: readonly TargetRange[];
  /** Higher runs first. @default 0 */
  readonly priority?: number;
}

/** A task as the engine runs it: a {@link TransmitTask} with every field, and why it came. */
export interface RunningTask extends Required<TransmitTask> {
  /**
   * Why the control server sent it (`publish`, `request`, `demand`: a reader waits for these
   * bytes, `replan`); `page` for a task from `transmit()`.
   */
  readonly reason: TransmitReason | 'page';
  /** When the control server wants it done, milliseconds since the epoch, when it said. */
  readonly deadline?: number;
  /**
   * The data protocol the control server asked for, when it did: `http/1` sends a small item whole
   * as one `multipart/form-data` POST to its upload server.
   */
  readonly protocol?: string;
  /**
   * `server` when an upload server computes the item's SHA-256 (an item split across servers):
   * in `transport` integrity the browser does not hash it, and the item completes when the control
   * server says so, with that digest.
   */
  readonly digest?: 'server';
}

/** Who a message goes to: one browser (`clientId`), every browser of a user, or a room. */
export type { MessageTarget, MessageSender };

/** What {@link WsUploaderEngine.send} sends: a short text, an inline item, or both. */
export interface OutgoingMessage {
  /** Text, at most 65 536 characters. */
  readonly body?: string;
  /**
   * A small item, sent with its bytes: a `File`/`Blob` (one added earlier is reused when it was
   * published inline) or a string (sent as a UTF-8 `text` item). At most the control server's
   * `inlineMax` bytes.
   */
  readonly item?: Blob | string;
}

/** An inline item received in a message. */
export interface ReceivedItem {
  /** Its metadata, as the sender published it (without `content`). */
  readonly meta: ItemMeta;
  /**
   * Its bytes, as a `File` named `meta.name`. Its `type` is `meta.mime` only for raster images
   * and plain text; anything else is `application/octet-stream`, so an object URL of it is never
   * rendered as HTML or SVG. Absent when the item came without content.
   */
  readonly blob?: File;
  /**
   * A `data:` URL of the bytes, for raster images only (`image/png`, `image/jpeg`, `image/gif`,
   * `image/webp`, `image/avif`): usable as an `<img src>` at once. Never for SVG or HTML.
   */
  readonly dataUrl?: string;
}

/** A message another browser (or the app, through the control server) sent to this one. */
export interface ReceivedMessageDetail {
  /** The sending browser; absent when the app sent it. */
  readonly from?: MessageSender;
  /** The id the sender chose. */
  readonly id?: string;
  /** The text, when there is one. */
  readonly body?: string;
  /** The inline item, when there is one. */
  readonly item?: ReceivedItem;
}

/**
 * Where an item can be read, from {@link WsUploaderEngine.locate}: its metadata (an inline item's
 * bytes too, as `item.content`, base64), its state and digest, and the live upload servers that
 * hold it, each with its byte ranges and a read token for `GET {httpUrl}/files/{itemId}`.
 */
export interface ItemLocation {
  readonly item: ItemMeta;
  readonly state: 'published' | 'uploading' | 'stored' | 'failed';
  readonly sha256?: string;
  readonly holders: readonly ItemHolder[];
}

/** What a finished task produced. */
export interface UploadResult {
  readonly itemId: string;
  readonly name: string;
  readonly size: number;
  /** Hex SHA-256 of the whole item; absent when the task covered only some of it. */
  readonly sha256?: string;
  /** Servers that hold some of it. */
  readonly servers: readonly string[];
}

/**
 * An unfinished item an earlier page remembered (see the engine's `resume` option) that this
 * engine does not hold: its upload can go on with {@link WsUploaderEngine.resumeFile} once the
 * user picks the file again, or be dropped with {@link WsUploaderEngine.forget}.
 */
export interface UnfinishedItem {
  readonly itemId: string;
  readonly name: string;
  readonly size: number;
  readonly mime: string;
  readonly kind: ItemKind;
  /** The file's `lastModified`, in ms since the epoch. */
  readonly lastModified: number;
  /** When it was first remembered, in ms since the epoch. */
  readonly createdAt: number;
  /**
   * The handle the file was added from, when there was one, whose read permission is not granted
   * now (after a browser restart, say): ask for it with `handle.requestPermission({ mode: 'read' })`
   * in a user gesture, then pass the handle to `resumeFile`.
   */
  readonly handle?: FileSystemFileHandle;
}
