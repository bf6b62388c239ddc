import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import {
  CLOSE,
  decodeDup1ServerMessage,
  encodeDup1Message,
  SUBPROTOCOL_DUP_1,
  SUBPROTOCOL_DUP_2,
  type Dup1ClientMessage,
  type Dup1ServerMessage,
} from '../../src/protocol/index.js';
import { createReadToken, createUploadServer, type UploadServer } from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { sha256 } from '../helpers/node-peers.js';

const SECRET = 'g'.repeat(32);

/** A raw dup/1 client: JSON text frames and binary data frames. */
class Dup1Peer {
  readonly ws: WebSocket;
  readonly #inbox: Dup1ServerMessage[] = [];
  readonly #waiters: ((m: Dup1ServerMessage) => void)[] = [];
  readonly closed: Promise<number>;
  readonly opened: Promise<void>;

  constructor(url: string, protocols: string[] = [SUBPROTOCOL_DUP_1]) {
    this.ws = new WebSocket(url, protocols);
    this.opened = new Promise((resolve) => this.ws.once('open', () => resolve()));
    this.closed = new Promise((resolve) => this.ws.once('close', (code) => resolve(code)));
    this.ws.on('message', (data: Buffer) => {
      const m = decodeDup1ServerMessage(data.toString());
      const w = this.#waiters.shift();
      if (w) w(m);
      else this.#inbox.push(m);
    });
  }

  async send(m: Dup1ClientMessage | Uint8Array): Promise<void> {
    await this.opened;
    this.ws.send(m instanceof Uint8Array ? m : encodeDup1Message(m));
  }

  next(): Promise<Dup1ServerMessage> {
    const m = this.#inbox.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out')), 5000);
      this.#waiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
    });
  }
}

