/** Detail of {@link WsDownloadProgressEvent}. */
export interface WsDownloadProgressDetail {
  /** The item. */
  readonly itemId: string;
  /** Bytes of the item in browser storage; never goes backwards within a download. */
  readonly bytesStored: number;
  /** The item's size. */
  readonly bytesTotal: number;
}

/**
 * Fired by `<ws-download>` as a download advances, at most once per animation frame.
 */
export class WsDownloadProgressEvent extends Event {
  /** Details of the event. */
  readonly detail: WsDownloadProgressDetail;

  /** @param detail details of the event */
  constructor(detail: WsDownloadProgressDetail) {
    super('ws-download-progress', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-download-progress': WsDownloadProgressEvent;
  }
}
