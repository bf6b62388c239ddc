/**
 * The page's side of the data Worker: a {@link DataPlane} whose sockets, reads and hashing run in
 * the Worker (`data-worker.ts`). Until the Worker answers it queues what it is asked; where the
 * Worker cannot start, or dies, it carries on with a {@link LocalDataPlane} on the page's thread
 * (tasks that were running there run again, from what the servers hold) and says so once.
 */
import type { ServerInfo, TargetRange } from '../protocol/control.js';
import {
  LocalDataPlane,
  type DataPlane,
  type PlaneItem,
  type PlaneSettings,
} from './data-plane.js';
import {
  CLONED_OPTIONS,
  errorFrom,
  type FromWorker,
  type ToWorker,
  type WorkerOptions,
} from './data-worker-messages.js';
import type { ResolvedEngineOptions } from './options.js';
import type { RunOptions, TaskProgress } from './part-scheduler.js';
import type { SocketPoolHandlers } from './socket-pool.js';
import type { ServerStatus, UploadResult } from './types.js';
import type { WsUploaderError } from '../errors.js';

/** Time the Worker has to answer `init` before the page does the work itself, in ms. */
const READY_TIMEOUT_MS = 10_000;

/** Callbacks of a {@link WorkerDataPlane}. */
export interface WorkerPlaneHandlers extends SocketPoolHandlers {
  /** The Worker could not start, or died: the page's thread does the data work from now on. */
  degraded(reason: string): void;
}

interface Run {
  readonly item: PlaneItem;
  readonly ranges: readonly TargetRange[];
  readonly onProgress: (p: TaskProgress) => void;
  readonly options: RunOptions;
  readonly resolve: (result: UploadResult) => void;
  readonly reject: (error: unknown) => void;
  readonly onAbort: () => void;
}

/**
 * A data plane in a dedicated Worker.
 * @internal
 */
export class WorkerDataPlane implements DataPlane {
  readonly #script: URL | string;
  readonly #options: ResolvedEngineOptions;
  readonly #given: Pick<WorkerOptions, 'hashWorker' | 'askRetry'>;
  readonly #handlers: WorkerPlaneHandlers;
  #worker: Worker | undefined;
  #ready = false;
  /** Messages waiting for the Worker's `ready`. */
  #queue: ToWorker[] = [];
  /** The page's own plane, once the Worker failed. */
  #local: LocalDataPlane | undefined;
  /** A plane on the page for items whose reads the page overrides (see {@link crossesIntact}). */
  #pageOnly: LocalDataPlane | undefined;
  readonly #runs = new Map<number, Run>();
  #nextRun = 1;
  #servers: ServerStatus[] = [];
  /** The last server list given, for a plane started later. */
  #serverList: readonly ServerInfo[] | undefined;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param script the data Worker's module script
   * @param options the engine's options
   * @param given what the Worker needs of the options as the page gave them
   * @param handlers told of server changes, RTTs, and a Worker that could not do the work
   */
  constructor(
    script: URL | string,
    options: ResolvedEngineOptions,
    given: Pick<WorkerOptions, 'hashWorker' | 'askRetry'>,
    handlers: WorkerPlaneHandlers,
  ) {
    this.#script = script;
    this.#options = options;
    this.#given = given;
    this.#handlers = handlers;
    this.#spawn();
  }

