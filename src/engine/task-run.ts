/**
 * One run of a transmit task: opens an upload on each of its servers, reads only the slices it is
 * about to send, keeps the window full, resumes from what a server already holds after a lost
 * connection, and verifies the item.
 */
import { addRange, covers, missingRanges, rangeBytes, type ByteRange } from '../protocol/ranges.js';
import type { TargetRange } from '../protocol/control.js';
import { toHex } from '../protocol/hex.js';
import { ServerError, type WsUploaderError } from '../errors.js';
import type { OpenedUpload, Transport } from './transport.js';
import { abortable } from './abortable.js';
import { BlockBuffers, readBlocks } from './read-pieces.js';
import { backoff, shouldRetry } from './retry.js';
import { ItemHasher } from './item-hasher.js';
import type { ResolvedEngineOptions } from './options.js';
import type { SchedulerItem, TaskProgress } from './part-scheduler.js';
import type { SocketPool } from './socket-pool.js';
import type { UploadResult } from './types.js';

/**
 * Bytes read from the file at once for a WebSocket transport (or one chunk, when larger): large
 * reads cost less per byte, and the next one is read while this one is sent.
 */
const READ_BLOCK = 4 * 1024 * 1024;

/**
 * What an aborted (cancelled, preempted or stopped) run throws.
 * @internal
 */
export function abortedError(): DOMException {
  return new DOMException('the task was stopped', 'AbortError');
}

/**
 * One run of a transmit task: its ranges to all their servers at once, each with its retries, and
 * the item's digest when the task covers it whole. `PartScheduler` starts it, and stops it through
 * its signal.
 * @internal
 */
export class TaskRun {
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
      // The same two buffers for every range this server gets (a split's stripes).
      const buffers = new BlockBuffers();
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
          // Blocks read one ahead of the one being sent, each sent in chunks (each chunk's bytes
          // are copied by sendData, so the block's buffer is filled again two blocks later).
          const blocks = readBlocks(
            this.#item.blob,
            gap,
            Math.max(READ_BLOCK, this.#options.chunkSize),
            buffers,
          );
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
