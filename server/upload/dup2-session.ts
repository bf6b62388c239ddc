/**
 * One dup/2 WebSocket connection on the upload server: authenticates the HELLO, binds
 * upload ids to items, stores DATA, acknowledges stored ranges and verifies FINISH (or, for a
 * FINISH without a digest, computes the item's SHA-256); and serves
 * READs with BYTES frames, to a connection whose token allows reading.
 */
import type { Readable } from 'node:stream';
import type { WebSocket, RawData } from 'ws';
import {
  CLOSE,
  covers,
  DATA_HEADER_BYTES,
  decodeDup2ClientFragments,
  decodeDup2ClientFrame,
  encodeDup2Frame,
  fromHex,
  ProtocolError,
  toHex,
  type Dup2ClientFrame,
  type Dup2ServerFrame,
  type WireErrorCode,
} from '../../src/protocol/index.js';
import { crc32c } from '../internal/crc32c.js';
import { StoreError, type ItemStore, type StoredBytes } from './file-store.js';
import { allowsWrite, type Grant, type ReadGrant } from './grant.js';
import type { ReadAccess } from './read-access.js';
import type { BufferBudget } from './buffer-budget.js';
import type { ItemLocks, LockHolder } from './item-locks.js';
import {
  bindUpload,
  drainConnection,
  isCurrent,
  superviseConnection,
  unbindUpload,
  unlockWhenSettled,
} from './session-support.js';
import { waitForBytes, type Demand } from './wait-for-bytes.js';

/**
 * Reads open at once on one connection (bound, waiting for bytes or streaming): a READ past them
 * gets ERROR `window-exceeded` for its id, and the connection stays open.
 */
export const MAX_OPEN_READS = 64;

/** What a session needs from its server. */
export interface Dup2SessionContext {
  readonly serverId: string;
  readonly store: ItemStore;
  readonly maxChunk: number;
  readonly window: number;
  readonly maxItemSize: number;
  readonly authTimeoutMs: number;
  /** Resolves to what the token allows, or `undefined` when it is not valid here. */
  readonly verify: (token: string) => Promise<Grant | undefined>;
  /**
   * Resolves to what a read token allows, or `undefined` when the token is not a read token valid
   * here. Without it, HELLO takes upload tokens only.
   */
  readonly verifyRead?: (token: string) => Promise<ReadGrant | undefined>;
  /**
   * Who may READ: `token` (a connection whose HELLO carried a read token) or `public` (any
   * welcomed connection, any item). @default 'token'
   */
  readonly readAccess?: ReadAccess;
  /** How long a READ of bytes not stored yet waits for them before `not-ready`, in ms. @default 10000 */
  readonly holdMs?: number;
  /** Told when a READ waits for bytes not stored yet, so they can be asked for first. */
  readonly onDemand?: (demand: Demand) => void;
  /** Upload ids bound at once per client (token `sub`), across its connections. */
  readonly maxUploadsPerClient: number;
  /** Bound upload ids by client id, shared by the server's sessions. */
  readonly uploadsByClient: Map<string, number>;
  /**
   * A connection that sends no bytes for this long is closed (4008), in ms; one with a read open
   * is not idle, and its clock starts again when its last read ends.
   */
  readonly idleTimeoutMs: number;
  /** Interval of WebSocket pings; a peer that misses one is dropped, in ms. */
  readonly heartbeatMs: number;
  /** The server-wide cap on bytes received and not yet stored. */
  readonly budget: BufferBudget;
  /** Write locks on items, shared by every protocol of the server. */
  readonly locks: ItemLocks;
  /** Called when an item becomes complete and verified. */
  readonly onComplete?: (itemId: string, sha256: string, size: number) => void;
  /** Structured log of the session's events (never with a token). */
  readonly log: (event: string, fields?: Record<string, unknown>) => void;
}

