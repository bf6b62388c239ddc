/**
 * Every string `<ws-uploader>` shows. Pass a partial object to the `i18n` property to translate.
 */
import type { ConnectionState, ItemState } from '../engine/types.js';

/** Strings of `<ws-uploader>`. */
export interface WsUploaderI18n {
  dropLabel: string;
  dropHint: string;
  dropActive: string;
  serversHeading: string;
  filesHeading: string;
  noServers: string;
  connection: Record<ConnectionState, string>;
  itemState: Record<ItemState, string>;
  /** RTT of a server, e.g. `12 ms`. */
  rtt: (ms: number) => string;
  /** Progress of a file, e.g. `3.1 MB of 20 MB`. */
  progress: (stored: number, total: number) => string;
  /** Announced when a file is stored. */
  complete: (name: string) => string;
  /** Messages by error code; `default` for any other code. */
  errors: Record<string, string> & { default: string };
}

/** English strings. */
export const DEFAULT_I18N: WsUploaderI18n = {
  dropLabel: 'Drop files here, or press to choose files',
  dropHint: 'Files go to the upload servers your app chooses.',
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
    publishing: 'waiting',
    published: 'published',
    uploading: 'uploading',
    paused: 'paused',
    complete: 'stored',
    failed: 'failed',
  },
  rtt: (ms) => `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`,
  progress: (stored, total) => `${formatBytes(stored)} of ${formatBytes(total)}`,
  complete: (name) => `${name} is stored`,
  errors: {
    default: 'The upload failed',
    'auth-failed': 'The server refused the credentials',
    'socket-closed': 'The connection was lost',
    'connect-timeout': 'A server did not answer',
    'too-large': 'The file is too large',
    'no-servers': 'No upload server is available',
    'digest-mismatch': 'The stored file did not match; it will be sent again',
  },
};

/**
 * Merges a partial translation over the defaults.
 * @param partial strings to replace
 */
export function mergeI18n(partial: Partial<WsUploaderI18n> | undefined): WsUploaderI18n {
  if (!partial) return DEFAULT_I18N;
  return {
    ...DEFAULT_I18N,
    ...partial,
    connection: { ...DEFAULT_I18N.connection, ...partial.connection },
    itemState: { ...DEFAULT_I18N.itemState, ...partial.itemState },
    errors: { ...DEFAULT_I18N.errors, ...partial.errors },
  };
}

function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB'];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}
