import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, CLOSE, DATA_HEADER_BYTES, SUBPROTOCOL_DUP_2 } from '../../src/protocol/index.js';
import {
  createReadToken,
  createUploadServer,
  FileStore,
  type UploadServer,
} from '../../server/index.js';
import { SignJWT } from 'jose';
import { signToken, secretKey, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256, rawOpen } from '../helpers/node-peers.js';

const SECRET = 'a'.repeat(32);

describe('upload server (dup/2)', () => {
  let dir: string;
  let server: UploadServer;
  let urls: { http: string; ws: string };
  const peers: Dup2Peer[] = [];
  /** What the server's `onComplete` was told. */
  const completions: [string, string, number][] = [];

  const token = async (serverId = 'up-1', secret = SECRET, uid = 'alice') =>
    (await signToken(secretKey(secret), 'client-1', uploadAudience(serverId), 60, { uid })).token;

  /** `GET /files/{itemId}` with a read token for any item. */
  const getFile = async (itemId: string) =>
    fetch(`${urls.http}/files/${itemId}`, {
      headers: {
        Authorization: `Bearer ${await createReadToken(SECRET, 'up-1', { subject: 'reader' })}`,
      },
    });

  /** A connected, welcomed peer. */
  async function connect(uid = 'alice'): Promise<Dup2Peer> {
    const peer = new Dup2Peer(urls.ws);
    peers.push(peer);
    await peer.send({ type: 'hello', token: await token('up-1', SECRET, uid) });
    const welcome = await peer.next();
    expect(welcome.type).to.equal('welcome');
    return peer;
  }

  async function upload(
    peer: Dup2Peer,
    uploadId: number,
    itemId: string,
    bytes: Uint8Array,
    chunk = 64 * 1024,
  ) {
    await peer.send({ type: 'open', uploadId, itemId, size: bytes.length, mime: '', name: '' });
    expect(await peer.next()).to.deep.include({ type: 'opened', uploadId, complete: false });
    for (let o = 0; o < bytes.length; o += chunk) {
      const payload = bytes.subarray(o, o + chunk);
      await peer.send({ type: 'data', uploadId, offset: o, crc32c: crc32c(payload), payload });
      expect(await peer.next()).to.deep.equal({
        type: 'ack',
        uploadId,
        start: o,
        end: o + payload.length,
      });
    }
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-upload-'));
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      authTimeoutMs: 300,
      maxChunk: 128 * 1024,
      window: 256 * 1024,
      holdMs: 200,
      onComplete: (itemId, sha, size) => completions.push([itemId, sha, size]),
    });
    urls = await server.listen(0);
  });

  afterEach(async () => {
    completions.length = 0;
    for (const p of peers.splice(0)) p.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('welcomes a valid token with its id and limits', async () => {
    const peer = new Dup2Peer(urls.ws);
    peers.push(peer);
    await peer.send({ type: 'hello', token: await token() });
    expect(await peer.next()).to.deep.equal({
      type: 'welcome',
      serverId: 'up-1',
      maxChunk: 128 * 1024,
      window: 256 * 1024,
      maxItemSize: 500 * 1024 * 1024,
    });
  });

  for (const [rows, name, make] of [
    ['A1', 'signed with another secret', () => token('up-1', 'b'.repeat(32))],
    ['A3', 'for another server', () => token('up-2')],
    [
      'A2',
      'that is expired',
      () =>
        new SignJWT({ scope: 'upload' })
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject('client-1')
          .setAudience(uploadAudience('up-1'))
          .setExpirationTime(Math.floor(Date.now() / 1000) - 120)
          .sign(secretKey(SECRET)),
    ],
    ['A1', 'that is not a JWT', async () => 'not-a-token'],
  ] as const) {
    it(`${rows}: refuses a token ${name} with unauthorized and close 4003`, async () => {
      const peer = new Dup2Peer(urls.ws);
      peers.push(peer);
      await peer.send({ type: 'hello', token: await make() });
      expect(await peer.next()).to.deep.include({
        type: 'error',
        uploadId: 0,
        code: 'unauthorized',
      });
      expect((await peer.closed).code).to.equal(CLOSE.AUTH_FAILED);
    });
  }

  it('A1/P8: closes with 4001 when no HELLO comes in time', async () => {
    const peer = new Dup2Peer(urls.ws);
    peers.push(peer);
    expect((await peer.closed).code).to.equal(CLOSE.AUTH_TIMEOUT);
  });

  it('P7: answers an undecodable frame with bad-frame and close 4002', async () => {
    const peer = await connect();
    await peer.sendRaw(new Uint8Array([0x7f, 1, 2]));
    expect(await peer.next()).to.deep.include({ type: 'error', uploadId: 0, code: 'bad-frame' });
    expect((await peer.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('answers a text frame with bad-frame and close 4002', async () => {
    const peer = await connect();
    await peer.sendRaw('hello');
    expect(await peer.next()).to.deep.include({ code: 'bad-frame' });
    expect((await peer.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('P8: requires HELLO first', async () => {
    const peer = new Dup2Peer(urls.ws);
    peers.push(peer);
    await peer.send({ type: 'ping', time: 1 });
    expect(await peer.next()).to.deep.include({ code: 'bad-frame' });
    expect((await peer.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('P7: answers frames with fields out of range (size or offset past 2^53−1, NaN, upload id 0, empty item id, trailing or missing bytes) with bad-frame naming the problem, close 4002, and stores nothing', async () => {
    const u64 = (n: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(n);
      return b;
    };
    const cases: [string, Uint8Array, string][] = [
      ['size 2^53', rawOpen(1, Buffer.from('p7-a'), 2 ** 53), 'frame-invalid-field'],
      ['empty item id', rawOpen(1, new Uint8Array(0), 10), 'frame-invalid-field'],
      ['item id of 1000 bytes', rawOpen(1, Buffer.alloc(1000, 0x61), 10), 'frame-too-large'],
      [
        'DATA ending past 2^53−1',
        Buffer.concat([
          Buffer.from([0x03, 0, 0, 0, 1]),
          u64(2n ** 53n - 1n),
          Buffer.alloc(4),
          Buffer.from([1]),
        ]),
        'frame-invalid-field',
      ],
      [
        'PING with NaN',
        Buffer.concat([Buffer.from([0x06]), Buffer.from([0x7f, 0xf8, 0, 0, 0, 0, 0, 0])]),
        'frame-invalid-field',
      ],
      ['CANCEL of upload id 0', Buffer.from([0x05, 0, 0, 0, 0]), 'frame-invalid-field'],
      ['CANCEL with a byte after it', Buffer.from([0x05, 0, 0, 0, 1, 0]), 'frame-trailing-bytes'],
      ['OPEN cut short', Buffer.from([0x02, 0, 0, 0, 1, 0, 0]), 'frame-truncated'],
      ['FINISH of 6 bytes', Buffer.from([0x04, 0, 0, 0, 1, 0xab]), 'frame-truncated'],
      ['FINISH of 38 bytes', Buffer.alloc(38, 0x04).fill(0, 1, 4), 'frame-trailing-bytes'],
    ];
    for (const [name, bytes, code] of cases) {
      const peer = await connect();
      await peer.sendRaw(bytes);
      const reply = await peer.next();
      expect(reply, name).to.deep.include({ type: 'error', uploadId: 0, code: 'bad-frame' });
      expect((reply as { message: string }).message, name).to.match(new RegExp(`^${code}: `));
      expect((await peer.closed).code, name).to.equal(CLOSE.PROTOCOL_VIOLATION);
    }
    expect(await readdir(dir)).to.deep.equal([]);
    // The server serves on.
    const peer = await connect();
    await peer.send({ type: 'ping', time: 1 });
    expect((await peer.next()).type).to.equal('pong');
  });

  it('P8: OPEN and DATA sent before HELLO get bad-frame and close 4002, and nothing is stored', async () => {
    const payload = new Uint8Array(10).fill(1);
    const data = {
      type: 'data',
      uploadId: 1,
      offset: 0,
      crc32c: crc32c(payload),
      payload,
    } as const;
    for (const frames of [
      [{ type: 'open', uploadId: 1, itemId: 'early', size: 10, mime: '', name: '' } as const, data],
      [data],
    ]) {
      const peer = new Dup2Peer(urls.ws);
      peers.push(peer);
      for (const f of frames) await peer.send(f);
      expect(await peer.next()).to.deep.include({ type: 'error', uploadId: 0, code: 'bad-frame' });
      expect((await peer.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
    }
    expect(await server.store.get('early')).to.equal(undefined);
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('refuses a connection that did not negotiate the dup/2 subprotocol', async () => {
    const peer = new Dup2Peer(urls.ws, 'something-else');
    peers.push(peer);
    const outcome = await Promise.race([
      peer.closed.then(() => 'closed'),
      peer.opened.then(
        () => 'opened',
        () => 'refused',
      ),
    ]);
    expect(outcome).to.be.oneOf(['closed', 'refused']);
    expect(SUBPROTOCOL_DUP_2).to.equal('ws-uploader.dup.v2');
  });

  it('answers PING with PONG echoing the time', async () => {
    const peer = await connect();
    await peer.send({ type: 'ping', time: 123.25 });
    const pong = await peer.next();
    expect(pong).to.deep.include({ type: 'pong', time: 123.25 });
  });

  it('stores an item, acknowledges every chunk, verifies the SHA-256 and serves the bytes back', async () => {
    const peer = await connect();
    const bytes = new Uint8Array(randomBytes(300_000));
    await upload(peer, 1, 'item-a', bytes);
    await peer.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect(await peer.next()).to.deep.equal({
      type: 'complete',
      uploadId: 1,
      sha256: sha256(bytes).bytes,
    });

    const res = await getFile('item-a');
    expect(res.status).to.equal(200);
    expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
    expect(res.headers.get('content-length')).to.equal(String(bytes.length));
    const served = new Uint8Array(await res.arrayBuffer());
    expect(sha256(served).hex).to.equal(sha256(bytes).hex);
  });

  it('I1: refuses a chunk with a wrong CRC-32C and stores nothing of it', async () => {
    const peer = await connect();
    await peer.send({ type: 'open', uploadId: 1, itemId: 'item-b', size: 10, mime: '', name: '' });
    await peer.next();
    const payload = new Uint8Array(10).fill(7);
    await peer.send({ type: 'data', uploadId: 1, offset: 0, crc32c: crc32c(payload) ^ 1, payload });
    expect(await peer.next()).to.deep.include({
      type: 'error',
      uploadId: 1,
      code: 'checksum-mismatch',
    });
    expect((await server.store.get('item-b'))?.ranges).to.deep.equal([]);
  });

  it('takes DATA sent as several WebSocket frames (as browsers send large messages), the header whole in the first or not, many or few, and stores its bytes', async () => {
    const peer = await connect();
    const bytes = new Uint8Array(randomBytes(180_000));
    await peer.send({
      type: 'open',
      uploadId: 1,
      itemId: 'item-f',
      size: bytes.length,
      mime: '',
      name: '',
    });
    expect(await peer.next()).to.deep.include({ type: 'opened', uploadId: 1 });
    const thirds = [0, 1, 2].map((i) => bytes.subarray(i * 60_000, (i + 1) * 60_000));
    // The header and 1,000 payload bytes, then the rest in two frames; a header cut in two; and
    // 120 frames of 500 bytes (many small pieces are joined).
    const many = Array.from({ length: 119 }, (_, k) => DATA_HEADER_BYTES + 500 * (k + 1));
    for (const [i, cuts] of [
      [0, [DATA_HEADER_BYTES + 1000, 30_000]],
      [1, [10, 20_000]],
      [2, many],
    ] as const) {
      const payload = thirds[i]!;
      const offset = i * 60_000;
      await peer.sendFragmented(
        { type: 'data', uploadId: 1, offset, crc32c: crc32c(payload), payload },
        cuts,
      );
      expect(await peer.next()).to.deep.equal({
        type: 'ack',
        uploadId: 1,
        start: offset,
        end: offset + payload.length,
      });
    }
    await peer.send({ type: 'finish', uploadId: 1 });
    expect(await peer.next()).to.deep.equal({
      type: 'complete',
      uploadId: 1,
      sha256: sha256(bytes).bytes,
    });
    const served = new Uint8Array(await (await getFile('item-f')).arrayBuffer());
    expect(sha256(served).hex).to.equal(sha256(bytes).hex);
  });

  it('checks DATA sent as several WebSocket frames whole: a wrong CRC-32C stores nothing, a message over the limit closes 1009', async () => {
    const peer = await connect();
    await peer.send({
      type: 'open',
      uploadId: 1,
      itemId: 'item-g',
      size: 300_000,
      mime: '',
      name: '',
    });
    await peer.next();
    const payload = new Uint8Array(randomBytes(50_000));
    // Only the last piece is wrong.
    const crc = crc32c(payload);
    payload[49_999] ^= 1;
    await peer.sendFragmented({ type: 'data', uploadId: 1, offset: 0, crc32c: crc, payload }, [
      DATA_HEADER_BYTES + 100,
      40_000,
    ]);
    expect(await peer.next()).to.deep.include({
      type: 'error',
      uploadId: 1,
      code: 'checksum-mismatch',
    });
    expect((await server.store.get('item-g'))?.ranges).to.deep.equal([]);
    // 128 KiB + 1 over three frames, the first well under the limit: the WebSocket layer's limit
    // (a message of more than maxChunk and the header) closes the connection, 1009.
    const big = new Uint8Array(128 * 1024 + 1);
    await peer.sendFragmented(
      { type: 'data', uploadId: 1, offset: 0, crc32c: crc32c(big), payload: big },
      [DATA_HEADER_BYTES + 10, 70_000],
    );
    expect((await peer.closed).code).to.equal(1009);
    expect((await server.store.get('item-g'))?.ranges).to.deep.equal([]);
  });

  it('P3: refuses bytes past the item size with out-of-range', async () => {
    const peer = await connect();
    await peer.send({ type: 'open', uploadId: 1, itemId: 'item-c', size: 4, mime: '', name: '' });
    await peer.next();
    const payload = new Uint8Array(5);
    await peer.send({ type: 'data', uploadId: 1, offset: 0, crc32c: crc32c(payload), payload });
    expect(await peer.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'out-of-range' });
  });

  it('refuses DATA for an upload id that is not open', async () => {
    const peer = await connect();
    const payload = new Uint8Array(1);
    await peer.send({ type: 'data', uploadId: 9, offset: 0, crc32c: crc32c(payload), payload });
    expect(await peer.next()).to.deep.include({
      type: 'error',
      uploadId: 9,
      code: 'unknown-upload',
    });
  });

  it('P3: refuses an item over the size limit with too-large', async () => {
    const peer = await connect();
    await peer.send({
      type: 'open',
      uploadId: 1,
      itemId: 'huge',
      size: 500 * 1024 * 1024 + 1,
      mime: '',
      name: '',
    });
    expect(await peer.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'too-large' });
  });

  it('refuses to reopen an item with another size with conflict', async () => {
    const peer = await connect();
    await peer.send({ type: 'open', uploadId: 1, itemId: 'item-d', size: 10, mime: '', name: '' });
    await peer.next();
    await peer.send({ type: 'open', uploadId: 2, itemId: 'item-d', size: 11, mime: '', name: '' });
    expect(await peer.next()).to.deep.include({ type: 'error', uploadId: 2, code: 'conflict' });
  });

  it('refuses FINISH before every byte is stored with incomplete', async () => {
    const peer = await connect();
    await peer.send({ type: 'open', uploadId: 1, itemId: 'item-e', size: 10, mime: '', name: '' });
    await peer.next();
    await peer.send({ type: 'finish', uploadId: 1, sha256: new Uint8Array(32) });
    expect(await peer.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'incomplete' });
  });

  it('I2/S5: refuses a wrong SHA-256 with digest-mismatch and does not serve the item', async () => {
    const peer = await connect();
    const bytes = new Uint8Array(randomBytes(1000));
    await upload(peer, 1, 'item-f', bytes);
    await peer.send({ type: 'finish', uploadId: 1, sha256: new Uint8Array(32) });
    expect(await peer.next()).to.deep.include({
      type: 'error',
      uploadId: 1,
      code: 'digest-mismatch',
    });
    expect((await getFile('item-f')).status).to.equal(503);
    expect((await server.store.get('item-f'))?.ranges).to.deep.equal([]);
  });

  it('completes an item on a FINISH without a digest (5 bytes) with the SHA-256 it computes: COMPLETE, the bytes on disk, meta.json, onComplete and GET /files all agree', async () => {
    const peer = await connect();
    const bytes = new Uint8Array(randomBytes(300_000));
    const digest = sha256(bytes);
    await peer.send({
      type: 'open',
      uploadId: 4,
      itemId: 'computed',
      size: 300_000,
      mime: '',
      name: '',
    });
    expect(await peer.next()).to.deep.include({ type: 'opened', complete: false });
    // The second half first: the first half is hashed as it comes, the second read back.
    for (const offset of [200_000, 100_000, 0]) {
      await peer.data(4, offset, bytes.subarray(offset, offset + 100_000));
      expect(await peer.next()).to.deep.include({ type: 'ack', start: offset });
    }
    await peer.sendRaw(new Uint8Array([0x04, 0, 0, 0, 4]));
    expect(await peer.next()).to.deep.equal({
      type: 'complete',
      uploadId: 4,
      sha256: digest.bytes,
    });
    expect(completions).to.deep.equal([['computed', digest.hex, 300_000]]);
    expect(Buffer.from(await readFile(join(dir, 'computed', 'data'))).equals(bytes)).to.equal(true);
    const meta = JSON.parse(await readFile(join(dir, 'computed', 'meta.json'), 'utf8')) as object;
    expect(meta).to.deep.include({ complete: true, size: 300_000, sha256: digest.hex });
    const res = await getFile('computed');
    expect(res.status).to.equal(200);
    expect(res.headers.get('etag')).to.equal(`"sha256-${digest.hex}"`);
    expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(digest.hex);
    // The item is complete for everyone: a new OPEN says so.
    await peer.open(5, 'computed', 300_000);
    expect(await peer.next()).to.deep.include({ type: 'opened', uploadId: 5, complete: true });
  });

  it('completes an empty item on a FINISH without a digest with the SHA-256 of no bytes', async () => {
    const peer = await connect();
    await peer.open(1, 'empty', 0);
    await peer.next();
    await peer.send({ type: 'finish', uploadId: 1 });
    expect(await peer.next()).to.deep.equal({
      type: 'complete',
      uploadId: 1,
      sha256: sha256(new Uint8Array(0)).bytes,
    });
  });

  it('refuses a FINISH without a digest while bytes are missing with incomplete, marks nothing complete, and completes once they come', async () => {
    const peer = await connect();
    const bytes = new Uint8Array(randomBytes(3000));
    await peer.open(1, 'gap', 3000);
    await peer.next();
    await peer.data(1, 0, bytes.subarray(0, 1000));
    await peer.data(1, 2000, bytes.subarray(2000));
    expect((await peer.next()).type).to.equal('ack');
    expect((await peer.next()).type).to.equal('ack');
    await peer.send({ type: 'finish', uploadId: 1 });
    expect(await peer.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'incomplete' });
    const record = (await server.store.get('gap'))!;
    expect(record.complete).to.equal(false);
    expect(record.sha256).to.equal(undefined);
    expect(record.ranges).to.deep.equal([
      { start: 0, end: 1000 },
      { start: 2000, end: 3000 },
    ]);
    const meta = JSON.parse(await readFile(join(dir, 'gap', 'meta.json'), 'utf8')) as object;
    expect(meta).to.deep.include({ complete: false }).and.not.have.property('sha256');
    expect(completions).to.deep.equal([]);
    expect((await getFile('gap')).status).to.equal(503);
    // The ERROR ended upload id 1: open again, send the gap, FINISH without a digest again.
    await peer.open(2, 'gap', 3000);
    expect(await peer.next()).to.deep.include({ type: 'opened', uploadId: 2, complete: false });
    await peer.data(2, 1000, bytes.subarray(1000, 2000));
    expect((await peer.next()).type).to.equal('ack');
    await peer.send({ type: 'finish', uploadId: 2 });
    expect(await peer.next()).to.deep.equal({
      type: 'complete',
      uploadId: 2,
      sha256: sha256(bytes).bytes,
    });
  });

  it('answers a FINISH without a digest for a complete item with COMPLETE and its digest; a FINISH with another digest still gets digest-mismatch and the item stays', async () => {
    const peer = await connect();
    const bytes = new Uint8Array(randomBytes(1000));
    await upload(peer, 1, 'done', bytes);
    await peer.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await peer.next()).type).to.equal('complete');
    await peer.open(2, 'done', 1000);
    expect(await peer.next()).to.deep.include({ type: 'opened', complete: true });
    await peer.send({ type: 'finish', uploadId: 2 });
    expect(await peer.next()).to.deep.equal({
      type: 'complete',
      uploadId: 2,
      sha256: sha256(bytes).bytes,
    });
    await peer.send({ type: 'finish', uploadId: 2, sha256: new Uint8Array(32) });
    expect(await peer.next()).to.deep.include({ type: 'error', code: 'digest-mismatch' });
    expect(await server.store.get('done')).to.deep.include({
      complete: true,
      sha256: sha256(bytes).hex,
    });
    // Reported once, when it became complete.
    expect(completions).to.deep.equal([['done', sha256(bytes).hex, 1000]]);
  });

  it('closes a client that overruns the window with window-exceeded', async () => {
    const peer = await connect();
    await peer.send({
      type: 'open',
      uploadId: 1,
      itemId: 'item-g',
      size: 10 * 128 * 1024,
      mime: '',
      name: '',
    });
    await peer.next();
    const payload = new Uint8Array(128 * 1024);
    const crc = crc32c(payload);
    for (let i = 0; i < 10; i++)
      await peer.send({
        type: 'data',
        uploadId: 1,
        offset: i * payload.length,
        crc32c: crc,
        payload,
      });
    const { code } = await peer.closed;
    expect(code).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('tells a reconnecting client which ranges it already holds', async () => {
    const first = await connect();
    const bytes = new Uint8Array(randomBytes(200_000));
    await first.send({
      type: 'open',
      uploadId: 1,
      itemId: 'item-h',
      size: bytes.length,
      mime: '',
      name: '',
    });
    await first.next();
    const part = bytes.subarray(0, 100_000);
    await first.send({ type: 'data', uploadId: 1, offset: 0, crc32c: crc32c(part), payload: part });
    await first.next();
    first.close();

    const second = await connect();
    await second.send({
      type: 'open',
      uploadId: 5,
      itemId: 'item-h',
      size: bytes.length,
      mime: '',
      name: '',
    });
    expect(await second.next()).to.deep.equal({
      type: 'opened',
      uploadId: 5,
      complete: false,
      ranges: [{ start: 0, end: 100_000 }],
    });
    const rest = bytes.subarray(100_000);
    await second.send({
      type: 'data',
      uploadId: 5,
      offset: 100_000,
      crc32c: crc32c(rest),
      payload: rest,
    });
    await second.next();
    await second.send({ type: 'finish', uploadId: 5, sha256: sha256(bytes).bytes });
    expect((await second.next()).type).to.equal('complete');
  });

  it('keeps stored items across a restart of the server', async () => {
    const peer = await connect();
    const bytes = new Uint8Array(randomBytes(5000));
    await upload(peer, 1, 'item-i', bytes);
    await peer.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    await peer.next();
    await server.close();

    server = createUploadServer({ id: 'up-1', secret: SECRET, dataDir: dir });
    urls = await server.listen(0);
    const res = await getFile('item-i');
    expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(sha256(bytes).hex);
  });

  it('P11/S5: serves 404 for unknown and malformed item ids, and 503 for bytes not uploaded yet', async () => {
    const peer = await connect();
    await peer.send({ type: 'open', uploadId: 1, itemId: 'partial', size: 10, mime: '', name: '' });
    await peer.next();
    for (const id of ['nope', '..%2F..%2Fetc%2Fpasswd', '%E0%A4%A']) {
      expect((await getFile(id)).status, id).to.equal(404);
    }
    const res = await getFile('partial');
    expect(res.status).to.equal(503);
    expect(res.headers.get('retry-after')).to.equal('2');
    expect(await readdir(dir)).to.deep.equal(['partial']);
  });

  it('describes itself at /.well-known/ws-uploader', async () => {
    const res = await fetch(`${urls.http}/.well-known/ws-uploader`);
    const doc = (await res.json()) as { id: string; protocols: string[] };
    expect(doc.id).to.equal('up-1');
    expect(doc.protocols).to.deep.equal(['dup/2', 'dup/1', 'tus/1', 'http/1']);
  });

  it('A9: refuses to let another user write to an item with unauthorized', async () => {
    const alice = await connect('alice');
    await alice.send({ type: 'open', uploadId: 1, itemId: 'alices', size: 10, mime: '', name: '' });
    expect((await alice.next()).type).to.equal('opened');
    const bob = await connect('bob');
    // DATA and FINISH pipelined behind the refused OPEN must not touch the item either.
    const payload = new Uint8Array(10).fill(9);
    await bob.send({ type: 'open', uploadId: 1, itemId: 'alices', size: 10, mime: '', name: '' });
    await bob.send({ type: 'data', uploadId: 1, offset: 0, crc32c: crc32c(payload), payload });
    await bob.send({ type: 'finish', uploadId: 1, sha256: sha256(payload).bytes });
    expect(await bob.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'unauthorized' });
    await bob.send({ type: 'ping', time: 1 });
    expect((await bob.next()).type).to.equal('pong');
    // Alice's FINISH queues behind anything Bob's frames did to the item: it must find no bytes.
    await alice.send({ type: 'finish', uploadId: 1, sha256: new Uint8Array(32) });
    expect(await alice.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'incomplete' });
    expect(await server.store.get('alices')).to.deep.include({
      ranges: [],
      complete: false,
      owner: 'alice',
    });
  });

  it('ends an upload id on ERROR and gives its unstored bytes back to the window', async () => {
    // A store whose writes wait until released, so bytes stay unacknowledged on purpose.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    class SlowStore extends FileStore {
      override async write(itemId: string, offset: number, bytes: Uint8Array) {
        await gate;
        return super.write(itemId, offset, bytes);
      }
    }
    await server.close();
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      store: new SlowStore(dir),
      maxChunk: 128 * 1024,
      window: 256 * 1024,
    });
    urls = await server.listen(0);
    const peer = await connect();
    const chunk = new Uint8Array(128 * 1024).fill(1);
    await peer.send({
      type: 'open',
      uploadId: 1,
      itemId: 'item-w',
      size: 4 * chunk.length,
      mime: '',
      name: '',
    });
    await peer.next();
    await peer.send({
      type: 'data',
      uploadId: 1,
      offset: 0,
      crc32c: crc32c(chunk),
      payload: chunk,
    });
    await peer.send({ type: 'data', uploadId: 1, offset: chunk.length, crc32c: 0, payload: chunk });
    expect(await peer.next()).to.deep.include({
      type: 'error',
      uploadId: 1,
      code: 'checksum-mismatch',
    });
    // The client counts nothing in flight now; the server must agree.
    await peer.send({
      type: 'open',
      uploadId: 2,
      itemId: 'item-w2',
      size: 2 * chunk.length,
      mime: '',
      name: '',
    });
    expect((await peer.next()).type).to.equal('opened');
    await peer.send({
      type: 'data',
      uploadId: 2,
      offset: 0,
      crc32c: crc32c(chunk),
      payload: chunk,
    });
    await peer.send({
      type: 'data',
      uploadId: 2,
      offset: chunk.length,
      crc32c: crc32c(chunk),
      payload: chunk,
    });
    release();
    expect(await peer.next()).to.deep.include({ type: 'ack', uploadId: 2, start: 0 });
    expect(await peer.next()).to.deep.include({ type: 'ack', uploadId: 2, start: chunk.length });
    // The ended upload sends nothing more, but what it had received was stored.
    await peer.send({
      type: 'open',
      uploadId: 3,
      itemId: 'item-w',
      size: 4 * chunk.length,
      mime: '',
      name: '',
    });
    expect(await peer.next()).to.deep.equal({
      type: 'opened',
      uploadId: 3,
      complete: false,
      ranges: [{ start: 0, end: chunk.length }],
    });
  });

  it('throws a TypeError for a short secret or a bad id', () => {
    expect(() => createUploadServer({ id: 'x', secret: 'short', dataDir: dir })).to.throw(
      TypeError,
      /secret/,
    );
    expect(() => createUploadServer({ id: 'a/b', secret: SECRET, dataDir: dir })).to.throw(
      TypeError,
      /id/,
    );
    expect(() => createUploadServer({ id: 'x', secret: SECRET })).to.throw(TypeError, /dataDir/);
  });
});
