/**
 * Public data shapes of the engine.
 */
import type { ItemKind, TargetRange } from '../protocol/control.js';

/** State of a connection. */
export const ConnectionState = {
  CONNECTING: 'connecting',
  OPEN: 'open',
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
}

/** Where an item is in its upload. */
export const ItemState = {
  PUBLISHING: 'publishing',
  PUBLISHED: 'published',
  UPLOADING: 'uploading',
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
  /** Hex SHA-256, once complete. */
  readonly sha256: string | undefined;
  /** Servers that hold it, once complete. */
  readonly servers: readonly string[];
  /** Error code of the last failure. */
  readonly errorCode: string | undefined;
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

/** What a finished task produced. */
export interface UploadResult {
  readonly itemId: string;
  readonly name: string;
  readonly size: number;
  /** Hex SHA-256 of the whole item. */
  readonly sha256: string;
  /** Servers that hold some of it. */
  readonly servers: readonly string[];
}