interface Upload {
  readonly itemId: string;
  readonly size: number;
  /** Every store operation of this upload, started in the order the frames came. */
  queue: Promise<void>;
  /** Writes started and not yet durable; FINISH waits for them. */
  readonly writes: Set<Promise<void>>;
  /** Bytes received and not yet stored. */
  pending: number;
  /** Ended by an ERROR or CANCEL: queued work still runs, but sends nothing. */
  ended: boolean;
  /** Releases the item's write lock, once taken. */
  unlock?: () => void;
}

/** A READ being answered: bound to its id from the READ until its last BYTES or its end. */
interface Read {
  readonly itemId: string;
  readonly end: number;
  /** The next byte to send. */
  at: number;
  /** Whether `end - at` counts in the connection's outstanding read bytes (after the checks). */
  counted: boolean;
  /** Ended by its last BYTES, an ERROR, CANCEL or the connection closing: sends nothing more. */
  ended: boolean;
  /** Aborted when it ends: stops a wait for bytes not stored yet. */
  readonly stop: AbortController;
  /** Resolves when it ends. */
  readonly stopped: Promise<void>;
}

/** Frame buffers a connection keeps for its next BYTES frames. */
const FRAME_BUFFERS_KEPT = 4;

/** Handles one connection until it closes. */
export class Dup2Session {
  readonly #ws: WebSocket;
  readonly #ctx: Dup2SessionContext;
  readonly #uploads = new Map<number, Upload>();
  readonly #holders = new Map<string, LockHolder>();
  readonly #reads = new Map<number, Read>();
  /** When the last read ended (`performance.now()`), for the idle clock. */
  #readsEndedAt = -Infinity;
  /** Largest BYTES payload: `maxChunk`, or less when the connection's messages are capped. */
  readonly #maxBytes: number;
  /** Bytes of the reads, past their checks, not sent yet: at most `window`. */
  #readOutstanding = 0;
  /** Settles once the last BYTES frame sent has left for the socket (`undefined` when it has). */
  #lastSend: Promise<void> | undefined;
  /**
   * Buffers of BYTES frames that have left for the socket, to build the next ones in: a fresh
   * buffer per frame costs its memory's first touch and the collector's work, more than the copy
   * of the payload into it. `undefined` on a relayed connection, whose sends may hold the bytes.
   */
  readonly #frameBuffers: Uint8Array[] | undefined;
  /** The upload token's rights; `undefined` on a connection that said HELLO with a read token. */
  #grant: Grant | undefined;
  /** The read token's rights, on a connection that said HELLO with one. */
  #reader: ReadGrant | undefined;
  #welcomed = false;
  #authenticating = false;
  #inFlight = 0;
  #closed = false;
  readonly #authTimer: NodeJS.Timeout;

