import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLOSE, crc32c } from '../../src/protocol/index.js';
import {
  createReadToken,
  createUploadServer,
  FileStore,
  type LogEntry,
  type UploadServer,
} from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256 } from '../helpers/node-peers.js';

const SECRET = 'e'.repeat(32);

describe('upload server operations', () => {
  let dir: string;
  let server: UploadServer | undefined;
  const peers: Dup2Peer[] = [];

  async function connect(ws: string, token?: string): Promise<Dup2Peer> {
    const peer = new Dup2Peer(ws);
    peers.push(peer);
    const t =
      token ??
      (await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, { uid: 'u' })).token;
    await peer.send({ type: 'hello', token: t });
    return peer;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-ops-'));
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('answers GET /healthz', async () => {
    server = createUploadServer({ id: 'up-1', secret: SECRET, dataDir: dir });
    const { http } = await server.listen(0);
    const res = await fetch(`${http}/healthz`);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.deep.include({ status: 'ok', id: 'up-1' });
  });

  it('A1/A7: logs one structured entry per event, never a token', async () => {
    const entries: LogEntry[] = [];
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      logger: (e) => entries.push(e),
    });
    const { ws, http } = await server.listen(0);
    const { token } = await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, {
      uid: 'u',
    });
    const peer = await connect(ws, token);
    await peer.next();
    const bytes = new Uint8Array(randomBytes(100));
    await peer.send({ type: 'open', uploadId: 1, itemId: 'logged', size: 100, mime: '', name: '' });
    await peer.next();
    await peer.send({
      type: 'data',
      uploadId: 1,
      offset: 0,
      crc32c: crc32c(bytes),
      payload: bytes,
    });
    await peer.next();
    await peer.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    await peer.next();
    const bad = await connect(ws, 'not-a-valid-token-but-secret-looking');
    await bad.closed;
    const read = await createReadToken(SECRET, 'up-1', { subject: 'reader' });
    await (await fetch(`${http}/files/logged?access_token=${read}`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, 50));

    const events = entries.map((e) => e.event);
    expect(events).to.include.members(['connection', 'item-complete', 'auth-failed', 'http']);
    for (const e of entries) {
      expect(e.server).to.equal('up-1');
      expect(Date.parse(e.time)).to.be.greaterThan(0);
    }
    const text = JSON.stringify(entries);
    expect(text).to.not.include(token);
    expect(text).to.not.include(read);
    expect(text).to.not.include('secret-looking');
    expect(entries.find((e) => e.event === 'http')).to.deep.include({
      method: 'GET',
      path: '/files/logged',
      status: 200,
    });
  });

  it('F10: drains on close: received chunks are stored and acknowledged, then the client is told 1001', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    class SlowStore extends FileStore {
      override async write(itemId: string, offset: number, bytes: Uint8Array) {
        await gate;
        return super.write(itemId, offset, bytes);
      }
    }
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      store: new SlowStore(dir),
      drainMs: 5000,
    });
    const { ws } = await server.listen(0);
    const peer = await connect(ws);
    await peer.next();
    const bytes = new Uint8Array(randomBytes(3 * 1000));
    await peer.send({
      type: 'open',
      uploadId: 1,
      itemId: 'drained',
      size: bytes.length,
      mime: '',
      name: '',
    });
    await peer.next();
    for (let i = 0; i < 3; i++) {
      const payload = bytes.subarray(i * 1000, (i + 1) * 1000);
      await peer.send({
        type: 'data',
        uploadId: 1,
        offset: i * 1000,
        crc32c: crc32c(payload),
        payload,
      });
    }
    await new Promise((r) => setTimeout(r, 50));
    const closing = server.close();
    setTimeout(release, 100);
    const acks = [await peer.next(), await peer.next(), await peer.next()];
    expect(acks.map((a) => a.type)).to.deep.equal(['ack', 'ack', 'ack']);
    expect((await peer.closed).code).to.equal(CLOSE.GOING_AWAY);
    await closing;
    server = createUploadServer({ id: 'up-1', secret: SECRET, dataDir: dir });
    expect((await server.store.get('drained'))?.ranges).to.deep.equal([{ start: 0, end: 3000 }]);
  });
});
