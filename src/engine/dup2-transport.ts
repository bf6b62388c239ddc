/**
 * The browser's end of one dup/2 connection to an upload server: HELLO/WELCOME, pings,
 * uploads multiplexed by upload id, and the flow-control window.
 */
import {
  CLOSE,
  SUBPROTOCOL_DUP_2,
  DEFAULT_MAX_CHUNK,
  DEFAULT_WINDOW,
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
} from '../protocol/constants.js';
import { truncateUtf8, utf8Length } from '../protocol/utf8.js';
import { crc32c } from '../protocol/crc32c.js';
import {
  DATA_HEADER_BYTES,
  decodeDup2ServerFrame,
  encodeDup2Frame,
  type Dup2ServerFrame,
  type OpenedFrame,
} from '../protocol/dup2.js';
import type { ServerInfo } from '../protocol/control.js';
import { ServerError, TransportError, type WsUploaderError } from '../errors.js';
import type { ResolvedEngineOptions, SocketLike } from './options.js';
import { ChunkSizer } from './chunk-size.js';
import { REPLY_TIMEOUT_MS, waitForRoom, type Room } from './flow-control.js';
import { StallWatch } from './stall-watch.js';
import type { Transport, TransportCloseHandler, UploadListener, UploadMeta } from './transport.js';

interface Pending<T> {
  resolve(value: T): void;
  reject(error: WsUploaderError): void;
  timer?: unknown;
}

interface UploadSlot {
  readonly listener: UploadListener;
  inFlight: number;
  opened?: Pending<OpenedFrame>;
  finished?: Pending<Uint8Array>;
}

/**
 * An upload's failure goes to the replies it waits for, else to its listener. (A FINISH may follow
 * an OPEN not answered yet: DATA is sent right after the OPEN of a fresh item.)
 */
function failSlot(slot: UploadSlot, error: WsUploaderError): void {
  if (!slot.opened && !slot.finished) {
    slot.listener.error(error);
    return;
  }
  slot.opened?.reject(error);
  slot.finished?.reject(error);
}

/**
 * One dup/2 connection.
 * @internal
 */
