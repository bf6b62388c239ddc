/**
 * A `dup/2` upload server living in the page, behind the engine's `createSocket` option.
 */
import { decodeDup2Frame, encodeDup2Frame, type Dup2Frame } from '../../src/protocol/dup2.js';
import type { SocketLike } from '../../src/engine/options.js';

/**
 * A dup/2 server in the page: it welcomes, opens uploads, and acknowledges DATA only while `acks`
 * is on (off: a connection that went silent without closing).
 */
export class FakeServerSocket extends EventTarget implements SocketLike {
  /** As set by the transport. */
  binaryType: BinaryType = 'arraybuffer';
  /** `0` until it opens (a microtask after it is made), `1` open, `3` closed. */
  readyState = 0;
  /** Bytes "in the socket's buffer": grows with DATA while `acks` is off and `holds` is on. */
  bufferedAmount = 0;
  /** The subprotocol the server picked. */
  protocol = 'ws-uploader.dup.v2';
  /** Whether DATA gets its ACK. */
  acks = true;
  /** With acks off: whether sent bytes stay in the socket's buffer (a black hole) or drain. */
  holds = true;
  /** Whether PING gets its PONG. */
  pongs = true;
  /** Whether OPEN gets its OPENED. */
  opens = true;
  /** Frames the page sent. */
  readonly frames: Dup2Frame[] = [];
  /** The code the page closed the socket with, once it did. */
  closedWith: number | undefined;

  constructor() {
    super();
    queueMicrotask(() => {
      this.readyState = 1;
      this.dispatchEvent(new Event('open'));
    });
  }

  /** Takes a frame from the page and answers it as the switches above say. */
  send(data: string | ArrayBufferLike | ArrayBufferView): void {
    const bytes = new Uint8Array(
      ArrayBuffer.isView(data)
        ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)
        : (data as ArrayBuffer),
    );
    const frame = decodeDup2Frame(bytes);
    this.frames.push(frame);
    const reply = (f: Dup2Frame): void =>
      queueMicrotask(() => {
        const out = encodeDup2Frame(f);
        const message = new MessageEvent('message', {
          data: out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength),
        });
        this.dispatchEvent(message);
      });
    if (frame.type === 'hello')
      reply({
        type: 'welcome',
        serverId: 'fake',
        maxChunk: 65536,
        window: 1 << 20,
        maxItemSize: 1 << 30,
      });
    else if (frame.type === 'open' && this.opens)
      reply({ type: 'opened', uploadId: frame.uploadId, complete: false, ranges: [] });
    else if (frame.type === 'ping' && this.pongs)
      reply({ type: 'pong', time: frame.time, serverTime: 0 });
    else if (frame.type === 'data' && !this.acks && this.holds) this.bufferedAmount += bytes.length;
    else if (frame.type === 'data' && this.acks)
      reply({
        type: 'ack',
        uploadId: frame.uploadId,
        start: frame.offset,
        end: frame.offset + frame.payload.length,
      });
  }

  /** Closes the socket (once): `close` follows in a microtask. */
  close(code?: number): void {
    if (this.readyState === 3) return;
    this.closedWith = code;
    this.readyState = 3;
    queueMicrotask(() => this.dispatchEvent(new CloseEvent('close', { code: code ?? 1005 })));
  }
}
