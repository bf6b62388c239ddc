/**
 * A transport and a socket pool for the part scheduler that the test steps by hand: nothing is
 * opened, acknowledged, failed or finished until the test says so, and every call is recorded.
 */
import { addRange, rangeBytes, type ByteRange } from '../../src/protocol/ranges.js';
import { toHex } from '../../src/protocol/hex.js';
import type { ServerInfo } from '../../src/protocol/control.js';
import { TransportError, type WsUploaderError } from '../../src/errors.js';
import type { SocketPool } from '../../src/engine/socket-pool.js';
import type {
  DataProtocol,
  OpenedUpload,
  Transport,
  UploadListener,
  UploadMeta,
} from '../../src/engine/transport.js';

/** A call the scheduler made on a {@link FakeTransport}, in the order it made them. */
export type TransportCall =
  | {
      readonly op: 'open';
      readonly itemId: string;
      readonly size: number;
      /** Set when the scheduler said the server cannot hold any of the item yet. */
      readonly fresh?: true;
    }
  | {
      readonly op: 'sendData';
      readonly uploadId: number;
      readonly offset: number;
      readonly length: number;
    }
  /** `sha256` in hex, or `undefined` when the scheduler sent no digest. */
  | { readonly op: 'finish'; readonly uploadId: number; readonly sha256: string | undefined }
  | { readonly op: 'release'; readonly uploadId: number };

/** One upload the scheduler opened on a {@link FakeTransport}. */
export interface FakeUpload {
  /** The id the fake gave it (once its `open` was answered; `0` before). */
  uploadId: number;
  /** What the scheduler told about the item. */
  readonly meta: UploadMeta;
  /** Where its acknowledgements and failures go. */
  readonly listener: UploadListener;
  /** Ranges sent, in the order they were sent. */
  readonly sent: ByteRange[];
  /** The bytes sent, by offset (copies). */
  readonly payloads: Map<number, Uint8Array>;
  /** Ranges acknowledged. */
  acked: ByteRange[];
  /** Whether the test failed it (the scheduler heard `error`). */
  failed: boolean;
  /** Whether the scheduler released it. */
  released: boolean;
}

interface PendingOpen {
  readonly upload: FakeUpload;
  readonly resolve: (opened: OpenedUpload) => void;
  readonly reject: (error: WsUploaderError) => void;
}

interface PendingFinish {
  readonly upload: FakeUpload;
  readonly sha256: Uint8Array | undefined;
  readonly resolve: (digest: Uint8Array) => void;
  readonly reject: (error: WsUploaderError) => void;
}

interface RoomWait {
  readonly uploadId: number;
  readonly bytes: number;
  readonly done: () => void;
}

/** How long a `wait…`/`answer…` helper waits for the scheduler before it fails the test, in ms. */
const STEP_TIMEOUT_MS = 5000;

/**
 * A {@link Transport} the test steps by hand. `open` and `finish` wait until the test answers
 * them; sent bytes are acknowledged only when the test says (or at once with `autoAck`); room to
 * send is unlimited until the test holds it. Like a server, it remembers per item what it
 * acknowledged, and answers an `open` with that unless told otherwise.
 */
export class FakeTransport implements Transport {
  /** A server description; only its id matters here. */
  info: ServerInfo;
  /** Always `dup/2`. */
  readonly protocol: DataProtocol = 'dup/2';
  /** Never. */
  readonly stalled = false;
  /** Always. */
  readonly isOpen = true;
  /** Whether the scheduler sends `Blob` slices (as to HTTP parts) rather than bytes. */
  takesBlobs = false;
  /** Bytes per send; `undefined`: the engine's `chunkSize`. */
  chunk: number | undefined;
  /** Whether every send is acknowledged (a microtask later) without the test saying so. */
  autoAck = false;
  /** Every call, in order. */
  readonly calls: TransportCall[] = [];
  /** Every upload, in the order it was opened. */
  readonly uploads: FakeUpload[] = [];
  /** What the fake "stored" of each item: every range it acknowledged, by item id. */
  readonly held = new Map<string, ByteRange[]>();
  #nextUploadId = 1;
  #room = Infinity;
  readonly #opens: PendingOpen[] = [];
  readonly #finishes: PendingFinish[] = [];
  readonly #roomWaits: RoomWait[] = [];
  readonly #watchers = new Set<() => void>();

