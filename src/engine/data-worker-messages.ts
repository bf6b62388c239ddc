/**
 * Messages between the page and the data Worker (`data-worker.ts`), and how errors cross: an
 * error is sent as its fields and made again, of the same class, on the other side.
 * @internal
 * @module
 */
import type { ServerInfo, TargetRange } from '../protocol/control.js';
import { ServerError, TransportError, WsUploaderError } from '../errors.js';
import type { EngineOptions } from './options.js';
import type { PlaneItem, PlaneSettings } from './data-plane.js';
import type { TaskProgress } from './part-scheduler.js';
import type { ServerStatus, UploadResult } from './types.js';

/**
 * The engine options that cross to the data Worker as they are (plain values): an option the data
 * plane reads must be listed here, or the Worker runs with its default.
 */
export const CLONED_OPTIONS = [
  'chunkSize',
  'partSize',
  'protocols',
  'maxParallel',
  'probeCount',
  'probeIntervalMs',
  'stallTimeoutMs',
  'retryDelays',
  'reconnectDelays',
  'integrity',
] as const satisfies readonly (keyof EngineOptions)[];

/** The engine options the data Worker runs with. */
export type WorkerOptions = Pick<EngineOptions, (typeof CLONED_OPTIONS)[number]> & {
  /** The `hashWorker` option as given (a URL as its string). */
  readonly hashWorker: boolean | string;
  /** Whether the page has an `onShouldRetry` hook the Worker must ask. */
  readonly askRetry: boolean;
};

/** How a task runs, as it crosses (its abort goes as an `abort` message). */
export interface WorkerRunOptions {
  readonly priority: number;
  readonly urgent: boolean;
  readonly deadline?: number;
  readonly multipart: boolean;
  readonly serverDigest: boolean;
}

/** Page to Worker. */
export type ToWorker =
  | { readonly type: 'init'; readonly options: WorkerOptions }
  | { readonly type: 'update'; readonly servers: readonly ServerInfo[] }
  | { readonly type: 'configure'; readonly settings: PlaneSettings }
  | {
      readonly type: 'run';
      readonly runId: number;
      readonly item: PlaneItem;
      readonly ranges: readonly TargetRange[];
      readonly options: WorkerRunOptions;
    }
  | { readonly type: 'abort'; readonly runId: number }
  | { readonly type: 'forget'; readonly itemId: string }
  | { readonly type: 'retry-answer'; readonly askId: number; readonly retry: boolean }
  | { readonly type: 'close' };

/** Worker to page. */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'servers'; readonly servers: ServerStatus[]; readonly changed: boolean }
  | {
      readonly type: 'probe';
      readonly results: { serverId: string; rttMs: number; throughput?: number }[];
    }
  | { readonly type: 'progress'; readonly runId: number; readonly progress: TaskProgress }
  | { readonly type: 'done'; readonly runId: number; readonly result: UploadResult }
  | { readonly type: 'failed'; readonly runId: number; readonly error: ErrorFields }
  | {
      readonly type: 'should-retry';
      readonly askId: number;
      readonly error: ErrorFields;
      readonly attempt: number;
      readonly retryable: boolean;
    };

/** An error as it crosses between threads. */
export interface ErrorFields {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly serverId?: string;
  readonly itemId?: string;
  readonly closeCode?: number;
}

const PREFIX = 'ws-uploader: ';

/** An error's fields, to post. */
export function errorFields(error: unknown): ErrorFields {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const e = error as Error &
    Partial<Record<'code' | 'serverId' | 'itemId', string>> & {
      closeCode?: number;
    };
  return {
    name: e.name,
    message: e.message.startsWith(PREFIX) ? e.message.slice(PREFIX.length) : e.message,
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(typeof e.serverId === 'string' ? { serverId: e.serverId } : {}),
    ...(typeof e.itemId === 'string' ? { itemId: e.itemId } : {}),
    ...(typeof e.closeCode === 'number' ? { closeCode: e.closeCode } : {}),
  };
}

/** The error posted as `fields`, made again: a `TransportError`, `ServerError` or `AbortError`. */
export function errorFrom(fields: ErrorFields): Error {
  const { name, message, code, serverId, itemId, closeCode } = fields;
  if (name === 'AbortError') return new DOMException(message, 'AbortError');
  if (name === 'TransportError' && code)
    return new TransportError(code as TransportError['code'], message, {
      ...(serverId === undefined ? {} : { serverId }),
      ...(closeCode === undefined ? {} : { closeCode }),
    });
  if (name === 'ServerError' && code)
    return new ServerError(code as ServerError['code'], message, {
      serverId: serverId ?? 'unknown',
      ...(itemId === undefined ? {} : { itemId }),
    });
  if (code) {
    const error = new WsUploaderError(code, message);
    error.name = name;
    return error;
  }
  return new WsUploaderError('internal', message);
}
