/**
 * Every string `<ws-uploader>` shows. Pass a partial object to the `i18n` property to translate;
 * nested groups (`connection`, `itemState`, `rejected`, `errors`) merge key by key.
 */
import type { ConnectionState, ItemState } from '../engine/types.js';
import type { WsFileRejectReason } from '../events/ws-file-reject-event.js';
import { formatBytes, formatDuration, formatRate } from './format.js';

/** What an item row shows as its state: the engine's, or `held` for a file waiting for `publish()`. */
export type DisplayState = ItemState | 'held';

/** Strings of `<ws-uploader>`. */
export interface WsUploaderI18n {
  dropLabel: string;
  dropHint: string;
  dropActive: string;
  serversHeading: string;
  filesHeading: string;
  noServers: string;
  connection: Record<ConnectionState, string>;
  itemState: Record<DisplayState, string>;
  /** RTT of a server, e.g. `12 ms`. */
  rtt: (ms: number) => string;
  /** Throughput of a server or speed of a file, e.g. `12 MB/s`. */
  rate: (bytesPerSecond: number) => string;
  /** A size, e.g. `3.1 MB`. */
  size: (bytes: number) => string;
  /** Progress of a file, e.g. `3.1 MB of 20 MB`. */
  progress: (stored: number, total: number) => string;
  /** Time left of a file, e.g. `2 min left`. */
  timeLeft: (seconds: number) => string;
  /** Names the servers of a split progress bar, e.g. `upload-1: 40 MB`. */
  serverShare: (serverId: string, bytes: number) => string;
  /** Button labels; each is followed by the file's name for assistive technology. */
  pause: string;
  resume: string;
  retry: string;
  cancel: string;
  /** Removes a rejected-file notice, or a file waiting for `publish()`. */
  dismiss: string;
  /** Heading of the rejected-files list. */
  rejectedHeading: string;
  /** Why a file was not taken. */
  rejected: Record<WsFileRejectReason, (name: string) => string>;
  /** Announced when a file is stored. */
  complete: (name: string) => string;
  /** Announced when a file's upload fails. */
  failed: (name: string, message: string) => string;
  /** Messages by error code; `default` for any other code. */
  errors: Record<string, string> & { default: string };
}

/** Groups of {@link WsUploaderI18n} a translation may give some keys of (as `errors`). */
type WsUploaderI18nGroup = 'connection' | 'itemState' | 'rejected';

/**
 * A translation for the `i18n` property: any of the strings, and in each nested group
 * (`connection`, `itemState`, `rejected`, `errors`) any of its keys.
 */
export type WsUploaderI18nOverrides = Partial<
  Omit<WsUploaderI18n, WsUploaderI18nGroup | 'errors'>
> & {
  [G in WsUploaderI18nGroup]?: Partial<WsUploaderI18n[G]>;
} & {
  errors?: Record<string, string>;
};

/** English strings. */
export const DEFAULT_I18N: WsUploaderI18n = {
  dropLabel: 'Drop files here, or press to choose files',
  dropHint: 'You can also paste files, images or text.',
  dropActive: 'Release to add the files',
  serversHeading: 'Upload servers',
  filesHeading: 'Files',
  noServers: 'Waiting for the server list…',
  connection: {
    connecting: 'connecting',
    open: 'connected',
    degraded: 'slow to answer',
    down: 'unreachable',
    closed: 'closed',
  },
  itemState: {
    held: 'waiting',
    publishing: 'publishing',
    published: 'published',
    uploading: 'uploading',
    paused: 'paused',
    complete: 'done',
    failed: 'failed',
  },
  rtt: (ms) => `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`,
  rate: formatRate,
  size: formatBytes,
  progress: (stored, total) => `${formatBytes(stored)} of ${formatBytes(total)}`,
  timeLeft: (seconds) => `${formatDuration(seconds)} left`,
  serverShare: (serverId, bytes) => `${serverId}: ${formatBytes(bytes)}`,
  pause: 'Pause',
  resume: 'Resume',
  retry: 'Retry',
  cancel: 'Cancel',
  dismiss: 'Remove',
  rejectedHeading: 'Not added',
  rejected: {
    type: (name) => `${name}: this type of file is not accepted`,
    size: (name) => `${name}: the file is too large`,
    count: (name) => `${name}: too many files`,
  },
  complete: (name) => `${name} is stored`,
  failed: (name, message) => `${name}: ${message}`,
  errors: {
    default: 'The upload failed',
    'auth-failed': 'The server refused the credentials',
    'socket-closed': 'The connection was lost',
    'connect-timeout': 'A server did not answer',
    stalled: 'A server stopped answering',
    'too-large': 'The file is too large',
    'no-servers': 'No upload server is available',
    'digest-mismatch': 'The stored file did not match; it will be sent again',
    'quota-exceeded': 'There is no room left on the server',
  },
};

/**
 * Merges a partial translation over the defaults.
 * @param partial strings to replace
 */
export function mergeI18n(partial: WsUploaderI18nOverrides | undefined): WsUploaderI18n {
  if (!partial || partial === DEFAULT_I18N) return DEFAULT_I18N;
  return {
    ...DEFAULT_I18N,
    ...partial,
    connection: { ...DEFAULT_I18N.connection, ...partial.connection },
    itemState: { ...DEFAULT_I18N.itemState, ...partial.itemState },
    rejected: { ...DEFAULT_I18N.rejected, ...partial.rejected },
    errors: { ...DEFAULT_I18N.errors, ...partial.errors },
  };
}