  /** @param serverId the server's id */
  constructor(serverId: string) {
    this.info = {
      id: serverId,
      url: `ws://${serverId}.invalid/dup`,
      httpUrl: `http://${serverId}.invalid`,
      protocols: ['dup/2'],
      token: 't',
      tokenExpiresAt: 0,
    };
  }

  /** The engine's chunk size, or {@link FakeTransport.chunk}. */
  chunkSize(requested: number): number {
    return this.chunk ?? requested;
  }

  /** Resolves at once. */
  connect(): Promise<void> {
    return Promise.resolve();
  }

  /** Resolves 1 ms. */
  ping(): Promise<number> {
    return Promise.resolve(1);
  }

  /** Records the call; the promise waits for {@link FakeTransport.answerOpen} or `failOpen`. */
  open(item: UploadMeta, listener: UploadListener): Promise<OpenedUpload> {
    this.calls.push({
      op: 'open',
      itemId: item.itemId,
      size: item.size,
      ...(item.fresh ? { fresh: true as const } : {}),
    });
    const upload: FakeUpload = {
      uploadId: 0,
      meta: item,
      listener,
      sent: [],
      payloads: new Map(),
      acked: [],
      failed: false,
      released: false,
    };
    this.uploads.push(upload);
    const opened = new Promise<OpenedUpload>((resolve, reject) =>
      this.#opens.push({ upload, resolve, reject }),
    );
    this.#changed();
    return opened;
  }