describe('upload server (dup/1)', () => {
  let dir: string;
  let server: UploadServer;
  let wsUrl: string;
  let http: string;
  const peers: Dup1Peer[] = [];

  async function connect(): Promise<Dup1Peer> {
    const p = new Dup1Peer(wsUrl);
    peers.push(p);
    const { token } = await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, {
      uid: 'u',
    });
    await p.send({ type: 'hello', token });
    expect(await p.next()).to.deep.include({ type: 'welcome', serverId: 'up-1' });
    return p;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-dup1-'));
    server = createUploadServer({ id: 'up-1', secret: SECRET, dataDir: dir, maxChunk: 64 * 1024 });
    ({ ws: wsUrl, http } = await server.listen(0));
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.ws.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('negotiates dup/2 when the client offers both, dup/1 when it offers only that', async () => {
    const both = new WebSocket(wsUrl, [SUBPROTOCOL_DUP_1, SUBPROTOCOL_DUP_2]);
    await new Promise((r) => both.once('open', r));
    expect(both.protocol).to.equal(SUBPROTOCOL_DUP_2);
    both.close();
    const old = new Dup1Peer(wsUrl);
    peers.push(old);
    await old.opened;
    expect(old.ws.protocol).to.equal(SUBPROTOCOL_DUP_1);
  });

  it('stores an item sent as binary frames at a cursor, verifies it and serves it back', async () => {
    const p = await connect();
    const bytes = new Uint8Array(randomBytes(200_000));
    await p.send({
      type: 'open',
      itemId: 'old',
      size: bytes.length,
      mime: 'text/plain',
      name: 'a.txt',
    });
    expect(await p.next()).to.deep.equal({ type: 'opened', complete: false, ranges: [] });
    // Second half first, then the first half, by seeking.
    await p.send({ type: 'seek', offset: 100_000 });
    for (let o = 100_000; o < bytes.length; o += 50_000)
      await p.send(bytes.subarray(o, o + 50_000));
    await p.send({ type: 'seek', offset: 0 });
    for (let o = 0; o < 100_000; o += 50_000) await p.send(bytes.subarray(o, o + 50_000));
    const acks = [await p.next(), await p.next(), await p.next(), await p.next()];
    expect(acks.map((a) => a.type)).to.deep.equal(['ack', 'ack', 'ack', 'ack']);
    await p.send({ type: 'finish', sha256: sha256(bytes).hex });
    expect(await p.next()).to.deep.equal({ type: 'complete', sha256: sha256(bytes).hex });
    const read = await createReadToken(SECRET, 'up-1', { subject: 'reader', items: ['old'] });
    const res = await fetch(`${http}/files/old?access_token=${read}`);
    expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(sha256(bytes).hex);
  });

  it('completes an item on a finish without sha256 with the SHA-256 it computes, and serves it with that digest', async () => {
    const p = await connect();
    const bytes = new Uint8Array(randomBytes(150_000));
    const digest = sha256(bytes).hex;
    await p.send({ type: 'open', itemId: 'computed', size: bytes.length, mime: '', name: '' });
    await p.next();
    // The end first, then the start: some bytes are read back to compute the digest.
    await p.send({ type: 'seek', offset: 100_000 });
    await p.send(bytes.subarray(100_000));
    await p.send({ type: 'seek', offset: 0 });
    for (let o = 0; o < 100_000; o += 50_000) await p.send(bytes.subarray(o, o + 50_000));
    for (let i = 0; i < 3; i++) expect((await p.next()).type).to.equal('ack');
    p.ws.send('{"type":"finish"}');
    expect(await p.next()).to.deep.equal({ type: 'complete', sha256: digest });
    expect(Buffer.from(await readFile(join(dir, 'computed', 'data'))).equals(bytes)).to.equal(true);
    const meta = JSON.parse(await readFile(join(dir, 'computed', 'meta.json'), 'utf8')) as object;
    expect(meta).to.deep.include({ complete: true, sha256: digest });
    const read = await createReadToken(SECRET, 'up-1', { subject: 'reader', items: ['computed'] });
    const res = await fetch(`${http}/files/computed?access_token=${read}`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('etag')).to.equal(`"sha256-${digest}"`);
    expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(digest);
  });

  it('refuses a finish without sha256 while bytes are missing with incomplete, and marks nothing complete', async () => {
    const p = await connect();
    await p.send({ type: 'open', itemId: 'gap', size: 100, mime: '', name: '' });
    await p.next();
    await p.send(new Uint8Array(60).fill(1));
    expect(await p.next()).to.deep.equal({ type: 'ack', start: 0, end: 60 });
    await p.send({ type: 'finish' });
    expect(await p.next()).to.deep.include({ type: 'error', code: 'incomplete' });
    const record = (await server.store.get('gap'))!;
    expect(record).to.deep.include({ complete: false, ranges: [{ start: 0, end: 60 }] });
    expect(record.sha256).to.equal(undefined);
    const meta = JSON.parse(await readFile(join(dir, 'gap', 'meta.json'), 'utf8')) as object;
    expect(meta).to.not.have.property('sha256');
  });

  it('reports stored ranges on a new connection, so an upload resumes', async () => {
    const first = await connect();
    const bytes = new Uint8Array(randomBytes(1000));
    await first.send({ type: 'open', itemId: 'resumed', size: 1000, mime: '', name: '' });
    await first.next();
    await first.send(bytes.subarray(0, 400));
    expect(await first.next()).to.deep.equal({ type: 'ack', start: 0, end: 400 });
    first.ws.close();
    const second = await connect();
    await second.send({ type: 'open', itemId: 'resumed', size: 1000, mime: '', name: '' });
    expect(await second.next()).to.deep.equal({
      type: 'opened',
      complete: false,
      ranges: [{ start: 0, end: 400 }],
    });
  });

  it('P3/I2: refuses a second open on one connection, data past the end, and a wrong digest', async () => {
    const p = await connect();
    await p.send({ type: 'open', itemId: 'one', size: 10, mime: '', name: '' });
    await p.next();
    await p.send({ type: 'open', itemId: 'two', size: 10, mime: '', name: '' });
    expect(await p.next()).to.deep.include({ type: 'error', code: 'upload-id-in-use' });
    await p.send({ type: 'open', itemId: 'one', size: 10, mime: '', name: '' });
    await p.next();
    await p.send(new Uint8Array(11));
    expect(await p.next()).to.deep.include({ type: 'error', code: 'out-of-range' });
    await p.send({ type: 'open', itemId: 'one', size: 10, mime: '', name: '' });
    await p.next();
    await p.send(new Uint8Array(10));
    await p.next();
    await p.send({ type: 'finish', sha256: 'a'.repeat(64) });
    expect(await p.next()).to.deep.include({ type: 'error', code: 'digest-mismatch' });
  });

  it('P7/P11: answers a malformed message with bad-frame and close 4002', async () => {
    const p = await connect();
    await p.send({ type: 'open', itemId: '../x', size: 1 } as unknown as Dup1ClientMessage);
    expect(await p.next()).to.deep.include({ type: 'error', code: 'bad-frame' });
    expect(await p.closed).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('P7: answers malformed control messages with bad-frame naming the field, closes with 4002, stores nothing and pollutes no prototype', async () => {
    const deep = `${'['.repeat(8000)}${']'.repeat(8000)}`;
    const cases: [string, RegExp][] = [
      ['{"type":"open","itemId":"p7-a"}', /^message-invalid: .*\bsize\b/],
      ['{"type":"open","itemId":"p7-a","size":"10"}', /^message-invalid: .*\bsize\b/],
      ['{"type":"open","itemId":"p7-a","size":-1}', /^message-invalid: .*\bsize\b/],
      ['{"type":"open","itemId":"p7-a","size":1.5}', /^message-invalid: .*\bsize\b/],
      ['{"type":"open","itemId":"p7-a","size":9007199254740992}', /^message-invalid: .*\bsize\b/],
      ['{"type":"open","itemId":["p7-a"],"size":1}', /^message-invalid: .*\bitemId\b/],
      ['{"type":"seek","offset":NaN}', /^message-invalid-json: /],
      ['{"type":"seek","offset":-5}', /^message-invalid: .*\boffset\b/],
      ['{"type":"finish","sha256":"ABC"}', /^message-invalid: .*\bsha256\b/],
      ['{"type":"delete","itemId":"p7-a"}', /^message-invalid: .*\bunknown\b/],
      ['{"__proto__":{"type":"open","itemId":"p7-a","size":1}}', /^message-invalid: .*\bunknown\b/],
      ['null', /^message-invalid-json: /],
      [deep, /^message-invalid-json: /],
      [JSON.stringify({ type: 'ping', time: 1, pad: 'x'.repeat(20_000) }), /^frame-too-large: /],
    ];
    for (const [text, message] of cases) {
      const p = await connect();
      p.ws.send(text);
      const reply = await p.next();
      expect(reply, text.slice(0, 60)).to.deep.include({ type: 'error', code: 'bad-frame' });
      expect((reply as { message: string }).message, text.slice(0, 60)).to.match(message);
      expect(await p.closed).to.equal(CLOSE.PROTOCOL_VIOLATION);
    }
    // A megabyte of JSON is over the WebSocket layer's limit: 1009, without an error message.
    const big = await connect();
    big.ws.send(JSON.stringify({ type: 'ping', time: 1, pad: 'x'.repeat(1024 * 1024) }));
    expect(await big.closed).to.equal(1009);
    // `__proto__` and `constructor` keys are plain unknown fields: the open works, nothing leaks
    // into prototypes.
    const proto = await connect();
    proto.ws.send(
      '{"type":"open","itemId":"p7-proto","size":3,"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}',
    );
    expect(await proto.next()).to.deep.include({ type: 'opened', complete: false });
    expect(({} as Record<string, unknown>)['polluted']).to.equal(undefined);
    expect(Object.prototype).to.not.have.property('polluted');
    expect(await readdir(dir)).to.deep.equal(['p7-proto']);
  });

  it('P8: a binary frame or an open before hello gets bad-frame and close 4002, and nothing is stored', async () => {
    for (const first of [
      new Uint8Array(10).fill(1),
      { type: 'open', itemId: 'early', size: 10, mime: '', name: '' } as const,
    ]) {
      const p = new Dup1Peer(wsUrl);
      peers.push(p);
      await p.send(first);
      expect(await p.next()).to.deep.include({ type: 'error', code: 'bad-frame' });
      expect(await p.closed).to.equal(CLOSE.PROTOCOL_VIOLATION);
    }
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('can be switched off, leaving dup/2', async () => {
    await server.close();
    server = createUploadServer({ id: 'up-1', secret: SECRET, dataDir: dir, protocols: ['dup/2'] });
    ({ ws: wsUrl, http } = await server.listen(0));
    const old = new WebSocket(wsUrl, [SUBPROTOCOL_DUP_1]);
    const outcome = await new Promise<string>((resolve) => {
      old.once('open', () => resolve(old.protocol));
      old.once('error', () => resolve('refused'));
    });
    expect(outcome).to.not.equal(SUBPROTOCOL_DUP_1);
    old.terminate();
    const doc = (await (await fetch(`${http}/.well-known/ws-uploader`)).json()) as {
      protocols: string[];
    };
    expect(doc.protocols).to.deep.equal(['dup/2']);
  });
});
