/**
 * The engine's data plane: its connections to the upload servers and the tasks that send bytes
 * over them. The engine talks to it through {@link DataPlane}, whether it runs on the page's
 * thread ({@link LocalDataPlane}) or in the data Worker (`data-worker-client.ts`).
 */
import type { ServerInfo, TargetRange } from '../protocol/control.js';
import { ItemHasher } from './item-hasher.js';
import type { ResolvedEngineOptions } from './options.js';
import { PartScheduler, type RunOptions, type TaskProgress } from './part-scheduler.js';
import { SocketPool, type SocketPoolHandlers } from './socket-pool.js';
import type { ServerStatus, UploadResult } from './types.js';

/** An item as the data plane sends it. */
export interface PlaneItem {
  /** The item's id. */
  readonly itemId: string;
  /** Its name. */
  readonly name: string;
  /** Its bytes. */
  readonly blob: Blob;
  /** No upload server holds any of it yet (`SchedulerItem.fresh` in `part-scheduler.ts`). */
  readonly fresh?: boolean;
}

/** The options {@link DataPlane.configure} changes. */
export interface PlaneSettings {
  /** Largest chunk sent. */
  readonly chunkSize?: number;
  /** Tasks run at once. */
  readonly maxParallel?: number;
}

/**
 * What the engine needs of its data plane.
 * @internal
 */
export interface DataPlane {
  /** Every upload server's state, RTT, throughput and protocol. */
  statuses(): ServerStatus[];
  /** Sets the server list: connects to new servers, drops removed ones, takes new tokens. */
  update(servers: readonly ServerInfo[]): void;
  /** Changes settings for what runs from now on; more tasks start when `maxParallel` grew. */
  configure(settings: PlaneSettings): void;
  /**
   * Runs a transmit task: see {@link PartScheduler.run}.
   * @returns the item's digest (when the task covers it whole) and servers
   */
  run(
    item: PlaneItem,
    ranges: readonly TargetRange[],
    onProgress: (p: TaskProgress) => void,
    options: RunOptions,
  ): Promise<UploadResult>;
  /** Forgets what was kept for an item between its tasks (its SHA-256 so far). */
  forget(itemId: string): void;
  /** Closes every connection; {@link DataPlane.update} opens them again. */
  close(): void;
}

/**
 * The data plane on the current thread: a socket pool and a part scheduler. It runs on the page's
 * thread where no data Worker starts, and inside the data Worker otherwise.
 * @internal
 */
export class LocalDataPlane implements DataPlane {
  readonly #options: ResolvedEngineOptions;
  readonly #pool: SocketPool;
  readonly #scheduler: PartScheduler;
  /** Each item's running SHA-256, shared by its tasks, until it is forgotten. */
  readonly #hashers = new Map<string, ItemHasher>();

  /**
   * @param options the engine's options (`configure` changes them in place)
   * @param handlers told of server changes and RTT measurements
   */
  constructor(options: ResolvedEngineOptions, handlers: SocketPoolHandlers) {
    this.#options = options;
    this.#pool = new SocketPool(options, handlers);
    this.#scheduler = new PartScheduler(options, this.#pool);
  }

  statuses(): ServerStatus[] {
    return this.#pool.statuses();
  }

  update(servers: readonly ServerInfo[]): void {
    this.#pool.update(servers);
  }

  configure(settings: PlaneSettings): void {
    if (settings.chunkSize !== undefined) this.#options.chunkSize = settings.chunkSize;
    if (settings.maxParallel !== undefined) this.#options.maxParallel = settings.maxParallel;
    this.#scheduler.pump();
  }

  run(
    item: PlaneItem,
    ranges: readonly TargetRange[],
    onProgress: (p: TaskProgress) => void,
    options: RunOptions,
  ): Promise<UploadResult> {
    const hasher = (): ItemHasher => {
      let h = this.#hashers.get(item.itemId);
      if (!h) {
        h = new ItemHasher(item.blob, this.#options.hashWorker);
        this.#hashers.set(item.itemId, h);
      }
      return h;
    };
    return this.#scheduler.run({ ...item, hasher }, ranges, onProgress, options);
  }

  forget(itemId: string): void {
    this.#hashers.get(itemId)?.close();
    this.#hashers.delete(itemId);
  }

  close(): void {
    this.#pool.close();
  }
}
