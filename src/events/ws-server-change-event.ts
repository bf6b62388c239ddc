import type { ServerStatus } from '../engine/types.js';

/**
 * Fired when the upload-server list changes, or a server's state or round-trip time.
 */
export class WsServerChangeEvent extends Event {
  /** Details of the event. */
  readonly detail: { readonly servers: readonly ServerStatus[] };

  /** @param detail details of the event */
  constructor(detail: { readonly servers: readonly ServerStatus[] }) {
    super('ws-server-change', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-server-change': WsServerChangeEvent;
  }
}