  /**
   * @param ws an open connection that negotiated `ws-uploader.dup.v2`
   * @param ctx the server's settings and storage
   * @param socket the TCP connection under `ws` (none when relayed): bytes arriving on it are
   *   activity, whole messages or not
   * @param maxMessage the largest message `ws` can send (a relayed socket: what fits in a message
   *   of the registry link), when it has a limit: BYTES frames are cut to fit
   */
  constructor(ws: WebSocket, ctx: Dup2SessionContext, socket?: Readable, maxMessage?: number) {
    this.#ws = ws;
    // A browser sends a large message as many WebSocket frames: taken as they came, a DATA
    // payload is checked and written in its pieces, where `ws` would first join them (a copy of
    // every byte, in fresh memory).
    ws.binaryType = 'fragments';
    this.#ctx = ctx;
    this.#maxBytes =
      maxMessage === undefined
        ? ctx.maxChunk
        : Math.min(ctx.maxChunk, maxMessage - DATA_HEADER_BYTES);
    this.#frameBuffers = socket === undefined ? undefined : [];
    this.#authTimer = superviseConnection(
      ws,
      ctx,
      {
        authTimeout: () => this.#close(CLOSE.AUTH_TIMEOUT, 'no HELLO in time'),
        idle: () => this.#idle(),
        message: (data, isBinary) => this.#onMessage(data, isBinary),
        close: () => {
          this.#closed = true;
          for (const id of [...this.#uploads.keys()]) this.#end(id);
          for (const id of [...this.#reads.keys()]) this.#endRead(id);
        },
        // The client of a read sends nothing while its BYTES stream (or wait for bytes).
        lastBusy: () => (this.#reads.size > 0 ? Infinity : this.#readsEndedAt),
      },
      socket,
    );
  }

  /**
   * Whether the token is still valid (with the servers' clock leeway); else ERROR unauthorized.
   * Checked at OPEN and FINISH: an expired token may finish the chunks of an open upload, but not
   * start or complete one.
   */
  #current(uploadId: number): boolean {
    if (isCurrent(this.#grant!)) return true;
    this.#error(uploadId, 'unauthorized', 'the token expired; connect again with a fresh one');
    return false;
  }

  #idle(): void {
    this.#ctx.log('idle-timeout', {});
    this.#close(CLOSE.IDLE_TIMEOUT, 'idle');
  }

  /**
   * Stops reading frames, lets the writes already received become durable (and acknowledged),
   * then closes with 1001. Nothing acknowledged is lost either way; draining spares the client
   * from sending those bytes again.
   * @param timeoutMs the longest wait for the writes
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    const work = [...this.#uploads.values()].flatMap((u) => [u.queue, ...u.writes]);
    await drainConnection(this.#ws, work, timeoutMs, () =>
      this.#close(CLOSE.GOING_AWAY, 'server shutting down'),
    );
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#closed) return;
    if (!isBinary) {
      this.#fatal('dup/2 frames are binary');
      return;
    }
    let frame: Dup2ClientFrame;
    /** A DATA payload's pieces, as its message's frames brought them. */
    let parts: readonly Uint8Array[] | undefined;
    try {
      const limits = { maxChunk: this.#ctx.maxChunk };
      if (Array.isArray(data)) {
        ({ frame, parts } = decodeDup2ClientFragments(data, limits));
        // Many small pieces (a client that sends tiny frames) are joined: each would be kept,
        // checked and written on its own.
        if (parts && parts.length > MAX_PARTS) parts = [Buffer.concat(parts)];
      } else frame = decodeDup2ClientFrame(toBytes(data), limits);
    } catch (e) {
      this.#fatal(e instanceof ProtocolError ? `${e.code}: ${e.message}` : 'undecodable frame');
      return;
    }
    if (!this.#welcomed) {
      if (frame.type !== 'hello' || this.#authenticating) {
        this.#fatal('the first frame must be HELLO');
        return;
      }
      this.#authenticating = true;
      void this.#hello(frame.token);
      return;
    }
    switch (frame.type) {
      case 'hello':
        this.#fatal('HELLO was already sent');
        return;
      case 'open':
        this.#open(frame.uploadId, frame.itemId, frame.size, frame.mime, frame.name);
        return;
      case 'data':
        this.#data(frame.uploadId, frame.offset, frame.crc32c, parts ?? [frame.payload]);
        return;
      case 'finish':
        this.#finish(frame.uploadId, frame.sha256);
        return;
      case 'cancel':
        this.#end(frame.uploadId);
        this.#endRead(frame.uploadId);
        return;
      case 'ping':
        this.#send({ type: 'pong', time: frame.time, serverTime: Date.now() });
        return;
      case 'read':
        this.#read(frame.readId, frame.itemId, frame.start, frame.end);
        return;
    }
  }

  async #hello(token: string): Promise<void> {
    let grant: Grant | undefined;
    let reader: ReadGrant | undefined;
    try {
      grant = await this.#ctx.verify(token);
      // Not an upload token valid here: maybe a read token, for a connection that only reads.
      if (grant === undefined) reader = await this.#ctx.verifyRead?.(token);
    } catch {
      grant = undefined;
      reader = undefined;
    }
    if (this.#closed) return;
    clearTimeout(this.#authTimer);
    if (grant === undefined && reader === undefined) {
      this.#send({
        type: 'error',
        uploadId: 0,
        code: 'unauthorized',
        message: 'token is not valid for this server',
      });
      this.#ctx.log('auth-failed', { protocol: 'dup/2' });
      this.#close(CLOSE.AUTH_FAILED, 'unauthorized');
      return;
    }
    this.#grant = grant;
    this.#reader = reader;
    this.#welcomed = true;
    const { serverId, maxChunk, window, maxItemSize } = this.#ctx;
    this.#send({ type: 'welcome', serverId, maxChunk, window, maxItemSize });
  }

  #open(uploadId: number, itemId: string, size: number, mime: string, name: string): void {
    if (this.#uploads.has(uploadId)) {
      this.#error(uploadId, 'upload-id-in-use', `upload id ${uploadId} is bound to another item`);
      return;
    }
    if (this.#reads.has(uploadId)) {
      this.#readError(uploadId, 'upload-id-in-use', `id ${uploadId} is bound to a read`);
      return;
    }
    if (this.#grant === undefined) {
      this.#error(uploadId, 'unauthorized', 'a read token does not allow uploading');
      return;
    }
    if (size > this.#ctx.maxItemSize) {
      this.#error(
        uploadId,
        'too-large',
        `item of ${size} bytes is over the limit of ${this.#ctx.maxItemSize}`,
      );
      return;
    }
    const grant = this.#grant;
    if (!this.#current(uploadId)) return;
    if (grant.items && !grant.items.has(itemId)) {
      this.#error(uploadId, 'unauthorized', `the token does not allow writing item ${itemId}`);
      return;
    }
    if (!bindUpload(this.#ctx, grant.clientId)) {
      this.#error(
        uploadId,
        'too-many-uploads',
        `at most ${this.#ctx.maxUploadsPerClient} uploads at once`,
      );
      return;
    }
    const upload: Upload = {
      itemId,
      size,
      queue: Promise.resolve(),
      writes: new Set(),
      pending: 0,
      ended: false,
    };
    this.#uploads.set(uploadId, upload);
    this.#enqueue(uploadId, upload, async () => {
      const item = { owner: this.#grant!.owner, mime, name };
      // Whoever may write the item (its owner) takes it over from a connection still writing it.
      await this.#ctx.store.open(itemId, size, item);
      // Cancelled meanwhile: it takes nothing over.
      if (upload.ended) return;
      upload.unlock = await this.#ctx.locks.acquire(
        itemId,
        { start: 0, end: Math.max(size, 1) },
        this.#holder(itemId),
      );
      if (upload.ended) return;
      // What is stored once the previous writer is done.
      const record = await this.#ctx.store.open(itemId, size, item);
      if (!upload.ended) {
        this.#send({ type: 'opened', uploadId, complete: record.complete, ranges: record.ranges });
      }
    });
  }

