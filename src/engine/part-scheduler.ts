/**
 * Runs transmit tasks: reads only the slices it is about to send, keeps the window full,
 * resumes from what a server already holds after a lost connection, and verifies each item.
 */
import { addRange, covers, missingRanges, rangeBytes, type ByteRange } from '../protocol/ranges.js';
import type { TargetRange } from '../protocol/control.js';
import { toHex } from '../protocol/hex.js';
import { ServerError, TransportError, type WsUploaderError } from '../errors.js';
import type { Dup2Transport } from './dup2-transport.js';
import { ItemHasher } from './item-hasher.js';
import type { ResolvedEngineOptions } from './options.js';
import type { SocketPool } from './socket-pool.js';
import type { UploadResult } from './types.js';

/** What the scheduler needs to know about an item. */
export interface SchedulerItem {
  readonly itemId: string;
  readonly name: string;
  readonly blob: Blob;
}

/** Progress of a running task. */
export interface TaskProgress {
  /** Bytes sent (never more than `bytesTotal`, never going backwards). */
  readonly bytesSent: number;
  /** Bytes the servers hold of the task's ranges. */
  readonly bytesStored: number;
  /** Bytes the task covers. */
  readonly bytesTotal: number;
}

interface Queued {
  readonly priority: number;
  readonly start: () => void;
}

/**
 * The part scheduler.
 * @internal
 */
export class PartScheduler {
  readonly #options: ResolvedEngineOptions;
  readonly #pool: SocketPool;
  #running = 0;
  readonly #queue: Queued[] = [];

  constructor(options: ResolvedEngineOptions, pool: SocketPool) {
    this.#options = options;
    this.#pool = pool;
  }

  /**
   * Runs a task when a slot is free (highest priority first).
   * @param item the item and its bytes
   * @param ranges what goes where
   * @param priority higher runs first
   * @param onProgress called as bytes are sent and stored
   * @param signal aborts the task
   */
  run(
    item: SchedulerItem,
    ranges: readonly TargetRange[],
    priority: number,
    onProgress: (p: TaskProgress) => void,
    signal?: AbortSignal,
  ): Promise<UploadResult> {
    return new Promise<void>((resolve) => {
      this.#queue.push({ priority, start: resolve });
      this.#queue.sort((a, b) => b.priority - a.priority);
      this.#pump();
    }).then(async () => {
      try {
        return await new TaskRun(this.#options, this.#pool, item, ranges, onProgress, signal).run();
      } finally {
        this.#running--;
        this.#pump();
      }
    });
  }

  #pump(): void {
    while (this.#running < this.#options.maxParallel && this.#queue.length > 0) {
      this.#running++;
      this.#queue.shift()!.start();
    }
  }
}

class TaskRun {
  readonly #options: ResolvedEngineOptions;
  readonly #pool: SocketPool;
  readonly #item: SchedulerItem;
  readonly #ranges: readonly TargetRange[];
  readonly #onProgress: (p: TaskProgress) => void;
  readonly #signal: AbortSignal | undefined;
  readonly #hasher: ItemHasher;
  readonly #total: number;
  #stored: ByteRange[] = [];
  #sent = 0;

  constructor(
    options: ResolvedEngineOptions,
    pool: SocketPool,
    item: SchedulerItem,
    ranges: readonly TargetRange[],
    onProgress: (p: TaskProgress) => void,
    signal: AbortSignal | undefined,
  ) {
    this.#options = options;
    this.#pool = pool;
    this.#item = item;
    this.#ranges = ranges;
    this.#onProgress = onProgress;
    this.#signal = signal;
    this.#hasher = new ItemHasher(item.blob);
    this.#total = rangeBytes(ranges);
  }

