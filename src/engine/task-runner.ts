/**
 * Runs transmit tasks for the engine: asks the page (`transmit-request`), hands the task to the
 * data plane, reports progress, completion and failure to the control server and to the page, and
 * keeps what pause, resume and the control server's cancels need.
 */
import type { ControlClientMessage, TargetRange } from '../protocol/control.js';
import { addRange, covers, type ByteRange } from '../protocol/ranges.js';
import { ServerError, type WsUploaderError } from '../errors.js';
import type { DataPlane } from './data-plane.js';
import { EngineEvent, type EngineEventDetails, type EngineEventType } from './events.js';
import { checkRanges, failureOf, maxByServer, type Held } from './held-item.js';
import type { Clock } from './options.js';
import type { TaskProgress } from './part-scheduler.js';
import {
  ItemState,
  type ItemStatus,
  type RunningTask,
  type TransmitTask,
  type UploadResult,
} from './types.js';

/** Least time between two `progress` reports of one task to the control server, in ms. */
const PROGRESS_REPORT_MS = 1000;
/** Cancels of finished tasks remembered (to take their `unknown-task` answer quietly). */
const MAX_LATE_CANCELS = 100;

/** A task the engine runs (queued or running). */
interface Active {
  readonly task: RunningTask;
  readonly controller: AbortController;
  readonly fromControl: boolean;
  /** The control server's reason, once it cancelled the task. */
  cancelled?: string;
  /** Stopped by `pause()`: it runs again on `resume()`. */
  paused?: boolean;
}

/** What the task runner needs of the engine. */
export interface TaskHost {
  /** The item held under an id. */
  held(itemId: string): Held | undefined;
  /** Changes an item's status (and tells the page). */
  update(itemId: string, fn: (s: ItemStatus) => ItemStatus): void;
  /** An item failed. */
  fail(itemId: string, error: WsUploaderError): void;
  /** An item is stored whole. */
  finished(held: Held): void;
  /** Sends to the control server. */
  send(message: ControlClientMessage): void;
  /** Dispatches an engine event; whether it was not cancelled. */
  dispatch<K extends EngineEventType>(event: EngineEvent<K>): boolean;
  /** Aborted when the engine stops (a new one after each `start()`). */
  stopped(): AbortSignal;
}

/**
 * The engine's running tasks.
 * @internal
 */
export class TaskRunner {
  readonly #plane: DataPlane;
  readonly #clock: Clock;
  readonly #host: TaskHost;
  /** Tasks queued or running, by task id. */
  readonly #active = new Map<string, Active>();
  /** Tasks the control server cancelled after this page finished them. */
  readonly #lateCancels = new Set<string>();

  /**
   * @param plane where the bytes go
   * @param clock the engine's clock
   * @param host the engine
   */
  constructor(plane: DataPlane, clock: Clock, host: TaskHost) {
    this.#plane = plane;
    this.#clock = clock;
    this.#host = host;
  }

  /** Whether a task runs (or is queued) under this id. */
  has(taskId: string): boolean {
    return this.#active.has(taskId);
  }

