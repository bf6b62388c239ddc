import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createControlServer, createUserToken, type ControlServer } from '../../server/index.js';
import { ControlPeer } from '../helpers/node-peers.js';

const SECRET = 'p'.repeat(32);

/** A multipart/form-data body with these fields and one file part. */
function form(
  fields: Record<string, string>,
  file?: { name: string; type: string; bytes: Buffer },
) {
  const data = new FormData();
  for (const [k, v] of Object.entries(fields)) data.append(k, v);
  if (file)
    data.append('file', new Blob([new Uint8Array(file.bytes)], { type: file.type }), file.name);
  return data;
}

describe('control server: POST /items (a small item as multipart/form-data)', () => {
  let control: ControlServer;
  let url: string;
  let base: string;
  const peers: ControlPeer[] = [];

  beforeEach(async () => {
    control = createControlServer({ secret: SECRET, inlineMax: 2048, probeWaitMs: 0 });
    url = await control.listen(0);
    base = url.replace(/^ws/, 'http').replace(/\/control$/, '');
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await control.close();
  });

  async function post(
    body: FormData | string,
    token?: string,
    headers: Record<string, string> = {},
  ) {
    const res = await fetch(`${base}/items`, {
      method: 'POST',
      body,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, res };
  }

  it('stores the file as an inline item of the user, which the user’s browsers can send in messages', async () => {
    const alice = await createUserToken(SECRET, 'alice');
    const a = new ControlPeer(url);
    const b = new ControlPeer(url);
    peers.push(a, b);
    await a.send({ type: 'hello', token: alice });
    const { clientId } = await a.nextOf('welcome');
    await b.send({ type: 'hello', token: await createUserToken(SECRET, 'bob') });
    const bob = await b.nextOf('welcome');
    const bytes = randomBytes(1500);
    const digest = createHash('sha256').update(bytes).digest('hex');
    const r = await post(
      form({ itemId: 'photo-1', clientId }, { name: 'p.png', type: 'image/png', bytes }),
      alice,
      { origin: 'https://app.example' },
    );
    expect(r.status).to.equal(201);
    expect(r.body).to.deep.equal({ itemId: 'photo-1', size: 1500, sha256: digest });
    expect(r.res.headers.get('access-control-allow-origin')).to.equal('https://app.example');
    const item = (await control.items())[0]!;
    expect(item).to.deep.include({ state: 'stored', inline: true, userId: 'alice', clientId });
    expect(item.meta).to.deep.include({
      name: 'p.png',
      mime: 'image/png',
      size: 1500,
      kind: 'file',
    });
    await a.send({ type: 'message', to: { clientId: bob.clientId }, itemId: 'photo-1' });
    const got = await b.nextOf('message');
    expect(Buffer.from(got.item!.content!, 'base64').equals(bytes)).to.equal(true);
  });

  it('refuses what it must, with a status and a code, and stores nothing', async () => {
    const alice = await createUserToken(SECRET, 'alice');
    const small = { name: 'a.txt', type: 'text/plain', bytes: Buffer.from('hello') };
    expect((await post(form({ itemId: 'x' }, small))).status).to.equal(401);
    expect((await post(form({ itemId: 'x' }, small), 'not-a-token')).status).to.equal(401);
    expect(
      (await post(form({ itemId: 'x' }, small), await createUserToken('z'.repeat(32), 'alice')))
        .status,
    ).to.equal(401);
    const big = { name: 'b', type: 'application/octet-stream', bytes: randomBytes(2049) };
    expect(await post(form({ itemId: 'big' }, big), alice)).to.deep.include({
      status: 413,
      body: {
        code: 'too-large',
        message: 'items sent to the control server are limited to 2048 bytes',
      },
    });
    expect((await post(form({ itemId: '../x' }, small), alice)).status).to.equal(400);
    expect((await post(form({ itemId: 'nofile' }), alice)).body).to.deep.include({
      code: 'bad-request',
    });
    expect((await post('plain', alice, { 'content-type': 'text/plain' })).status).to.equal(415);
    expect(await control.items()).to.deep.equal([]);
    expect((await post(form({ itemId: 'mine' }, small), alice)).status).to.equal(201);
    const mallory = await createUserToken(SECRET, 'mallory');
    expect((await post(form({ itemId: 'mine' }, small), mallory)).body).to.deep.include({
      code: 'conflict',
    });
    const preflight = await fetch(`${base}/items`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).to.equal(204);
    expect(preflight.headers.get('access-control-allow-headers')).to.match(/authorization/);
    expect((await fetch(`${base}/items`)).status).to.equal(405);
  });

  it('takes its routes on an app server and leaves every other request to the app', async () => {
    await control.close();
    const app: Server = createServer((req, res) => res.end(`app ${req.url}`));
    control = createControlServer({ secret: SECRET, server: app });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const appBase = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    expect(await (await fetch(`${appBase}/hello`)).text()).to.equal('app /hello');
    const alice = await createUserToken(SECRET, 'alice');
    const r = await fetch(`${appBase}/items`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}` },
      body: form({ itemId: 'n' }, { name: 'n', type: 'text/plain', bytes: Buffer.from('x') }),
    });
    expect(r.status).to.equal(201);
    await control.close();
    expect(await (await fetch(`${appBase}/items`)).text()).to.equal('app /items');
    await new Promise((resolve) => app.close(resolve));
    control = createControlServer({ secret: SECRET });
  });
});
