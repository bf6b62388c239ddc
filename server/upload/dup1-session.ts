/**
 * One dup/1 WebSocket connection on the upload server: the older protocol, kept so old clients
 * and servers still meet. One upload per connection, JSON control frames, binary data frames
 * written at a cursor. Same tokens, storage, limits and durability as dup/2.
 */
import type { Readable } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import {
  CLOSE,
  decodeDup1ClientMessage,
  encodeDup1Message,
  ProtocolError,
  type Dup1ClientMessage,
  type Dup1ServerMessage,
  type WireErrorCode,
} from '../../src/protocol/index.js';
import type { Dup2SessionContext } from './dup2-session.js';
import { StoreError } from './file-store.js';
import { allowsWrite, type Grant } from './grant.js';
import {
  bindUpload,
  drainConnection,
  isCurrent,
  superviseConnection,
  unbindUpload,
  unlockWhenSettled,
} from './session-support.js';

interface Upload {
  readonly itemId: string;
  readonly size: number;
  cursor: number;
  opened: Promise<boolean>;
  readonly writes: Set<Promise<void>>;
  pending: number;
  ended: boolean;
  /** Releases the item's write lock, once taken. */
  unlock?: () => void;
}

/** Handles one dup/1 connection until it closes. */
export class Dup1Session {
  readonly #ws: WebSocket;
  readonly #ctx: Dup2SessionContext;
  #grant: Grant | undefined;
  #authenticating = false;
  #upload: Upload | undefined;
  #inFlight = 0;
  #closed = false;
  readonly #authTimer: NodeJS.Timeout;

  /**
   * @param ws an open connection that negotiated `ws-uploader.dup.v1`
   * @param ctx the server's settings and storage (shared with dup/2)
   * @param socket the TCP connection under `ws` (none when relayed): bytes arriving on it are
   *   activity, whole messages or not
   */
  constructor(ws: WebSocket, ctx: Dup2SessionContext, socket?: Readable) {
    this.#ws = ws;
    this.#ctx = ctx;
    this.#authTimer = superviseConnection(
      ws,
      ctx,
      {
        authTimeout: () => this.#close(CLOSE.AUTH_TIMEOUT, 'no hello in time'),
        idle: () => this.#close(CLOSE.IDLE_TIMEOUT, 'idle'),
        message: (data, isBinary) => {
          if (!this.#closed) this.#onMessage(data, isBinary);
        },
        close: () => {
          this.#closed = true;
          this.#end();
        },
      },
      socket,
    );
  }

  /** Lets received writes become durable and acknowledged, then closes with 1001. */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    const work = [...(this.#upload?.writes ?? [])];
    await drainConnection(this.#ws, work, timeoutMs, () =>
      this.#close(CLOSE.GOING_AWAY, 'server shutting down'),
    );
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      if (!this.#grant) {
        this.#fatal('send hello first');
        return;
      }
      this.#data(toBuffer(data));
      return;
    }
    let message: Dup1ClientMessage;
    try {
      message = decodeDup1ClientMessage(data.toString());
    } catch (e) {
      this.#fatal(e instanceof ProtocolError ? `${e.code}: ${e.message}` : 'bad message');
      return;
    }
    if (!this.#grant) {
      if (message.type !== 'hello' || this.#authenticating) {
        this.#fatal('the first message must be hello');
        return;
      }
      this.#authenticating = true;
      void this.#hello(message.token);
      return;
    }
    switch (message.type) {
      case 'hello':
        this.#fatal('hello was already sent');
        return;
      case 'open':
        this.#open(message.itemId, message.size, message.mime, message.name);
        return;
      case 'seek':
        if (!this.#upload) this.#error('unknown-upload', 'no upload is open');
        else if (message.offset > this.#upload.size)
          this.#error('out-of-range', 'seek past the end of the item');
        else this.#upload.cursor = message.offset;
        return;
      case 'finish':
        this.#finish(message.sha256);
        return;
      case 'ping':
        this.#send({ type: 'pong', time: message.time, serverTime: Date.now() });
        return;
    }
  }

  async #hello(token: string): Promise<void> {
    const grant = await this.#ctx.verify(token).catch(() => undefined);
    if (this.#closed) return;
    clearTimeout(this.#authTimer);
    if (!grant) {
      this.#ctx.log('auth-failed', { protocol: 'dup/1' });
      this.#send({
        type: 'error',
        code: 'unauthorized',
        message: 'token is not valid for this server',
      });
      this.#close(CLOSE.AUTH_FAILED, 'unauthorized');
      return;
    }
    this.#grant = grant;
    const { serverId, maxChunk, window, maxItemSize } = this.#ctx;
    this.#send({ type: 'welcome', serverId, maxChunk, window, maxItemSize });
  }

  #open(itemId: string, size: number, mime: string, name: string): void {
    const grant = this.#grant!;
    if (this.#upload) {
      this.#error('upload-id-in-use', 'dup/1 carries one upload per connection; finish it first');
      return;
    }
    if (size > this.#ctx.maxItemSize)
      return this.#error('too-large', `item of ${size} bytes is over the limit`);
    if (!isCurrent(grant)) return this.#error('unauthorized', 'the token expired');
    if (grant.items && !grant.items.has(itemId))
      return this.#error('unauthorized', `the token does not allow item ${itemId}`);
    if (!bindUpload(this.#ctx, grant.clientId))
      return this.#error('too-many-uploads', 'too many uploads at once');
    const upload: Upload = {
      itemId,
      size,
      cursor: 0,
      opened: Promise.resolve(false),
      writes: new Set(),
      pending: 0,
      ended: false,
    };
    this.#upload = upload;
    const item = { owner: grant.owner, mime, name };
    // Whoever may write the item (its owner) takes it over from a connection still writing it.
    upload.opened = this.#ctx.store
      .open(itemId, size, item)
      .then(() => {
        // Ended meanwhile: it takes nothing over.
        if (upload.ended) throw new Error('ended');
        return this.#ctx.locks.acquire(
          itemId,
          { start: 0, end: Math.max(size, 1) },
          {
            supersede: () => {
              if (this.#upload === upload)
                this.#error('superseded', `another connection took over item ${itemId}`);
            },
          },
        );
      })
      .then((unlock) => {
        upload.unlock = unlock;
        if (upload.ended) throw new Error('ended');
        return this.#ctx.store.open(itemId, size, item);
      })
      .then(
        (record) => {
          if (upload.ended) return false;
          this.#send({
            type: 'opened',
            complete: record.complete,
            ranges: record.ranges,
          });
          return true;
        },
        (e: unknown) => {
          if (!upload.ended) this.#storeError(e);
          return false;
        },
      );
  }

  #data(payload: Buffer): void {
    const upload = this.#upload;
    if (!upload) return this.#error('unknown-upload', 'no upload is open');
    const offset = upload.cursor;
    if (payload.length === 0) return;
    if (payload.length > this.#ctx.maxChunk)
      return this.#error('too-large', `data frames carry at most ${this.#ctx.maxChunk} bytes`);
    if (offset + payload.length > upload.size)
      return this.#error('out-of-range', 'bytes past the end of the item');
    if (!allowsWrite(this.#grant!, upload.itemId, offset, offset + payload.length)) {
      return this.#error('unauthorized', `the token does not allow writing bytes at ${offset}`);
    }
    if (this.#inFlight + payload.length > this.#ctx.window) {
      this.#send({
        type: 'error',
        code: 'window-exceeded',
        message: `more than ${this.#ctx.window} bytes unacknowledged`,
      });
      this.#close(CLOSE.PROTOCOL_VIOLATION, 'window exceeded');
      return;
    }
    upload.cursor += payload.length;
    this.#inFlight += payload.length;
    this.#ctx.budget.take(payload.length);
    upload.pending += payload.length;
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    const write = upload.opened
      .then(async (ok) => {
        if (!ok || upload.ended) return;
        await this.#ctx.store.write(upload.itemId, offset, bytes);
        if (!upload.ended) this.#send({ type: 'ack', start: offset, end: offset + bytes.length });
      })
      .catch((e: unknown) => {
        if (!upload.ended) this.#storeError(e);
      })
      .finally(() => {
        upload.writes.delete(write);
        if (!upload.ended) {
          upload.pending -= bytes.length;
          this.#inFlight -= bytes.length;
          this.#ctx.budget.give(bytes.length);
        }
      });
    upload.writes.add(write);
  }

