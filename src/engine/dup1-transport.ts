/**
 * The browser's end of `dup/1`, the older WebSocket protocol: one upload per connection, JSON text
 * frames for control and binary frames for the bytes, written at a cursor. One connection answers
 * pings; each upload opens a connection of its own.
 */
import {
  CLOSE,
  DEFAULT_MAX_CHUNK,
  DEFAULT_WINDOW,
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
  SUBPROTOCOL_DUP_1,
} from '../protocol/constants.js';
import {
  decodeDup1ServerMessage,
  encodeDup1Message,
  type Dup1ClientMessage,
  type Dup1ServerMessage,
} from '../protocol/dup1.js';
import type { ServerInfo } from '../protocol/control.js';
import { fromHex, toHex } from '../protocol/hex.js';
import { truncateUtf8, utf8Length } from '../protocol/utf8.js';
import { ServerError, TransportError, type WsUploaderError } from '../errors.js';
import { ChunkSizer } from './chunk-size.js';
import type { ResolvedEngineOptions, SocketLike } from './options.js';
import { REPLY_TIMEOUT_MS, waitForRoom, type Room } from './flow-control.js';
import { StallWatch } from './stall-watch.js';
import type {
  OpenedUpload,
  Transport,
  TransportCloseHandler,
  UploadListener,
  UploadMeta,
} from './transport.js';

/** One welcomed dup/1 connection. */
class Dup1Connection {
  readonly #info: ServerInfo;
  readonly #options: ResolvedEngineOptions;
  #socket: SocketLike | undefined;
  #closed = false;
  /** Server limits from the welcome. */
  maxChunk = DEFAULT_MAX_CHUNK;
  window = DEFAULT_WINDOW;
  /** Gets every message after the welcome. */
  onMessage: (message: Dup1ServerMessage) => void = () => undefined;
  /** Called once when the connection is lost after the welcome. */
  onClose: (error: TransportError) => void = () => undefined;

  constructor(info: ServerInfo, options: ResolvedEngineOptions) {
    this.#info = info;
    this.#options = options;
  }

  get isOpen(): boolean {
    return !this.#closed && this.#socket?.readyState === 1;
  }

  get bufferedAmount(): number {
    return this.#socket?.bufferedAmount ?? 0;
  }

