/**
 * Schedules transmit tasks: at most `maxParallel` at once and one per item, highest priority first,
 * urgent ones preempting; each runs as a {@link TaskRun} (`task-run.ts`).
 */
import type { TargetRange } from '../protocol/control.js';
import type { ItemHasher } from './item-hasher.js';
import type { ResolvedEngineOptions } from './options.js';
import type { SocketPool } from './socket-pool.js';
import { abortedError, TaskRun } from './task-run.js';
import type { UploadResult } from './types.js';

/** What the scheduler needs to know about an item. */
export interface SchedulerItem {
  readonly itemId: string;
  readonly name: string;
  readonly blob: Blob;
  /**
   * The item's running SHA-256, shared by its tasks so a task that resumes (after a cancel or
   * preemption) does not hash again what an earlier one hashed. @default a new one per task
   */
  readonly hasher?: () => ItemHasher;
  /**
   * No server holds bytes of the item but what this task sends (its id was just made here, and no
   * task of it ran before): the first upload to each server skips asking what it holds.
   */
  readonly fresh?: boolean;
}

/** Progress of a running task. */
export interface TaskProgress {
  /** Bytes sent (never more than `bytesTotal`, never going backwards). */
  readonly bytesSent: number;
  /** Bytes the servers hold of the task's ranges. */
  readonly bytesStored: number;
  /** Bytes the task covers. */
  readonly bytesTotal: number;
  /** Bytes each upload server of the task holds of its ranges there, by server id. */
  readonly bytesByServer: Readonly<Record<string, number>>;
}

/** How a task is scheduled. */
export interface RunOptions {
  /** Higher runs first. */
  readonly priority: number;
  /**
   * An urgent task (a reader waits for its bytes) does not wait for lower-priority tasks: when
   * its item has a running task, or every slot is taken, the lowest-priority non-urgent running
   * task below it is preempted (stopped, then queued again; it resumes from what the servers
   * hold once a slot is free).
   */
  readonly urgent?: boolean;
  /** Between tasks of the same priority, the earlier deadline (ms since the epoch) runs first. */
  readonly deadline?: number;
  /** Aborts the task, queued or running: the promise rejects. */
  readonly signal?: AbortSignal;
  /**
   * Send the item whole as one `multipart/form-data` POST to the upload server of a task that
   * covers all of it on one server (the control server asked for `http/1`); otherwise ignored.
   */
  readonly multipart?: boolean;
  /**
   * An upload server computes the item's SHA-256 (the control server's `transmit` said `digest:
   * server`): a whole item split across servers is not hashed here in `transport` integrity, and
   * its result carries no `sha256`.
   */
  readonly serverDigest?: boolean;
}

interface Entry {
  readonly item: SchedulerItem;
  readonly ranges: readonly TargetRange[];
  readonly onProgress: (p: TaskProgress) => void;
  readonly priority: number;
  readonly urgent: boolean;
  readonly deadline: number;
  readonly seq: number;
  readonly signal: AbortSignal | undefined;
  readonly multipart: boolean;
  readonly serverDigest: boolean;
  readonly resolve: (result: UploadResult) => void;
  readonly reject: (error: unknown) => void;
  /** Aborts the current run (a preemption, or the task's own signal). */
  attempt?: AbortController;
  /** Set while a preempted run unwinds; it is then queued again. */
  preempted: boolean;
  /** Whether a run of it started (a run after a preemption is never fresh). */
  ran: boolean;
  /** The highest progress reported, kept across runs (a run after a preemption counts anew). */
  bytesSent: number;
  bytesStored: number;
}

/**
 * The part scheduler: at most `maxParallel` tasks at once, at most one per item, highest
 * priority first; urgent tasks preempt (see {@link RunOptions.urgent}).
 * @internal
 */
export class PartScheduler {
  readonly #options: ResolvedEngineOptions;
  readonly #pool: SocketPool;
  readonly #running = new Set<Entry>();
  readonly #queue: Entry[] = [];
  #seq = 0;

  constructor(options: ResolvedEngineOptions, pool: SocketPool) {
    this.#options = options;
    this.#pool = pool;
  }

