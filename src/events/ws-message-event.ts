import type { ReceivedMessageDetail } from '../engine/types.js';

/** Detail of {@link WsMessageEvent}: who sent it, its text, its inline item. */
export type WsMessageDetail = ReceivedMessageDetail;

/**
 * Fired when a short message or an inline item arrives through the control server (from another
 * browser, or from the app). An inline raster image comes with a `data:` URL to show at once.
 */
export class WsMessageEvent extends Event {
  /** Details of the event. */
  readonly detail: WsMessageDetail;

  /** @param detail details of the event */
  constructor(detail: WsMessageDetail) {
    super('ws-message', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-message': WsMessageEvent;
  }
}
