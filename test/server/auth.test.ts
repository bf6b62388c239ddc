import { expect } from 'chai';
import { SignJWT } from 'jose';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { CLOSE, crc32c, SUBPROTOCOL_DUP_2 } from '../../src/protocol/index.js';
import { createUploadServer, type UploadServer } from '../../server/index.js';
import { secretKey, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer } from '../helpers/node-peers.js';

const SECRET = 'f'.repeat(32);

/** An upload token for up-1 with the given claims (and expiry, in seconds from now). */
function token(claims: Record<string, unknown> = {}, expiresIn = 60): Promise<string> {
  return new SignJWT({ scope: 'upload', uid: 'alice', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(typeof claims['sub'] === 'string' ? claims['sub'] : 'client-1')
    .setAudience(uploadAudience('up-1'))
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresIn)
    .sign(secretKey(SECRET));
}

/** Status of a refused upgrade, or 101 when it went through. */
function upgrade(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, SUBPROTOCOL_DUP_2, { headers });
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('error', () => undefined);
  });
}

describe('upload server tokens and limits', () => {
  let dir: string;
  let server: UploadServer | undefined;
  let wsUrl: string;
  const peers: Dup2Peer[] = [];

  async function start(options: Partial<Parameters<typeof createUploadServer>[0]> = {}) {
    server = createUploadServer({ id: 'up-1', secret: SECRET, dataDir: dir, ...options });
    wsUrl = (await server.listen(0)).ws;
  }

  async function hello(t: string): Promise<Dup2Peer> {
    const peer = new Dup2Peer(wsUrl);
    peers.push(peer);
    await peer.send({ type: 'hello', token: t });
    return peer;
  }

  async function welcomed(t: string): Promise<Dup2Peer> {
    const peer = await hello(t);
    expect((await peer.next()).type).to.equal('welcome');
    return peer;
  }

  const open = (p: Dup2Peer, uploadId: number, itemId: string, size = 100) =>
    p.send({ type: 'open', uploadId, itemId, size, mime: '', name: '' });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-auth-'));
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a token for another scope, and one with alg none', async () => {
    await start();
    const read = await hello(await token({ scope: 'read' }));
    expect(await read.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(
      JSON.stringify({
        sub: 'x',
        aud: uploadAudience('up-1'),
        exp: Math.floor(Date.now() / 1000) + 60,
      }),
    ).toString('base64url')}.`;
    const unsigned = await hello(none);
    expect(await unsigned.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
    expect((await unsigned.closed).code).to.equal(CLOSE.AUTH_FAILED);
  });

  it('accepts a token expired by less than the clock leeway (30 s), not more', async () => {
    await start();
    await welcomed(await token({}, -20));
    const late = await hello(await token({}, -40));
    expect(await late.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
  });

  it('lets a token scoped to items write those items only', async () => {
    await start();
    const p = await welcomed(await token({ items: ['mine'] }));
    await open(p, 1, 'mine');
    expect((await p.next()).type).to.equal('opened');
    await open(p, 2, 'other');
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 2, code: 'unauthorized' });
    expect(await readdir(dir)).to.deep.equal(['mine']);
  });

  it('lets a token scoped to byte ranges write inside them only, storing nothing else', async () => {
    await start();
    const p = await welcomed(await token({ ranges: { ranged: [[10, 20]] } }));
    await open(p, 1, 'ranged');
    await p.next();
    const ok = new Uint8Array(10).fill(1);
    await p.send({ type: 'data', uploadId: 1, offset: 10, crc32c: crc32c(ok), payload: ok });
    expect(await p.next()).to.deep.include({ type: 'ack', start: 10, end: 20 });
    await p.send({ type: 'data', uploadId: 1, offset: 15, crc32c: crc32c(ok), payload: ok });
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'unauthorized' });
    expect((await server!.store.get('ranged'))!.ranges).to.deep.equal([{ start: 10, end: 20 }]);
  });

  it('takes a single-use token once', async () => {
    await start();
    const once = await token({ once: true, jti: 'token-1' });
    await welcomed(once);
    const again = await hello(once);
    expect(await again.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
  });

  it('refuses to open or finish an upload once the token expired, with unauthorized', async () => {
    await start();
    // Expired 29 s ago: inside the leeway at HELLO, outside it a few seconds later.
    const p = await welcomed(await token({}, -29));
    await new Promise((r) => setTimeout(r, 1500));
    await open(p, 1, 'late');
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'unauthorized' });
  }).timeout(10_000);

  it('limits the uploads one client has open at once with too-many-uploads', async () => {
    await start({ maxUploadsPerClient: 2 });
    const t = await token();
    const a = await welcomed(t);
    const b = await welcomed(t);
    await open(a, 1, 'u1');
    await open(b, 1, 'u2');
    expect((await a.next()).type).to.equal('opened');
    expect((await b.next()).type).to.equal('opened');
    await open(a, 2, 'u3');
    expect(await a.next()).to.deep.include({
      type: 'error',
      uploadId: 2,
      code: 'too-many-uploads',
    });
    await a.send({ type: 'cancel', uploadId: 1 });
    await open(a, 3, 'u3');
    expect((await a.next()).type).to.equal('opened');
  });

  it('refuses WebSocket upgrades from origins not allowed, with 403 before the upgrade', async () => {
    await start({ allowedOrigins: ['https://app.example'] });
    expect(await upgrade(wsUrl, { Origin: 'https://app.example' })).to.equal(101);
    expect(await upgrade(wsUrl, { Origin: 'https://evil.example' })).to.equal(403);
    expect(await upgrade(wsUrl, { Origin: 'https://app.example.evil.example' })).to.equal(403);
    expect(await upgrade(wsUrl)).to.equal(101);
  });

  it('limits connections per IP address with 429 before the upgrade', async () => {
    await start({ maxConnectionsPerIp: 2 });
    const t = await token();
    await welcomed(t);
    await welcomed(t);
    expect(await upgrade(wsUrl)).to.equal(429);
  });

  it('closes a connection that sends nothing with 4008', async () => {
    await start({ idleTimeoutMs: 200, authTimeoutMs: 5000 });
    const p = await welcomed(await token());
    expect((await p.closed).code).to.equal(CLOSE.IDLE_TIMEOUT);
  });
});