  connect(): Promise<void> {
    const { clock } = this.#options;
    const serverId = this.#info.id;
    return new Promise((resolve, reject) => {
      let welcomed = false;
      const fail = (error: WsUploaderError): void => {
        clock.clearTimeout(timer);
        if (!welcomed) reject(error);
      };
      const timer = clock.setTimeout(() => {
        fail(new TransportError('connect-timeout', `no welcome from ${serverId}`, { serverId }));
        this.#socket?.close();
      }, REPLY_TIMEOUT_MS);
      let socket: SocketLike;
      try {
        socket = this.#options.createSocket(this.#info.url, [SUBPROTOCOL_DUP_1]);
      } catch (e) {
        fail(
          new TransportError('socket-failed', `cannot connect to ${serverId}`, {
            serverId,
            cause: e,
          }),
        );
        return;
      }
      socket.binaryType = 'arraybuffer';
      this.#socket = socket;
      socket.addEventListener('open', () => this.send({ type: 'hello', token: this.#info.token }));
      socket.addEventListener('message', (event) => {
        const data = (event as MessageEvent).data;
        let message: Dup1ServerMessage;
        try {
          if (typeof data !== 'string') throw new Error('binary frame');
          message = decodeDup1ServerMessage(data);
        } catch {
          socket.close(CLOSE.PROTOCOL_VIOLATION, 'bad message');
          return;
        }
        if (!welcomed) {
          if (message.type === 'welcome') {
            welcomed = true;
            clock.clearTimeout(timer);
            this.maxChunk = message.maxChunk;
            this.window = message.window;
            resolve();
          } else if (message.type === 'error') {
            fail(new ServerError(message.code, message.message, { serverId }));
          }
          return;
        }
        this.onMessage(message);
      });
      socket.addEventListener('close', (event) => {
        const code = (event as CloseEvent).code;
        const error = new TransportError(
          'socket-closed',
          `connection to ${serverId} closed (${code})`,
          { serverId, closeCode: code },
        );
        fail(error);
        if (this.#closed) return;
        this.#closed = true;
        if (welcomed) this.onClose(error);
      });
    });
  }

  send(message: Dup1ClientMessage): void {
    if (this.isOpen || message.type === 'hello') this.#socket?.send(encodeDup1Message(message));
  }

  sendBytes(bytes: Uint8Array | Blob): void {
    if (this.isOpen) this.#socket!.send(bytes);
  }

  close(code = 1000, reason = 'closed by the page'): void {
    this.#closed = true;
    this.#socket?.close(code, reason);
  }
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: WsUploaderError): void;
  timer: unknown;
}

interface Upload {
  readonly id: number;
  readonly connection: Dup1Connection;
  readonly listener: UploadListener;
  readonly stall: StallWatch;
  /** Its connection's window and socket buffer, for {@link waitForRoom}. */
  readonly room: Room;
  inFlight: number;
  cursor: number;
  finished?: Waiter<Uint8Array>;
  roomWaiters: (() => void)[];
  done: boolean;
}

/**
 * `dup/1` to one upload server.
 * @internal
 */
export class Dup1Transport implements Transport {
  /** The server, with this client's newest token. */
  info: ServerInfo;
  readonly protocol = 'dup/1';
  /**
   * Bytes read here and sent, as for `dup/2`: sending each slice as a `Blob` (the browser reading
   * the file as it sends, as nothing here needs the bytes) measured slower, since Chromium reads
   * each `Blob` message on its own.
   */
  readonly takesBlobs = false;
  stalled = false;
  readonly #options: ResolvedEngineOptions;
  readonly #onClose: TransportCloseHandler;
  readonly #main: Dup1Connection;
  /** Chunk sizes to this server, from its acknowledgements. */
  readonly #sizer: ChunkSizer;
  readonly #pings = new Map<number, Waiter<number>>();
  readonly #uploads = new Map<number, Upload>();
  #nextUploadId = 1;
  #closed = false;

  /**
   * @param info the server, with this client's token
   * @param options engine options
   * @param onClose called once when the ping connection is lost after it was open
   */
  constructor(info: ServerInfo, options: ResolvedEngineOptions, onClose: TransportCloseHandler) {
    this.info = info;
    this.#options = options;
    this.#sizer = new ChunkSizer(options.stallTimeoutMs);
    this.#onClose = onClose;
    this.#main = new Dup1Connection(info, options);
    this.#main.onMessage = (message) => {
      if (message.type !== 'pong') return;
      const waiter = this.#pings.get(message.time);
      if (!waiter) return;
      this.#pings.delete(message.time);
      options.clock.clearTimeout(waiter.timer);
      waiter.resolve(options.clock.now() - message.time);
    };
    this.#main.onClose = (error) => {
      this.#teardown(error);
      this.#onClose(error);
    };
  }

  get isOpen(): boolean {
    return !this.#closed && this.#main.isOpen;
  }

  chunkSize(requested: number, _throughput: number | undefined): number {
    return this.#sizer.size(Math.min(requested, this.#main.maxChunk));
  }

  connect(): Promise<void> {
    return this.#main.connect();
  }

  ping(): Promise<number> {
    const { clock } = this.#options;
    const time = clock.now();
    return new Promise((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        this.#pings.delete(time);
        reject(
          new TransportError('connect-timeout', `no pong from ${this.info.id}`, {
            serverId: this.info.id,
          }),
        );
      }, REPLY_TIMEOUT_MS);
      this.#pings.set(time, { resolve, reject, timer });
      this.#main.send({ type: 'ping', time });
    });
  }

  async open(item: UploadMeta, listener: UploadListener): Promise<OpenedUpload> {
    const serverId = this.info.id;
    if (!this.isOpen)
      throw new TransportError('socket-closed', `connection to ${serverId} is closed`, {
        serverId,
      });
    const connection = new Dup1Connection(this.info, this.#options);
    await connection.connect();
    const uploadId = this.#nextUploadId++;
    const upload: Upload = {
      id: uploadId,
      connection,
      listener,
      inFlight: 0,
      cursor: 0,
      roomWaiters: [],
      done: false,
      room: {
        open: () => !upload.done,
        inFlight: () => upload.inFlight,
        window: () => this.#sizer.window(connection.window),
        buffered: () => connection.bufferedAmount,
        onAck: (wake) => upload.roomWaiters.push(wake),
      },
      stall: new StallWatch(this.#options.clock, this.#options.stallTimeoutMs, {
        busy: () => upload.inFlight > 0,
        buffered: () => connection.bufferedAmount,
        stalled: () => {
          this.stalled = true;
          connection.close(CLOSE.STALLED, 'stalled');
          this.#end(
            upload,
            new TransportError(
              'stalled',
              `${serverId} acknowledged nothing for ${this.#options.stallTimeoutMs} ms`,
              { serverId },
            ),
          );
        },
      }),
    };
    this.#uploads.set(uploadId, upload);
    return new Promise<OpenedUpload>((resolve, reject) => {
      const { clock } = this.#options;
      let opened = false;
      const timer = clock.setTimeout(() => {
        const error = new TransportError('connect-timeout', `no opened from ${serverId}`, {
          serverId,
        });
        reject(error);
        this.#end(upload, error);
      }, REPLY_TIMEOUT_MS);
      connection.onClose = (error) => {
        clock.clearTimeout(timer);
        if (!opened) reject(error);
        this.#end(upload, error);
      };
      connection.onMessage = (message) => {
        if (!opened) {
          if (message.type === 'opened') {
            opened = true;
            clock.clearTimeout(timer);
            resolve({ uploadId, complete: message.complete, ranges: message.ranges });
          } else if (message.type === 'error') {
            clock.clearTimeout(timer);
            const error = new ServerError(message.code, message.message, { serverId });
            reject(error);
            this.#end(upload, error);
          }
          return;
        }
        this.#onMessage(upload, message);
      };
      connection.send({
        type: 'open',
        itemId: item.itemId,
        size: item.size,
        mime: utf8Length(item.mime) <= MAX_MIME_BYTES ? item.mime : '',
        name: truncateUtf8(item.name, MAX_NAME_BYTES),
      });
    });
  }

  async waitForRoom(uploadId: number, bytes: number, signal?: AbortSignal): Promise<void> {
    const upload = this.#uploads.get(uploadId);
    if (upload) await waitForRoom(upload.room, bytes, this.#options.clock, signal);
  }

  sendData(uploadId: number, offset: number, payload: Uint8Array | Blob): void {
    const upload = this.#uploads.get(uploadId);
    if (!upload || upload.done) return;
    const length = payload instanceof Blob ? payload.size : payload.length;
    if (upload.cursor !== offset) upload.connection.send({ type: 'seek', offset });
    upload.stall.sending(length);
    upload.inFlight += length;
    upload.cursor = offset + length;
    upload.connection.sendBytes(payload);
  }

  finish(uploadId: number, sha256: Uint8Array | undefined): Promise<Uint8Array> {
    const upload = this.#uploads.get(uploadId);
    if (!upload || upload.done)
      return Promise.reject(
        new TransportError('socket-closed', 'upload is gone', { serverId: this.info.id }),
      );
    return new Promise((resolve, reject) => {
      const timer = this.#options.clock.setTimeout(
        () =>
          this.#end(
            upload,
            new TransportError('connect-timeout', `no complete from ${this.info.id}`, {
              serverId: this.info.id,
            }),
          ),
        REPLY_TIMEOUT_MS,
      );
      upload.finished = { resolve, reject, timer };
      upload.connection.send(
        sha256 ? { type: 'finish', sha256: toHex(sha256) } : { type: 'finish' },
      );
    });
  }

  release(uploadId: number): void {
    const upload = this.#uploads.get(uploadId);
    if (!upload) return;
    this.#uploads.delete(uploadId);
    upload.done = true;
    upload.stall.stop();
    upload.connection.close();
    for (const w of upload.roomWaiters.splice(0)) w();
  }

  close(): void {
    this.#main.close();
    this.#teardown(
      new TransportError('socket-closed', 'closed by the page', { serverId: this.info.id }),
    );
  }

  #onMessage(upload: Upload, message: Dup1ServerMessage): void {
    switch (message.type) {
      case 'ack': {
        upload.inFlight -= message.end - message.start;
        upload.stall.progress();
        this.#sizer.acknowledged(message.end - message.start, this.#options.clock.now());
        for (const w of upload.roomWaiters.splice(0)) w();
        upload.listener.ack(message.start, message.end);
        return;
      }
      case 'complete': {
        const finished = upload.finished;
        if (!finished) return;
        delete upload.finished;
        this.#options.clock.clearTimeout(finished.timer);
        finished.resolve(fromHex(message.sha256));
        return;
      }
      case 'error':
        // An error ends the connection's upload.
        this.#end(
          upload,
          new ServerError(message.code, message.message, { serverId: this.info.id }),
        );
        return;
      default:
        return;
    }
  }

  /** Ends an upload with an error: its waits fail and its connection closes. */
  #end(upload: Upload, error: WsUploaderError): void {
    if (upload.done) return;
    upload.done = true;
    this.#uploads.delete(upload.id);
    upload.stall.stop();
    upload.connection.close();
    for (const w of upload.roomWaiters.splice(0)) w();
    const finished = upload.finished;
    if (finished) {
      delete upload.finished;
      this.#options.clock.clearTimeout(finished.timer);
      finished.reject(error);
    } else upload.listener.error(error);
  }

  #teardown(error: TransportError): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const upload of [...this.#uploads.values()]) this.#end(upload, error);
    for (const p of this.#pings.values()) {
      this.#options.clock.clearTimeout(p.timer);
      p.reject(error);
    }
    this.#pings.clear();
  }
}
