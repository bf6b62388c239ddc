/**
 * Runs transmit tasks: reads only the slices it is about to send, keeps the window full,
 * resumes from what a server already holds after a lost connection, and verifies each item.
 */
import { addRange, covers, missingRanges, rangeBytes, type ByteRange } from '../protocol/ranges.js';
import type { TargetRange } from '../protocol/control.js';
import { toHex } from '../protocol/hex.js';
import { ServerError, type WsUploaderError } from '../errors.js';
import type { OpenedUpload, Transport } from './transport.js';
import { abortable } from './abortable.js';
import { backoff, shouldRetry } from './retry.js';
import { ItemHasher } from './item-hasher.js';
import type { ResolvedEngineOptions } from './options.js';
import type { SocketPool } from './socket-pool.js';
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

/**
 * Bytes read from the file at once for a WebSocket transport (or one chunk, when larger): large
 * reads cost less per byte, and the next one is read while this one is sent.
 */
const READ_BLOCK = 4 * 1024 * 1024;

/** What an aborted (cancelled, preempted or stopped) run throws. */
function abortedError(): DOMException {
  return new DOMException('the task was stopped', 'AbortError');
}

class TaskRun {
  readonly #options: ResolvedEngineOptions;
  readonly #pool: SocketPool;
  readonly #item: SchedulerItem;
  readonly #ranges: readonly TargetRange[];
  readonly #onProgress: (p: TaskProgress) => void;
  /** Aborted when the task is, or when sending to one of its servers failed for good. */
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal;
  #itemHasher: ItemHasher | undefined;
  /** Whether the task covers the whole item (then it has the item's digest). */
  readonly #whole: boolean;
  /**
   * Whether the page computes the item's SHA-256: integrity `sha256`, or a whole item split over
   * several servers (no one server can compute it). Set by {@link TaskRun.run}.
   */
  #hashing = false;
  /** The item's SHA-256 as a server verified or computed it (at `finish`). */
  #serverDigest: Uint8Array | undefined;
  readonly #total: number;
  #stored: ByteRange[] = [];
  /** What each server holds of the task's ranges. */
  readonly #storedBy = new Map<string, ByteRange[]>();
  /** Bytes each server acknowledged in this task (for its retry budget). */
  readonly #ackedBy = new Map<string, number>();
  /** What this run sent (to any server), for `bytesSent` with what the servers held before. */
  #sent: ByteRange[] = [];
  /** Whether no server holds any of the item yet ({@link SchedulerItem.fresh}). */
  #fresh: boolean;

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
    this.#signal = this.#stop.signal;
    if (signal?.aborted) this.#stop.abort();
    else signal?.addEventListener('abort', () => this.#stop.abort(), { once: true });
    this.#total = rangeBytes(ranges);
    const merged = ranges.reduce<ByteRange[]>((all, r) => addRange(all, r), []);
    this.#whole = covers(merged, { start: 0, end: item.blob.size });
    this.#fresh = item.fresh === true;
  }

