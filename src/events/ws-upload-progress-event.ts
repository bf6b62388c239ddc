/** Detail of {@link WsUploadProgressEvent}. */
export interface WsUploadProgressDetail {
  readonly itemId: string;
  /** Bytes sent so far; never goes backwards. */
  readonly bytesSent: number;
  /** Bytes the upload servers acknowledged as stored; never goes backwards. */
  readonly bytesStored: number;
  /** Bytes the upload covers. */
  readonly bytesTotal: number;
  /** Bytes each upload server stored, by server id (several for an item split across servers). */
  readonly bytesByServer: Readonly<Record<string, number>>;
}

/**
 * Fired as an upload advances, at most once per item per animation frame.
 */
export class WsUploadProgressEvent extends Event {
  /** Details of the event. */
  readonly detail: WsUploadProgressDetail;

  /** @param detail details of the event */
  constructor(detail: WsUploadProgressDetail) {
    super('ws-upload-progress', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-upload-progress': WsUploadProgressEvent;
  }
}
