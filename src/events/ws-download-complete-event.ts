/** Detail of {@link WsDownloadCompleteEvent}. */
export interface WsDownloadCompleteDetail {
  /** The item. */
  readonly itemId: string;
  /** Its file name or label. */
  readonly name: string;
  /** Its size in bytes. */
  readonly size: number;
  /** Hex SHA-256 the bytes were verified against. */
  readonly sha256: string;
  /** Its media type; empty when unknown. */
  readonly mime: string;
}

/**
 * Fired by `<ws-download>` when the item is stored, verified and shown.
 */
export class WsDownloadCompleteEvent extends Event {
  /** Details of the event. */
  readonly detail: WsDownloadCompleteDetail;

  /** @param detail details of the event */
  constructor(detail: WsDownloadCompleteDetail) {
    super('ws-download-complete', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-download-complete': WsDownloadCompleteEvent;
  }
}
