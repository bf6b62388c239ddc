/**
 * Reads parts of an item from one upload server over a `dup/2` connection: `READ` frames answered
 * by `BYTES`, each chunk's CRC-32C and offset checked. The connection says `HELLO` with the item's
 * read token; reads wait their turn so the bytes asked for stay within the server's window.
 */
import { abortable } from '../engine/abortable.js';
import { ServerError, TransportError } from '../errors.js';
import { SUBPROTOCOL_DUP_2 } from '../protocol/constants.js';
import { crc32c } from '../protocol/crc32c.js';
import { decodeDup2ServerFrame, encodeDup2Frame, type Dup2ServerFrame } from '../protocol/dup2.js';
import type { ByteRange } from '../protocol/ranges.js';

/** How long the connection waits for `WELCOME`, in ms. */
const WELCOME_TIMEOUT_MS = 15_000;
/**
 * How long the connection may go without a frame while reads are open, in ms: 30 s, or the time
 * two frames of the server's `maxChunk` take at 16 KiB/s (a slow link), whichever is longer.
 */
const silenceTimeout = (maxChunk: number): number =>
  Math.max(30_000, ((2 * maxChunk) / (16 * 1024)) * 1000);

/** Takes the bytes of a read as they come: `at` is their offset in the part read. */
export type ReadSink = (at: number, bytes: Uint8Array) => void;

interface Read {
  readonly itemId: string;
  readonly part: ByteRange;
  readonly sink: ReadSink;
  /** Bytes received so far. */
  received: number;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * One `dup/2` connection that reads.
 * @internal
 */
export class Dup2Reader {
  /** The upload server. */
  readonly serverId: string;
  /** When the read token the connection said `HELLO` with expires, ms since the epoch. */
  readonly tokenExpiresAt: number;
  readonly #socket: WebSocket;
  readonly #welcome: Promise<{ window: number; maxChunk: number }>;
  readonly #reads = new Map<number, Read>();
  /** Reads waiting for room in the window. */
  readonly #waiting: (() => void)[] = [];
  #nextId = 1;
  #outstanding = 0;
  #window = 0;
  #maxChunk = 0;
  #closed: Error | undefined;
  /** When the last frame came, for the silence watch. */
  #lastFrame = 0;
  #watch: ReturnType<typeof setInterval> | undefined;

