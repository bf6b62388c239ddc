import type { TargetRange, TransmitReason } from '../protocol/control.js';

/** Detail of {@link WsTransmitRequestEvent}. */
export interface WsTransmitRequestDetail {
  readonly taskId: string;
  readonly itemId: string;
  /** Ranges of the item and the upload server each goes to. */
  readonly ranges: readonly TargetRange[];
  readonly priority: number;
  /** Why it came: `publish`, `request`, `demand` (a reader waits), `replan`, or `page` (`transmit()`). */
  readonly reason: TransmitReason | 'page';
}

/**
 * Fired when the control server (or a call to `transmit()`) asks for ranges of an item, before
 * the upload starts. Cancelable: `preventDefault()` declines the task (the control server is told;
 * the item waits, and is not failed); `retarget(ranges)` sends it to other upload servers.
 */
export class WsTransmitRequestEvent extends Event {
  /** Details of the event. */
  readonly detail: WsTransmitRequestDetail;
  readonly #retarget: (ranges: readonly TargetRange[]) => void;

  /**
   * @param detail details of the event
   * @param retarget replaces the task's ranges
   */
  constructor(
    detail: WsTransmitRequestDetail,
    retarget: (ranges: readonly TargetRange[]) => void = () => {
      throw new Error('ws-uploader: this task cannot be retargeted');
    },
  ) {
    super('ws-transmit-request', { bubbles: true, composed: true, cancelable: true });
    this.detail = detail;
    this.#retarget = retarget;
  }

  /**
   * Sends the task's bytes to other upload servers: `ranges` replace the task's.
   * @param ranges byte ranges of the item and the server for each
   * @throws {ConfigError} when a range is outside the item or names no server
   */
  retarget(ranges: readonly TargetRange[]): void {
    this.#retarget(ranges);
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-transmit-request': WsTransmitRequestEvent;
  }
}
