import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDemo, type Demo } from '../../server/demo.js';
import { createReadToken, secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { ControlPeer, sha256 } from '../helpers/node-peers.js';
import { until } from '../helpers/until.js';

const SECRET = 'd'.repeat(32);

/** What `/demo-config.json` holds. */
interface DemoConfig {
  controlUrl: string;
  token: string;
  viewerToken: string;
  room: string;
  inlineMax: number;
  servers: { id: string; protocols: string[]; httpUrl: string; running: boolean }[];
}

/** Whether a TCP connection to the port is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The status of a request with a chosen `Host` header (which fetch does not let one set). */
function statusFor(url: string, headers: Record<string, string>, method = 'GET'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
    req.end();
  });
}

describe('demo (npm start)', () => {
  let dir: string;
  let demo: Demo;
  let config: DemoConfig;
  const peers: ControlPeer[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-demo-'));
    demo = await startDemo({ port: 0, dataDir: dir, secret: SECRET });
    config = (await (await fetch(new URL('/demo-config.json', demo.url))).json()) as DemoConfig;
  });

  after(async () => {
    for (const p of peers.splice(0)) p.close();
    await demo?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function connect(token: string): Promise<ControlPeer> {
    const peer = new ControlPeer(config.controlUrl);
    peers.push(peer);
    await peer.send({ type: 'hello', token });
    await peer.nextOf('welcome');
    return peer;
  }

  it('serves the page and a /demo-config.json with what the page needs', async () => {
    const page = await fetch(demo.url);
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.match(/^text\/html/);
    const html = await page.text();
    expect(html).to.include('<ws-uploader').and.include('/demo.js');
    for (const path of ['/demo.js', '/demo.css', '/vendor/hash-wasm.js']) {
      const res = await fetch(new URL(path, demo.url));
      expect(res.status, path).to.equal(200);
      await res.arrayBuffer();
    }
    // Only files of the page's folders, nothing above them.
    expect(await statusFor(new URL('/lib/..%2f..%2fpackage.json', demo.url).href, {})).to.equal(
      404,
    );

    expect(config.controlUrl).to.equal(demo.controlUrl);
    expect(config.controlUrl).to.match(/^ws:\/\/127\.0\.0\.1:\d+\/control$/);
    expect(config.token).to.equal(demo.token);
    expect(config.viewerToken).to.equal(demo.viewerToken);
    expect(config.viewerToken).to.not.equal(config.token);
    expect(config.room).to.equal('demo');
    expect(config.inlineMax).to.equal(64 * 1024);
    expect(config.servers.map((s) => [s.id, s.running])).to.deep.equal([
      ['upload-1', true],
      ['upload-2', true],
      ['upload-3', true],
    ]);
    expect(config).to.not.have.property('readTokens');
  });

  it('lists three upload servers that speak different protocol versions', async () => {
    const described: Record<string, string[]> = {};
    for (const s of config.servers) {
      const res = await fetch(new URL('/.well-known/ws-uploader', s.httpUrl));
      described[s.id] = ((await res.json()) as { protocols: string[] }).protocols;
      expect(described[s.id]).to.deep.equal(s.protocols);
    }
    expect(described['upload-1']).to.include.members(['dup/2', 'dup/1', 'http/1']);
    expect(described['upload-2']).to.deep.equal(['dup/1']);
    expect(described['upload-3']).to.deep.equal(['http/1']);
    // The control server lists them as they registered, protocols included.
    expect(
      demo.control
        .servers()
        .map((s) => [s.id, s.protocols])
        .sort(),
    ).to.deep.equal(Object.entries(described).sort());
  });

  it('lets the two users message each other in the demo room, and nowhere else', async () => {
    const uploader = await connect(config.token);
    const viewer = await connect(config.viewerToken);
    await viewer.send({ type: 'join', room: 'demo' });
    await uploader.send({ type: 'message', id: 'm1', to: { room: 'demo' }, body: 'hello' });
    expect(await uploader.nextOf('sent')).to.deep.include({ delivered: 1 });
    expect(await viewer.nextOf('message')).to.deep.include({ body: 'hello' });

    await uploader.send({ type: 'message', id: 'm2', to: { userId: 'demo-viewer' }, body: 'x' });
    expect(await uploader.nextOf('error')).to.deep.include({ code: 'forbidden', ref: 'm2' });
    await viewer.send({ type: 'join', room: 'elsewhere' });
    expect(await viewer.nextOf('error')).to.deep.include({ code: 'forbidden', ref: 'elsewhere' });

    // A small file the uploader published inline reaches the room through the app.
    const bytes = randomBytes(300);
    await uploader.send({
      type: 'publish',
      items: [
        {
          itemId: 'small-one',
          name: 'note.txt',
          size: bytes.length,
          mime: 'text/plain',
          kind: 'file',
          content: bytes.toString('base64'),
        },
      ],
    });
    await uploader.nextOf('completed');
    const relay = (token: string) =>
      fetch(new URL('/demo/items/small-one/relay', demo.url), {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}` },
      });
    expect((await relay(config.viewerToken)).status).to.equal(404); // not the viewer's item
    const res = await relay(config.token);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.deep.equal({ delivered: 1 });
    const message = await viewer.nextOf('message');
    expect(message.from).to.equal(undefined);
    expect(Buffer.from(message.item!.content!, 'base64').equals(bytes)).to.equal(true);
  });

  it('kills an upload server (its port refuses connections) and restarts it with what it stored', async () => {
    const server = config.servers.find((s) => s.id === 'upload-3')!;
    const port = Number(new URL(server.httpUrl).port);
    const bytes = new Uint8Array(randomBytes(200_000));
    const { token } = await signToken(secretKey(SECRET), 'c-test', uploadAudience(server.id), 60, {
      scope: 'upload',
      uid: 'demo-user',
    });
    const form = new FormData();
    for (const [k, v] of Object.entries({
      itemId: 'kept',
      size: String(bytes.length),
      sha256: sha256(bytes).hex,
    }))
      form.append(k, v);
    form.append('file', new Blob([bytes], { type: 'application/octet-stream' }), 'kept.bin');
    const posted = await fetch(`${server.httpUrl}/uploads`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
      body: form,
    });
    expect(posted.status).to.equal(201);

    const kill = await fetch(new URL('/demo/servers/upload-3/kill', demo.url), { method: 'POST' });
    expect(kill.status).to.equal(200);
    expect(await kill.json()).to.deep.include({ id: 'upload-3', running: false });
    expect(await accepts(port)).to.equal(false);
    await until(() => !demo.control.servers().some((s) => s.id === 'upload-3'));
    const listed = (await (
      await fetch(new URL('/demo-config.json', demo.url))
    ).json()) as DemoConfig;
    expect(listed.servers.find((s) => s.id === 'upload-3')?.running).to.equal(false);

    const restart = await fetch(new URL('/demo/servers/upload-3/restart', demo.url), {
      method: 'POST',
    });
    expect(restart.status).to.equal(200);
    expect(await restart.json()).to.deep.include({ id: 'upload-3', running: true });
    expect(await accepts(port)).to.equal(true);
    expect(demo.control.servers().map((s) => s.id)).to.include('upload-3');
    const read = await fetch(`${server.httpUrl}/files/kept`, {
      headers: {
        Authorization: `Bearer ${await createReadToken(SECRET, 'upload-3', { subject: 'test' })}`,
      },
    });
    expect(read.status).to.equal(200);
    expect(sha256(new Uint8Array(await read.arrayBuffer())).hex).to.equal(sha256(bytes).hex);

    expect(
      (await fetch(new URL('/demo/servers/upload-9/kill', demo.url), { method: 'POST' })).status,
    ).to.equal(404);
  });

  it('answers only its own host names, and no other site may press its buttons', async () => {
    const { host } = new URL(demo.url);
    expect(await statusFor(demo.url, { Host: host })).to.equal(200);
    expect(
      await statusFor(demo.url, { Host: `rebound.example:${new URL(demo.url).port}` }),
    ).to.equal(421);
    const kill = new URL('/demo/servers/upload-1/kill', demo.url).href;
    expect(await statusFor(kill, { Host: host, Origin: 'https://other.example' }, 'POST')).to.equal(
      403,
    );
    expect(await statusFor(kill, { Host: host }, 'GET')).to.equal(405);
    expect(demo.servers().every((s) => s.running)).to.equal(true);
  });
});