  /**
   * @param serverId the upload server
   * @param url its `dup/2` URL
   * @param token a read token for the item, for `HELLO`
   * @param tokenExpiresAt when it expires, ms since the epoch
   */
  constructor(serverId: string, url: string, token: string, tokenExpiresAt: number) {
    this.serverId = serverId;
    this.tokenExpiresAt = tokenExpiresAt;
    this.#socket = new WebSocket(url, [SUBPROTOCOL_DUP_2]);
    this.#socket.binaryType = 'arraybuffer';
    this.#welcome = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(
          new TransportError('connect-timeout', `no WELCOME from ${serverId}`, { serverId }),
        );
      }, WELCOME_TIMEOUT_MS);
      this.#socket.addEventListener('open', () =>
        this.#send({ type: 'hello', token }, (e) => this.#fail(e)),
      );
      this.#socket.addEventListener('message', (event: MessageEvent<ArrayBuffer | string>) => {
        this.#lastFrame = performance.now();
        if (typeof event.data === 'string') return this.#fail(this.#violation('a text message'));
        let frame: Dup2ServerFrame;
        try {
          frame = decodeDup2ServerFrame(new Uint8Array(event.data), {
            maxChunk: this.#maxChunk || undefined,
          });
        } catch (e) {
          return this.#fail(this.#violation(String(e)));
        }
        if (frame.type === 'welcome') {
          clearTimeout(timer);
          this.#window = frame.window;
          this.#maxChunk = frame.maxChunk;
          resolve({ window: frame.window, maxChunk: frame.maxChunk });
          return;
        }
        this.#onFrame(frame);
      });
      this.#socket.addEventListener('close', (event) => {
        clearTimeout(timer);
        const error = new TransportError(
          event.code === 1006 && !this.#window ? 'socket-failed' : 'socket-closed',
          `${serverId} closed the connection (${event.code}${event.reason ? ` ${event.reason}` : ''})`,
          { serverId, closeCode: event.code },
        );
        this.#fail(error);
        reject(this.#closed ?? error);
      });
    });
    // A failure before WELCOME rejects the wait (`#fail` closes, and `close` rejects it); reads
    // see it when they await the wait.
    this.#welcome.catch(() => undefined);
  }

  /** Whether the connection is gone (or going): a new one is needed. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Reads `part` of the item.
   * @param itemId the item
   * @param part the bytes wanted (split into reads that fit the server's window)
   * @param signal stops the read (`CANCEL`)
   * @returns exactly the bytes of `part`
   * @throws {ServerError} the server's `ERROR` for the read
   * @throws {TransportError} the connection failed or closed
   * @throws {Error} a chunk failed its CRC-32C or came at another offset
   */
  async read(
    itemId: string,
    part: ByteRange,
    signal?: AbortSignal,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const bytes = new Uint8Array(part.end - part.start);
    await this.stream(itemId, part, (at, chunk) => bytes.set(chunk, at), signal);
    return bytes;
  }

  /**
   * Reads `part` of the item, giving each chunk to `sink` as it comes (checked, in order): the
   * chunks are views of the frames received, not copied.
   * @param itemId the item
   * @param part the bytes wanted (split into reads of half the server's window)
   * @param sink takes each chunk and its offset in `part`; what it throws fails the read
   * @param signal stops the read (`CANCEL`)
   * @throws {ServerError} the server's `ERROR` for the read
   * @throws {TransportError} the connection failed or closed
   * @throws {Error} a chunk failed its CRC-32C or came at another offset
   */
  async stream(
    itemId: string,
    part: ByteRange,
    sink: ReadSink,
    signal?: AbortSignal,
  ): Promise<void> {
    const { window } = await abortable(this.#welcome, signal);
    // Reads of half the window, one after another: with parts fetched side by side on the
    // connection, two reads are open at once, so the server always has the next one to send.
    const size = Math.max(1, Math.floor(window / 2));
    for (let start = part.start; start < part.end; start += size) {
      const piece = { start, end: Math.min(part.end, start + size) };
      const offset = start - part.start;
      await this.#room(piece.end - piece.start, signal);
      await this.#readOnce(itemId, piece, (at, bytes) => sink(offset + at, bytes), signal);
    }
  }

  /** Closes the connection; reads still running fail with `socket-closed`. */
  close(): void {
    this.#fail(
      new TransportError('socket-closed', `reading from ${this.serverId} stopped`, {
        serverId: this.serverId,
      }),
    );
  }

  /** Waits until `length` more bytes fit in the window. */
  async #room(length: number, signal: AbortSignal | undefined): Promise<void> {
    while (this.#outstanding > 0 && this.#outstanding + length > this.#window) {
      if (this.#closed) throw this.#closed;
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.#waiting.push(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
    if (this.#closed) throw this.#closed;
    signal?.throwIfAborted();
    this.#outstanding += length;
  }

  #readOnce(
    itemId: string,
    part: ByteRange,
    sink: ReadSink,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const readId = this.#nextId++;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => this.#end(readId, signal!.reason, true);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#reads.set(readId, {
        itemId,
        part,
        sink,
        received: 0,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      });
      this.#watchSilence();
      this.#send({ type: 'read', readId, itemId, start: part.start, end: part.end }, (e) =>
        this.#end(readId, e, false),
      );
    });
  }

  /**
   * While reads are open, a connection that sends no frame for the silence timeout is taken for
   * dead (a half-open TCP connection): it is closed, and its reads fail with `stalled`.
   */
  #watchSilence(): void {
    if (this.#watch !== undefined) return;
    this.#lastFrame = performance.now();
    const timeout = silenceTimeout(this.#maxChunk);
    this.#watch = setInterval(
      () => {
        if (this.#reads.size === 0) {
          clearInterval(this.#watch);
          this.#watch = undefined;
        } else if (performance.now() - this.#lastFrame > timeout) {
          this.#fail(
            new TransportError('stalled', `${this.serverId} sent nothing for ${timeout} ms`, {
              serverId: this.serverId,
            }),
          );
        }
      },
      Math.min(5000, timeout / 4),
    );
  }

  #onFrame(frame: Dup2ServerFrame): void {
    if (frame.type === 'bytes') {
      const read = this.#reads.get(frame.readId);
      // BYTES of a read given up (CANCEL) may still come.
      if (!read) return;
      const at = read.part.start + read.received;
      if (frame.offset !== at || frame.offset + frame.payload.length > read.part.end) {
        this.#end(
          frame.readId,
          new Error(
            `${this.serverId} sent bytes at ${frame.offset} for a read at ${at}..${read.part.end}`,
          ),
          true,
        );
        return;
      }
      if (crc32c(frame.payload) !== frame.crc32c) {
        this.#end(
          frame.readId,
          new Error(`bytes ${frame.offset}.. from ${this.serverId} fail their CRC-32C`),
          true,
        );
        return;
      }
      const length = frame.payload.length;
      try {
        read.sink(read.received, frame.payload);
      } catch (e) {
        this.#end(frame.readId, e, true);
        return;
      }
      read.received += length;
      if (read.received === read.part.end - read.part.start)
        this.#end(frame.readId, undefined, false);
      return;
    }
    if (frame.type === 'error') {
      const itemId = this.#reads.get(frame.uploadId)?.itemId;
      const error = new ServerError(frame.code, frame.message, {
        serverId: this.serverId,
        ...(itemId === undefined ? {} : { itemId }),
      });
      if (frame.uploadId === 0) this.#fail(error);
      else this.#end(frame.uploadId, error, false);
    }
    // PONG, and upload frames, are not for a reader.
  }

  /**
   * Ends a read: resolves it (its bytes went to its sink as they came), or rejects it (sending `CANCEL` when the server may
   * still be sending), and gives its bytes back to the window.
   */
  #end(readId: number, error: unknown, cancel: boolean): void {
    const read = this.#reads.get(readId);
    if (!read) return;
    this.#reads.delete(readId);
    this.#outstanding -= read.part.end - read.part.start;
    for (const wake of this.#waiting.splice(0)) wake();
    if (error === undefined) {
      read.resolve();
      return;
    }
    if (cancel && !this.#closed) this.#send({ type: 'cancel', uploadId: readId }, () => undefined);
    read.reject(error);
  }

  #violation(what: string): Error {
    return new TransportError('socket-closed', `${this.serverId} broke the protocol: ${what}`, {
      serverId: this.serverId,
    });
  }

  #send(frame: Parameters<typeof encodeDup2Frame>[0], onError: (e: Error) => void): void {
    try {
      this.#socket.send(encodeDup2Frame(frame));
    } catch (e) {
      onError(
        new TransportError('socket-closed', `cannot send to ${this.serverId}`, {
          serverId: this.serverId,
          cause: e,
        }),
      );
    }
  }

  /** The connection is done: every read fails with `error`. */
  #fail(error: Error): void {
    if (this.#closed) return;
    this.#closed = error;
    clearInterval(this.#watch);
    for (const id of [...this.#reads.keys()]) this.#end(id, error, false);
    for (const wake of this.#waiting.splice(0)) wake();
    if (this.#socket.readyState <= WebSocket.OPEN) this.#socket.close();
  }
}