  /**
   * @param multipart send a task of the whole item on one server as one multipart POST
   * @param serverDigest an upload server computes the digest of an item split across servers
   */
  async run(multipart = false, serverDigest = false): Promise<UploadResult> {
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
    // Every server at once. Ranges going to several servers are hashed from the file alongside (the
    // bytes each server is sent do not come in the item's order).
    this.#hashing =
      this.#whole &&
      (this.#options.integrity === 'sha256' || (byServer.size > 1 && !serverDigest) || size === 0);
    if (multipart && byServer.size === 1 && this.#whole && size > 0) {
      const [serverId] = byServer.keys();
      try {
        return await this.#post(serverId!);
      } catch (e) {
        // Broken off or refused: the bytes go by parts, from what the server stored.
        if (this.#signal.aborted) throw e;
        this.#fresh = false;
      }
    }
    if (this.#hashing && byServer.size > 1) this.#hasher.ahead();
    let failure: { error: unknown } | undefined;
    await Promise.all(
      [...byServer].map(([serverId, ranges]) =>
        this.#toServer(serverId, ranges).catch((error: unknown) => {
          // The first failure ends the task; the other servers stop.
          failure ??= { error };
          this.#stop.abort();
        }),
      ),
    );
    if (failure) throw failure.error;
    // The item's digest only for a task that covers all of it: for a part (a reader's ranges) it
    // would mean reading the rest of the file, for nothing.
    const digest = !this.#whole
      ? undefined
      : this.#hashing
        ? await this.#abortable(this.#hasher.digest())
        : this.#serverDigest;
    const sha256 = digest && toHex(digest);
    return {
      itemId: this.#item.itemId,
      name: this.#item.name,
      size,
      ...(sha256 === undefined ? {} : { sha256 }),
      servers: [...byServer.keys()],
    };
  }

  async #toServer(serverId: string, ranges: ByteRange[]): Promise<void> {
    const delays = this.#options.retryDelays;
    // Only the first attempt may skip asking the server what it holds.
    let fresh = this.#fresh;
    for (let attempt = 0; ; attempt++) {
      this.#checkAborted();
      const ackedBefore = this.#ackedBy.get(serverId) ?? 0;
      try {
        const transport = await this.#abortable(this.#pool.get(serverId));
        const first = fresh;
        fresh = false;
        await this.#attempt(transport, ranges, serverId, first);
        return;
      } catch (e) {
        const error = e as WsUploaderError;
        if (this.#signal?.aborted) throw error;
        // This server stored more since the last try: it is worth more tries (as tus does).
        if ((this.#ackedBy.get(serverId) ?? 0) > ackedBefore) attempt = 0;
        const retryable = shouldRetry(error, attempt, delays);
        if (!(await this.#options.onShouldRetry(error, attempt, retryable))) throw error;
        // Past the last delay (the hook asked for more tries), the last one again.
        await this.#sleep(backoff(delays, attempt, this.#options.random));
      }
    }
  }

  async #attempt(
    transport: Transport,
    ranges: ByteRange[],
    serverId: string,
    fresh: boolean,
  ): Promise<void> {
    const { itemId, blob } = this.#item;
    let failure: WsUploaderError | DOMException | undefined;
    let outstanding = 0;
    let settle: (() => void) | undefined;
    // What this server holds now: what OPENED said plus this attempt's ACKs. (After a digest
    // mismatch it forgot everything, and every byte goes again.)
    let have: ByteRange[] = [];
    const meta = { itemId, size: blob.size, mime: blob.type, name: this.#item.name, blob, fresh };
    const opening = transport.open(meta, {
      ack: (start, end) => {
        outstanding -= end - start;
        have = addRange(have, { start, end });
        this.#ackedBy.set(serverId, (this.#ackedBy.get(serverId) ?? 0) + end - start);
        this.#pool.stored(serverId, end - start);
        this.#addStored({ start, end }, serverId);
        if (outstanding === 0) settle?.();
      },
      error: (error) => {
        failure = error;
        settle?.();
      },
    });
    let opened: OpenedUpload;
    try {
      opened = await this.#abortable(opening);
    } catch (e) {
      // Aborted while opening: the upload id, once the server opened it, is given back.
      opening.then(
        (o) => transport.release(o.uploadId),
        () => undefined,
      );
      throw e;
    }
    const uploadId = opened.uploadId;
    // An abort ends the waits below at once (a cancel, a preemption or the engine stopping).
    const onAbort = (): void => {
      failure ??= abortedError();
      settle?.();
    };
    this.#signal.addEventListener('abort', onAbort, { once: true });
    try {
      const held = opened.complete ? [{ start: 0, end: blob.size }] : opened.ranges;
      for (const r of held) {
        have = addRange(have, r);
        for (const mine of ranges) this.#addStored(intersect(r, mine), serverId);
      }
      // Blobs go out without being read here: the item's digest is read from the file alongside.
      if (transport.takesBlobs && this.#hashing) this.#hasher.ahead();
      this.#pool.sending(serverId);
      const check = (): void => {
        this.#checkAborted();
        if (failure) throw failure;
      };
      const send = async (offset: number, payload: Uint8Array | Blob): Promise<void> => {
        const length = payload instanceof Blob ? payload.size : payload.length;
        await transport.waitForRoom(uploadId, length, this.#signal);
        check();
        outstanding += length;
        transport.sendData(uploadId, offset, payload);
        this.#sent = addRange(this.#sent, { start: offset, end: offset + length });
        this.#report();
      };
      const chunkSize = (): number =>
        transport.chunkSize(this.#options.chunkSize, this.#pool.throughput(serverId));
      for (const range of ranges) {
        for (const gap of missingRanges(range, have)) {
          if (transport.takesBlobs) {
            for (let offset = gap.start; offset < gap.end;) {
              const end = Math.min(gap.end, offset + chunkSize());
              await send(offset, blob.slice(offset, end));
              offset = end;
            }
            continue;
          }
          // Blocks read one ahead of the one being sent, each sent in chunks.
          const blocks = this.#blocks(gap);
          try {
            for (let next = blocks.next(); ;) {
              const current = await this.#abortable(next);
              if (!current) break;
              next = blocks.next();
              if (this.#hashing) await this.#hasher.update(current.offset, current.bytes);
              check();
              const { offset: base, bytes } = current;
              for (let at = 0; at < bytes.length;) {
                const end = Math.min(bytes.length, at + chunkSize());
                await send(base + at, bytes.subarray(at, end));
                at = end;
              }
            }
          } finally {
            blocks.stop();
          }
        }
      }
      if (outstanding > 0 && !failure) await new Promise<void>((resolve) => (settle = resolve));
      if (failure) throw failure;
      // A server that holds the whole item verifies it, even one that had it already.
      const whole = covers(ranges.reduce<ByteRange[]>(addRange, []), { start: 0, end: blob.size });
      if (whole) {
        const digest = this.#hashing ? await this.#abortable(this.#hasher.digest()) : undefined;
        if (failure) throw failure;
        const verified = await this.#abortable(transport.finish(uploadId, digest));
        this.#serverDigest ??= verified;
      }
    } finally {
      this.#signal.removeEventListener('abort', onAbort);
      transport.release(uploadId);
    }
  }

  /**
   * The whole item as one `multipart/form-data` POST, with its SHA-256 for the server to check. A
   * cancel breaks it off; what the server stored stays, and a later task sends the rest by parts.
   */
  async #post(serverId: string): Promise<UploadResult> {
    const { itemId, name, blob } = this.#item;
    const sha256 = this.#hashing ? await this.#abortable(this.#hasher.digest()) : undefined;
    const http = await this.#abortable(this.#pool.http(serverId));
    const meta = { itemId, size: blob.size, mime: blob.type, name, blob };
    const verified = await http.post(meta, sha256, this.#signal);
    this.#sent = [{ start: 0, end: blob.size }];
    this.#pool.stored(serverId, blob.size);
    this.#addStored({ start: 0, end: blob.size }, serverId);
    return { itemId, name, size: blob.size, sha256: toHex(verified), servers: [serverId] };
  }

  /**
   * Reads `range` of the item in blocks of {@link READ_BLOCK}, one read ahead: `next()` starts the
   * read after the one it returns, and resolves `undefined` past the end.
   */
  #blocks(range: ByteRange): {
    next(): Promise<{ offset: number; bytes: Uint8Array } | undefined>;
    stop(): void;
  } {
    const { blob } = this.#item;
    const block = Math.max(READ_BLOCK, this.#options.chunkSize);
    let offset = range.start;
    let stopped = false;
    return {
      next: () => {
        if (stopped || offset >= range.end) return Promise.resolve(undefined);
        const at = offset;
        const end = Math.min(range.end, at + block);
        offset = end;
        const read = blob
          .slice(at, end)
          .arrayBuffer()
          .then((buffer) => ({ offset: at, bytes: new Uint8Array(buffer) }));
        // A read nobody waits for any more (the task stopped) must not be an unhandled rejection.
        read.catch(() => undefined);
        return read;
      },
      stop: () => {
        stopped = true;
      },
    };
  }

  /** Counts a range a server holds, for the task's progress. */
  #addStored(range: ByteRange | undefined, serverId: string): void {
    if (!range) return;
    this.#stored = addRange(this.#stored, range);
    this.#storedBy.set(serverId, addRange(this.#storedBy.get(serverId) ?? [], range));
    this.#report();
  }

  #report(): void {
    const bytesStored = rangeBytes(this.#stored);
    const bytesByServer: Record<string, number> = {};
    for (const [serverId, ranges] of this.#storedBy) bytesByServer[serverId] = rangeBytes(ranges);
    this.#onProgress({
      // Bytes held or sent, each once (a resumed upload's bytes in flight count too).
      bytesSent: Math.min(this.#total, rangeBytes(this.#sent.reduce(addRange, this.#stored))),
      bytesStored,
      bytesTotal: this.#total,
      bytesByServer,
    });
  }

  /** The item's running SHA-256 (shared with the item's other tasks), made when first needed. */
  get #hasher(): ItemHasher {
    return (this.#itemHasher ??=
      this.#item.hasher?.() ?? new ItemHasher(this.#item.blob, this.#options.hashWorker));
  }

  #checkAborted(): void {
    if (this.#signal.aborted) throw abortedError();
  }

  /** `promise`, or a rejection as soon as the task is aborted (a slow read, a server that hangs). */
  #abortable<T>(promise: Promise<T>): Promise<T> {
    return abortable(promise, this.#signal, abortedError);
  }

  #sleep(ms: number): Promise<void> {
    return this.#abortable(
      new Promise<void>((resolve) => this.#options.clock.setTimeout(resolve, ms)),
    );
  }
}

function intersect(a: ByteRange, b: ByteRange): ByteRange | undefined {
  const start = Math.max(a.start, b.start);
  const end = Math.min(a.end, b.end);
  return end > start ? { start, end } : undefined;
}
