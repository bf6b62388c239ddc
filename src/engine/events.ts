/**
 * Events the engine dispatches. They carry codes and numbers, never localized text; the element
 * turns them into `ws-*` DOM events.
 */
import type { ItemMeta, TargetRange } from '../protocol/control.js';
import type { WsUploaderError } from '../protocol/errors.js';
import type {
  ConnectionState,
  ItemStatus,
  ReceivedMessageDetail,
  RunningTask,
  ServerStatus,
  UploadResult,
} from './types.js';

/** Details of each engine event, by type. */
export interface EngineEventDetails {
  /** The control channel changed state. */
  state: { readonly state: ConnectionState };
  /** The upload-server list or a server's state or RTT changed. */
  servers: { readonly servers: readonly ServerStatus[] };
  /** Items were published to the control server. */
  publish: { readonly items: readonly ItemMeta[] };
  /**
   * A transmit task is about to run (from the control server or `transmit()`). Cancelable:
   * `preventDefault()` declines it (the control server is told, with code `declined`; the item
   * waits again; `transmit()` rejects with an `AbortError`; not an error). `retarget(ranges)` sends
   * it to other servers: the ranges replace the task's (checked: within the item, each with a
   * server; a `ConfigError` otherwise).
   */
  'transmit-request': {
    readonly task: RunningTask;
    readonly retarget: (ranges: readonly TargetRange[]) => void;
  };
  /**
   * The control server cancelled a task (the app cancelled it, or re-planned the item): it was
   * stopped, and its item waits again (`published`). Not an error.
   */
  cancel: { readonly taskId: string; readonly itemId: string; readonly reason: string };
  /** The control server forgot these items (after `unpublish()`); the engine dropped them. */
  unpublished: { readonly itemIds: readonly string[] };
  /** A message from another browser or from the app. */
  message: ReceivedMessageDetail;
  /** An item's progress or state changed. */
  progress: { readonly item: ItemStatus };
  /** An item is stored and verified. */
  complete: UploadResult;
  /**
   * Unfinished items of an earlier page were taken up again from their file handles, under
   * their ids, and are published again: the upload goes on from what the servers hold.
   */
  restore: { readonly items: readonly ItemStatus[] };
  /**
   * The engine works, but less well than it could: `data-worker` when its data Worker could not
   * start (a Content-Security-Policy without `worker-src`, a script that is not served) or died,
   * so the page's main thread reads, checksums and sends the bytes. Uploads go on.
   */
  degraded: { readonly reason: 'data-worker'; readonly message: string };
  /** Something failed; `room` names a room the control server did not let this browser join. */
  error: { readonly error: WsUploaderError; readonly itemId?: string; readonly room?: string };
}

/** Names of engine events. */
export type EngineEventType = keyof EngineEventDetails;

/** An engine event. */
export class EngineEvent<K extends EngineEventType = EngineEventType> extends Event {
  /** What happened. */
  readonly detail: EngineEventDetails[K];

  /**
   * @param type the event name
   * @param detail its detail
   * @param init `cancelable` for `transmit-request`
   */
  constructor(type: K, detail: EngineEventDetails[K], init: { cancelable?: boolean } = {}) {
    super(type, init);
    this.detail = detail;
  }
}
