/**
 * WebSocket-layer hardening of the reference upload server, over real loopback TCP sockets: oversized
 * and over-fragmented messages, slow-drip writes, frame-level garbage, handshake abuse and an
 * unnegotiated permessage-deflate. Each test is named after its reliability row (P4, P5, …).
 *
 * The raw client below writes the HTTP upgrade and the WebSocket frames byte by byte, so it can
 * send what no WebSocket library would, and it reads the server's close frame to see its code.
 */
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, deflateRawSync } from 'node:zlib';
import {
  crc32c,
  DATA_HEADER_BYTES,
  decodeDup2ServerFrame,
  encodeDup2Frame,
  MAX_TOKEN_BYTES,
  SUBPROTOCOL_DUP_2,
  type Dup2ClientFrame,
  type Dup2ServerFrame,
} from '../../src/protocol/index.js';
import { createUploadServer, type UploadServer } from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer } from '../helpers/node-peers.js';

const SECRET = 'h'.repeat(32);
const MAX_CHUNK = 128 * 1024;
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** WebSocket opcodes (RFC 6455 §5.2). */
const OP = { CONTINUATION: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9 } as const;

/** Close code a peer "sees" when the TCP connection ended without a close frame (RFC 6455 §7.1.5). */
const NO_CLOSE_FRAME = 1006;

interface FrameOptions {
  readonly opcode: number;
  readonly payload?: Uint8Array;
  /** @default true */
  readonly fin?: boolean;
  /** @default true (clients must mask) */
  readonly mask?: boolean;
  readonly rsv1?: boolean;
  readonly rsv2?: boolean;
  readonly rsv3?: boolean;
  /** Length written in the header instead of `payload.length` (to declare more than is sent). */
  readonly declaredLength?: number;
}

/** Encodes one WebSocket frame as a client would (masked unless told otherwise). */
function buildFrame(o: FrameOptions): Buffer {
  const payload = Buffer.from(o.payload ?? new Uint8Array(0));
  const length = o.declaredLength ?? payload.length;
  const mask = o.mask ?? true;
  const b0 =
    ((o.fin ?? true) ? 0x80 : 0) |
    (o.rsv1 ? 0x40 : 0) |
    (o.rsv2 ? 0x20 : 0) |
    (o.rsv3 ? 0x10 : 0) |
    (o.opcode & 0x0f);
  let header: Buffer;
  if (length < 126) {
    header = Buffer.from([b0, length]);
  } else if (length < 0x10000) {
    header = Buffer.alloc(4);
    header[0] = b0;
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = b0;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  if (!mask) return Buffer.concat([header, payload]);
  header[1]! |= 0x80;
  const key = randomBytes(4);
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i]! ^ key[i % 4]!;
  return Buffer.concat([header, key, masked]);
}

/**
 * One binary message in `count` masked frames: a 1-byte first frame, then continuation frames
 * alternately empty and of 1 byte, the last with FIN. Written into one buffer directly (building
 * 200 000 frames with {@link buildFrame} takes over a second).
 */
function tinyFragments(count: number): Buffer {
  const key = randomBytes(4);
  const out = Buffer.alloc(count * 7);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const empty = i % 2 === 1 && i !== count - 1;
    out[at++] = (i === count - 1 ? 0x80 : 0) | (i === 0 ? OP.BINARY : OP.CONTINUATION);
    out[at++] = 0x80 | (empty ? 0 : 1);
    key.copy(out, at);
    at += 4;
    if (!empty) out[at++] = (i === 0 ? 0x01 : 0x00) ^ key[0]!;
  }
  return out.subarray(0, at);
}

/** A binary frame carrying one dup/2 client frame. */
const dupFrame = (f: Dup2ClientFrame, o: Partial<FrameOptions> = {}): Buffer =>
  buildFrame({ opcode: OP.BINARY, payload: encodeDup2Frame(f), ...o });

interface HttpHead {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
}

interface ServerFrame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly payload: Buffer;
}

/** A bare TCP connection that reads the HTTP response head, then server (unmasked) frames. */
class RawConnection {
  readonly socket: Socket;
  readonly closed: Promise<void>;
  #buf: Buffer = Buffer.alloc(0);
  #ended = false;
  #wake: (() => void) | undefined;

