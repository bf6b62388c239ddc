/** Detail of {@link WsDownloadErrorEvent}. */
export interface WsDownloadErrorDetail {
  /** The item. */
  readonly itemId: string;
  /**
   * Stable error code: a `DownloadError` code (`unavailable`, `fetch-failed`, `digest-mismatch`,
   * `quota-exceeded`, `storage-failed`) or the control server's (`unknown-item`, `forbidden`, …).
   */
  readonly code: string;
  /** Localized message for people. */
  readonly message: string;
  /** The error itself. */
  readonly error: Error;
}

/**
 * Fired by `<ws-download>` when a download fails. A cancelled download fires no error.
 */
export class WsDownloadErrorEvent extends Event {
  /** Details of the event. */
  readonly detail: WsDownloadErrorDetail;

  /** @param detail details of the event */
  constructor(detail: WsDownloadErrorDetail) {
    super('ws-download-error', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-download-error': WsDownloadErrorEvent;
  }
}
