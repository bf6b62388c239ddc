import { expect } from 'chai';
import { SignJWT } from 'jose';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open as openFile, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  crc32c,
  DATA_HEADER_BYTES,
  RELAY_HEADER_BYTES,
  type Dup2ServerFrame,
} from '../../src/protocol/index.js';
import {
  createControlServer,
  createUploadServer,
  FileStore,
  type Demand,
  type ItemRecord,
  type UploadServer,
  type UploadServerOptions,
} from '../../server/index.js';
import { MAX_OPEN_READS } from '../../server/upload/dup2-session.js';
import type { LogEntry } from '../../server/internal/log.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256 } from '../helpers/node-peers.js';
import { until } from '../helpers/until.js';

const SECRET = 'r'.repeat(32);
const MAX_CHUNK = 4096;
const WINDOW = 16384;

async function uploadToken(client = 'c1'): Promise<string> {
  return (await signToken(secretKey(SECRET), client, uploadAudience('up-1'), 60, { uid: 'alice' }))
    .token;
}

/** A read token for up-1; `items` absent: any item. `expiresIn` in seconds from now. */
function readToken(items?: string[], expiresIn = 60, serverId = 'up-1'): Promise<string> {
  return new SignJWT({ scope: 'read', ...(items ? { items } : {}) })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject('reader')
    .setAudience(uploadAudience(serverId))
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresIn)
    .sign(secretKey(SECRET));
}

type Bytes = Extract<Dup2ServerFrame, { type: 'bytes' }>;

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The most a relayed BYTES payload may be: its frame, with the relay header, fits in 1 MiB. */
const RELAYED_MAX_BYTES = 1024 * 1024 - RELAY_HEADER_BYTES - DATA_HEADER_BYTES;

/** A FileStore that counts the watches in place (a read waiting for bytes holds one). */
class CountingStore extends FileStore {
  watching = 0;

  override watch(itemId: string, listener: (record: ItemRecord) => void): () => void {
    const unwatch = super.watch(itemId, listener);
    this.watching++;
    let removed = false;
    return () => {
      if (!removed) this.watching--;
      removed = true;
      unwatch();
    };
  }
}

/**
 * A FileStore whose first look at an item named in `stale` answers as before its bytes were
 * stored: as if they were stored between a reader's first look and its watch.
 */
class StaleStore extends FileStore {
  readonly stale = new Set<string>();

  override async get(itemId: string): Promise<ItemRecord | undefined> {
    const record = await super.get(itemId);
    if (!record || !this.stale.delete(itemId)) return record;
    return { ...record, ranges: [] };
  }
}

