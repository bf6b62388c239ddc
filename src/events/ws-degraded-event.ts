/** Detail of {@link WsDegradedEvent}. */
export interface WsDegradedDetail {
  /**
   * What works less well than it could: `data-worker` when the data Worker could not start (a
   * Content-Security-Policy without `worker-src`, say) or died, so the page's main thread reads,
   * checks and sends the bytes.
   */
  readonly reason: 'data-worker';
  /** What happened, for the developer's console. */
  readonly message: string;
}

/**
 * Fired when uploads go on, but less well than they could (see {@link WsDegradedDetail.reason}).
 */
export class WsDegradedEvent extends Event {
  /** Details of the event. */
  readonly detail: WsDegradedDetail;

  /** @param detail details of the event */
  constructor(detail: WsDegradedDetail) {
    super('ws-degraded', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-degraded': WsDegradedEvent;
  }
}
