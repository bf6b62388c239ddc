import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CLOSE } from '../../src/protocol/index.js';
import {
  createControlServer,
  createUserToken,
  type ControlServer,
  type ItemInfo,
  type TaskEvent,
} from '../../server/index.js';
import { secretKey, uploadAudience, verifyToken } from '../../server/tokens.js';
import { ControlPeer } from '../helpers/node-peers.js';

const SECRET = 's'.repeat(32);
const UPLOAD_SERVERS = [
  { id: 'up-1', url: 'ws://127.0.0.1:9001/dup', httpUrl: 'http://127.0.0.1:9001' },
  { id: 'up-2', url: 'ws://127.0.0.1:9002/dup', httpUrl: 'http://127.0.0.1:9002' },
];
const ITEM = {
  itemId: 'item-1',
  name: 'a.bin',
  size: 1000,
  mime: 'application/octet-stream',
  kind: 'file' as const,
};

describe('control server', () => {
  let control: ControlServer;
  let url: string;
  const peers: ControlPeer[] = [];
  const completed: ItemInfo[] = [];

  async function connect(): Promise<ControlPeer> {
    const peer = new ControlPeer(url);
    peers.push(peer);
    await peer.send({ type: 'hello', token: await createUserToken(SECRET, 'alice') });
    return peer;
  }

  beforeEach(async () => {
    completed.length = 0;
    control = createControlServer({
      secret: SECRET,
      uploadServers: UPLOAD_SERVERS,
      helloTimeoutMs: 300,
      probeWaitMs: 2000,
      onComplete: (item) => completed.push(item),
    });
    url = await control.listen(0);
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await control.close();
  });

  it('welcomes a user token with the upload servers and a token for each', async () => {
    const peer = await connect();
    const welcome = await peer.nextOf('welcome');
    expect(welcome.servers.map((s) => s.id)).to.deep.equal(['up-1', 'up-2']);
    expect(welcome.servers[0]!.protocols).to.deep.equal(['dup/2']);
    for (const s of welcome.servers) {
      const claims = await verifyToken(secretKey(SECRET), s.token, uploadAudience(s.id));
      expect(claims?.sub, s.id).to.equal(welcome.clientId);
      expect(
        await verifyToken(
          secretKey(SECRET),
          s.token,
          uploadAudience(s.id === 'up-1' ? 'up-2' : 'up-1'),
        ),
      ).to.equal(undefined);
      expect(s.tokenExpiresAt).to.be.greaterThan(Date.now());
    }
  });

  it('refuses a bad credential with auth-failed and close 4003', async () => {
    const peer = new ControlPeer(url);
    peers.push(peer);
    await peer.send({ type: 'hello', token: await createUserToken('x'.repeat(32), 'mallory') });
    expect(await peer.next()).to.deep.include({ type: 'error', code: 'auth-failed' });
    expect((await peer.closed).code).to.equal(CLOSE.AUTH_FAILED);
  });

  it('closes with 4001 when no hello comes in time', async () => {
    const peer = new ControlPeer(url);
    peers.push(peer);
    expect(await peer.next()).to.deep.include({ type: 'error', code: 'auth-timeout' });
    expect((await peer.closed).code).to.equal(CLOSE.AUTH_TIMEOUT);
  });

  it('refuses messages before hello', async () => {
    const peer = new ControlPeer(url);
    peers.push(peer);
    await peer.send({ type: 'publish', items: [ITEM] });
    expect(await peer.next()).to.deep.include({ type: 'error', code: 'not-authenticated' });
    expect((await peer.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('answers a malformed message with bad-message and close 4002', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.sendRaw('{"type":"publish","items":"nope"}');
    expect(await peer.next()).to.deep.include({ type: 'error', code: 'bad-message' });
    expect((await peer.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('sends a transmit request for a published item to the server with the lowest RTT', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({
      type: 'probe',
      results: [
        { serverId: 'up-1', rttMs: 20 },
        { serverId: 'up-2', rttMs: 3 },
      ],
    });
    await peer.send({ type: 'publish', items: [ITEM] });
    expect(await peer.nextOf('published')).to.deep.equal({
      type: 'published',
      itemIds: ['item-1'],
    });
    const transmit = await peer.nextOf('transmit');
    expect(transmit.itemId).to.equal('item-1');
    expect(transmit.ranges).to.deep.equal([{ start: 0, end: 1000, serverId: 'up-2' }]);
    expect((await control.items())[0]).to.deep.include({ state: 'uploading', userId: 'alice' });
  });

  it('sends an item published again by a new page back to the servers of its last plan', async () => {
    const first = await connect();
    await first.nextOf('welcome');
    await first.send({
      type: 'probe',
      results: [
        { serverId: 'up-1', rttMs: 20 },
        { serverId: 'up-2', rttMs: 3 },
      ],
    });
    await first.send({ type: 'publish', items: [ITEM] });
    expect((await first.nextOf('transmit')).ranges).to.deep.equal([
      { start: 0, end: 1000, serverId: 'up-2' },
    ]);
    first.close();
    // The reloaded page measures up-1 as the nearer one now; the item still goes to up-2, which
    // holds some of it.
    const second = await connect();
    await second.nextOf('welcome');
    await second.send({
      type: 'probe',
      results: [
        { serverId: 'up-1', rttMs: 1 },
        { serverId: 'up-2', rttMs: 30 },
      ],
    });
    await second.send({ type: 'publish', items: [ITEM] });
    expect((await second.nextOf('transmit')).ranges).to.deep.equal([
      { start: 0, end: 1000, serverId: 'up-2' },
    ]);
    // A new item is planned afresh.
    await second.send({ type: 'publish', items: [{ ...ITEM, itemId: 'item-2' }] });
    expect((await second.nextOf('transmit')).ranges).to.deep.equal([
      { start: 0, end: 1000, serverId: 'up-1' },
    ]);
  });

  it('waits for a probe of every server before planning', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({ type: 'probe', results: [{ serverId: 'up-1', rttMs: 20 }] });
    await peer.send({ type: 'publish', items: [ITEM] });
    await peer.nextOf('published');
    await peer.send({ type: 'probe', results: [{ serverId: 'up-2', rttMs: 3 }] });
    expect((await peer.nextOf('transmit')).ranges[0]!.serverId).to.equal('up-2');
  });

  it('stores an empty item at once and answers a re-published stored item with completed', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({ type: 'publish', items: [{ ...ITEM, size: 0 }] });
    expect(await peer.nextOf('published')).to.deep.equal({
      type: 'published',
      itemIds: ['item-1'],
    });
    const empty = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    expect(await peer.next()).to.deep.equal({
      type: 'completed',
      itemId: 'item-1',
      sha256: empty,
      servers: [],
    });
    await peer.send({ type: 'publish', items: [{ ...ITEM, size: 0 }] });
    await peer.nextOf('published');
    expect(await peer.next()).to.deep.equal({
      type: 'completed',
      itemId: 'item-1',
      sha256: empty,
      servers: [],
    });
    expect(completed).to.have.length(1);
  });

  it('plans without probes after the probe wait', async () => {
    await control.close();
    control = createControlServer({
      secret: SECRET,
      uploadServers: UPLOAD_SERVERS,
      probeWaitMs: 50,
    });
    url = await control.listen(0);
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({ type: 'publish', items: [ITEM] });
    const transmit = await peer.nextOf('transmit');
    expect(transmit.ranges).to.have.length(1);
  });

  it('records completion, answers completed and calls onComplete', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({ type: 'probe', results: [{ serverId: 'up-1', rttMs: 1 }] });
    await peer.send({ type: 'publish', items: [ITEM] });
    const { taskId } = await peer.nextOf('transmit');
    const sha256 = 'cd'.repeat(32);
    await peer.send({ type: 'complete', taskId, itemId: 'item-1', sha256, servers: ['up-1'] });
    expect(await peer.nextOf('completed')).to.deep.equal({
      type: 'completed',
      itemId: 'item-1',
      sha256,
      servers: ['up-1'],
    });
    expect(completed).to.have.length(1);
    expect(completed[0]).to.deep.include({ state: 'stored', sha256, servers: ['up-1'] });
  });

  it('refuses completion of a task it did not send with unknown-task', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({
      type: 'complete',
      taskId: 'nope',
      itemId: 'item-1',
      sha256: 'cd'.repeat(32),
      servers: [],
    });
    expect(await peer.nextOf('error')).to.deep.include({ code: 'unknown-task' });
    expect(completed).to.have.length(0);
  });

  it('refuses an item over the size limit with too-large', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({ type: 'publish', items: [{ ...ITEM, size: 500 * 1024 * 1024 + 1 }] });
    expect(await peer.nextOf('error')).to.deep.include({ code: 'too-large', ref: 'item-1' });
    expect(await peer.nextOf('published')).to.deep.equal({ type: 'published', itemIds: [] });
  });

  it("refuses another user's item id with conflict", async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({ type: 'publish', items: [ITEM] });
    await peer.nextOf('published');
    const bob = new ControlPeer(url);
    peers.push(bob);
    await bob.send({ type: 'hello', token: await createUserToken(SECRET, 'bob') });
    await bob.nextOf('welcome');
    await bob.send({ type: 'publish', items: [ITEM] });
    expect(await bob.nextOf('error')).to.deep.include({ code: 'conflict', ref: 'item-1' });
  });

  it('lets a browser resume its session after a reconnect and complete its task', async () => {
    const first = await connect();
    const welcome = await first.nextOf('welcome');
    await first.send({ type: 'publish', items: [ITEM] });
    const { taskId } = await first.nextOf('transmit');
    first.close();
    await first.closed;

    const again = new ControlPeer(url);
    peers.push(again);
    await again.send({
      type: 'hello',
      token: await createUserToken(SECRET, 'alice'),
      sessionId: welcome.sessionId,
    });
    const resumed = await again.nextOf('welcome');
    expect(resumed.clientId).to.equal(welcome.clientId);
    expect(resumed.sessionId).to.equal(welcome.sessionId);
    // Publishing an item that is being uploaded does not start a second upload.
    await again.send({ type: 'publish', items: [ITEM] });
    await again.nextOf('published');
    const sha256 = 'ef'.repeat(32);
    await again.send({ type: 'complete', taskId, itemId: 'item-1', sha256, servers: ['up-1'] });
    // The next message answers the completion: no second transmit came for the re-published item.
    const next = await again.next();
    expect(next).to.deep.include({ type: 'completed', itemId: 'item-1', sha256 });
    expect(completed).to.have.length(1);
  });

  it("does not resume another user's session", async () => {
    const first = await connect();
    const welcome = await first.nextOf('welcome');
    first.close();
    await first.closed;
    const bob = new ControlPeer(url);
    peers.push(bob);
    await bob.send({
      type: 'hello',
      token: await createUserToken(SECRET, 'bob'),
      sessionId: welcome.sessionId,
    });
    const w = await bob.nextOf('welcome');
    expect(w.clientId).to.not.equal(welcome.clientId);
    expect(w.sessionId).to.not.equal(welcome.sessionId);
  });

  it('renews upload tokens before they expire', async () => {
    await control.close();
    control = createControlServer({
      secret: SECRET,
      uploadServers: UPLOAD_SERVERS,
      uploadTokenTtlSeconds: 2,
    });
    url = await control.listen(0);
    const peer = await connect();
    const welcome = await peer.nextOf('welcome');
    const renewed = await peer.nextOf('servers', 3000);
    expect(renewed.servers.map((s) => s.id)).to.deep.equal(['up-1', 'up-2']);
    for (const s of renewed.servers) {
      expect((await verifyToken(secretKey(SECRET), s.token, uploadAudience(s.id)))?.sub).to.equal(
        welcome.clientId,
      );
    }
  });

  it('records the progress a browser reports', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({
      type: 'probe',
      results: UPLOAD_SERVERS.map((s) => ({ serverId: s.id, rttMs: 1 })),
    });
    await peer.send({ type: 'publish', items: [ITEM] });
    const { taskId } = await peer.nextOf('transmit');
    await peer.send({ type: 'progress', taskId, itemId: 'item-1', bytesStored: 400 });
    await peer.send({ type: 'progress', taskId, itemId: 'item-1', bytesStored: 300 });
    await new Promise((r) => setTimeout(r, 50));
    expect((await control.items())[0]).to.deep.include({ state: 'uploading', bytesStored: 400 });
  });

  it('tells onTask each step of a task: sent, accepted, progress, complete; a stranger accept is ignored', async () => {
    await control.close();
    const events: TaskEvent[] = [];
    control = createControlServer({
      secret: SECRET,
      uploadServers: UPLOAD_SERVERS,
      probeWaitMs: 0,
      onTask: (e) => events.push(e),
    });
    url = await control.listen(0);
    const peer = await connect();
    const { clientId } = await peer.nextOf('welcome');
    const other = await connect();
    await other.nextOf('welcome');
    await peer.send({ type: 'publish', items: [ITEM] });
    const { taskId } = await peer.nextOf('transmit');
    await other.send({ type: 'accept', taskId, itemId: 'item-1' });
    await peer.send({ type: 'accept', taskId, itemId: 'item-1' });
    await peer.send({ type: 'progress', taskId, itemId: 'item-1', bytesStored: 10 });
    await peer.send({
      type: 'complete',
      taskId,
      itemId: 'item-1',
      sha256: 'a'.repeat(64),
      servers: ['up-1'],
    });
    await peer.nextOf('completed');
    const base = { taskId, itemId: 'item-1', clientId };
    expect(events).to.deep.equal([
      { type: 'sent', ...base },
      { type: 'accepted', ...base },
      { type: 'progress', ...base, bytesStored: 10 },
      { type: 'complete', ...base },
    ]);
  });

  it('asks for an item on request with requestTransmit', async () => {
    const peer = await connect();
    await peer.nextOf('welcome');
    await peer.send({ type: 'publish', items: [ITEM] });
    await peer.nextOf('transmit');
    const taskId = await control.requestTransmit(
      'item-1',
      [{ start: 100, end: 200, serverId: 'up-1' }],
      5,
    );
    const t = await peer.nextOf('transmit');
    expect(t).to.deep.equal({
      type: 'transmit',
      taskId,
      itemId: 'item-1',
      ranges: [{ start: 100, end: 200, serverId: 'up-1' }],
      priority: 5,
      reason: 'request',
    });
    expect(
      await control
        .requestTransmit('item-1', [{ start: 900, end: 1200, serverId: 'up-1' }])
        .catch((e: Error) => e.message),
    ).to.match(/item has 1000/);
    expect(await control.requestTransmit('nope').catch((e: Error) => e.message)).to.match(
      /unknown item/,
    );
  });

  it('attaches to an existing HTTP server without taking its other requests', async () => {
    const app: Server = createServer((_req, res) => res.end('app'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    const attached = createControlServer({
      server: app,
      secret: SECRET,
      uploadServers: UPLOAD_SERVERS,
      path: '/ws/control',
    });
    try {
      const { port } = app.address() as AddressInfo;
      expect(await (await fetch(`http://127.0.0.1:${port}/api`)).text()).to.equal('app');
      const peer = new ControlPeer(`ws://127.0.0.1:${port}/ws/control`);
      peers.push(peer);
      await peer.send({ type: 'hello', token: await createUserToken(SECRET, 'alice') });
      expect((await peer.nextOf('welcome')).servers).to.have.length(2);
    } finally {
      await attached.close();
      app.closeAllConnections();
      await new Promise<void>((r) => app.close(() => r()));
    }
  });

  it('throws a TypeError for duplicate or malformed upload servers', () => {
    expect(() =>
      createControlServer({
        secret: SECRET,
        uploadServers: [UPLOAD_SERVERS[0]!, UPLOAD_SERVERS[0]!],
      }),
    ).to.throw(TypeError, /twice/);
    expect(() =>
      createControlServer({
        secret: SECRET,
        uploadServers: [{ id: 'x', url: 'http://a', httpUrl: 'http://a' }],
      }),
    ).to.throw(TypeError, /ws\(s\)/);
  });
});