  /** DATA, its payload in `parts` (one, or the pieces its message's frames brought). */
  #data(uploadId: number, offset: number, crc: number, parts: readonly Uint8Array[]): void {
    const upload = this.#uploads.get(uploadId);
    if (!upload) {
      this.#notAnUpload(uploadId);
      return;
    }
    let length = 0;
    for (const part of parts) length += part.length;
    if (offset + length > upload.size) {
      this.#error(
        uploadId,
        'out-of-range',
        `bytes ${offset}..${offset + length} are past size ${upload.size}`,
      );
      return;
    }
    if (!allowsWrite(this.#grant!, upload.itemId, offset, offset + length)) {
      this.#error(uploadId, 'unauthorized', `the token does not allow writing bytes at ${offset}`);
      return;
    }
    let computed = 0;
    for (const part of parts) computed = crc32c(part, computed);
    if (computed !== crc) {
      this.#error(
        uploadId,
        'checksum-mismatch',
        `CRC-32C of bytes at ${offset} does not match; nothing stored`,
      );
      return;
    }
    if (this.#inFlight + length > this.#ctx.window) {
      this.#send({
        type: 'error',
        uploadId,
        code: 'window-exceeded',
        message: `more than ${this.#ctx.window} bytes unacknowledged`,
      });
      this.#close(CLOSE.PROTOCOL_VIOLATION, 'window exceeded');
      return;
    }
    this.#inFlight += length;
    this.#ctx.budget.take(length);
    upload.pending += length;
    // The payload's parts are views into buffers ws does not reuse: safe to keep.
    // The queue only starts the write: the store orders writes of an item, and flushes those that
    // wait together, so the next chunk need not wait for this one to be durable.
    this.#enqueue(uploadId, upload, async () => {
      const { store } = this.#ctx;
      const stored =
        parts.length === 1
          ? store.write(upload.itemId, offset, parts[0]!, crc)
          : store.writev
            ? store.writev(upload.itemId, offset, parts, { crc32c: crc })
            : store.write(upload.itemId, offset, Buffer.concat(parts, length), crc);
      const write = stored
        .then(
          () => {
            if (!upload.ended)
              this.#send({ type: 'ack', uploadId, start: offset, end: offset + length });
          },
          (e: unknown) => {
            if (!upload.ended) this.#storeError(uploadId, e);
          },
        )
        .finally(() => {
          upload.writes.delete(write);
          // An ended upload already gave its pending bytes back to the window.
          if (!upload.ended) {
            upload.pending -= length;
            this.#inFlight -= length;
            this.#ctx.budget.give(length);
          }
        });
      upload.writes.add(write);
    });
  }

  /**
   * FINISH: with `sha256`, verifies the item against it; without, the server computes the item's
   * SHA-256 itself (from the stored bytes, checked against their CRC-32C). Either way COMPLETE
   * carries the digest the item is now complete with.
   */
  #finish(uploadId: number, sha256: Uint8Array | undefined): void {
    const upload = this.#uploads.get(uploadId);
    if (!upload) {
      this.#notAnUpload(uploadId);
      return;
    }
    if (!this.#current(uploadId)) return;
    this.#enqueue(uploadId, upload, async () => {
      await Promise.all(upload.writes);
      if (upload.ended) return;
      const before = await this.#ctx.store.get(upload.itemId);
      const record = await this.#ctx.store.finish(
        upload.itemId,
        sha256 === undefined ? undefined : toHex(sha256),
      );
      const hex = record.sha256!;
      if (!upload.ended) this.#send({ type: 'complete', uploadId, sha256: fromHex(hex) });
      if (before && !before.complete) {
        this.#ctx.log('item-complete', {
          itemId: upload.itemId,
          size: record.size,
          owner: this.#grant?.owner,
          ...(sha256 === undefined ? { digest: 'computed' } : {}),
        });
        this.#ctx.onComplete?.(upload.itemId, hex, record.size);
      }
    });
  }

  /**
   * DATA or FINISH for an id that is no open upload: ERROR `unknown-upload`, which ends whatever
   * the id is bound to (a read stops).
   */
  #notAnUpload(id: number): void {
    if (this.#reads.has(id))
      this.#readError(id, 'unknown-upload', `id ${id} is bound to a read, not an upload`);
    else this.#error(id, 'unknown-upload', `upload id ${id} is not open`);
  }

  /**
   * READ: checks the id and the reads open, then who may read (before anything about the item, so
   * a refused reader learns nothing of it), binds the id, then answers with BYTES or an ERROR.
   */
  #read(readId: number, itemId: string, start: number, end: number): void {
    if (this.#uploads.has(readId) || this.#reads.has(readId)) {
      this.#readError(readId, 'upload-id-in-use', `id ${readId} is bound`, itemId);
      return;
    }
    if (this.#reads.size >= MAX_OPEN_READS) {
      this.#readError(
        readId,
        'window-exceeded',
        `at most ${MAX_OPEN_READS} reads open at once`,
        itemId,
      );
      return;
    }
    const refusal = this.#readRefusal(itemId);
    if (refusal !== undefined) {
      this.#readError(readId, 'unauthorized', refusal, itemId);
      return;
    }
    const stop = new AbortController();
    const stopped = new Promise<void>((resolve) =>
      stop.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    const read: Read = { itemId, end, at: start, counted: false, ended: false, stop, stopped };
    this.#reads.set(readId, read);
    this.#serve(readId, read, start, end).catch((e: unknown) => {
      if (!read.ended) this.#readFailure(readId, read, e);
    });
  }

  /** Why this connection may not read the item now, or `undefined` when it may. */
  #readRefusal(itemId: string): string | undefined {
    if ((this.#ctx.readAccess ?? 'token') === 'public') return undefined;
    const reader = this.#reader;
    if (reader === undefined)
      return 'the token does not allow reading: say HELLO with a read token (scope "read")';
    if (!isCurrent(reader)) return 'the token expired; connect again with a fresh one';
    if (reader.items && !reader.items.has(itemId))
      return `the read token does not allow reading item ${itemId}`;
    return undefined;
  }

  /** Checks the item and the window, waits for bytes not stored yet, then streams them. */
  async #serve(readId: number, read: Read, start: number, end: number): Promise<void> {
    const { store, window } = this.#ctx;
    const record = await store.get(read.itemId);
    if (read.ended) return;
    if (!record) {
      this.#readError(readId, 'not-found', `item ${read.itemId} is not here`);
      return;
    }
    if (end > record.size) {
      this.#readError(
        readId,
        'out-of-range',
        `bytes ${start}..${end} are past size ${record.size}`,
      );
      return;
    }
    if (end - start > window) {
      this.#readError(readId, 'too-large', `a read of ${end - start} bytes is over the window`);
      return;
    }
    if (this.#readOutstanding + (end - start) > window) {
      this.#readError(
        readId,
        'window-exceeded',
        `more than ${window} bytes asked for and not yet sent`,
      );
      return;
    }
    read.counted = true;
    this.#readOutstanding += end - start;
    const want = { start, end };
    if (!covers(record.ranges, want)) {
      const ready = await waitForBytes({
        store,
        itemId: read.itemId,
        ranges: [want],
        record,
        holdMs: this.#ctx.holdMs ?? 10_000,
        onDemand: this.#ctx.onDemand,
        signal: read.stop.signal,
      });
      if (read.ended) return;
      if (!ready) {
        this.#readError(readId, 'not-ready', `bytes ${start}..${end} are not uploaded yet`);
        return;
      }
    }
    await this.#stream(readId, read, start, end);
  }

  /**
   * Sends `[start, end)` of the item as BYTES frames of `maxChunk` bytes, or fewer when the
   * connection's messages are capped (the last one shorter):
   * the store's pieces are merged or split, so frames are large whatever the item was stored in.
   * Bytes changed at rest: the BYTES before them, then ERROR `storage-failed`.
   */
  async #stream(readId: number, read: Read, start: number, end: number): Promise<void> {
    const max = this.#maxBytes;
    const held: Buffer[] = [];
    let heldBytes = 0;
    /** The first `n` bytes held, as one buffer (a view when they are in one piece). */
    const take = (n: number): Buffer => {
      heldBytes -= n;
      const first = held[0]!;
      if (first.length >= n) {
        if (first.length === n) held.shift();
        else held[0] = first.subarray(n);
        return first.subarray(0, n);
      }
      const out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const piece = held[0]!;
        const used = Math.min(piece.length, n - filled);
        out.set(piece.subarray(0, used), filled);
        filled += used;
        if (used === piece.length) held.shift();
        else held[0] = piece.subarray(used);
      }
      return out;
    };
    let failure: { error: unknown } | undefined;
    try {
      for await (const { bytes, crc32c } of this.#pieces(read.itemId, start, end)) {
        if (read.ended) return;
        // A whole stored chunk of a full frame (or the read's last) goes as it is, with the
        // checksum it was stored with, just checked against its bytes.
        const whole = bytes.length === max || read.at + bytes.length === end;
        if (heldBytes === 0 && crc32c !== undefined && bytes.length <= max && whole) {
          if (!(await this.#sendBytes(readId, read, bytes, crc32c))) return;
          continue;
        }
        held.push(bytes);
        heldBytes += bytes.byteLength;
        while (heldBytes >= max) if (!(await this.#sendBytes(readId, read, take(max)))) return;
      }
    } catch (error) {
      failure = { error };
    }
    // The good bytes read before a failure are sent first.
    while (heldBytes > 0)
      if (!(await this.#sendBytes(readId, read, take(Math.min(max, heldBytes))))) return;
    if (read.ended) return;
    if (failure) this.#readFailure(readId, read, failure.error);
    else this.#readFailure(readId, read, new StoreError('storage-failed', 'bytes missing'));
  }

  /** The stored bytes, with their checksums where the store gives them. */
  async *#pieces(itemId: string, start: number, end: number): AsyncGenerator<StoredBytes> {
    const { store } = this.#ctx;
    if (store.readChunks) {
      yield* store.readChunks(itemId, start, end);
      return;
    }
    for await (const chunk of store.read(itemId, start, end)) {
      const bytes = chunk as Uint8Array;
      yield { bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
    }
  }

  /**
   * Sends one BYTES frame of a read once the socket's send buffer holds less than two `maxChunk`
   * (a slow reader slows the reading of the disk instead of filling memory). The last one ends the
   * read, its id free again.
   * @returns whether the read goes on
   */
  async #sendBytes(
    readId: number,
    read: Read,
    payload: Buffer,
    checksum = crc32c(payload),
  ): Promise<boolean> {
    const limit = 2 * this.#ctx.maxChunk;
    while (!read.ended && this.#ws.bufferedAmount >= limit) {
      // The send callback of the last frame, else (a relayed socket, whose buffer is the link's,
      // shared) a short poll.
      await Promise.race([this.#lastSend ?? delay(4), read.stopped]);
    }
    if (read.ended || this.#closed) return false;
    const offset = read.at;
    read.at += payload.length;
    this.#readOutstanding -= payload.length;
    const last = read.at === read.end;
    if (last) this.#endRead(readId);
    const pool = this.#frameBuffers;
    const target = pool && (pool.pop() ?? new Uint8Array(DATA_HEADER_BYTES + this.#maxBytes));
    const frame = encodeDup2Frame(
      { type: 'bytes', readId, offset, crc32c: checksum, payload },
      target,
    );
    // Written to the socket: its buffer serves again (a few are kept, for frames in flight).
    this.#sendTracked(frame, () => {
      if (target && pool && pool.length < FRAME_BUFFERS_KEPT) pool.push(target);
    });
    return !last;
  }

  /**
   * Sends a frame, and notes when it has left for the socket.
   * @param written called once `ws` has written the bytes to the socket (or failed to)
   */
  #sendTracked(bytes: Uint8Array, written?: () => void): void {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return;
    const sent = new Promise<void>((resolve) =>
      this.#ws.send(bytes, () => {
        written?.();
        resolve();
      }),
    );
    this.#lastSend = sent;
    void sent.then(() => {
      if (this.#lastSend === sent) this.#lastSend = undefined;
    });
  }

  /** A read failed in the store: `storage-failed`, or `not-ready` for bytes no longer stored. */
  #readFailure(readId: number, read: Read, e: unknown): void {
    if (read.ended) return;
    if (e instanceof StoreError && e.code === 'out-of-range')
      this.#readError(readId, 'not-ready', e.message);
    else if (e instanceof StoreError) this.#readError(readId, 'storage-failed', e.message);
    else this.#readError(readId, 'storage-failed', 'reading the item failed');
  }

  /** Sends an ERROR for a read id, which ends whatever the id is bound to. */
  #readError(readId: number, code: WireErrorCode, message: string, itemId?: string): void {
    this.#ctx.log('read-error', {
      readId,
      code,
      itemId: itemId ?? this.#reads.get(readId)?.itemId,
    });
    this.#send({ type: 'error', uploadId: readId, code, message });
    this.#end(readId);
    this.#endRead(readId);
  }

  /** Forgets a read id: the read sends nothing more, and its unsent bytes leave the window. */
  #endRead(readId: number): void {
    const read = this.#reads.get(readId);
    if (!read) return;
    this.#reads.delete(readId);
    read.ended = true;
    if (read.counted) this.#readOutstanding -= read.end - read.at;
    read.counted = false;
    if (this.#reads.size === 0) this.#readsEndedAt = performance.now();
    read.stop.abort();
  }

  /** Runs store work for an upload after the work before it, turning failures into ERROR frames. */
  #enqueue(uploadId: number, upload: Upload, fn: () => Promise<void>): void {
    upload.queue = upload.queue.then(async () => {
      // Work queued behind an ERROR or CANCEL is dropped: an ended upload id touches nothing.
      if (this.#closed || upload.ended) return;
      try {
        await fn();
      } catch (e) {
        if (!upload.ended) this.#storeError(uploadId, e);
      }
    });
  }

  /**
   * This connection as the writer of an item: its upload ids of the item share the lock, and all
   * end when another connection takes the item over.
   */
  #holder(itemId: string): LockHolder {
    let holder = this.#holders.get(itemId);
    if (!holder) {
      holder = {
        supersede: () => {
          for (const [id, upload] of this.#uploads) {
            if (upload.itemId !== itemId) continue;
            this.#error(id, 'superseded', `another connection took over item ${itemId}`);
          }
        },
      };
      this.#holders.set(itemId, holder);
    }
    return holder;
  }

  #storeError(uploadId: number, e: unknown): void {
    if (e instanceof StoreError) this.#error(uploadId, e.code, e.message);
    else this.#error(uploadId, 'internal', 'internal error');
  }

  /**
   * Sends an ERROR for an upload id. An ERROR ends the upload id on both sides: the client
   * stops counting its bytes in the window, and so does the server, at once.
   */
  #error(uploadId: number, code: WireErrorCode, message: string): void {
    this.#ctx.log('upload-error', { uploadId, code, itemId: this.#uploads.get(uploadId)?.itemId });
    this.#send({ type: 'error', uploadId, code, message });
    this.#end(uploadId);
  }

  /** Forgets an upload id and gives its unstored bytes back to the window. */
  #end(uploadId: number): void {
    const upload = this.#uploads.get(uploadId);
    if (!upload) return;
    unbindUpload(this.#ctx, this.#grant!.clientId);
    upload.ended = true;
    this.#inFlight -= upload.pending;
    this.#ctx.budget.give(upload.pending);
    upload.pending = 0;
    this.#uploads.delete(uploadId);
    unlockWhenSettled(upload.queue, upload);
  }

  #fatal(message: string): void {
    this.#send({ type: 'error', uploadId: 0, code: 'bad-frame', message });
    this.#close(CLOSE.PROTOCOL_VIOLATION, 'bad frame');
  }

  #send(frame: Dup2ServerFrame): void {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return;
    this.#ws.send(encodeDup2Frame(frame));
  }

  #close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#authTimer);
    this.#ws.close(code, reason);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Pieces of one DATA payload kept apart at most; more are joined (see `#onMessage`). */
const MAX_PARTS = 64;

/** A message that is one buffer (a relayed connection's; `ws` gives fragments) as bytes. */
function toBytes(data: Buffer | ArrayBuffer): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
