import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, open as openFile, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '../../src/protocol/index.js';
import {
  createUploadServer,
  FileStore,
  type Demand,
  type UploadServer,
  type UploadServerOptions,
} from '../../server/index.js';
import type { LogEntry } from '../../server/internal/log.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256 } from '../helpers/node-peers.js';

const SECRET = 'i'.repeat(32);

async function uploadToken(client: string, uid = 'alice'): Promise<string> {
  return (await signToken(secretKey(SECRET), client, uploadAudience('up-1'), 60, { uid })).token;
}

async function connect(wsUrl: string, client = 'c1'): Promise<Dup2Peer> {
  const peer = new Dup2Peer(wsUrl);
  await peer.send({ type: 'hello', token: await uploadToken(client) });
  expect((await peer.next()).type).to.equal('welcome');
  return peer;
}

/** GET of a whole item: status, and the body, or the error that cut it off. */
function fetchItem(
  httpUrl: string,
  itemId: string,
): Promise<{ status: number; body: Buffer; cut: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(`${httpUrl}/files/${itemId}`, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, body: Buffer.concat(parts), cut: false }),
      );
      res.on('error', () =>
        resolve({ status: res.statusCode!, body: Buffer.concat(parts), cut: true }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('upload server integrity (rows F3, F5, F6, F7, F8, I3)', () => {
  let dir: string;
  let server: UploadServer | undefined;
  let urls: { http: string; ws: string };
  const peers: Dup2Peer[] = [];
  const logs: LogEntry[] = [];
  const demands: Demand[] = [];

  async function start(options: Partial<UploadServerOptions> = {}): Promise<void> {
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      readAccess: 'public',
      logger: (entry) => logs.push(entry),
      onDemand: (d) => demands.push(d),
      ...options,
    });
    urls = await server.listen(0);
  }

  async function peer(client = 'c1'): Promise<Dup2Peer> {
    const p = await connect(urls.ws, client);
    peers.push(p);
    return p;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-integrity-'));
    logs.length = 0;
    demands.length = 0;
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('F5: acknowledges a resent chunk without storing it twice, and refuses other bytes at a stored offset with conflict', async () => {
    await start();
    const p = await peer();
    const bytes = new Uint8Array(randomBytes(3000));
    await p.open(1, 'resent', bytes.length);
    await p.next();
    await p.data(1, 0, bytes.subarray(0, 2000));
    expect(await p.next()).to.deep.include({ type: 'ack', start: 0, end: 2000 });
    // The ACK was lost: the same bytes again, overlapping the next ones.
    await p.data(1, 1000, bytes.subarray(1000, 3000));
    expect(await p.next()).to.deep.include({ type: 'ack', start: 1000, end: 3000 });
    const other = new Uint8Array(1000).fill(7);
    await p.data(1, 500, other);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'conflict' });
    expect(Buffer.from(await readFile(join(dir, 'resent', 'data'))).equals(bytes)).to.equal(true);
    await p.open(2, 'resent', bytes.length);
    expect(await p.next()).to.deep.include({ type: 'opened', ranges: [{ start: 0, end: 3000 }] });
    await p.send({ type: 'finish', uploadId: 2, sha256: sha256(bytes).bytes });
    expect((await p.next()).type).to.equal('complete');
    // A complete item takes no other bytes either.
    await p.open(3, 'resent', bytes.length);
    await p.next();
    await p.data(3, 0, other);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 3, code: 'conflict' });
    const got = await fetchItem(urls.http, 'resent');
    expect(got.status).to.equal(200);
    expect(got.body.equals(bytes)).to.equal(true);
  });

  it('F6: takes chunks out of order, never counts the gap as stored, and completes once it is filled', async () => {
    await start();
    const p = await peer();
    const bytes = new Uint8Array(randomBytes(3000));
    await p.open(1, 'gappy', bytes.length);
    await p.next();
    await p.data(1, 2000, bytes.subarray(2000));
    await p.next();
    await p.data(1, 0, bytes.subarray(0, 1000));
    await p.next();
    expect((await server!.store.get('gappy'))!.ranges).to.deep.equal([
      { start: 0, end: 1000 },
      { start: 2000, end: 3000 },
    ]);
    await p.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect(await p.next()).to.deep.include({ type: 'error', code: 'incomplete' });
    await p.open(2, 'gappy', bytes.length);
    await p.next();
    await p.data(2, 1000, bytes.subarray(1000, 2000));
    await p.next();
    await p.send({ type: 'finish', uploadId: 2, sha256: sha256(bytes).bytes });
    expect((await p.next()).type).to.equal('complete');
  });

  it('F3: a connection cut in the middle of a DATA frame stores nothing of that frame', async () => {
    await start();
    const p = await peer();
    const bytes = new Uint8Array(randomBytes(64 * 1024));
    await p.open(1, 'cut', 2 * bytes.length);
    await p.next();
    await p.data(1, 0, bytes);
    await p.next();
    // A DATA frame for the next 64 KiB, of which only half the WebSocket payload goes out.
    const header = new Uint8Array(17);
    const view = new DataView(header.buffer);
    header[0] = 3; // DATA
    view.setUint32(1, 1);
    view.setFloat64(5, bytes.length);
    view.setUint32(13, crc32c(bytes));
    const frame = Buffer.concat([header, bytes]);
    const wsHeader = Buffer.alloc(14);
    wsHeader[0] = 0x82;
    wsHeader[1] = 0x80 | 127;
    wsHeader.writeBigUInt64BE(BigInt(frame.length), 2);
    // Mask key 0: the payload goes as it is.
    const socket = (p.ws as unknown as { _socket: Socket })._socket;
    socket.write(Buffer.concat([wsHeader, frame.subarray(0, frame.length / 2)]));
    await new Promise((r) => setTimeout(r, 100));
    socket.destroy();
    await p.closed;
    await new Promise((r) => setTimeout(r, 100));
    expect((await server!.store.get('cut'))!.ranges).to.deep.equal([
      { start: 0, end: bytes.length },
    ]);
  });

  it('F7: a second connection takes an item over; the first stops, its started writes are stored, and bytes never interleave', async () => {
    await start();
    const first = await peer('tab-1');
    const bytes = new Uint8Array(randomBytes(4000));
    await first.open(1, 'shared', bytes.length);
    await first.next();
    await first.data(1, 0, bytes.subarray(0, 1000));
    await first.data(1, 1000, bytes.subarray(1000, 2000));
    const second = await peer('tab-2');
    await second.open(1, 'shared', bytes.length);
    // The first connection's upload id ends; the writes it had started still become durable
    // (their ACKs may come first, when the writes finish before the takeover).
    expect(await first.nextNonAck()).to.deep.include({
      type: 'error',
      uploadId: 1,
      code: 'superseded',
    });
    // The newcomer sees them stored, sends the rest, and the item is whole.
    expect(await second.next()).to.deep.include({
      type: 'opened',
      ranges: [{ start: 0, end: 2000 }],
    });
    await first.data(1, 2000, bytes.subarray(2000, 3000));
    expect(await first.nextNonAck()).to.deep.include({ code: 'unknown-upload' });
    await second.data(1, 2000, bytes.subarray(2000));
    await second.next();
    await second.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await second.next()).type).to.equal('complete');
  });

  it('F7: waits a bounded time for a writer that does not let go, then answers locked (retryable)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    class StuckStore extends FileStore {
      override async write(itemId: string, offset: number, bytes: Uint8Array, crc?: number) {
        await gate;
        return super.write(itemId, offset, bytes, crc);
      }
    }
    await start({ store: new StuckStore(dir), lockTimeoutMs: 200 });
    const first = await peer('tab-1');
    const bytes = new Uint8Array(randomBytes(1000));
    await first.open(1, 'stuck', bytes.length);
    await first.next();
    await first.data(1, 0, bytes);
    await new Promise((r) => setTimeout(r, 50));
    const second = await peer('tab-2');
    await second.open(1, 'stuck', bytes.length);
    expect(await second.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'locked' });
    release();
    await second.open(2, 'stuck', bytes.length);
    expect(await second.next()).to.deep.include({
      type: 'opened',
      ranges: [{ start: 0, end: 1000 }],
    });
  });

  it('F7: a dup/2 writer cuts off an HTTP PUT of the same bytes; what the PUT stored stays', async () => {
    await start({ maxChunk: 1024 });
    const bytes = new Uint8Array(randomBytes(4096));
    const token = await uploadToken('http-client');
    const put = request(`${urls.http}/uploads/put-item`, {
      method: 'PUT',
      headers: {
        Authorization: `Bearer ${token}`,
        'Content-Range': `bytes 0-4095/4096`,
        'Content-Length': '4096',
      },
    });
    const outcome = new Promise<string>((resolve) => {
      put.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      put.on('response', (res) => resolve(`status ${res.statusCode}`));
    });
    put.write(bytes.subarray(0, 2048));
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const record = await server!.store.get('put-item');
      if (record && record.ranges.length > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const p = await peer();
    await p.open(1, 'put-item', bytes.length);
    expect(await p.next()).to.deep.include({
      type: 'opened',
      ranges: [{ start: 0, end: 2048 }],
    });
    expect(await outcome).to.match(/^error /);
    for (const at of [2048, 3072]) {
      await p.data(1, at, bytes.subarray(at, at + 1024));
      await p.next();
    }
    await p.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await p.next()).type).to.equal('complete');
  });

  it('F7: a dup/2 writer cuts off a multipart POST of the same item; what the POST stored stays', async () => {
    await start({ maxChunk: 1024 });
    const bytes = new Uint8Array(randomBytes(4096));
    const token = await uploadToken('http-client');
    const boundary = 'b0undary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="itemId"\r\n\r\nposted\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="size"\r\n\r\n4096\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n` +
        `Content-Type: application/octet-stream\r\n\r\n`,
    );
    const post = request(`${urls.http}/uploads`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${token}`,
        'Content-Type': `multipart/form-data; boundary=${boundary}`,
      },
    });
    const outcome = new Promise<string>((resolve) => {
      post.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      post.on('response', (res) => resolve(`status ${res.statusCode}`));
    });
    post.write(Buffer.concat([head, bytes.subarray(0, 2048)]));
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      // Both chunks of what was sent stored (durable), as they are while the body goes on.
      const record = await server!.store.get('posted');
      if (record?.ranges[0]?.end === 2048) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const p = await peer();
    await p.open(1, 'posted', bytes.length);
    expect(await p.next()).to.deep.include({
      type: 'opened',
      ranges: [{ start: 0, end: 2048 }],
    });
    expect(await outcome).to.match(/^error /);
  });

  it('I3: bytes changed at rest are never served: the read is cut off, the item is no longer complete, and the bytes can be sent again', async () => {
    await start({ holdMs: 100 });
    const p = await peer();
    const bytes = new Uint8Array(randomBytes(3000));
    await p.open(1, 'rotten', bytes.length);
    await p.next();
    for (const at of [0, 1000, 2000]) {
      await p.data(1, at, bytes.subarray(at, at + 1000));
      await p.next();
    }
    await p.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await p.next()).type).to.equal('complete');
    // One byte of the middle chunk flips on disk.
    const fh = await openFile(join(dir, 'rotten', 'data'), 'r+');
    await fh.write(new Uint8Array([bytes[1500]! ^ 0xff]), 0, 1, 1500);
    await fh.close();
    const got = await fetchItem(urls.http, 'rotten');
    expect(got.cut || got.status >= 500).to.equal(true);
    expect(got.body.includes(Buffer.from([bytes[1500]! ^ 0xff]), 1000)).to.equal(false);
    expect(logs.some((l) => l.event === 'corrupt-bytes')).to.equal(true);
    expect(await server!.store.get('rotten')).to.deep.include({
      complete: false,
      ranges: [
        { start: 0, end: 1000 },
        { start: 2000, end: 3000 },
      ],
    });
    // A reader now waits for the bytes, and the uploader is asked for them.
    expect((await fetchItem(urls.http, 'rotten')).status).to.equal(503);
    expect(demands.at(-1)).to.deep.equal({
      itemId: 'rotten',
      ranges: [{ start: 1000, end: 2000 }],
    });
    await p.open(2, 'rotten', bytes.length);
    expect(await p.next()).to.deep.include({ type: 'opened', complete: false });
    await p.data(2, 1000, bytes.subarray(1000, 2000));
    await p.next();
    await p.send({ type: 'finish', uploadId: 2, sha256: sha256(bytes).bytes });
    expect((await p.next()).type).to.equal('complete');
    const again = await fetchItem(urls.http, 'rotten');
    expect(again.status).to.equal(200);
    expect(sha256(again.body).hex).to.equal(sha256(bytes).hex);
  });

  it('F8: ignores a torn record at the end of the chunk journal after a crash, and appends after the good ones', async () => {
    const store = new FileStore(dir);
    await store.open('torn', 300);
    await store.write('torn', 0, new Uint8Array(100).fill(1));
    await store.close();
    // A crash in the middle of appending the next record.
    await appendFile(join(dir, 'torn', 'chunks'), new Uint8Array(10).fill(0xab));
    const again = new FileStore(dir);
    expect((await again.get('torn'))!.ranges).to.deep.equal([{ start: 0, end: 100 }]);
    await again.write('torn', 100, new Uint8Array(100).fill(2));
    await again.close();
    const third = new FileStore(dir);
    expect((await third.get('torn'))!.ranges).to.deep.equal([{ start: 0, end: 200 }]);
    const read: Buffer[] = [];
    for await (const c of third.read('torn', 50, 150)) read.push(c as Buffer);
    expect(Buffer.concat(read)).to.deep.equal(
      Buffer.concat([Buffer.alloc(50, 1), Buffer.alloc(50, 2)]),
    );
    await third.close();
  });
});
