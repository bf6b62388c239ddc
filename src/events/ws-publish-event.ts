import type { ItemMeta } from '../protocol/control.js';

/**
 * Fired when items were published to the control server (metadata only: id, name, size, type).
 */
export class WsPublishEvent extends Event {
  /** Details of the event. */
  readonly detail: { readonly items: readonly ItemMeta[] };

  /** @param detail details of the event */
  constructor(detail: { readonly items: readonly ItemMeta[] }) {
    super('ws-publish', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-publish': WsPublishEvent;
  }
}