export class Dup2Transport implements Transport {
  /** The server, with this client's newest token. */
  info: ServerInfo;
  readonly protocol = 'dup/2';
  readonly takesBlobs = false;
  /** Whether this connection was closed for stalling. */
  stalled = false;
  readonly #options: ResolvedEngineOptions;
  readonly #onClose: TransportCloseHandler;
  #socket: SocketLike | undefined;
  #maxChunk = DEFAULT_MAX_CHUNK;
  #window = DEFAULT_WINDOW;
  #inFlight = 0;
  #nextUploadId = 1;
  #closed = false;
  readonly #uploads = new Map<number, UploadSlot>();
  readonly #pings = new Map<number, Pending<number>>();
  #waiters: (() => void)[] = [];
  /** This connection's chunk sizes, from its acknowledgements. */
  readonly #sizer: ChunkSizer;
  /** Reused for every DATA frame (see {@link Dup2Transport.sendData}). */
  #frame = new Uint8Array(0);
  /** The connection's window and socket buffer, for {@link waitForRoom}. */
  readonly #room: Room = {
    open: () => !this.#closed,
    inFlight: () => this.#inFlight,
    window: () => this.#sizer.window(this.#window),
    buffered: () => this.#socket?.bufferedAmount ?? 0,
    onAck: (wake) => this.#waiters.push(wake),
  };
  /** Closes the connection when bytes are in flight and nothing moves for `stallTimeoutMs`. */
  readonly #stall: StallWatch;

  /**
   * @param info the server, with this client's token
   * @param options engine options
   * @param onClose called once when the connection is lost after it was open
   */
  constructor(info: ServerInfo, options: ResolvedEngineOptions, onClose: TransportCloseHandler) {
    this.info = info;
    this.#options = options;
    this.#sizer = new ChunkSizer(options.stallTimeoutMs);
    let reported = false;
    // Once: a stall closes the connection itself, and the socket's close event comes after.
    this.#onClose = (error) => {
      if (reported) return;
      reported = true;
      onClose(error);
    };
    this.#stall = new StallWatch(options.clock, options.stallTimeoutMs, {
      busy: () => this.#inFlight > 0,
      buffered: () => this.#socket?.bufferedAmount ?? 0,
      stalled: () => {
        const error = new TransportError(
          'stalled',
          `${this.info.id} acknowledged nothing for ${options.stallTimeoutMs} ms`,
          { serverId: this.info.id },
        );
        this.stalled = true;
        this.#socket?.close(CLOSE.STALLED, 'stalled');
        this.#teardown(error);
        this.#onClose(error);
      },
    });
  }

  /** Largest payload this server accepts. */
  get maxChunk(): number {
    return this.#maxChunk;
  }

  /**
   * Bytes per DATA frame: `requested`, capped by the server's limit and, on a slow link, by what
   * this connection's acknowledgements carry in an eighth of the stall timeout, so they keep coming
   * (see {@link ChunkSizer}); the server's measured throughput is not used.
   */
  chunkSize(requested: number, _throughput: number | undefined): number {
    return this.#sizer.size(Math.min(requested, this.#maxChunk));
  }

  /** Whether the connection is open and welcomed. */
  get isOpen(): boolean {
    return !this.#closed && this.#socket?.readyState === 1;
  }

  /**
   * Connects and authenticates.
   * @throws {TransportError | ServerError} when the server cannot be reached or refuses the token
   */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const { clock } = this.#options;
      let welcomed = false;
      const fail = (error: WsUploaderError): void => {
        clock.clearTimeout(timer);
        if (!welcomed) reject(error);
      };
      const timer = clock.setTimeout(() => {
        fail(
          new TransportError('connect-timeout', `no WELCOME from ${this.info.id}`, {
            serverId: this.info.id,
          }),
        );
        socket.close();
      }, REPLY_TIMEOUT_MS);
      let socket: SocketLike;
      try {
        socket = this.#options.createSocket(this.info.url, [SUBPROTOCOL_DUP_2]);
      } catch (e) {
        fail(
          new TransportError('socket-failed', `cannot connect to ${this.info.id}`, {
            serverId: this.info.id,
            cause: e,
          }),
        );
        return;
      }
      socket.binaryType = 'arraybuffer';
      this.#socket = socket;
      socket.addEventListener('open', () => {
        socket.send(encodeDup2Frame({ type: 'hello', token: this.info.token }));
      });
      socket.addEventListener('message', (event) => {
        const data = (event as MessageEvent).data;
        let frame: Dup2ServerFrame;
        try {
          if (!(data instanceof ArrayBuffer)) throw new Error('text frame');
          frame = decodeDup2ServerFrame(new Uint8Array(data));
        } catch {
          socket.close(4002, 'bad frame');
          return;
        }
        if (frame.type === 'welcome') {
          welcomed = true;
          clock.clearTimeout(timer);
          this.#maxChunk = frame.maxChunk;
          this.#window = frame.window;
          resolve();
          return;
        }
        if (frame.type === 'error' && frame.uploadId === 0 && !welcomed) {
          fail(new ServerError(frame.code, frame.message, { serverId: this.info.id }));
          return;
        }
        this.#onFrame(frame);
      });
      socket.addEventListener('close', (event) => {
        const code = (event as CloseEvent).code;
        const error = new TransportError(
          'socket-closed',
          `connection to ${this.info.id} closed (${code})`,
          {
            serverId: this.info.id,
            closeCode: code,
          },
        );
        fail(error);
        this.#teardown(error);
        if (welcomed) this.#onClose(error);
      });
    });
  }

  /**
   * Measures one round trip.
   * @returns the RTT in ms
   */
  ping(): Promise<number> {
    const { clock } = this.#options;
    const time = clock.now();
    return new Promise((resolve, reject) => {
      const pending: Pending<number> = { resolve, reject };
      pending.timer = clock.setTimeout(() => {
        this.#pings.delete(time);
        reject(
          new TransportError('connect-timeout', `no PONG from ${this.info.id}`, {
            serverId: this.info.id,
          }),
        );
      }, REPLY_TIMEOUT_MS);
      this.#pings.set(time, pending);
      this.#send(encodeDup2Frame({ type: 'ping', time }));
    });
  }

  /**
   * Opens (or resumes) the upload of an item.
   * @returns the upload id and what the server already holds
   */
  open(item: UploadMeta, listener: UploadListener): Promise<OpenedFrame> {
    const { itemId, size } = item;
    const mime = utf8Length(item.mime) <= MAX_MIME_BYTES ? item.mime : '';
    const name = truncateUtf8(item.name, MAX_NAME_BYTES);
    if (!this.isOpen) {
      return Promise.reject(
        new TransportError('socket-closed', `connection to ${this.info.id} is closed`, {
          serverId: this.info.id,
        }),
      );
    }
    const uploadId = this.#nextUploadId++;
    const frame = encodeDup2Frame({ type: 'open', uploadId, itemId, size, mime, name });
    const slot: UploadSlot = { listener, inFlight: 0 };
    if (item.fresh) {
      // Nothing to resume: DATA follows the OPEN at once (the server queues it behind the OPEN),
      // and a failed OPEN fails the upload as a failed DATA would.
      slot.opened = this.#awaitReply(
        uploadId,
        'OPENED',
        () => undefined,
        (e) => listener.error(e),
      );
      this.#uploads.set(uploadId, slot);
      this.#send(frame);
      return Promise.resolve({ type: 'opened', uploadId, complete: false, ranges: [] });
    }
    return new Promise((resolve, reject) => {
      slot.opened = this.#awaitReply(uploadId, 'OPENED', resolve, reject);
      this.#uploads.set(uploadId, slot);
      this.#send(frame);
    });
  }

  /**
   * Waits until `bytes` more fit in the window and the socket buffer is not full.
   * @param _uploadId the upload (the window is the connection's)
   * @param bytes size of the next payload
   * @param signal ends the wait early (the caller checks why)
   */
  async waitForRoom(_uploadId: number, bytes: number, signal?: AbortSignal): Promise<void> {
    await waitForRoom(this.#room, bytes, this.#options.clock, signal);
  }

  /**
   * Sends bytes of an open upload.
   * @param uploadId from {@link Dup2Transport.open}
   * @param offset where the bytes go in the item
   * @param payload at most {@link Dup2Transport.maxChunk} bytes
   */
  sendData(uploadId: number, offset: number, payload: Uint8Array | Blob): void {
    if (payload instanceof Blob) throw new TypeError('dup/2 sends bytes, not Blobs');
    const slot = this.#uploads.get(uploadId);
    if (!slot) return;
    this.#stall.sending(DATA_HEADER_BYTES + payload.length);
    slot.inFlight += payload.length;
    this.#inFlight += payload.length;
    // One buffer for every DATA frame: WebSocket.send copies the bytes it is given, and a fresh
    // buffer per frame cost more than the copy itself.
    if (this.#frame.length < DATA_HEADER_BYTES + payload.length)
      this.#frame = new Uint8Array(DATA_HEADER_BYTES + Math.max(payload.length, this.#maxChunk));
    this.#send(
      encodeDup2Frame(
        { type: 'data', uploadId, offset, crc32c: crc32c(payload), payload },
        this.#frame,
      ),
    );
  }

  /**
   * Completes the item: the server verifies it against `sha256`, or computes its digest.
   * @param sha256 digest of the whole item, when the page attests one
   */
  finish(uploadId: number, sha256: Uint8Array | undefined): Promise<Uint8Array> {
    const slot = this.#uploads.get(uploadId);
    if (!slot)
      return Promise.reject(
        new TransportError('socket-closed', 'upload is gone', { serverId: this.info.id }),
      );
    return new Promise((resolve, reject) => {
      slot.finished = this.#awaitReply(uploadId, 'COMPLETE', resolve, reject);
      this.#send(encodeDup2Frame({ type: 'finish', uploadId, ...(sha256 ? { sha256 } : {}) }));
    });
  }

  /**
   * A reply the server owes for an upload, as dup/1 waits for its replies: none within
   * `REPLY_TIMEOUT_MS` fails it (`connect-timeout`) and ends the upload id on both sides.
   */
  #awaitReply<T>(
    uploadId: number,
    what: string,
    resolve: (value: T) => void,
    reject: (error: WsUploaderError) => void,
  ): Pending<T> {
    const { clock } = this.#options;
    const timer = clock.setTimeout(() => {
      reject(
        new TransportError('connect-timeout', `no ${what} from ${this.info.id}`, {
          serverId: this.info.id,
        }),
      );
      this.release(uploadId);
    }, REPLY_TIMEOUT_MS);
    return {
      resolve: (value) => {
        clock.clearTimeout(timer);
        resolve(value);
      },
      reject: (error) => {
        clock.clearTimeout(timer);
        reject(error);
      },
    };
  }

  /** Forgets an upload (and tells the server). */
  release(uploadId: number): void {
    // After an ERROR the server has already forgotten the id, and so has #forget.
    if (this.#forget(uploadId)) this.#send(encodeDup2Frame({ type: 'cancel', uploadId }));
  }

  /** Drops an upload's slot and its bytes from the window; false when there was none. */
  #forget(uploadId: number): boolean {
    const slot = this.#uploads.get(uploadId);
    if (!slot) return false;
    this.#inFlight -= slot.inFlight;
    this.#uploads.delete(uploadId);
    this.#wake();
    return true;
  }

  /** Closes the connection. */
  close(): void {
    this.#socket?.close(1000, 'closed by the page');
    this.#teardown(
      new TransportError('socket-closed', 'closed by the page', { serverId: this.info.id }),
    );
  }

  #onFrame(frame: Dup2ServerFrame): void {
    switch (frame.type) {
      case 'pong': {
        const pending = this.#pings.get(frame.time);
        if (!pending) return;
        this.#pings.delete(frame.time);
        this.#options.clock.clearTimeout(pending.timer);
        pending.resolve(this.#options.clock.now() - frame.time);
        return;
      }
      case 'opened': {
        const slot = this.#uploads.get(frame.uploadId);
        slot?.opened?.resolve(frame);
        if (slot) delete slot.opened;
        return;
      }
      case 'ack': {
        const slot = this.#uploads.get(frame.uploadId);
        if (!slot) return;
        const n = frame.end - frame.start;
        slot.inFlight -= n;
        this.#inFlight -= n;
        this.#stall.progress();
        this.#sizer.acknowledged(n, this.#options.clock.now());
        this.#wake();
        slot.listener.ack(frame.start, frame.end);
        return;
      }
      case 'complete': {
        const slot = this.#uploads.get(frame.uploadId);
        slot?.finished?.resolve(frame.sha256);
        if (slot) delete slot.finished;
        return;
      }
      case 'error': {
        const slot = this.#uploads.get(frame.uploadId);
        const error = new ServerError(frame.code, frame.message, { serverId: this.info.id });
        if (!slot) return;
        failSlot(slot, error);
        // An ERROR ends the upload id on both sides.
        this.#forget(frame.uploadId);
        return;
      }
      case 'welcome':
        return;
    }
  }

  #send(bytes: Uint8Array): void {
    if (this.isOpen) this.#socket!.send(bytes);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  #teardown(error: TransportError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stall.stop();
    for (const [id, slot] of this.#uploads) {
      failSlot(slot, error);
      this.#uploads.delete(id);
    }
    for (const p of this.#pings.values()) {
      this.#options.clock.clearTimeout(p.timer);
      p.reject(error);
    }
    this.#pings.clear();
    this.#inFlight = 0;
    this.#wake();
  }
}