  /** Starts the Worker (again, after {@link WorkerDataPlane.close}). */
  #spawn(): void {
    let worker: Worker;
    try {
      worker = new Worker(this.#script, { type: 'module', name: 'ws-uploader-data' });
    } catch (e) {
      // A Content-Security-Policy may refuse it at once.
      this.#fallBack(`the data Worker could not start: ${String(e)}`);
      return;
    }
    this.#worker = worker;
    this.#ready = false;
    // A Worker closed by close() may still speak: only the current one is heard.
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      if (this.#worker === worker) this.#onMessage(event.data);
    };
    worker.onerror = (event) => {
      event.preventDefault?.();
      if (this.#worker === worker)
        this.#fallBack(`the data Worker failed: ${event.message || 'it could not be loaded'}`);
    };
    worker.onmessageerror = () => {
      if (this.#worker === worker)
        this.#fallBack('the data Worker sent a message that cannot be read');
    };
    this.#timer = setTimeout(
      () => this.#fallBack(`the data Worker did not start within ${READY_TIMEOUT_MS} ms`),
      READY_TIMEOUT_MS,
    );
    const options = { ...workerOptions(this.#options), ...this.#given };
    this.#post({ type: 'init', options }, true);
  }

  /** Whether the work is done in the Worker (`false` once the page took it over). */
  get inWorker(): boolean {
    return this.#local === undefined;
  }

  statuses(): ServerStatus[] {
    return this.#local ? this.#local.statuses() : this.#servers;
  }

  update(servers: readonly ServerInfo[]): void {
    this.#closed = false;
    this.#serverList = servers;
    this.#pageOnly?.update(servers);
    if (this.#local) {
      this.#local.update(servers);
      return;
    }
    if (!this.#worker) this.#spawn();
    this.#post({ type: 'update', servers });
  }

  configure(settings: PlaneSettings): void {
    this.#pageOnly?.configure(settings);
    if (this.#local) this.#local.configure(settings);
    else this.#post({ type: 'configure', settings });
  }

  run(
    item: PlaneItem,
    ranges: readonly TargetRange[],
    onProgress: (p: TaskProgress) => void,
    options: RunOptions,
  ): Promise<UploadResult> {
    if (this.#local) return this.#local.run(item, ranges, onProgress, options);
    if (!crossesIntact(item.blob)) return this.#pagePlane().run(item, ranges, onProgress, options);
    if (!this.#worker) this.#spawn();
    return new Promise<UploadResult>((resolve, reject) => {
      const runId = this.#nextRun++;
      const { signal } = options;
      const onAbort = (): void => this.#post({ type: 'abort', runId });
      const run: Run = { item, ranges, onProgress, options, resolve, reject, onAbort };
      this.#runs.set(runId, run);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#post({
        type: 'run',
        runId,
        item: {
          itemId: item.itemId,
          name: item.name,
          blob: item.blob,
          ...(item.fresh ? { fresh: true } : {}),
        },
        ranges,
        options: {
          priority: options.priority,
          urgent: options.urgent === true,
          multipart: options.multipart === true,
          serverDigest: options.serverDigest === true,
          ...(options.deadline === undefined ? {} : { deadline: options.deadline }),
        },
      });
      if (signal?.aborted) onAbort();
    });
  }

  forget(itemId: string): void {
    this.#pageOnly?.forget(itemId);
    if (this.#local) this.#local.forget(itemId);
    else this.#post({ type: 'forget', itemId });
  }

  close(): void {
    this.#closed = true;
    this.#serverList = undefined;
    this.#pageOnly?.close();
    if (this.#local) {
      this.#local.close();
      return;
    }
    // The Worker closes its connections and ends itself; tasks still waiting end here.
    this.#post({ type: 'close' }, true);
    clearTimeout(this.#timer);
    this.#worker = undefined;
    this.#ready = false;
    this.#queue = [];
    this.#servers = [];
    for (const run of this.#runs.values()) {
      run.options.signal?.removeEventListener('abort', run.onAbort);
      run.reject(new DOMException('the data plane was closed', 'AbortError'));
    }
    this.#runs.clear();
  }

  /** The page's plane for items that cannot cross, started on first use. */
  #pagePlane(): LocalDataPlane {
    if (!this.#pageOnly) {
      // Its own connections; the servers' state shown is the Worker's.
      this.#pageOnly = new LocalDataPlane(this.#options, { change: () => {}, probe: () => {} });
      if (this.#serverList && !this.#closed) this.#pageOnly.update(this.#serverList);
    }
    return this.#pageOnly;
  }

  #post(message: ToWorker, now = false): void {
    if (!this.#worker) return;
    if (this.#ready || now) this.#worker.postMessage(message);
    else this.#queue.push(message);
  }

  #onMessage(message: FromWorker): void {
    switch (message.type) {
      case 'ready': {
        clearTimeout(this.#timer);
        this.#ready = true;
        for (const m of this.#queue.splice(0)) this.#worker!.postMessage(m);
        return;
      }
      case 'servers':
        this.#servers = message.servers;
        if (message.changed) this.#handlers.change(message.servers);
        return;
      case 'probe':
        this.#handlers.probe(message.results);
        return;
      case 'progress':
        this.#runs.get(message.runId)?.onProgress(message.progress);
        return;
      case 'done':
      case 'failed': {
        const run = this.#runs.get(message.runId);
        if (!run) return;
        this.#runs.delete(message.runId);
        run.options.signal?.removeEventListener('abort', run.onAbort);
        if (message.type === 'done') run.resolve(message.result);
        else run.reject(errorFrom(message.error));
        return;
      }
      case 'should-retry': {
        const { askId, attempt, retryable } = message;
        const error = errorFrom(message.error) as WsUploaderError;
        Promise.resolve()
          .then(() => this.#options.onShouldRetry(error, attempt, retryable))
          .then(
            (retry) => this.#post({ type: 'retry-answer', askId, retry: retry === true }),
            () => this.#post({ type: 'retry-answer', askId, retry: false }),
          );
        return;
      }
    }
  }

  /** The page's thread takes over: running tasks run again there, from what the servers hold. */
  #fallBack(reason: string): void {
    if (this.#local) return;
    clearTimeout(this.#timer);
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#queue = [];
    const local = new LocalDataPlane(this.#options, this.#handlers);
    this.#local = local;
    this.#handlers.degraded(reason);
    if (this.#serverList && !this.#closed) local.update(this.#serverList);
    for (const run of this.#runs.values()) {
      run.options.signal?.removeEventListener('abort', run.onAbort);
      // The Worker may have sent some of it: the servers are asked what they hold.
      local
        .run({ ...run.item, fresh: false }, run.ranges, run.onProgress, run.options)
        .then(run.resolve, run.reject);
    }
    this.#runs.clear();
  }
}

/**
 * Whether a Blob reaches the Worker as the page sees it: a `File` or `Blob` of the browser's own
 * does; one whose `slice()` or `arrayBuffer()` the page overrides (its own properties, or a
 * subclass) would arrive as a plain copy without them, so it is read on the page's thread.
 */
function crossesIntact(blob: Blob): boolean {
  if (Reflect.ownKeys(blob).length > 0) return false;
  // The browser's own classes, of this realm or another (a frame's File).
  const ctor = (Object.getPrototypeOf(blob) as { constructor?: unknown } | null)?.constructor;
  return (
    typeof ctor === 'function' &&
    (ctor.name === 'File' || ctor.name === 'Blob') &&
    Function.prototype.toString.call(ctor).includes('[native code]')
  );
}

/** The options the Worker runs with. */
function workerOptions(
  options: ResolvedEngineOptions,
): Omit<WorkerOptions, 'hashWorker' | 'askRetry'> {
  return Object.fromEntries(CLONED_OPTIONS.map((key) => [key, options[key]]));
}