  /** `finish`: verifies `sha256`, or without it computes the digest; `complete` carries it. */
  #finish(sha256: string | undefined): void {
    const upload = this.#upload;
    if (!upload) return this.#error('unknown-upload', 'no upload is open');
    const grant = this.#grant!;
    if (!isCurrent(grant)) return this.#error('unauthorized', 'the token expired');
    void upload.opened.then(async (ok) => {
      if (!ok) return;
      await Promise.all(upload.writes);
      if (upload.ended) return;
      try {
        const before = await this.#ctx.store.get(upload.itemId);
        const record = await this.#ctx.store.finish(upload.itemId, sha256);
        const digest = record.sha256!;
        if (upload.ended) return;
        this.#send({ type: 'complete', sha256: digest });
        this.#end();
        if (before && !before.complete) {
          this.#ctx.log('item-complete', {
            itemId: upload.itemId,
            size: record.size,
            owner: grant.owner,
            protocol: 'dup/1',
            ...(sha256 === undefined ? { digest: 'computed' } : {}),
          });
          this.#ctx.onComplete?.(upload.itemId, digest, record.size);
        }
      } catch (e) {
        if (!upload.ended) this.#storeError(e);
      }
    });
  }

  #storeError(e: unknown): void {
    if (e instanceof StoreError) this.#error(e.code, e.message);
    else this.#error('internal', 'internal error');
  }

  /** Sends an error; it ends the connection's upload (the client opens it again to go on). */
  #error(code: WireErrorCode, message: string): void {
    this.#ctx.log('upload-error', { code, itemId: this.#upload?.itemId, protocol: 'dup/1' });
    this.#send({ type: 'error', code, message });
    this.#end();
  }

  /** Forgets the upload and gives its unstored bytes back to the window. */
  #end(): void {
    const upload = this.#upload;
    if (!upload) return;
    this.#upload = undefined;
    upload.ended = true;
    this.#inFlight -= upload.pending;
    this.#ctx.budget.give(upload.pending);
    upload.pending = 0;
    unbindUpload(this.#ctx, this.#grant!.clientId);
    unlockWhenSettled(upload.opened, upload);
  }

  #fatal(message: string): void {
    this.#send({ type: 'error', code: 'bad-frame', message });
    this.#close(CLOSE.PROTOCOL_VIOLATION, 'bad frame');
  }

  #send(message: Dup1ServerMessage): void {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return;
    this.#ws.send(encodeDup1Message(message));
  }

  #close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ws.close(code, reason);
  }
}

function toBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return data;
}