/** Timers and intervals in place in this process. */
const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('dup/2 READ and BYTES on the upload server', () => {
  let dir: string;
  let server: UploadServer | undefined;
  let urls: { http: string; ws: string };
  const peers: Dup2Peer[] = [];
  const logs: LogEntry[] = [];
  const demands: Demand[] = [];
  /** The server side of every TCP connection, to look at what it buffers. */
  const sockets: Socket[] = [];

  async function start(options: Partial<UploadServerOptions> = {}): Promise<void> {
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      durability: 'write',
      maxChunk: MAX_CHUNK,
      window: WINDOW,
      logger: (entry) => logs.push(entry),
      onDemand: (d) => demands.push(d),
      ...options,
    });
    server.httpServer.on('connection', (s: Socket) => sockets.push(s));
    urls = await server.listen(0);
  }

  /** A welcomed dup/2 connection with this token. */
  async function peer(token: string): Promise<Dup2Peer> {
    const p = new Dup2Peer(urls.ws);
    peers.push(p);
    await p.send({ type: 'hello', token });
    expect((await p.next()).type).to.equal('welcome');
    return p;
  }

  /** Stores `bytes` as an item, written in pieces of the given sizes, and completes it. */
  async function seed(itemId: string, bytes: Uint8Array, pieces: number[]): Promise<void> {
    const store = server!.store;
    await store.open(itemId, bytes.length, { owner: 'alice' });
    let at = 0;
    for (const n of pieces) {
      await store.write(itemId, at, bytes.subarray(at, at + n));
      at += n;
    }
    expect(at).to.equal(bytes.length);
    await store.finish(itemId, sha256(bytes).hex);
  }

  /** Frames of one read, checked (id, offsets following on, CRC-32C, size), until `end`. */
  async function readAll(p: Dup2Peer, readId: number, start: number, end: number) {
    const frames: Bytes[] = [];
    let at = start;
    while (at < end) {
      const f = await p.next();
      expect(f, `BYTES ${at}..${end}`).to.deep.include({ type: 'bytes', readId, offset: at });
      checkFrame(f as Bytes);
      frames.push(f as Bytes);
      at += (f as Bytes).payload.length;
    }
    expect(at).to.equal(end);
    return { frames, bytes: Buffer.concat(frames.map((f) => f.payload)) };
  }

  function checkFrame(f: Bytes): void {
    expect(f.payload.length).to.be.within(1, MAX_CHUNK);
    expect(crc32c(f.payload) >>> 0).to.equal(f.crc32c >>> 0);
  }

  /** Sends PING and expects PONG as the very next frame: nothing else came meanwhile. */
  async function pingPong(p: Dup2Peer, timeoutMs?: number): Promise<void> {
    await p.send({ type: 'ping', time: 7 });
    expect(await p.next(timeoutMs)).to.deep.include({ type: 'pong', time: 7 });
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-dup2-read-'));
    logs.length = 0;
    demands.length = 0;
    sockets.length = 0;
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  // 40000 bytes: ten pieces of 1000 (merged into full frames), one of 20000 (split), four of 2500.
  const song = new Uint8Array(randomBytes(40_000));
  const songPieces = [...Array<number>(10).fill(1000), 20_000, ...Array<number>(4).fill(2500)];

  it('serves a stored item in several READs: the source bytes, every CRC-32C right, frames in order, full maxChunk frames but the last', async () => {
    await start();
    await seed('song', song, songPieces);
    const p = await peer(await readToken(['song']));
    // One read id, used again once each read is done (after its last BYTES).
    for (const [start, end] of [
      [0, 16_000],
      [16_000, 32_000],
      [32_000, 40_000],
      [1500, 1501],
      [9999, 10_001],
    ] as const) {
      await p.read(1, 'song', start, end);
      const { frames, bytes } = await readAll(p, 1, start, end);
      expect(bytes.equals(song.subarray(start, end))).to.equal(true);
      // Re-chunked: every frame but the last is a full maxChunk, however the item was stored.
      for (const f of frames.slice(0, -1)) expect(f.payload.length).to.equal(MAX_CHUNK);
      expect(frames.length).to.equal(Math.ceil((end - start) / MAX_CHUNK));
    }
    await pingPong(p);
  });

  it('sends stored chunks of a full frame as they are, with their stored CRC-32C, and re-chunks a read that starts inside one; frames built one after another in reused buffers keep their bytes', async () => {
    await start();
    // Ten chunks of exactly maxChunk, then a shorter last one.
    const item = new Uint8Array(randomBytes(10 * MAX_CHUNK + 777));
    await seed('tape', item, [...Array<number>(10).fill(MAX_CHUNK), 777]);
    const p = await peer(await readToken(['tape']));
    for (const [start, end] of [
      [0, item.length],
      [100, 3 * MAX_CHUNK + 5],
    ] as const) {
      // In reads that fit the window, one after another on the connection.
      for (let at = start; at < end; at += WINDOW) {
        const to = Math.min(end, at + WINDOW);
        await p.read(1, 'tape', at, to);
        const { frames, bytes } = await readAll(p, 1, at, to);
        expect(bytes.equals(item.subarray(at, to))).to.equal(true);
        for (const f of frames.slice(0, -1)) expect(f.payload.length).to.equal(MAX_CHUNK);
      }
    }
    await pingPong(p);
  });

  it('interleaves two reads on one connection, each in order and whole', async () => {
    await start();
    await seed('song', song, songPieces);
    const p = await peer(await readToken());
    await p.read(3, 'song', 0, 12_000);
    await p.read(4, 'song', 20_000, 24_000);
    const got = new Map<number, Bytes[]>([
      [3, []],
      [4, []],
    ]);
    let left = 12_000 + 4000;
    while (left > 0) {
      const f = (await p.next()) as Bytes;
      expect(f.type).to.equal('bytes');
      checkFrame(f);
      got.get(f.readId)!.push(f);
      left -= f.payload.length;
    }
    for (const [id, start, end] of [
      [3, 0, 12_000],
      [4, 20_000, 24_000],
    ] as const) {
      const frames = got.get(id)!;
      let at = start;
      for (const f of frames) {
        expect(f.offset).to.equal(at);
        at += f.payload.length;
      }
      expect(at).to.equal(end);
      const bytes = Buffer.concat(frames.map((f) => f.payload));
      expect(bytes.equals(song.subarray(start, end))).to.equal(true);
    }
    await pingPong(p);
  });

  it('upload-id-in-use both ways: READ on an id bound to an upload, OPEN and READ on an id bound to a read; the ERROR ends the id', async () => {
    await start({ readAccess: 'public', holdMs: 500 });
    await seed('song', song, songPieces);
    await server!.store.open('growing', 1000, { owner: 'alice' });
    const p = await peer(await uploadToken());
    await p.open(1, 'fresh', 100);
    expect(await p.next()).to.deep.include({ type: 'opened', uploadId: 1 });
    await p.read(1, 'song', 0, 100);
    expect(await p.next()).to.deep.include({
      type: 'error',
      uploadId: 1,
      code: 'upload-id-in-use',
    });
    // The ERROR ended upload id 1.
    await p.data(1, 0, new Uint8Array(10));
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'unknown-upload' });
    // Reads waiting for bytes not stored yet hold their ids.
    await p.read(5, 'growing', 0, 100);
    await p.read(6, 'growing', 0, 100);
    await delay(50);
    await p.open(5, 'other', 10);
    expect(await p.next()).to.deep.include({
      type: 'error',
      uploadId: 5,
      code: 'upload-id-in-use',
    });
    await p.read(6, 'song', 0, 10);
    expect(await p.next()).to.deep.include({
      type: 'error',
      uploadId: 6,
      code: 'upload-id-in-use',
    });
    // Both reads ended with their ERROR: no not-ready comes for them after holdMs.
    await delay(800);
    await pingPong(p);
    // The ids are free again.
    await p.read(6, 'song', 0, 10);
    expect((await readAll(p, 6, 0, 10)).bytes.equals(song.subarray(0, 10))).to.equal(true);
    await p.open(5, 'other', 10);
    expect(await p.next()).to.deep.include({ type: 'opened', uploadId: 5 });
  });

  it('unauthorized: READ with an upload token (whether the item exists or not), OPEN with a read token, an item the read token does not list; the connections stay open', async () => {
    await start();
    await seed('song', song, songPieces);
    await seed('other', song.subarray(0, 100), [100]);
    const upload = await uploadToken();
    const up = await peer(upload);
    await up.read(1, 'song', 0, 100);
    const known = await up.next();
    await up.read(2, 'no-such-item', 0, 100);
    const unknown = await up.next();
    expect(known).to.deep.include({ type: 'error', uploadId: 1, code: 'unauthorized' });
    expect(unknown).to.deep.include({ type: 'error', uploadId: 2, code: 'unauthorized' });
    // The same answer: nothing tells whether the item exists.
    expect((unknown as { message: string }).message).to.equal(
      (known as { message: string }).message,
    );
    await pingPong(up);

    const read = await readToken(['song']);
    const reader = await peer(read);
    await reader.open(7, 'new-item', 10);
    expect(await reader.next()).to.deep.include({
      type: 'error',
      uploadId: 7,
      code: 'unauthorized',
    });
    expect(await server!.store.get('new-item')).to.equal(undefined);
    await reader.read(8, 'other', 0, 10);
    expect(await reader.next()).to.deep.include({
      type: 'error',
      uploadId: 8,
      code: 'unauthorized',
    });
    await reader.read(9, 'no-such-item', 0, 10);
    expect(await reader.next()).to.deep.include({
      type: 'error',
      uploadId: 9,
      code: 'unauthorized',
    });
    await pingPong(reader);
    await reader.read(8, 'song', 0, 10);
    expect((await readAll(reader, 8, 0, 10)).bytes.equals(song.subarray(0, 10))).to.equal(true);

    const refused = logs.filter((l) => l.event === 'read-error');
    expect(refused.map((l) => l['code'])).to.deep.equal([
      'unauthorized',
      'unauthorized',
      'unauthorized',
      'unauthorized',
    ]);
    const logged = JSON.stringify(logs);
    expect(logged).not.to.include(upload);
    expect(logged).not.to.include(read);
  });

  it('HELLO refuses a read token of another server, or one that is not valid, with unauthorized and close 4003', async () => {
    await start();
    for (const token of [await readToken(undefined, 60, 'up-2'), await readToken(undefined, -60)]) {
      const p = new Dup2Peer(urls.ws);
      peers.push(p);
      await p.send({ type: 'hello', token });
      expect(await p.next()).to.deep.include({ type: 'error', uploadId: 0, code: 'unauthorized' });
      expect((await p.closed).code).to.equal(4003);
    }
  });

  it('unauthorized once the read token expired: checked at each READ', async () => {
    await start();
    await seed('song', song, songPieces);
    // Expired 28 to 29 s ago (whole seconds): inside the 30 s leeway at HELLO for one to two
    // seconds more, outside it 2.5 s later.
    const p = await peer(await readToken(['song'], -28));
    await p.read(1, 'song', 0, 100);
    expect((await readAll(p, 1, 0, 100)).bytes.equals(song.subarray(0, 100))).to.equal(true);
    await delay(2500);
    await p.read(2, 'song', 0, 100);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 2, code: 'unauthorized' });
    await pingPong(p);
  }).timeout(10_000);

  it('not-found for an item the server does not hold, out-of-range past its size, too-large past the window', async () => {
    await start();
    await seed('song', song, songPieces);
    const p = await peer(await readToken());
    await p.read(1, 'nothing-here', 0, 10);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'not-found' });
    await p.read(2, 'song', 39_000, 40_001);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 2, code: 'out-of-range' });
    await p.read(3, 'song', 0, WINDOW + 1);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 3, code: 'too-large' });
    // The connection stays open, and the ids are free.
    await p.read(3, 'song', 0, WINDOW);
    expect((await readAll(p, 3, 0, WINDOW)).bytes.equals(song.subarray(0, WINDOW))).to.equal(true);
    expect(logs.filter((l) => l.event === 'read-error').map((l) => l['code'])).to.deep.equal([
      'not-found',
      'out-of-range',
      'too-large',
    ]);
  });

  it('window-exceeded for a READ past the bytes outstanding; the connection stays usable, and CANCEL gives the bytes back', async () => {
    await start({ holdMs: 5000 });
    await seed('song', song, songPieces);
    await server!.store.open('half', 20_000, { owner: 'alice' });
    const p = await peer(await readToken());
    // Waits for bytes not stored: 12000 bytes outstanding.
    await p.read(1, 'half', 0, 12_000);
    await delay(50);
    await p.read(2, 'song', 0, 8000);
    expect(await p.next()).to.deep.include({
      type: 'error',
      uploadId: 2,
      code: 'window-exceeded',
    });
    await pingPong(p);
    await p.read(3, 'song', 0, WINDOW - 12_000);
    expect((await readAll(p, 3, 0, WINDOW - 12_000)).bytes.length).to.equal(WINDOW - 12_000);
    await p.send({ type: 'cancel', uploadId: 1 });
    await p.read(4, 'song', 0, WINDOW);
    expect((await readAll(p, 4, 0, WINDOW)).bytes.equals(song.subarray(0, WINDOW))).to.equal(true);
    await pingPong(p);
  });

  it(`at most ${MAX_OPEN_READS} reads open on a connection: one more gets window-exceeded for its id, the others wait; CANCEL ends them and their watches`, async () => {
    const store = new CountingStore(dir, { durability: 'write' });
    await start({ store, holdMs: 60_000 });
    await seed('song', song, songPieces);
    await store.open('later', 100_000, { owner: 'alice' });
    const p = await peer(await readToken());
    const over = MAX_OPEN_READS + 1;
    for (let id = 1; id <= over; id++) await p.read(id, 'later', id * 100, id * 100 + 100);
    expect(await p.next()).to.deep.include({
      type: 'error',
      uploadId: over,
      code: 'window-exceeded',
    });
    await until(() => store.watching === MAX_OPEN_READS);
    // Exactly one refused: the others still wait, and the connection is open.
    await pingPong(p);
    for (let id = 1; id <= MAX_OPEN_READS; id++) await p.send({ type: 'cancel', uploadId: id });
    await pingPong(p);
    expect(store.watching).to.equal(0);
    // No not-ready comes for the cancelled reads, and the refused id is free.
    await p.read(over, 'song', 0, 100);
    expect((await readAll(p, over, 0, 100)).bytes.equals(song.subarray(0, 100))).to.equal(true);
    await pingPong(p);
  });

  it('a connection that closes with reads waiting for bytes leaves no store watch and no timer behind', async () => {
    const store = new CountingStore(dir, { durability: 'write' });
    await start({ store, holdMs: 60_000 });
    await store.open('later', 100_000, { owner: 'alice' });
    const before = timers();
    const p = await peer(await readToken());
    for (let id = 1; id <= 10; id++) await p.read(id, 'later', id * 100, id * 100 + 100);
    await until(() => store.watching === 10);
    // Each wait holds its holdMs timer.
    expect(timers()).to.be.at.least(before + 10);
    p.ws.terminate();
    await p.closed;
    await until(() => store.watching === 0);
    await until(() => timers() <= before);
  });

  it('DATA or FINISH on an id bound to a read: ERROR unknown-upload, which ends the read', async () => {
    const store = new CountingStore(dir, { durability: 'write' });
    await start({ store, readAccess: 'public', holdMs: 800 });
    await seed('song', song, songPieces);
    await store.open('later', 1000, { owner: 'alice' });
    const p = await peer(await uploadToken());
    await p.read(5, 'later', 0, 100);
    await p.read(6, 'later', 0, 100);
    await until(() => store.watching === 2);
    await p.data(5, 0, new Uint8Array(10));
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 5, code: 'unknown-upload' });
    expect(store.watching).to.equal(1);
    await p.send({ type: 'finish', uploadId: 6, sha256: new Uint8Array(32) });
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 6, code: 'unknown-upload' });
    expect(store.watching).to.equal(0);
    // Nothing was stored, and no not-ready comes after holdMs: both reads ended.
    expect((await store.get('later'))!.ranges).to.deep.equal([]);
    await delay(1000);
    await pingPong(p);
    // The ids are free again.
    await p.read(5, 'song', 0, 100);
    expect((await readAll(p, 5, 0, 100)).bytes.equals(song.subarray(0, 100))).to.equal(true);
    await p.open(6, 'mine', 10);
    expect(await p.next()).to.deep.include({ type: 'opened', uploadId: 6 });
  });

  it('a read waiting for bytes keeps its connection from idling past idleTimeoutMs; the idle clock starts when the read ends; a connection with no read is closed 4008', async () => {
    await start({ idleTimeoutMs: 1000, holdMs: 2500 });
    await server!.store.open('later', 1000, { owner: 'alice' });
    const idler = await peer(await readToken());
    const idlerSince = Date.now();
    const reader = await peer(await readToken());
    const t0 = Date.now();
    await reader.read(1, 'later', 0, 100);
    expect((await idler.closed).code).to.equal(4008);
    expect(Date.now() - idlerSince).to.be.within(900, 2400);
    expect(await reader.next(5000)).to.deep.include({
      type: 'error',
      uploadId: 1,
      code: 'not-ready',
    });
    const ended = Date.now();
    expect(ended - t0).to.be.at.least(2400);
    expect((await reader.closed).code).to.equal(4008);
    expect(Date.now() - ended).to.be.within(900, 2000);
  }).timeout(10_000);

  it('a slow reader whose BYTES stream for longer than idleTimeoutMs is not closed as idle', async () => {
    const CHUNK = 64 * 1024;
    const SIZE = 32 * 1024 * 1024;
    const big = new Uint8Array(randomBytes(SIZE));
    await start({ maxChunk: CHUNK, window: SIZE, idleTimeoutMs: 1000 });
    await seed('big', big, Array<number>(SIZE / (1024 * 1024)).fill(1024 * 1024));
    const p = await peer(await readToken(['big']));
    const client = (p.ws as unknown as { _socket: Socket })._socket;
    client.pause();
    await p.read(1, 'big', 0, SIZE);
    // The client sends nothing for 2.5 idle timeouts, while the server waits to send.
    await delay(2500);
    client.resume();
    const frames: Bytes[] = [];
    let at = 0;
    while (at < SIZE) {
      const f = (await p.next()) as Bytes;
      expect(f).to.deep.include({ type: 'bytes', readId: 1, offset: at });
      frames.push(f);
      at += f.payload.length;
    }
    expect(sha256(Buffer.concat(frames.map((f) => f.payload))).hex).to.equal(sha256(big).hex);
    await pingPong(p);
  }).timeout(30_000);

  it('bytes stored between the first look and the watch are served at once, by a READ and by GET /files', async () => {
    const store = new StaleStore(dir, { durability: 'write' });
    await start({ store, holdMs: 5000 });
    const bytes = new Uint8Array(randomBytes(1000));
    await store.open('racy', 1000, { owner: 'alice' });
    await store.write('racy', 0, bytes.subarray(0, 600));
    const token = await readToken(['racy']);
    const p = await peer(token);
    store.stale.add('racy');
    let t0 = Date.now();
    await p.read(1, 'racy', 100, 500);
    expect((await readAll(p, 1, 100, 500)).bytes.equals(bytes.subarray(100, 500))).to.equal(true);
    expect(Date.now() - t0).to.be.below(1000);
    store.stale.add('racy');
    t0 = Date.now();
    const res = await fetch(`${urls.http}/files/racy`, {
      headers: { Authorization: `Bearer ${token}`, Range: 'bytes=100-499' },
    });
    expect(res.status).to.equal(206);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(100, 500))).to.equal(true);
    expect(Date.now() - t0).to.be.below(1000);
    // Each looked as if waiting, so each raised a demand.
    expect(demands).to.have.length(2);
  });

  it('not-ready after holdMs for bytes not stored, with a demand raised for the missing ranges', async () => {
    await start({ holdMs: 300 });
    const bytes = new Uint8Array(randomBytes(1000));
    await server!.store.open('partial', 1000, { owner: 'alice' });
    await server!.store.write('partial', 0, bytes.subarray(0, 400));
    const p = await peer(await readToken(['partial']));
    // Stored bytes of a partial item are served at once.
    await p.read(1, 'partial', 100, 400);
    expect((await readAll(p, 1, 100, 400)).bytes.equals(bytes.subarray(100, 400))).to.equal(true);
    expect(demands).to.deep.equal([]);
    const t0 = Date.now();
    await p.read(2, 'partial', 200, 900);
    expect(await p.next(3000)).to.deep.include({ type: 'error', uploadId: 2, code: 'not-ready' });
    expect(Date.now() - t0).to.be.at.least(250);
    expect(demands).to.deep.equal([{ itemId: 'partial', ranges: [{ start: 400, end: 900 }] }]);
    expect(logs.some((l) => l.event === 'demand' && l['itemId'] === 'partial')).to.equal(true);
    await pingPong(p);
  });

  it('answers a READ of bytes still uploading once they are stored within holdMs', async () => {
    await start({ holdMs: 5000 });
    const bytes = new Uint8Array(randomBytes(8000));
    const uploader = await peer(await uploadToken());
    await uploader.open(1, 'live', bytes.length);
    expect(await uploader.next()).to.deep.include({ type: 'opened', uploadId: 1 });
    await uploader.data(1, 0, bytes.subarray(0, 1000));
    expect(await uploader.next()).to.deep.include({ type: 'ack', end: 1000 });
    const reader = await peer(await readToken(['live']));
    await reader.read(9, 'live', 500, 6000);
    for (let i = 0; i < 100 && demands.length === 0; i++) await delay(10);
    expect(demands).to.deep.equal([{ itemId: 'live', ranges: [{ start: 1000, end: 6000 }] }]);
    await uploader.data(1, 1000, bytes.subarray(1000, 4000));
    await uploader.data(1, 4000, bytes.subarray(4000, 8000));
    const { bytes: got } = await readAll(reader, 9, 500, 6000);
    expect(got.equals(bytes.subarray(500, 6000))).to.equal(true);
  });

  it('storage-failed after the BYTES before bytes changed at rest', async () => {
    await start();
    const bytes = new Uint8Array(randomBytes(9000));
    await seed('rotten', bytes, [3000, 3000, 3000]);
    // One byte of the middle run flips on disk.
    const fh = await openFile(join(dir, 'rotten', 'data'), 'r+');
    await fh.write(new Uint8Array([bytes[4500]! ^ 0xff]), 0, 1, 4500);
    await fh.close();
    const p = await peer(await readToken(['rotten']));
    await p.read(1, 'rotten', 1000, 9000);
    const { bytes: before } = await readAll(p, 1, 1000, 3000);
    expect(before.equals(bytes.subarray(1000, 3000))).to.equal(true);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'storage-failed' });
    expect(logs.some((l) => l.event === 'corrupt-bytes')).to.equal(true);
    expect(logs.some((l) => l.event === 'read-error' && l['code'] === 'storage-failed')).to.equal(
      true,
    );
    expect(await server!.store.get('rotten')).to.deep.include({
      complete: false,
      ranges: [
        { start: 0, end: 3000 },
        { start: 6000, end: 9000 },
      ],
    });
    await pingPong(p);
  });

  it("readAccess 'public' lets a connection with an upload token read; reads do not count toward maxUploadsPerClient", async () => {
    await start({ readAccess: 'public', maxUploadsPerClient: 1, holdMs: 5000 });
    await seed('song', song, songPieces);
    await server!.store.open('half', 20_000, { owner: 'alice' });
    const p = await peer(await uploadToken());
    await p.read(1, 'song', 5000, 15_000);
    expect((await readAll(p, 1, 5000, 15_000)).bytes.equals(song.subarray(5000, 15_000))).to.equal(
      true,
    );
    // A read waiting for bytes holds no upload slot.
    await p.read(2, 'half', 0, 100);
    await p.open(3, 'mine', 10);
    expect(await p.next()).to.deep.include({ type: 'opened', uploadId: 3 });
  });

  it('serves reads through the relay (a relayed socket: its send callback and the link’s buffer)', async () => {
    const control = createControlServer({ secret: SECRET });
    const controlUrl = await control.listen(0);
    const base = controlUrl.replace(/\/control$/, '');
    try {
      server = createUploadServer({
        id: 'up-1',
        secret: SECRET,
        dataDir: dir,
        durability: 'write',
        controlUrl: `${base}/registry`,
        relay: true,
        // The default maxChunk (1 MiB): a BYTES frame of a full one, with its relay header, would
        // be over the 1 MiB the control server takes on a registry link.
      });
      await until(() => control.servers().some((s) => s.id === 'up-1'));
      const bytes = new Uint8Array(randomBytes(6 * 1024 * 1024 + 5));
      await seed('far', bytes, [bytes.length]);
      const p = new Dup2Peer(`${base}/relay/up-1`);
      peers.push(p);
      await p.send({ type: 'hello', token: await readToken(['far']) });
      const welcome = await p.next();
      expect(welcome.type).to.equal('welcome');
      const { maxChunk } = welcome as Extract<Dup2ServerFrame, { type: 'welcome' }>;
      expect(maxChunk).to.equal(1024 * 1024);
      // Two reads at once, filling most of the 8 MiB window.
      const half = 3 * 1024 * 1024;
      await p.read(1, 'far', 0, half);
      await p.read(2, 'far', half, bytes.length);
      const parts = new Map<number, Bytes[]>([
        [1, []],
        [2, []],
      ]);
      for (let left = bytes.length; left > 0;) {
        const f = (await p.next()) as Bytes;
        expect(f.type).to.equal('bytes');
        // Each relayed link message (relay header, BYTES header, payload) fits in 1 MiB.
        expect(f.payload.length).to.be.within(1, RELAYED_MAX_BYTES);
        expect(crc32c(f.payload) >>> 0).to.equal(f.crc32c >>> 0);
        const list = parts.get(f.readId)!;
        const last = list.at(-1);
        expect(f.offset).to.equal(
          last ? last.offset + last.payload.length : f.readId === 1 ? 0 : half,
        );
        list.push(f);
        left -= f.payload.length;
      }
      const got = Buffer.concat([...parts.get(1)!, ...parts.get(2)!].map((f) => f.payload));
      expect(got.equals(bytes)).to.equal(true);
      // Re-chunked to the cap: every frame of a read but its last is as large as it may be.
      for (const list of parts.values())
        for (const f of list.slice(0, -1)) expect(f.payload.length).to.equal(RELAYED_MAX_BYTES);
      p.close();
      await p.closed;
      await server.close();
      server = undefined;
    } finally {
      await control.close();
    }
  }).timeout(30_000);

  describe('large reads', () => {
    const CHUNK = 64 * 1024;
    const SIZE = 32 * 1024 * 1024;
    const big = new Uint8Array(randomBytes(SIZE));

    async function startBig(): Promise<Dup2Peer> {
      await start({ maxChunk: CHUNK, window: SIZE });
      await seed('big', big, Array<number>(SIZE / (1024 * 1024)).fill(1024 * 1024));
      return peer(await readToken(['big']));
    }

    /** The most bytes any server-side socket holds in its user-space send buffer now. */
    const serverBuffered = (): number => Math.max(...sockets.map((s) => s.writableLength));

    it('a slow reader does not make the server buffer the read: it sends while its socket holds under two maxChunk', async () => {
      const p = await startBig();
      const client = (p.ws as unknown as { _socket: Socket })._socket;
      client.pause();
      await p.read(1, 'big', 0, SIZE);
      // The kernel's socket buffers fill, then the server's own would, unless it waits.
      let most = 0;
      for (let i = 0; i < 10; i++) {
        await delay(50);
        most = Math.max(most, serverBuffered());
      }
      expect(most).to.be.at.most(3 * (CHUNK + 17) + 64);
      client.resume();
      const frames: Bytes[] = [];
      let at = 0;
      while (at < SIZE) {
        const f = (await p.next()) as Bytes;
        expect(f).to.deep.include({ type: 'bytes', readId: 1, offset: at });
        expect(f.payload.length).to.be.at.most(CHUNK);
        expect(crc32c(f.payload) >>> 0).to.equal(f.crc32c >>> 0);
        frames.push(f);
        at += f.payload.length;
      }
      expect(sha256(Buffer.concat(frames.map((f) => f.payload))).hex).to.equal(sha256(big).hex);
    }).timeout(30_000);

    it('CANCEL stops a read: fewer bytes than asked arrive, and the id can be used again', async () => {
      const p = await startBig();
      const client = (p.ws as unknown as { _socket: Socket })._socket;
      client.pause();
      await p.read(1, 'big', 0, SIZE);
      await delay(200);
      await p.send({ type: 'cancel', uploadId: 1 });
      await p.send({ type: 'ping', time: 1 });
      client.resume();
      // BYTES already on their way arrive, in order, before the PONG; then nothing more.
      let at = 0;
      for (;;) {
        const f = await p.next();
        if (f.type === 'pong') break;
        expect(f).to.deep.include({ type: 'bytes', readId: 1, offset: at });
        expect(crc32c((f as Bytes).payload) >>> 0).to.equal((f as Bytes).crc32c >>> 0);
        at += (f as Bytes).payload.length;
      }
      expect(at).to.be.below(SIZE / 2);
      await p.read(1, 'big', SIZE - 100, SIZE);
      const { bytes } = await readAll(p, 1, SIZE - 100, SIZE);
      expect(bytes.equals(big.subarray(SIZE - 100))).to.equal(true);
      await delay(100);
      await pingPong(p);
    }).timeout(30_000);
  });
});
