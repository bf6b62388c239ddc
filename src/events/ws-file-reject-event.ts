/** Why a file was not taken: its type is not in `accept`, it is over `max-file-size`, or one too many for `max-files`. */
export type WsFileRejectReason = 'type' | 'size' | 'count';

/** Detail of {@link WsFileRejectEvent}. */
export interface WsFileRejectDetail {
  /** The file (or pasted data) that was not taken. */
  readonly file: Blob;
  /** Its name (`''` for a blob without one). */
  readonly name: string;
  /** Why. */
  readonly reason: WsFileRejectReason;
  /** Localized message for people. */
  readonly message: string;
}

/**
 * Fired for each file the element did not take (dropped, picked, pasted or passed to
 * `addFiles()`); the others are added.
 */
export class WsFileRejectEvent extends Event {
  /** Details of the event. */
  readonly detail: WsFileRejectDetail;

  /** @param detail details of the event */
  constructor(detail: WsFileRejectDetail) {
    super('ws-file-reject', { bubbles: true, composed: true });
    this.detail = detail;
  }
}

declare global {
  interface GlobalEventHandlersEventMap {
    'ws-file-reject': WsFileRejectEvent;
  }
}