  /**
   * Runs a task when a slot is free and no other task of its item runs.
   * @param item the item and its bytes
   * @param ranges what goes where
   * @param onProgress called as bytes are sent and stored
   * @param options priority, urgency and an abort signal
   * @returns the item's digest and servers once every range is stored
   */
  run(
    item: SchedulerItem,
    ranges: readonly TargetRange[],
    onProgress: (p: TaskProgress) => void,
    options: RunOptions,
  ): Promise<UploadResult> {
    return new Promise<UploadResult>((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted) {
        reject(abortedError());
        return;
      }
      const entry: Entry = {
        item,
        ranges,
        onProgress,
        priority: options.priority,
        urgent: options.urgent === true,
        deadline: options.deadline ?? Infinity,
        seq: this.#seq++,
        signal,
        multipart: options.multipart === true,
        serverDigest: options.serverDigest === true,
        resolve,
        reject,
        preempted: false,
        ran: false,
        bytesSent: 0,
        bytesStored: 0,
      };
      signal?.addEventListener(
        'abort',
        () => {
          const at = this.#queue.indexOf(entry);
          if (at < 0) return; // Running: its run stops through its attempt's signal.
          this.#queue.splice(at, 1);
          reject(abortedError());
          this.#pump();
        },
        { once: true },
      );
      this.#enqueue(entry);
      this.#pump();
    });
  }

  /** Starts queued tasks that fit now (after `maxParallel` grew). */
  pump(): void {
    this.#pump();
  }

  #enqueue(entry: Entry): void {
    this.#queue.push(entry);
    this.#queue.sort((a, b) => b.priority - a.priority || a.deadline - b.deadline || a.seq - b.seq);
  }

  #runningFor(itemId: string): Entry | undefined {
    for (const r of this.#running) if (r.item.itemId === itemId) return r;
    return undefined;
  }

  #pump(): void {
    // Start the best queued tasks whose item is not busy.
    for (let i = 0; i < this.#queue.length && this.#running.size < this.#options.maxParallel;) {
      const entry = this.#queue[i]!;
      if (this.#runningFor(entry.item.itemId)) {
        i++;
        continue;
      }
      this.#queue.splice(i, 1);
      this.#start(entry);
    }
    // Urgent tasks still waiting take a slot from a lower-priority task.
    let freeing = [...this.#running].filter((r) => r.preempted).length;
    for (const entry of this.#queue) {
      if (!entry.urgent) continue;
      const busy = this.#runningFor(entry.item.itemId);
      if (busy) {
        if (!busy.preempted && !busy.urgent && busy.priority < entry.priority) this.#preempt(busy);
        continue;
      }
      if (freeing > 0) {
        freeing--;
        continue;
      }
      let victim: Entry | undefined;
      for (const r of this.#running) {
        if (r.preempted || r.urgent || r.priority >= entry.priority) continue;
        if (!victim || r.priority < victim.priority) victim = r;
      }
      if (victim) this.#preempt(victim);
    }
  }

  #preempt(entry: Entry): void {
    entry.preempted = true;
    entry.attempt?.abort();
  }

  #start(entry: Entry): void {
    this.#running.add(entry);
    const attempt = new AbortController();
    entry.attempt = attempt;
    const follow = (): void => attempt.abort();
    entry.signal?.addEventListener('abort', follow, { once: true });
    const { ranges } = entry;
    const item = entry.ran && entry.item.fresh ? { ...entry.item, fresh: false } : entry.item;
    entry.ran = true;
    // A run after a preemption starts again from what the servers said they hold: the task's
    // progress does not go back.
    const onProgress = (p: TaskProgress): void => {
      entry.bytesSent = Math.max(entry.bytesSent, p.bytesSent);
      entry.bytesStored = Math.max(entry.bytesStored, p.bytesStored);
      entry.onProgress({ ...p, bytesSent: entry.bytesSent, bytesStored: entry.bytesStored });
    };
    new TaskRun(this.#options, this.#pool, item, ranges, onProgress, attempt.signal)
      .run(entry.multipart, entry.serverDigest)
      .then(
        (result) => {
          this.#running.delete(entry);
          entry.resolve(result);
        },
        (error: unknown) => {
          this.#running.delete(entry);
          const again = entry.preempted && !entry.signal?.aborted;
          entry.preempted = false;
          if (again) this.#enqueue(entry);
          else entry.reject(entry.signal?.aborted ? abortedError() : error);
        },
      )
      .finally(() => {
        entry.signal?.removeEventListener('abort', follow);
        this.#pump();
      });
  }
}