  async run(): Promise<UploadResult> {
    const size = this.#item.blob.size;
    const byServer = new Map<string, ByteRange[]>();
    for (const r of this.#ranges) {
      if (r.end > size)
        throw new ServerError('out-of-range', `range ${r.start}..${r.end} is past the item`, {
          serverId: r.serverId,
        });
      byServer.set(r.serverId, [
        ...(byServer.get(r.serverId) ?? []),
        { start: r.start, end: r.end },
      ]);
    }
    for (const [serverId, ranges] of byServer) await this.#toServer(serverId, ranges);
    const sha256 = toHex(await this.#hasher.digest());
    return {
      itemId: this.#item.itemId,
      name: this.#item.name,
      size,
      sha256,
      servers: [...byServer.keys()],
    };
  }

  async #toServer(serverId: string, ranges: ByteRange[]): Promise<void> {
    const delays = this.#options.retryDelays;
    for (let attempt = 0; ; attempt++) {
      this.#checkAborted();
      const storedBefore = rangeBytes(this.#stored);
      try {
        await this.#attempt(await this.#pool.get(serverId), ranges);
        return;
      } catch (e) {
        const error = e as WsUploaderError;
        const retryable =
          error instanceof TransportError || (error instanceof ServerError && error.retryable);
        if (this.#signal?.aborted || !retryable) throw error;
        // Bytes advanced since the last try: the connection is worth more tries (as tus does).
        if (rangeBytes(this.#stored) > storedBefore) attempt = 0;
        if (attempt >= delays.length) throw error;
        await this.#sleep(Math.floor(this.#options.random() * delays[attempt]!));
      }
    }
  }

  async #attempt(transport: Dup2Transport, ranges: ByteRange[]): Promise<void> {
    const { itemId, blob } = this.#item;
    let failure: WsUploaderError | undefined;
    let outstanding = 0;
    let settle: (() => void) | undefined;
    const meta = { itemId, size: blob.size, mime: blob.type, name: this.#item.name };
    const opened = await transport.open(meta, {
      ack: (start, end) => {
        outstanding -= end - start;
        this.#addStored({ start, end });
        if (outstanding === 0) settle?.();
      },
      error: (error) => {
        failure = error;
        settle?.();
      },
    });
    const uploadId = opened.uploadId;
    try {
      const held = opened.complete ? [{ start: 0, end: blob.size }] : opened.ranges;
      for (const r of held) for (const mine of ranges) this.#addStored(intersect(r, mine));
      const chunk = Math.min(this.#options.chunkSize, transport.maxChunk);
      for (const range of ranges) {
        for (const gap of missingRanges(range, this.#stored)) {
          for (let offset = gap.start; offset < gap.end; offset += chunk) {
            const end = Math.min(gap.end, offset + chunk);
            await transport.waitForRoom(end - offset);
            this.#checkAborted();
            if (failure) throw failure;
            const bytes = new Uint8Array(await blob.slice(offset, end).arrayBuffer());
            await this.#hasher.update(offset, bytes);
            if (failure) throw failure;
            outstanding += bytes.length;
            transport.sendData(uploadId, offset, bytes);
            this.#sent = Math.min(this.#total, this.#sent + bytes.length);
            this.#report();
          }
        }
      }
      if (outstanding > 0 && !failure) await new Promise<void>((resolve) => (settle = resolve));
      if (failure) throw failure;
      // A server that holds the whole item verifies it, even one that had it already.
      const whole = covers(ranges.reduce<ByteRange[]>(addRange, []), { start: 0, end: blob.size });
      if (whole) {
        const digest = await this.#hasher.digest();
        if (failure) throw failure;
        await transport.finish(uploadId, digest);
      }
    } finally {
      transport.release(uploadId);
    }
  }

  #addStored(range: ByteRange | undefined): void {
    if (!range) return;
    this.#stored = addRange(this.#stored, range);
    this.#report();
  }

  #report(): void {
    const bytesStored = rangeBytes(this.#stored);
    this.#onProgress({
      bytesSent: Math.max(this.#sent, bytesStored),
      bytesStored,
      bytesTotal: this.#total,
    });
  }

  #checkAborted(): void {
    if (this.#signal?.aborted) throw new TransportError('socket-closed', 'aborted');
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#options.clock.setTimeout(resolve, ms));
  }
}

function intersect(a: ByteRange, b: ByteRange): ByteRange | undefined {
  const start = Math.max(a.start, b.start);
  const end = Math.min(a.end, b.end);
  return end > start ? { start, end } : undefined;
}
