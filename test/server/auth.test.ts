import { expect } from 'chai';
import { SignJWT } from 'jose';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { CLOSE, crc32c, SUBPROTOCOL_DUP_2 } from '../../src/protocol/index.js';
import { createUploadServer, type UploadServer } from '../../server/index.js';
import { secretKey, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256 } from '../helpers/node-peers.js';

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

/**
 * The same JWT with the last character of its signature changed in the two bits that base64url
 * leaves unused there (a 32-byte HS256 signature is 43 characters): another string, the same bytes.
 */
function reencoded(jwt: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  return jwt.slice(0, -1) + alphabet[alphabet.indexOf(jwt.at(-1)!) ^ 1]!;
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

  it('A1/A3: refuses a token for another scope, and one with alg none', async () => {
    await start();
    // (A read token is welcome: such a connection may READ only; see dup2-read.test.ts.)
    const other = await hello(await token({ scope: 'admin' }));
    expect(await other.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
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

  it('A2/A6: accepts a token expired by less than the clock leeway (30 s), not more', async () => {
    await start();
    await welcomed(await token({}, -20));
    const late = await hello(await token({}, -40));
    expect(await late.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
  });

  it('P2/A3: lets a token scoped to items write those items only', async () => {
    await start();
    const p = await welcomed(await token({ items: ['mine'] }));
    await open(p, 1, 'mine');
    expect((await p.next()).type).to.equal('opened');
    await open(p, 2, 'other');
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 2, code: 'unauthorized' });
    expect(await readdir(dir)).to.deep.equal(['mine']);
  });

  it('P2/A3: lets a token scoped to byte ranges write inside them only, storing nothing else', async () => {
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

  it('A4: takes a single-use token once', async () => {
    await start();
    const once = await token({ once: true, jti: 'token-1' });
    await welcomed(once);
    const again = await hello(once);
    expect(await again.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
  });

  it('A2: refuses to open or finish an upload once the token expired, with unauthorized', async () => {
    await start();
    // Expired 28 to 29 s ago (whole seconds): inside the 30 s leeway at HELLO for one to two
    // seconds more, outside it when OPEN comes 2.5 s later.
    const p = await welcomed(await token({}, -28));
    await new Promise((r) => setTimeout(r, 2500));
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

  it('A5: refuses WebSocket upgrades from origins not allowed, with 403 before the upgrade', async () => {
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

  it('A1: refuses a token signed with another algorithm than HS256, with unauthorized and close 4003', async () => {
    await start();
    for (const alg of ['HS384', 'HS512']) {
      const t = await new SignJWT({ scope: 'upload', uid: 'alice' })
        .setProtectedHeader({ alg })
        .setSubject('client-1')
        .setAudience(uploadAudience('up-1'))
        .setExpirationTime(Math.floor(Date.now() / 1000) + 60)
        .sign(secretKey(SECRET));
      const p = await hello(t);
      expect(await p.next(), alg).to.deep.include({
        type: 'error',
        uploadId: 0,
        code: 'unauthorized',
      });
      expect((await p.closed).code, alg).to.equal(CLOSE.AUTH_FAILED);
    }
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('A2: a token that expires during an upload lets the open upload id send its chunks, but not finish; the item stays incomplete', async () => {
    await start();
    // Just after a second starts, a token that expired 29 s ago is inside the 30 s leeway for the
    // rest of that second, and outside it from the next one on.
    await new Promise((r) => setTimeout(r, 1010 - (Date.now() % 1000)));
    const p = await welcomed(await token({}, -29));
    const bytes = new Uint8Array(randomBytes(20));
    await open(p, 1, 'expiring', bytes.length);
    expect((await p.next()).type).to.equal('opened');
    await p.data(1, 0, bytes.subarray(0, 10));
    expect(await p.next()).to.deep.include({ type: 'ack', start: 0, end: 10 });
    await new Promise((r) => setTimeout(r, 1500));
    await p.data(1, 10, bytes.subarray(10));
    expect(await p.next()).to.deep.include({ type: 'ack', start: 10, end: 20 });
    await p.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'unauthorized' });
    expect(await server!.store.get('expiring')).to.deep.include({
      complete: false,
      ranges: [{ start: 0, end: 20 }],
    });
    // With a fresh token the client finishes it without sending a byte again.
    const q = await welcomed(await token());
    await open(q, 1, 'expiring', bytes.length);
    expect(await q.next()).to.deep.include({ type: 'opened', ranges: [{ start: 0, end: 20 }] });
    await q.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await q.next()).type).to.equal('complete');
  }).timeout(10_000);

  it('A4: a single-use token is refused after the upload it carried completed, and so is a re-encoded copy of it', async () => {
    await start();
    const once = await token({ once: true, jti: 'once-a' });
    const p = await welcomed(once);
    const bytes = new Uint8Array(randomBytes(100));
    await open(p, 1, 'once-item', bytes.length);
    expect((await p.next()).type).to.equal('opened');
    await p.data(1, 0, bytes);
    expect((await p.next()).type).to.equal('ack');
    await p.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await p.next()).type).to.equal('complete');
    p.close();
    await p.closed;
    const copy = reencoded(once);
    expect(copy).to.not.equal(once);
    for (const t of [once, copy]) {
      const replay = await hello(t);
      expect(await replay.next()).to.deep.include({
        type: 'error',
        uploadId: 0,
        code: 'unauthorized',
      });
      expect((await replay.closed).code).to.equal(CLOSE.AUTH_FAILED);
    }
    // Such a copy verifies like the original (used first, it is welcomed): what refuses the second
    // use is the remembered token id, whichever encoding comes second.
    const other = await token({ once: true, jti: 'once-b' });
    await welcomed(reencoded(other));
    const second = await hello(other);
    expect(await second.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
    expect(await readdir(dir)).to.deep.equal(['once-item']);
  });

  it('A6: honours nbf with the 30 s clock leeway: valid from 28 s on is accepted, from 32 s or an hour on refused', async () => {
    await start();
    const now = Math.floor(Date.now() / 1000);
    const validFrom = (seconds: number) =>
      new SignJWT({ scope: 'upload', uid: 'alice' })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('client-1')
        .setAudience(uploadAudience('up-1'))
        .setNotBefore(now + seconds)
        .setExpirationTime(now + seconds + 60)
        .sign(secretKey(SECRET));
    await welcomed(await validFrom(28));
    for (const seconds of [32, 3600]) {
      const early = await hello(await validFrom(seconds));
      expect(await early.next(), String(seconds)).to.deep.include({
        type: 'error',
        code: 'unauthorized',
      });
      expect((await early.closed).code).to.equal(CLOSE.AUTH_FAILED);
    }
  });

  // docs/protocol.md: tokens are checked "with a clock leeway of 30 seconds (`exp`, `nbf` and
  // `iat` may be off by that much between the servers)".
  it('A6: refuses a token issued more than the 30 s leeway in the future (iat an hour ahead)', async () => {
    await start();
    const ahead = Math.floor(Date.now() / 1000) + 3600;
    const t = await new SignJWT({ scope: 'upload', uid: 'alice' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('client-1')
      .setAudience(uploadAudience('up-1'))
      .setIssuedAt(ahead)
      .setExpirationTime(ahead + 3600)
      .sign(secretKey(SECRET));
    const p = await hello(t);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 0, code: 'unauthorized' });
    expect((await p.closed).code).to.equal(CLOSE.AUTH_FAILED);
  });

  it('closes a connection that sends nothing with 4008', async () => {
    await start({ idleTimeoutMs: 200, authTimeoutMs: 5000 });
    const p = await welcomed(await token());
    expect((await p.closed).code).to.equal(CLOSE.IDLE_TIMEOUT);
  });
});