  constructor(socket: Socket) {
    this.socket = socket;
    // The server may reset the connection while we still write garbage: that is expected.
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      this.#wake?.();
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.#ended = true;
        this.#wake?.();
        resolve();
      }),
    );
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ port, host: '127.0.0.1', noDelay: true });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  /** Waits until `parse` finds something in the buffer; `undefined` when the socket ended first. */
  async #read<T>(
    parse: (buf: Buffer) => { value: T; used: number } | undefined,
    timeoutMs: number,
    what: string,
  ): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = parse(this.#buf);
      if (got) {
        this.#buf = this.#buf.subarray(got.used);
        return got.value;
      }
      if (this.#ended) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** The HTTP response head, or `undefined` if the server closed the socket without one. */
  head(timeoutMs = 2000): Promise<HttpHead | undefined> {
    return this.#read(
      (buf) => {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return undefined;
        const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1]);
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        return { value: { status, headers }, used: end + 4 };
      },
      timeoutMs,
      'the HTTP response',
    );
  }

  /** The next server frame, or `undefined` if the socket ended. */
  frame(timeoutMs = 2000): Promise<ServerFrame | undefined> {
    return this.#read(
      (buf) => {
        if (buf.length < 2) return undefined;
        expect(buf[1]! & 0x80, 'server frames are never masked').to.equal(0);
        let length = buf[1]! & 0x7f;
        let at = 2;
        if (length === 126) {
          if (buf.length < 4) return undefined;
          length = buf.readUInt16BE(2);
          at = 4;
        } else if (length === 127) {
          if (buf.length < 10) return undefined;
          length = Number(buf.readBigUInt64BE(2));
          at = 10;
        }
        if (buf.length < at + length) return undefined;
        return {
          value: {
            fin: (buf[0]! & 0x80) !== 0,
            opcode: buf[0]! & 0x0f,
            payload: Buffer.from(buf.subarray(at, at + length)),
          },
          used: at + length,
        };
      },
      timeoutMs,
      'a WebSocket frame',
    );
  }

  /** The next dup/2 frame the server sends (skipping WebSocket pings). */
  async dup(timeoutMs = 2000): Promise<Dup2ServerFrame> {
    for (;;) {
      const f = await this.frame(timeoutMs);
      if (!f) throw new Error('connection ended before a dup/2 frame');
      if (f.opcode === OP.BINARY) return decodeDup2ServerFrame(new Uint8Array(f.payload));
      expect(f.opcode, `unexpected frame with opcode ${f.opcode}`).to.be.oneOf([0x9, 0xa]);
    }
  }

  /**
   * The code of the server's close frame (data frames before it are skipped), or 1006 when the
   * connection ended without one. The socket is destroyed afterwards.
   */
  async closeCode(timeoutMs = 2000): Promise<number> {
    try {
      for (;;) {
        const f = await this.frame(timeoutMs);
        if (!f) return NO_CLOSE_FRAME;
        if (f.opcode === OP.CLOSE) return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
      }
    } finally {
      this.destroy();
    }
  }

  write(bytes: Uint8Array | string): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.write(bytes, () => resolve());
    });
  }

  /** Writes one byte per `write` call, each after the previous was handed to the kernel. */
  async drip(bytes: Uint8Array): Promise<void> {
    for (let i = 0; i < bytes.length; i++) {
      await this.write(bytes.subarray(i, i + 1));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

interface UpgradeOptions {
  /** Header values replacing the defaults; `undefined` leaves the header out. */
  readonly set?: Readonly<Record<string, string | undefined>>;
  /** Raw header lines written before the WebSocket headers. */
  readonly before?: readonly string[];
  /** Raw header lines written after them. */
  readonly after?: readonly string[];
}

/** An HTTP/1.1 WebSocket upgrade request to `/dup`, offering dup/2, and its key. */
function upgradeRequest(port: number, o: UpgradeOptions = {}): { text: string; key: string } {
  const key = randomBytes(16).toString('base64');
  const fields: Record<string, string | undefined> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Protocol': SUBPROTOCOL_DUP_2,
    ...o.set,
  };
  const lines = [
    'GET /dup HTTP/1.1',
    ...(o.before ?? []),
    ...Object.entries(fields)
      .filter((e): e is [string, string] => e[1] !== undefined)
      .map(([k, v]) => `${k}: ${v}`),
    ...(o.after ?? []),
  ];
  return { text: `${lines.join('\r\n')}\r\n\r\n`, key };
}

/** Opens a TCP connection, writes an upgrade request and reads the response head. */
async function rawUpgrade(
  port: number,
  o: UpgradeOptions = {},
): Promise<{ conn: RawConnection; head: HttpHead | undefined; key: string }> {
  const conn = await RawConnection.open(port);
  const { text, key } = upgradeRequest(port, o);
  await conn.write(text);
  return { conn, head: await conn.head(), key };
}

const acceptOf = (key: string): string =>
  createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');

describe('upload server WebSocket hardening', function () {
  let dir: string;
  let server: UploadServer;
  let port: number;
  let urls: { http: string; ws: string };
  const peers: Dup2Peer[] = [];
  const conns: RawConnection[] = [];

  const token = async (uid = 'alice'): Promise<string> =>
    (await signToken(secretKey(SECRET), 'client-1', uploadAudience('up-1'), 60, { uid })).token;

  /** A raw connection that completed the dup/2 upgrade (101, accept key, subprotocol). */
  async function rawDup(o: UpgradeOptions = {}): Promise<RawConnection> {
    const { conn, head, key } = await rawUpgrade(port, o);
    conns.push(conn);
    expect(head?.status).to.equal(101);
    expect(head?.headers['sec-websocket-accept']).to.equal(acceptOf(key));
    expect(head?.headers['sec-websocket-protocol']).to.equal(SUBPROTOCOL_DUP_2);
    return conn;
  }

  /** A raw connection that got WELCOME; resolves to it and the WELCOME. */
  async function rawWelcomed(): Promise<{
    conn: RawConnection;
    welcome: Extract<Dup2ServerFrame, { type: 'welcome' }>;
  }> {
    const conn = await rawDup();
    await conn.write(dupFrame({ type: 'hello', token: await token() }));
    const welcome = await conn.dup();
    if (welcome.type !== 'welcome') throw new Error(`expected WELCOME, got ${welcome.type}`);
    return { conn, welcome };
  }

  /**
   * The server still serves: a fresh, well-behaved ws client is welcomed and can store a small
   * item; `/healthz` answers.
   */
  async function assertStillServing(itemId: string): Promise<void> {
    const peer = new Dup2Peer(urls.ws);
    peers.push(peer);
    await peer.send({ type: 'hello', token: await token() });
    expect((await peer.next(2000)).type).to.equal('welcome');
    const bytes = new Uint8Array(randomBytes(1000));
    await peer.send({ type: 'open', uploadId: 1, itemId, size: bytes.length, mime: '', name: '' });
    expect(await peer.next(2000)).to.deep.include({ type: 'opened', uploadId: 1 });
    await peer.send({
      type: 'data',
      uploadId: 1,
      offset: 0,
      crc32c: crc32c(bytes),
      payload: bytes,
    });
    expect(await peer.next(2000)).to.deep.equal({
      type: 'ack',
      uploadId: 1,
      start: 0,
      end: bytes.length,
    });
    peer.close();
    const res = await fetch(`${urls.http}/healthz`);
    expect(res.status).to.equal(200);
    await res.body?.cancel();
  }

  /** Asserts an item exists and holds no bytes: no stored range, an empty (or no) data file. */
  async function assertNothingStored(itemId: string): Promise<void> {
    expect((await server.store.get(itemId))?.ranges).to.deep.equal([]);
    const data = await stat(join(dir, itemId, 'data')).catch(() => undefined);
    expect(data?.size ?? 0).to.equal(0);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-hardening-'));
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      durability: 'write',
      maxChunk: MAX_CHUNK,
      window: 4 * MAX_CHUNK,
    });
    urls = await server.listen(0);
    port = Number(new URL(urls.http).port);
  });

  afterEach(() => {
    for (const p of peers.splice(0)) p.close();
    for (const c of conns.splice(0)) c.destroy();
  });

  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('P4: oversized messages', () => {
    it('P4: a message of exactly maxPayload bytes is accepted; maxPayload + 1 is closed with 1009 and nothing is stored', async () => {
      const peer = new Dup2Peer(urls.ws);
      peers.push(peer);
      await peer.send({ type: 'hello', token: await token() });
      const welcome = await peer.next();
      if (welcome.type !== 'welcome') throw new Error(`expected WELCOME, got ${welcome.type}`);
      // As upload-server.ts computes it: a full DATA frame, or a HELLO with the largest token.
      const maxPayload = Math.max(welcome.maxChunk + DATA_HEADER_BYTES, MAX_TOKEN_BYTES + 3);
      expect(welcome.maxChunk).to.equal(MAX_CHUNK);
      expect(maxPayload).to.equal(MAX_CHUNK + 17);

      // Boundary: a DATA of maxChunk bytes is a message of exactly maxPayload bytes, and is fine.
      const full = new Uint8Array(randomBytes(welcome.maxChunk));
      await peer.send({ type: 'open', uploadId: 1, itemId: 'p4-fits', size: full.length + 1, mime: '', name: '' }); // prettier-ignore
      expect(await peer.next()).to.deep.include({ type: 'opened', uploadId: 1 });
      const fits = encodeDup2Frame({
        type: 'data',
        uploadId: 1,
        offset: 0,
        crc32c: crc32c(full),
        payload: full,
      });
      expect(fits.length).to.equal(maxPayload);
      await peer.sendRaw(fits);
      expect(await peer.next()).to.deep.equal({
        type: 'ack',
        uploadId: 1,
        start: 0,
        end: full.length,
      });

      // One byte more: a DATA of maxChunk + 1 bytes for a fresh item.
      const over = new Uint8Array(randomBytes(welcome.maxChunk + 1));
      await peer.send({ type: 'open', uploadId: 2, itemId: 'p4-over', size: over.length, mime: '', name: '' }); // prettier-ignore
      expect(await peer.next()).to.deep.include({ type: 'opened', uploadId: 2 });
      const tooBig = encodeDup2Frame({
        type: 'data',
        uploadId: 2,
        offset: 0,
        crc32c: crc32c(over),
        payload: over,
      });
      expect(tooBig.length).to.equal(maxPayload + 1);
      await peer.sendRaw(tooBig);
      const closed = await peer.closed;
      expect(closed.code).to.equal(1009);
      // No ERROR frame precedes the close (docs/protocol.md: the WebSocket layer closes).
      expect(await peer.next(100).catch(() => undefined)).to.equal(undefined);
      await assertNothingStored('p4-over');
      await assertStillServing('p4-after-over');
    });

    it('P4: a 100 MiB message declared in the frame header is closed with 1009 before its payload', async () => {
      const { conn } = await rawWelcomed();
      const size = 100 * 1024 * 1024;
      await conn.write(dupFrame({ type: 'open', uploadId: 1, itemId: 'p4-huge', size, mime: '', name: '' })); // prettier-ignore
      expect(await conn.dup()).to.deep.include({ type: 'opened', uploadId: 1, complete: false });

      // Only the 14 bytes of the WebSocket frame header (FIN, binary, masked, 64-bit length
      // 100 MiB + 17, mask key) are sent: the server must refuse on the header alone.
      const t0 = Date.now();
      const header = buildFrame({ opcode: OP.BINARY, declaredLength: DATA_HEADER_BYTES + size });
      expect(header.length).to.equal(14);
      await conn.write(header);
      expect(await conn.closeCode()).to.equal(1009);
      expect(Date.now() - t0).to.be.below(1000);
      await assertNothingStored('p4-huge');
      await assertStillServing('p4-after-huge');
    });
  });

  describe('P5: fragmentation and slow drip', () => {
    it('P5: 200 000 tiny continuation frames of one message are closed with 1008 (WS_ERR_TOO_MANY_BUFFERED_PARTS)', async () => {
      const conn = await rawDup();
      const t0 = Date.now();
      void conn.write(tinyFragments(200_000));
      // ws >= 8.21: the server's receiver allows 16 384 fragments per message by default, then
      // fails with WS_ERR_TOO_MANY_BUFFERED_PARTS, whose close code is 1008 (policy violation).
      expect(await conn.closeCode()).to.equal(1008);
      expect(Date.now() - t0).to.be.below(1000);
      await assertStillServing('p5-after-fragments');
    });

    it('P5: a message in a few hundred 1-byte fragments is still a message (HELLO → WELCOME)', async () => {
      const conn = await rawDup();
      const hello = encodeDup2Frame({ type: 'hello', token: await token() });
      const frames = Array.from(hello, (byte, i) =>
        buildFrame({
          opcode: i === 0 ? OP.BINARY : OP.CONTINUATION,
          fin: i === hello.length - 1,
          payload: Uint8Array.of(byte),
        }),
      );
      expect(frames.length).to.be.above(100);
      await conn.write(Buffer.concat(frames));
      expect((await conn.dup()).type).to.equal('welcome');
    });

    it('P5: a HELLO, OPEN and DATA written in 1-byte TCP writes (slow drip) are served: WELCOME, OPENED, ACK', async function () {
      this.timeout(10_000);
      const conn = await rawDup();
      await conn.drip(dupFrame({ type: 'hello', token: await token() }));
      expect((await conn.dup()).type).to.equal('welcome');
      const bytes = new Uint8Array(randomBytes(2048));
      await conn.drip(dupFrame({ type: 'open', uploadId: 1, itemId: 'p5-drip', size: bytes.length, mime: '', name: '' })); // prettier-ignore
      expect(await conn.dup()).to.deep.include({ type: 'opened', uploadId: 1 });
      await conn.drip(
        dupFrame({ type: 'data', uploadId: 1, offset: 0, crc32c: crc32c(bytes), payload: bytes }),
      );
      expect(await conn.dup()).to.deep.equal({
        type: 'ack',
        uploadId: 1,
        start: 0,
        end: bytes.length,
      });
      expect((await server.store.get('p5-drip'))?.ranges).to.deep.equal([
        { start: 0, end: bytes.length },
      ]);
      await assertStillServing('p5-after-drip');
    });
  });

  describe('P6: frame-level garbage after a proper upgrade', () => {
    const hello = (): Uint8Array => encodeDup2Frame({ type: 'hello', token: 'x' });
    const cases: readonly [string, () => Buffer, number][] = [
      ['an unmasked client frame', () => buildFrame({ opcode: OP.BINARY, mask: false, payload: hello() }), 1002], // prettier-ignore
      ['RSV2 set', () => buildFrame({ opcode: OP.BINARY, rsv2: true, payload: hello() }), 1002],
      ['RSV3 set', () => buildFrame({ opcode: OP.BINARY, rsv3: true, payload: hello() }), 1002],
      ['reserved data opcode 0x3', () => buildFrame({ opcode: 0x3, payload: hello() }), 1002],
      ['reserved control opcode 0xB', () => buildFrame({ opcode: 0xb }), 1002],
      ['a ping with a 126-byte payload', () => buildFrame({ opcode: OP.PING, payload: new Uint8Array(126) }), 1002], // prettier-ignore
      ['a fragmented ping (FIN clear)', () => buildFrame({ opcode: OP.PING, fin: false, payload: Uint8Array.of(1) }), 1002], // prettier-ignore
      ['a continuation frame with no message to continue', () => buildFrame({ opcode: OP.CONTINUATION, payload: Uint8Array.of(1) }), 1002], // prettier-ignore
      ['invalid UTF-8 in a text frame', () => buildFrame({ opcode: OP.TEXT, payload: Uint8Array.of(0x68, 0xc3, 0x28, 0xff) }), 1007], // prettier-ignore
    ];
    cases.forEach(([name, make, code], i) => {
      it(`P6: ${name} is closed with ${code}, and the server serves on`, async () => {
        const conn = await rawDup();
        await conn.write(make());
        expect(await conn.closeCode()).to.equal(code);
        await assertStillServing(`p6-case-${i}`);
      });
    });

    it('P6: the same garbage after WELCOME is closed with 1002 too, and the server serves on', async () => {
      const { conn } = await rawWelcomed();
      await conn.write(buildFrame({ opcode: OP.BINARY, rsv3: true, payload: hello() }));
      expect(await conn.closeCode()).to.equal(1002);
      await assertStillServing('p6-after');
    });
  });

  describe('P9: handshake abuse', () => {
    /** No 101: a 4xx status, or the socket closed without a response. */
    async function expectRefused(
      o: UpgradeOptions,
      statuses: readonly number[],
    ): Promise<HttpHead | undefined> {
      const { conn, head } = await rawUpgrade(port, o);
      conns.push(conn);
      if (head) expect(head.status).to.be.oneOf(statuses);
      await conn.closed;
      await assertStillServing(`p9-${Math.random().toString(36).slice(2)}`);
      return head;
    }

    it('P9: a request with 2500 headers (over the 16 KiB header limit) gets 431', async () => {
      const pad = Array.from({ length: 2500 }, (_, i) => `X-Pad-${i}: ${'v'.repeat(8)}`);
      const head = await expectRefused({ before: pad }, [431]);
      expect(head?.status).to.equal(431);
    });

    it('P9: a request with 2001 short headers (under 16 KiB) placed before the WebSocket headers is refused', async () => {
      // Node keeps the first 2000 headers (maxHeadersCount) and drops the rest: the upgrade headers
      // written after them never reach ws, which must refuse the handshake rather than guess.
      const pad = Array.from({ length: 2001 }, (_, i) => `h${i.toString(36)}:v`);
      expect(pad.join('\r\n').length).to.be.below(16 * 1024);
      const head = await expectRefused({ before: pad }, [400, 426, 431]);
      expect(head?.status).to.not.equal(101);
    });

    it('P9: a 64 KiB Sec-WebSocket-Protocol header gets 431', async () => {
      const protocols = Array.from({ length: (64 * 1024) / 16 }, () => 'aaaaaaaaaaaaa, ').join('');
      const head = await expectRefused(
        { set: { 'Sec-WebSocket-Protocol': `${protocols}${SUBPROTOCOL_DUP_2}` } },
        [431],
      );
      expect(head?.status).to.equal(431);
    });

    for (const version of ['12', 'garbage', '']) {
      it(`P9: Sec-WebSocket-Version: ${JSON.stringify(version)} is refused with 400 or 426 naming version 13`, async () => {
        const head = await expectRefused({ set: { 'Sec-WebSocket-Version': version } }, [400, 426]);
        expect(head, 'an HTTP response').to.not.equal(undefined);
        expect(head!.headers['sec-websocket-version']).to.match(/\b13\b/);
      });
    }
  });

  describe('P10: permessage-deflate', () => {
    it('P10: an offer of permessage-deflate is declined, and an RSV1 (compressed) frame is closed with 1002', async () => {
      const { conn, head, key } = await rawUpgrade(port, {
        set: {
          'Sec-WebSocket-Extensions':
            'permessage-deflate; client_max_window_bits, permessage-deflate',
        },
      });
      conns.push(conn);
      expect(head?.status).to.equal(101);
      expect(head?.headers['sec-websocket-accept']).to.equal(acceptOf(key));
      expect(head?.headers['sec-websocket-protocol']).to.equal(SUBPROTOCOL_DUP_2);
      expect(head?.headers).to.not.have.property('sec-websocket-extensions');

      // A real deflate-raw of a HELLO (RFC 7692 §7.2.1: without the trailing 00 00 ff ff), sent
      // as a compressed message anyway.
      const compressed = deflateRawSync(encodeDup2Frame({ type: 'hello', token: await token() }), {
        finishFlush: constants.Z_SYNC_FLUSH,
      });
      await conn.write(
        buildFrame({ opcode: OP.BINARY, rsv1: true, payload: compressed.subarray(0, -4) }),
      );
      expect(await conn.closeCode()).to.equal(1002);
      await assertStillServing('p10-after');
    });
  });
});