  /** Whether a task of the item runs, other than `except`. */
  busy(itemId: string, except?: string): boolean {
    for (const active of this.#active.values())
      if (active.task.itemId === itemId && active.task.taskId !== except) return true;
    return false;
  }

  /** Stops an item's tasks without a word (it was dropped). */
  stopItem(itemId: string): void {
    for (const active of this.#active.values())
      if (active.task.itemId === itemId) active.controller.abort();
  }

  /** Stops an item's tasks to run them again on `resume()`. */
  pauseItem(itemId: string): void {
    for (const active of this.#active.values()) {
      if (active.task.itemId !== itemId) continue;
      active.paused = true;
      active.controller.abort();
    }
  }

  /**
   * Stops the control server's tasks (a new session does not know them, so they stop quietly).
   * @returns their items
   */
  stopControlTasks(): string[] {
    const items: string[] = [];
    for (const active of this.#active.values()) {
      if (!active.fromControl) continue;
      active.controller.abort();
      items.push(active.task.itemId);
    }
    return items;
  }

  /**
   * The control server cancelled a task: it stops (a `cancel` event follows), or, paused, will not
   * run on `resume()`. A task this page finished already is remembered, to take the control
   * server's `unknown-task` answer quietly.
   */
  cancel(taskId: string, itemId: string, reason: string): void {
    const active = this.#active.get(taskId);
    const paused = this.#host.held(itemId)?.paused;
    const waiting = paused?.findIndex((p) => p.task.taskId === taskId) ?? -1;
    if (!active && paused && waiting >= 0) {
      paused.splice(waiting, 1)[0]!.reject(new DOMException(reason, 'AbortError'));
      this.#emit('cancel', { taskId, itemId, reason });
      return;
    }
    if (!active || active.task.itemId !== itemId) {
      this.#lateCancels.add(taskId);
      if (this.#lateCancels.size > MAX_LATE_CANCELS)
        this.#lateCancels.delete(this.#lateCancels.values().next().value!);
      return;
    }
    active.cancelled = reason;
    active.controller.abort();
  }

  /** Whether the control server's `unknown-task` for this id answers a late cancel. */
  lateCancelAnswered(taskId: string): boolean {
    return this.#lateCancels.delete(taskId);
  }

  /**
   * Queues a task. The scheduler runs one task of an item at a time (a later one resumes from
   * what the earlier stored); a `demand` task (a reader waits) preempts lower-priority ones.
   */
  execute(task: RunningTask, fromControl: boolean): Promise<UploadResult> {
    const host = this.#host;
    const held = host.held(task.itemId);
    if (!held) {
      const error = new ServerError('unknown-item', `no item ${task.itemId} in this page`, {
        serverId: 'control',
        itemId: task.itemId,
      });
      if (fromControl) this.#reportFail(task, error);
      return Promise.reject(error);
    }
    if (held.paused) {
      // Waits for resume(), which runs it and settles this promise.
      const paused = held.paused;
      return new Promise<UploadResult>((resolve, reject) =>
        paused.push({ task, fromControl, resolve, reject }),
      );
    }
    // The page may decline the task, or send its ranges to other servers, before it runs.
    let ranges: readonly TargetRange[] = task.ranges;
    const accepted = host.dispatch(
      new EngineEvent(
        'transmit-request',
        {
          task,
          retarget: (next) => (ranges = checkRanges(next, held.status.size)),
        },
        { cancelable: true },
      ),
    );
    if (!accepted) {
      if (fromControl)
        host.send({
          type: 'fail',
          taskId: task.taskId,
          itemId: task.itemId,
          code: 'declined',
          message: 'the page declined the task',
        });
      this.#settle(task);
      return Promise.reject(
        new DOMException(`the page declined task ${task.taskId}`, 'AbortError'),
      );
    }
    if (ranges !== task.ranges) task = { ...task, ranges };
    const controller = new AbortController();
    const stopped = host.stopped();
    const stop = (): void => controller.abort();
    stopped.addEventListener('abort', stop, { once: true });
    const active: Active = { task, controller, fromControl };
    this.#active.set(task.taskId, active);
    host.update(task.itemId, (s) => ({ ...s, state: ItemState.UPLOADING, errorCode: undefined }));
    const fresh = held.fresh === true;
    // Every later task asks each server what it holds.
    delete held.fresh;
    return this.#plane
      .run(
        { itemId: task.itemId, name: held.status.name, blob: held.blob, fresh },
        task.ranges,
        this.#progress(task, fromControl),
        {
          priority: task.priority,
          urgent: task.reason === 'demand',
          ...(task.deadline === undefined ? {} : { deadline: task.deadline }),
          // One multipart POST, as the control server asked, for a task of the whole item.
          multipart: task.protocol === 'http/1',
          serverDigest: task.digest === 'server',
          signal: controller.signal,
        },
      )
      .then(
        (result) => this.#taskDone(active, held, result),
        (e: unknown) => {
          // Paused: not an error; the task waits and runs again on resume().
          if (active.paused && !stopped.aborted && host.held(task.itemId) === held) {
            stopped.removeEventListener('abort', stop);
            if (this.#active.get(task.taskId) === active) this.#active.delete(task.taskId);
            const paused = held.paused;
            // Resumed before the run had stopped (the data Worker answers a message later): it
            // runs again now, or resume() would find nothing to run.
            if (!paused) return this.execute(task, fromControl);
            return new Promise<UploadResult>((resolve, reject) =>
              paused.push({ task, fromControl, resolve, reject }),
            );
          }
          return this.#taskFailed(active, e);
        },
      )
      .finally(() => {
        stopped.removeEventListener('abort', stop);
        // A paused task that ran again on resume() is a new entry under the same id.
        if (this.#active.get(task.taskId) === active) this.#active.delete(task.taskId);
      });
  }

  /** A task's progress, for the item's status and (at most once a second) the control server. */
  #progress(task: RunningTask, fromControl: boolean): (p: TaskProgress) => void {
    let reportedAt = -Infinity;
    return (p) => {
      const now = this.#clock.now();
      if (fromControl && now - reportedAt >= PROGRESS_REPORT_MS && p.bytesStored < p.bytesTotal) {
        reportedAt = now;
        this.#host.send({
          type: 'progress',
          taskId: task.taskId,
          itemId: task.itemId,
          bytesStored: p.bytesStored,
        });
      }
      this.#host.update(task.itemId, (s) => ({
        ...s,
        bytesSent: Math.max(s.bytesSent, p.bytesSent),
        bytesStored: Math.max(s.bytesStored, p.bytesStored),
        bytesTotal: p.bytesTotal,
        ...(Object.keys(p.bytesByServer).length === 0
          ? {}
          : { bytesByServer: maxByServer(s.bytesByServer, p.bytesByServer) }),
      }));
    };
  }

  #taskDone(active: Active, held: Held, result: UploadResult): UploadResult {
    const { task, fromControl } = active;
    const whole = covers(task.ranges.reduce<ByteRange[]>(addRange, []), {
      start: 0,
      end: held.status.size,
    });
    if (fromControl) {
      // The item's digest goes with a task that covers all of it; a part needs none.
      this.#host.send({
        type: 'complete',
        taskId: task.taskId,
        itemId: task.itemId,
        ...(whole ? { sha256: result.sha256 } : {}),
        servers: [...result.servers],
      });
    }
    if (whole && result.sha256 === undefined && fromControl) {
      // An upload server computes the item's digest: the control server's `completed` (or its
      // error) ends the item. Until then it stays `uploading`, every byte stored.
    } else if (whole) {
      this.#host.finished(held);
      this.#host.update(task.itemId, (s) => ({
        ...s,
        state: ItemState.COMPLETE,
        sha256: result.sha256,
        servers: result.servers,
      }));
      this.#emit('complete', result);
    } else {
      // Some ranges (a reader's, say): the item is not complete for that.
      this.#settle(task);
    }
    return result;
  }

  #taskFailed(active: Active, e: unknown): never {
    const { task, controller, fromControl } = active;
    if (controller.signal.aborted) {
      // Cancelled, unpublished or stopped: not an error. The item waits again.
      this.#settle(task);
      if (active.cancelled !== undefined)
        this.#emit('cancel', {
          taskId: task.taskId,
          itemId: task.itemId,
          reason: active.cancelled,
        });
      throw controller.signal.reason;
    }
    const error = failureOf(e, task.itemId);
    if (fromControl) this.#reportFail(task, error);
    this.#host.fail(task.itemId, error);
    throw error;
  }

  /** After a task that did not complete its item: `uploading` while another runs, else `published`. */
  #settle(task: RunningTask): void {
    this.#host.update(task.itemId, (s) =>
      s.state === ItemState.UPLOADING && !this.busy(task.itemId, task.taskId)
        ? { ...s, state: ItemState.PUBLISHED }
        : s,
    );
  }

  /** Tells the control server a task failed (within the message's limits). */
  #reportFail(task: Required<TransmitTask>, error: WsUploaderError): void {
    this.#host.send({
      type: 'fail',
      taskId: task.taskId,
      itemId: task.itemId,
      code: error.code.slice(0, 64),
      message: error.message.slice(0, 1024),
    });
  }

  #emit<K extends EngineEventType>(type: K, detail: EngineEventDetails[K]): void {
    this.#host.dispatch(new EngineEvent(type, detail));
  }
}
