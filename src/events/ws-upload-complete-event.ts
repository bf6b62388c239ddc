/** Detail of {@link WsUploadCompleteEvent}. */
export interface WsUploadCompleteDetail {
  readonly itemId: string;
  readonly name: string;
  readonly size: number;
  /** Hex SHA-256 of the whole item, verified by the upload server. */
  readonly sha256: string;
  /** The upload servers that hold it, with the URL each serves it at. */
  readonly servers: readonly { readonly id: string; readonly url: string }[];
}

/**
 * Fired when an item is stored on the upload servers and its SHA-256 verified.
 */
export class WsUploadCompleteEvent extends Event {
  /** Details of the event. */
  readonly detail: WsUploadCompleteDetail;

  /** @param detail details of the event */
  constructor(detail: WsUploadCompleteDetail) {
    super('ws-upload-complete', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-upload-complete': WsUploadCompleteEvent;
  }
}
