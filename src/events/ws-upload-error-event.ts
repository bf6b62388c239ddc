/** Detail of {@link WsUploadErrorEvent}. */
export interface WsUploadErrorDetail {
  /** The item, when the error concerns one. */
  readonly itemId: string | undefined;
  /** The upload server, when the error concerns one. */
  readonly serverId: string | undefined;
  /** Stable error code (see docs/protocol.md). */
  readonly code: string;
  /** Localized message for people. */
  readonly message: string;
  /** The error itself. */
  readonly error: Error;
}

/**
 * Fired when an upload or a connection fails. Cancelled uploads fire no error.
 */
export class WsUploadErrorEvent extends Event {
  /** Details of the event. */
  readonly detail: WsUploadErrorDetail;

  /** @param detail details of the event */
  constructor(detail: WsUploadErrorDetail) {
    super('ws-upload-error', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-upload-error': WsUploadErrorEvent;
  }
}
