import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import {
  createReadToken,
  createUploadServer,
  type LogEntry,
  type UploadServer,
  type UploadServerOptions,
} from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { sha256 } from '../helpers/node-peers.js';

const SECRET = 'r'.repeat(32);
const BYTES = new TextEncoder().encode('hello, reader');

describe('upload server read access (GET /files with read tokens)', () => {
  let dir: string;
  let server: UploadServer | undefined;
  let base: string;
  let logs: LogEntry[];
  let uploadToken: string;

  async function start(options: Partial<UploadServerOptions> = {}): Promise<void> {
    await server?.close();
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      logger: (e) => logs.push(e),
      ...options,
    });
    base = (await server.listen(0)).http;
  }

  /** Stores a complete item with a plain HTTP upload. */
  async function put(itemId: string, bytes = BYTES): Promise<void> {
    const res = await fetch(`${base}/uploads/${itemId}`, {
      method: 'PUT',
      headers: {
        Authorization: `Bearer ${uploadToken}`,
        'Content-Range': `bytes 0-${bytes.length - 1}/${bytes.length}`,
        'Item-Type': 'text/plain',
        'Repr-Digest': `sha-256=:${Buffer.from(sha256(bytes).bytes).toString('base64')}:`,
      },
      body: bytes,
    });
    expect(res.status, await res.text()).to.equal(200);
  }

  const read = (options: { items?: string[]; serverId?: string } = {}) =>
    createReadToken(SECRET, options.serverId ?? 'up-1', {
      subject: 'reader-1',
      ...(options.items ? { items: options.items } : {}),
    });

  const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
    fetch(`${base}${path}`, { headers, method });

  /** Checks a refusal: status, JSON code, challenge, and that nothing about the item leaked. */
  async function expectRefused(
    res: Response,
    status: number,
    code: string,
    challenge: RegExp,
  ): Promise<void> {
    expect(res.status).to.equal(status);
    expect(res.headers.get('content-type')).to.equal('application/json');
    expect(res.headers.get('www-authenticate')).to.match(challenge);
    expect(res.headers.get('cache-control')).to.equal('no-store');
    expect(res.headers.get('content-length')).to.not.equal(String(BYTES.length));
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).to.equal(code);
    expect(body.message).to.be.a('string').and.not.equal('');
  }

  beforeEach(async () => {
    logs = [];
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-read-'));
    uploadToken = (
      await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, { uid: 'alice' })
    ).token;
    await start();
    await put('item-a');
  });

  afterEach(async () => {
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('A8: no token → 401 with WWW-Authenticate: Bearer, the same for an item that does not exist', async () => {
    await expectRefused(await get('/files/item-a'), 401, 'unauthorized', /^Bearer$/);
    await expectRefused(await get('/files/no-such-item'), 401, 'unauthorized', /^Bearer$/);
    await expectRefused(await get('/files/..%2Fetc'), 401, 'unauthorized', /^Bearer$/);
    const head = await get('/files/item-a', {}, 'HEAD');
    expect(head.status).to.equal(401);
    expect(head.headers.get('www-authenticate')).to.equal('Bearer');
    expect(await head.text()).to.equal('');
    // Another kind of credential is no bearer token either.
    const basic = await get('/files/item-a', { Authorization: 'Basic dXNlcjpwYXNz' });
    await expectRefused(basic, 401, 'unauthorized', /^Bearer$/);
  });

  it('A8: upload token → 403 (scope upload does not allow reading)', async () => {
    for (const headers of [
      { Authorization: `Bearer ${uploadToken}` },
      {
        Authorization: `Bearer ${
          (await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, { scope: 'write' }))
            .token
        }`,
      },
    ]) {
      await expectRefused(
        await get('/files/item-a', headers),
        403,
        'forbidden',
        /^Bearer error="insufficient_scope"/,
      );
    }
    await expectRefused(
      await get(`/files/item-a?access_token=${uploadToken}`),
      403,
      'forbidden',
      /insufficient_scope/,
    );
  });

  it('A8: read token for another item → 403', async () => {
    await put('item-b');
    const onlyB = await read({ items: ['item-b'] });
    await expectRefused(
      await get('/files/item-a', { Authorization: `Bearer ${onlyB}` }),
      403,
      'forbidden',
      /insufficient_scope/,
    );
    // Also for an item that does not exist: the token, not the store, answers.
    await expectRefused(
      await get('/files/nothing', { Authorization: `Bearer ${onlyB}` }),
      403,
      'forbidden',
      /insufficient_scope/,
    );
    const res = await get('/files/item-b', { Authorization: `Bearer ${onlyB}` });
    expect(res.status).to.equal(200);
    expect(await res.text()).to.equal('hello, reader');
  });

  it('A8: expired, forged or other-audience read token → 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    // Expired longer ago than the 30 s clock leeway.
    const expired = await new SignJWT({ scope: 'read' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject('reader-1')
      .setAudience(uploadAudience('up-1'))
      .setIssuedAt(now - 3600)
      .setExpirationTime(now - 60)
      .sign(secretKey(SECRET));
    const otherServer = await read({ serverId: 'up-2' });
    const forged = await createReadToken('x'.repeat(32), 'up-1', { subject: 'reader-1' });
    const badItems = (
      await signToken(secretKey(SECRET), 'r', uploadAudience('up-1'), 60, {
        scope: 'read',
        items: 'item-a',
      })
    ).token;
    for (const token of [expired, otherServer, forged, badItems, 'not.a.jwt']) {
      await expectRefused(
        await get('/files/item-a', { Authorization: `Bearer ${token}` }),
        401,
        'unauthorized',
        /^Bearer error="invalid_token"$/,
      );
      await expectRefused(
        await get(`/files/item-a?access_token=${encodeURIComponent(token)}`),
        401,
        'unauthorized',
        /invalid_token/,
      );
    }
  });

  it('A8: a read token in the access_token query works and never reaches the logs', async () => {
    const token = await read({ items: ['item-a'] });
    const res = await get(`/files/item-a?access_token=${token}`, { Range: 'bytes=0-4' });
    expect(res.status).to.equal(206);
    expect(await res.text()).to.equal('hello');
    expect(res.headers.get('cache-control')).to.equal('private, no-cache');
    expect(res.headers.get('referrer-policy')).to.equal('no-referrer');
    // A refused one is not logged either.
    await get(`/files/item-a?access_token=${uploadToken}`);
    await new Promise((r) => setTimeout(r, 50));
    const http = logs.filter((e) => e.event === 'http' && e['path'] === '/files/item-a');
    expect(http.map((e) => e['status'])).to.deep.equal([206, 403]);
    const text = JSON.stringify(logs);
    expect(text).to.not.include(token);
    expect(text).to.not.include(uploadToken);
    expect(text).to.not.include('access_token');
  });

  it('A8: a read token in Authorization: Bearer works, for any item when it names none', async () => {
    const token = await read();
    const res = await get('/files/item-a', { Authorization: `Bearer ${token}` });
    expect(res.status).to.equal(200);
    expect(await res.text()).to.equal('hello, reader');
    expect(res.headers.get('cache-control')).to.equal('private, no-cache');
    expect(res.headers.get('referrer-policy')).to.equal('no-referrer');
    const etag = res.headers.get('etag')!;
    const again = await get('/files/item-a', {
      Authorization: `bearer ${token}`,
      'If-None-Match': etag,
    });
    expect(again.status).to.equal(304);
    expect(again.headers.get('cache-control')).to.equal('private, no-cache');
    const head = await get('/files/item-a', { Authorization: `Bearer ${token}` }, 'HEAD');
    expect(head.status).to.equal(200);
    expect(head.headers.get('content-length')).to.equal(String(BYTES.length));
    const missing = await get('/files/nope', { Authorization: `Bearer ${token}` });
    expect(missing.status).to.equal(404);
    expect(missing.headers.get('cache-control')).to.equal('private, no-store');
  });

  it('A8: a token sent both ways, or two access_token parameters → 400', async () => {
    const token = await read();
    await expectRefused(
      await get(`/files/item-a?access_token=${token}`, { Authorization: `Bearer ${token}` }),
      400,
      'bad-request',
      /invalid_request/,
    );
    await expectRefused(
      await get(`/files/item-a?access_token=${token}&access_token=${token}`),
      400,
      'bad-request',
      /invalid_request/,
    );
  });

  it("A8: readAccess: 'public' serves without a token", async () => {
    await start({ readAccess: 'public' });
    const res = await get('/files/item-a');
    expect(res.status).to.equal(200);
    expect(await res.text()).to.equal('hello, reader');
    expect(res.headers.get('cache-control')).to.equal('no-cache');
    expect(res.headers.get('referrer-policy')).to.equal(null);
    expect((await get('/files/nope')).status).to.equal(404);
  });

  it('A8: refuses a readAccess it does not know, and read tokens it cannot make', async () => {
    expect(() =>
      createUploadServer({
        id: 'x',
        secret: SECRET,
        dataDir: dir,
        readAccess: 'open' as 'public',
      }),
    ).to.throw(TypeError, /readAccess/);
    for (const [serverId, options] of [
      ['a/b', { subject: 's' }],
      ['up-1', { subject: '' }],
      ['up-1', { subject: 's', items: [] }],
      ['up-1', { subject: 's', items: ['../x'] }],
      ['up-1', { subject: 's', ttlSeconds: 0 }],
    ] as const) {
      let error: unknown;
      await createReadToken(SECRET, serverId, options).catch((e: unknown) => (error = e));
      expect(error, JSON.stringify([serverId, options])).to.be.instanceOf(TypeError);
    }
    let short: unknown;
    await createReadToken('short', 'up-1', { subject: 's' }).catch((e: unknown) => (short = e));
    expect(short).to.be.instanceOf(TypeError);
  });

  it('S6: Cross-Origin-Resource-Policy is same-site by default and configurable; status responses are no-store; no * with credentials', async () => {
    const token = await read();
    const auth = { Authorization: `Bearer ${token}` };
    for (const res of [
      await get('/files/item-a', auth),
      await get('/files/item-a', { ...auth, Range: 'bytes=0-0' }),
      await get('/files/nope', auth),
      await get('/files/item-a'),
    ]) {
      expect(res.headers.get('cross-origin-resource-policy'), String(res.status)).to.equal(
        'same-site',
      );
    }
    for (const policy of ['cross-origin', 'same-origin'] as const) {
      await start({ crossOriginResourcePolicy: policy });
      expect(
        (await get('/files/item-a', auth)).headers.get('cross-origin-resource-policy'),
      ).to.equal(policy);
      expect((await get('/files/item-a')).headers.get('cross-origin-resource-policy')).to.equal(
        policy,
      );
    }
    expect(() =>
      createUploadServer({
        id: 'x',
        secret: SECRET,
        dataDir: dir,
        crossOriginResourcePolicy: 'anyone' as 'cross-origin',
      }),
    ).to.throw(TypeError, /crossOriginResourcePolicy/);

    // Status responses are never cached.
    const created = await fetch(`${base}/tus/`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${uploadToken}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': '10',
      },
    });
    expect(created.status).to.equal(201);
    const tusUrl = new URL(created.headers.get('location')!, base).href;
    const statuses = [
      await get('/uploads/item-a', { Authorization: `Bearer ${uploadToken}` }, 'HEAD'),
      await fetch(tusUrl, {
        method: 'HEAD',
        headers: { Authorization: `Bearer ${uploadToken}`, 'Tus-Resumable': '1.0.0' },
      }),
      await get('/healthz'),
      await get('/healthz', {}, 'HEAD'),
      await get('/.well-known/ws-uploader'),
      await get('/.well-known/ws-uploader', {}, 'HEAD'),
    ];
    for (const res of statuses) {
      expect(res.status, res.url).to.equal(200);
      expect(res.headers.get('cache-control'), res.url).to.equal('no-store');
    }

    // `Access-Control-Allow-Origin: *` never comes with credentials (which browsers would refuse
    // anyway): bearer tokens are sent explicitly, not as cookies.
    const origin = { Origin: 'https://app.example' };
    const everything = [
      ...statuses,
      await get('/files/item-a', { ...origin, ...auth }),
      await get('/files/item-a', origin),
      await get(
        '/files/item-a',
        {
          ...origin,
          'Access-Control-Request-Method': 'GET',
          'Access-Control-Request-Headers': 'authorization, range',
        },
        'OPTIONS',
      ),
      await get(
        '/uploads/item-a',
        { ...origin, 'Access-Control-Request-Method': 'PUT' },
        'OPTIONS',
      ),
      await get('/tus/', { ...origin, 'Access-Control-Request-Method': 'POST' }, 'OPTIONS'),
      await get('/nothing-here', origin),
    ];
    for (const res of everything) {
      expect(res.headers.get('access-control-allow-credentials'), res.url).to.equal(null);
    }
    // A preflight for a bearer token is allowed: Authorization is listed by name, as `*` does not
    // cover it.
    const preflight = await get(
      '/files/item-a',
      { ...origin, 'Access-Control-Request-Method': 'GET' },
      'OPTIONS',
    );
    expect(preflight.headers.get('access-control-allow-headers')).to.match(/\bAuthorization\b/);
  });
});