  /**
   * Waits for `bytes` of room: at once unless the test {@link FakeTransport.holdRoom held} it,
   * else until it grants enough. Like the real transports, an abort of `signal` or the end of the
   * upload (before or during the wait) ends the wait early (the caller checks why).
   */
  waitForRoom(uploadId: number, bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.uploads.find((u) => u.uploadId === uploadId)?.failed) return Promise.resolve();
    if (this.#roomWaits.length === 0 && this.#room >= bytes) {
      this.#room -= bytes;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const wait: RoomWait = {
        uploadId,
        bytes,
        done: () => {
          signal?.removeEventListener('abort', wait.done);
          const at = this.#roomWaits.indexOf(wait);
          if (at >= 0) this.#roomWaits.splice(at, 1);
          resolve();
        },
      };
      signal?.addEventListener('abort', wait.done, { once: true });
      this.#roomWaits.push(wait);
      this.#changed();
    });
  }

  /** Records the range and a copy of the bytes (acknowledged at once with `autoAck`). */
  sendData(uploadId: number, offset: number, payload: Uint8Array | Blob): void {
    const length = payload instanceof Blob ? payload.size : payload.length;
    this.calls.push({ op: 'sendData', uploadId, offset, length });
    const upload = this.upload(uploadId);
    upload.sent.push({ start: offset, end: offset + length });
    if (!(payload instanceof Blob)) upload.payloads.set(offset, payload.slice());
    if (this.autoAck) queueMicrotask(() => this.ack(upload, offset, offset + length));
    this.#changed();
  }

  /** Records the call; the promise waits for {@link FakeTransport.answerFinish} or `failFinish`. */
  finish(uploadId: number, sha256: Uint8Array | undefined): Promise<Uint8Array> {
    this.calls.push({ op: 'finish', uploadId, sha256: sha256 && toHex(sha256) });
    const upload = this.upload(uploadId);
    const finished = new Promise<Uint8Array>((resolve, reject) =>
      this.#finishes.push({ upload, sha256: sha256?.slice(), resolve, reject }),
    );
    this.#changed();
    return finished;
  }

  /** Records the call. */
  release(uploadId: number): void {
    this.calls.push({ op: 'release', uploadId });
    const upload = this.uploads.find((u) => u.uploadId === uploadId);
    if (upload) upload.released = true;
    this.#changed();
  }

  /** Does nothing. */
  close(): void {}

  // ---- What the test does ----

  /** The upload of an id. @throws {Error} for an id the fake never gave */
  upload(uploadId: number): FakeUpload {
    const upload = this.uploads.find((u) => u.uploadId === uploadId);
    if (!upload) throw new Error(`no upload ${uploadId} on ${this.info.id}`);
    return upload;
  }

  /** The calls of one kind, in order. */
  callsOf<K extends TransportCall['op']>(op: K): Extract<TransportCall, { op: K }>[] {
    return this.calls.filter((c): c is Extract<TransportCall, { op: K }> => c.op === op);
  }

  /** Whether an `open` waits for its answer. */
  get opening(): boolean {
    return this.#opens.length > 0;
  }

  /** Whether a `finish` waits for its answer. */
  get finishing(): boolean {
    return this.#finishes.length > 0;
  }

  /** Sends waiting for room. */
  get waitingForRoom(): number {
    return this.#roomWaits.length;
  }

  /**
   * Answers the oldest unanswered `open` (waiting for one if there is none yet).
   * @param answer what the server holds: `complete`, or `ranges` (default: what the fake held of
   *   the item before: the ranges it acknowledged or was told it holds)
   * @returns the upload, with its id
   */
  async answerOpen(answer: { ranges?: ByteRange[]; complete?: boolean } = {}): Promise<FakeUpload> {
    await this.waitFor(() => this.opening, 'an open');
    const { upload, resolve } = this.#opens.shift()!;
    upload.uploadId = this.#nextUploadId++;
    const { itemId, size } = upload.meta;
    // What the test says the server holds is what it holds from now on.
    if (answer.complete) this.held.set(itemId, [{ start: 0, end: size }]);
    else if (answer.ranges) this.held.set(itemId, answer.ranges.reduce<ByteRange[]>(addRange, []));
    const ranges = answer.ranges ?? this.held.get(itemId) ?? [];
    resolve({ uploadId: upload.uploadId, complete: answer.complete === true, ranges });
    return upload;
  }

  /** Fails the oldest unanswered `open` (waiting for one if there is none yet). */
  async failOpen(error: WsUploaderError): Promise<FakeUpload> {
    await this.waitFor(() => this.opening, 'an open');
    const { upload, reject } = this.#opens.shift()!;
    reject(error);
    return upload;
  }

  /** Acknowledges `start..end` of an upload (the fake then holds it). */
  ack(upload: FakeUpload, start: number, end: number): void {
    upload.acked = addRange(upload.acked, { start, end });
    const { itemId } = upload.meta;
    this.held.set(itemId, addRange(this.held.get(itemId) ?? [], { start, end }));
    upload.listener.ack(start, end);
    this.#changed();
  }

  /**
   * Acknowledges every range of an upload sent and not acknowledged yet, in the order sent.
   * @returns the bytes acknowledged
   */
  ackSent(upload: FakeUpload): number {
    let bytes = 0;
    for (const r of upload.sent) {
      if (upload.acked.some((a) => a.start <= r.start && r.end <= a.end)) continue;
      this.ack(upload, r.start, r.end);
      bytes += r.end - r.start;
    }
    return bytes;
  }

  /** Fails an upload (its id is gone on the server): the scheduler hears `error`. */
  fail(upload: FakeUpload, error: WsUploaderError): void {
    upload.failed = true;
    for (const wait of this.#roomWaits.filter((w) => w.uploadId === upload.uploadId)) wait.done();
    upload.listener.error(error);
    this.#changed();
  }

  /** From now on sends wait for {@link FakeTransport.grantRoom}. */
  holdRoom(): void {
    this.#room = 0;
  }

  /** Lets `bytes` more be sent (`Infinity`: no limit any more), waking waiting sends in order. */
  grantRoom(bytes: number): void {
    this.#room += bytes;
    while (this.#roomWaits.length > 0 && this.#room >= this.#roomWaits[0]!.bytes) {
      const wait = this.#roomWaits[0]!;
      this.#room -= wait.bytes;
      wait.done();
    }
  }

  /**
   * Answers the oldest unanswered `finish` (waiting for one if there is none yet).
   * @param digest the SHA-256 the "server" verified or computed (default: the one it was given)
   * @returns the upload and the digest the scheduler gave, if any
   */
  async answerFinish(
    digest?: Uint8Array,
  ): Promise<{ upload: FakeUpload; sha256: Uint8Array | undefined }> {
    await this.waitFor(() => this.finishing, 'a finish');
    const { upload, sha256, resolve } = this.#finishes.shift()!;
    const answer = digest ?? sha256;
    if (!answer) throw new Error('finish had no digest: give answerFinish() one');
    resolve(answer);
    return { upload, sha256 };
  }

  /** Fails the oldest unanswered `finish` (waiting for one if there is none yet). */
  async failFinish(error: WsUploaderError): Promise<FakeUpload> {
    await this.waitFor(() => this.finishing, 'a finish');
    const { upload, reject } = this.#finishes.shift()!;
    reject(error);
    return upload;
  }

  /** Bytes sent on an upload, resends counted. */
  sentBytes(upload: FakeUpload): number {
    return upload.sent.reduce((sum, r) => sum + r.end - r.start, 0);
  }

  /** Distinct bytes sent on an upload. */
  coveredBytes(upload: FakeUpload): number {
    return rangeBytes(upload.sent.reduce<ByteRange[]>(addRange, []));
  }

  /**
   * Resolves once `check` holds, looking again after each call the scheduler makes.
   * @throws {Error} naming `what` when it does not hold within a few seconds
   */
  waitFor(check: () => boolean, what = 'a condition'): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#watchers.delete(watch);
        reject(new Error(`${this.info.id}: waited in vain for ${what}`));
      }, STEP_TIMEOUT_MS);
      const watch = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.#watchers.delete(watch);
        resolve();
      };
      this.#watchers.add(watch);
    });
  }

  #changed(): void {
    for (const watch of [...this.#watchers]) watch();
  }
}

