/**
 * Every string `<ws-download>` shows. Pass a partial object to its `i18n` property to translate;
 * the `errors` group merges key by key.
 */
import { formatBytes } from './format.js';

/** Strings of `<ws-download>`. */
export interface WsDownloadI18n {
  /** Label of the button that starts a download (shown with `no-auto`). */
  download: string;
  /** Label of the button that stops a download. */
  cancel: string;
  /** Label of the button that tries a failed download again. */
  retry: string;
  /** A size, e.g. `3.1 MB`. */
  size: (bytes: number) => string;
  /** Accessible name of the progress bar, e.g. `Downloading photo.png`. */
  progressLabel: (name: string) => string;
  /** Progress of a download, e.g. `3.1 MB of 20 MB`. */
  progress: (stored: number, total: number) => string;
  /** Text of the link that saves an item that is not shown, e.g. `Save report.pdf`. */
  save: (name: string) => string;
  /** Announced when the item is downloaded. */
  complete: (name: string) => string;
  /** Announced when the download fails. */
  failed: (name: string, message: string) => string;
  /** Messages by error code; `default` for any other code. */
  errors: Record<string, string> & { default: string };
}

/** A translation for the `i18n` property: any of the strings, and any keys of `errors`. */
export type WsDownloadI18nOverrides = Partial<Omit<WsDownloadI18n, 'errors'>> & {
  errors?: Record<string, string>;
};

/** English strings of `<ws-download>`. */
export const DEFAULT_DOWNLOAD_I18N: WsDownloadI18n = {
  download: 'Download',
  cancel: 'Cancel',
  retry: 'Retry',
  size: formatBytes,
  progressLabel: (name) => `Downloading ${name}`,
  progress: (stored, total) => `${formatBytes(stored)} of ${formatBytes(total)}`,
  save: (name) => `Save ${name}`,
  complete: (name) => `${name} is downloaded`,
  failed: (name, message) => `${name}: ${message}`,
  errors: {
    default: 'The download failed',
    unavailable: 'No server holds this file right now',
    'fetch-failed': 'The file could not be read from the servers',
    'digest-mismatch': 'The file arrived damaged',
    'quota-exceeded': 'There is no room left in this browser to keep the file',
    'storage-failed': 'This browser could not keep the file',
    'unknown-item': 'This file does not exist',
    forbidden: 'You may not download this file',
  },
};

/**
 * Merges a partial translation over the English strings of `<ws-download>`.
 * @param partial strings to replace
 */
export function mergeDownloadI18n(partial: WsDownloadI18nOverrides | undefined): WsDownloadI18n {
  if (!partial || partial === DEFAULT_DOWNLOAD_I18N) return DEFAULT_DOWNLOAD_I18N;
  return {
    ...DEFAULT_DOWNLOAD_I18N,
    ...partial,
    errors: { ...DEFAULT_DOWNLOAD_I18N.errors, ...partial.errors },
  };
}
