/**
 * Node-side peers for server tests: a raw dup/2 client and a raw control client over real
 * WebSockets, with a `next()` stepper over what the server sends.
 */
import { createHash } from 'node:crypto';
import WebSocket from 'ws';
import {
  crc32c,
  decodeControlServerMessage,
  decodeDup2ServerFrame,
  encodeControlMessage,
  encodeDup2Frame,
  SUBPROTOCOL_CONTROL_1,
  SUBPROTOCOL_DUP_2,
  type ControlClientMessage,
  type ControlServerMessage,
  type Dup2ClientFrame,
  type Dup2ServerFrame,
} from '../../src/protocol/index.js';

/** A queue of what arrived, read in order with `next()`. */
class Inbox<T> {
  readonly #items: T[] = [];
  readonly #waiters: ((v: T | undefined) => void)[] = [];
  #closed = false;

  push(v: T): void {
    const w = this.#waiters.shift();
    if (w) w(v);
    else this.#items.push(v);
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w(undefined);
  }

  next(timeoutMs = 5000): Promise<T> {
    const v = this.#items.shift();
    if (v !== undefined) return Promise.resolve(v);
    if (this.#closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const waiter = (x: T | undefined): void => {
        clearTimeout(timer);
        if (x === undefined) reject(new Error('connection closed'));
        else resolve(x);
      };
      // A waiter that timed out leaves the queue, so it does not swallow the next message.
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error('timed out waiting for a message'));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }
}

abstract class Peer<In, Out> {
  readonly ws: WebSocket;
  readonly inbox = new Inbox<In>();
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;

  constructor(url: string, protocol: string) {
    this.ws = new WebSocket(url, protocol);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => {
        this.inbox.close();
        resolve({ code, reason: reason.toString() });
      }),
    );
    this.ws.on('message', (data, isBinary) =>
      this.inbox.push(this.decode(data as Buffer, isBinary)),
    );
  }

  protected abstract decode(data: Buffer, isBinary: boolean): In;
  abstract send(message: Out): Promise<void>;

  next(timeoutMs?: number): Promise<In> {
    return this.inbox.next(timeoutMs);
  }

  close(): void {
    this.ws.close();
  }
}

/** A raw dup/2 client. */
export class Dup2Peer extends Peer<Dup2ServerFrame, Dup2ClientFrame> {
  constructor(url: string, protocol = SUBPROTOCOL_DUP_2) {
    super(url, protocol);
  }

  protected decode(data: Buffer): Dup2ServerFrame {
    return decodeDup2ServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  async send(frame: Dup2ClientFrame): Promise<void> {
    await this.opened;
    this.ws.send(encodeDup2Frame(frame));
  }

  /** Sends raw bytes (for malformed frames). */
  async sendRaw(bytes: Uint8Array | string): Promise<void> {
    await this.opened;
    this.ws.send(bytes);
  }

  /**
   * Sends one frame as several WebSocket frames, split at `cuts` (offsets into its bytes), as a
   * browser sends a large message.
   */
  async sendFragmented(frame: Dup2ClientFrame, cuts: readonly number[]): Promise<void> {
    await this.opened;
    const bytes = encodeDup2Frame(frame);
    const bounds = [0, ...cuts, bytes.length];
    for (let i = 0; i + 1 < bounds.length; i++)
      this.ws.send(bytes.subarray(bounds[i], bounds[i + 1]), {
        binary: true,
        fin: i + 2 === bounds.length,
      });
  }

  /** The next frame that is not an ACK (ACKs come whenever writes turn durable). */
  async nextNonAck(timeoutMs?: number): Promise<Dup2ServerFrame> {
    for (;;) {
      const frame = await this.next(timeoutMs);
      if (frame.type !== 'ack') return frame;
    }
  }

  /** Sends OPEN without a media type or name. */
  open(uploadId: number, itemId: string, size: number): Promise<void> {
    return this.send({ type: 'open', uploadId, itemId, size, mime: '', name: '' });
  }

  /** Sends DATA with the payload's CRC-32C. */
  data(uploadId: number, offset: number, payload: Uint8Array): Promise<void> {
    return this.send({ type: 'data', uploadId, offset, crc32c: crc32c(payload), payload });
  }

  /** Sends READ for `[start, end)` of an item. */
  read(readId: number, itemId: string, start: number, end: number): Promise<void> {
    return this.send({ type: 'read', readId, itemId, start, end });
  }
}

/** A raw control-protocol client. */
export class ControlPeer extends Peer<ControlServerMessage, ControlClientMessage> {
  constructor(url: string, protocol = SUBPROTOCOL_CONTROL_1) {
    super(url, protocol);
  }

  protected decode(data: Buffer): ControlServerMessage {
    return decodeControlServerMessage(data.toString());
  }

  async send(message: ControlClientMessage): Promise<void> {
    await this.opened;
    this.ws.send(encodeControlMessage(message));
  }

  /** Sends raw text (for malformed messages). */
  async sendRaw(text: string): Promise<void> {
    await this.opened;
    this.ws.send(text);
  }

  /** The next message of a type, skipping others. */
  async nextOf<T extends ControlServerMessage['type']>(
    type: T,
    timeoutMs?: number,
  ): Promise<Extract<ControlServerMessage, { type: T }>> {
    for (;;) {
      const m = await this.next(timeoutMs);
      if (m.type === type) return m as Extract<ControlServerMessage, { type: T }>;
    }
  }
}

/** SHA-256 of bytes, as raw bytes and hex. */
export function sha256(bytes: Uint8Array): { bytes: Uint8Array; hex: string } {
  const d = createHash('sha256').update(bytes).digest();
  return { bytes: new Uint8Array(d), hex: d.toString('hex') };
}

/** A dup/2 OPEN frame with raw item id bytes, which the encoder would refuse to write. */
export function rawOpen(uploadId: number, itemId: Uint8Array, size: number): Uint8Array {
  const b = Buffer.alloc(19 + itemId.length);
  b[0] = 0x02;
  b.writeUInt32BE(uploadId, 1);
  b.writeBigUInt64BE(BigInt(size), 5);
  b.writeUInt16BE(itemId.length, 13);
  b.set(itemId, 15);
  return b;
}
