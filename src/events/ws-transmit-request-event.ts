import type { TargetRange } from '../protocol/control.js';

/** Detail of {@link WsTransmitRequestEvent}. */
export interface WsTransmitRequestDetail {
  readonly taskId: string;
  readonly itemId: string;
  /** Ranges of the item and the upload server each goes to. */
  readonly ranges: readonly TargetRange[];
  readonly priority: number;
}

/**
 * Fired when the control server (or a call to \`transmit()\`) asks for ranges of an item to be uploaded.
 */
export class WsTransmitRequestEvent extends Event {
  /** Details of the event. */
  readonly detail: WsTransmitRequestDetail;

  /** @param detail details of the event */
  constructor(detail: WsTransmitRequestDetail) {
    super('ws-transmit-request', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-transmit-request': WsTransmitRequestEvent;
  }
}