/**
 * What the part scheduler uses of the socket pool: {@link FakePool.get} gives one
 * {@link FakeTransport} per server (made on first use) or the rejection the test set; HTTP is
 * never there; the throughput bookkeeping does nothing. Pass {@link FakePool.asPool} to the
 * scheduler.
 */
export class FakePool {
  /** The transports, by server id. */
  readonly transports = new Map<string, FakeTransport>();
  /** Every `get`, by server id, in order. */
  readonly gets: string[] = [];
  readonly #refusals = new Map<string, WsUploaderError>();

  /** This pool as the scheduler's constructor types it. */
  get asPool(): SocketPool {
    return this as unknown as SocketPool;
  }

  /** The transport to a server (made on first use). */
  transport(serverId: string): FakeTransport {
    let transport = this.transports.get(serverId);
    if (!transport) this.transports.set(serverId, (transport = new FakeTransport(serverId)));
    return transport;
  }

  /** From now on `get(serverId)` rejects with `error`. */
  refuse(serverId: string, error: WsUploaderError): void {
    this.#refusals.set(serverId, error);
  }

  /** From now on `get(serverId)` gives the transport again. */
  accept(serverId: string): void {
    this.#refusals.delete(serverId);
  }

  /** Records the call; the server's transport, or the rejection set by `refuse`. */
  get(serverId: string): Promise<Transport> {
    this.gets.push(serverId);
    const refusal = this.#refusals.get(serverId);
    return refusal ? Promise.reject(refusal) : Promise.resolve(this.transport(serverId));
  }

  /** Always rejects: the fake pool has no HTTP transport. */
  http(serverId: string): Promise<never> {
    return Promise.reject(
      new TransportError('socket-failed', `no HTTP to ${serverId} in the fake pool`, { serverId }),
    );
  }

  /** Does nothing. */
  sending(_serverId: string): void {}

  /** Does nothing. */
  stored(_serverId: string, _bytes: number): void {}

  /** No throughput measured. */
  throughput(_serverId: string): number | undefined {
    return undefined;
  }
}
