import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import {
  CLOSE,
  decodeRegistryServerMessage,
  encodeRegistryMessage,
  SUBPROTOCOL_DUP_1,
  SUBPROTOCOL_REGISTRY_1,
  toHex,
  type RegistryServerMessage,
} from '../../src/protocol/index.js';
import {
  createControlServer,
  createReadToken,
  createRegistryToken,
  createUploadServer,
  createUserToken,
  DEMAND_PRIORITY,
  type ControlServer,
  type UploadServer,
} from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { ControlPeer, Dup2Peer, sha256 } from '../helpers/node-peers.js';
import { until } from '../helpers/until.js';

const SECRET = 'r'.repeat(32);

/** A raw registry link: sends `register`, returns the first answer and the close code. */
async function rawRegister(
  url: string,
  register: Record<string, unknown>,
): Promise<{ answer: RegistryServerMessage; closed: Promise<number>; ws: WebSocket }> {
  const ws = new WebSocket(url, SUBPROTOCOL_REGISTRY_1);
  const closed = new Promise<number>((resolve) => ws.once('close', resolve));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const answer = new Promise<RegistryServerMessage>((resolve) =>
    ws.once('message', (data) => resolve(decodeRegistryServerMessage(data.toString()))),
  );
  ws.send(JSON.stringify(register));
  return { answer: await answer, closed, ws };
}

describe('registry link (upload servers that connect out to the control server)', () => {
  let dir: string;
  let control: ControlServer;
  let controlUrl: string;
  let registryUrl: string;
  const uploads: UploadServer[] = [];
  const peers: (ControlPeer | Dup2Peer)[] = [];
  const demands: { serverId: string; itemId: string }[] = [];

  async function startUpload(
    id: string,
    publicUrl?: string,
  ): Promise<{ http: string; ws: string }> {
    const server = createUploadServer({
      id,
      secret: SECRET,
      dataDir: join(dir, id),
      controlUrl: registryUrl,
      holdMs: 3000,
      ...(publicUrl ? { publicUrl } : {}),
    });
    uploads.push(server);
    return server.listen(0);
  }

  async function browser(): Promise<{ peer: ControlPeer; clientId: string }> {
    const peer = new ControlPeer(controlUrl);
    peers.push(peer);
    await peer.send({ type: 'hello', token: await createUserToken(SECRET, 'alice') });
    const welcome = await peer.nextOf('welcome');
    return { peer, clientId: welcome.clientId };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wsu-registry-'));
    demands.length = 0;
    control = createControlServer({
      secret: SECRET,
      probeWaitMs: 0,
      verifyWaitMs: 500,
      onDemand: (d) => demands.push({ serverId: d.serverId, itemId: d.itemId }),
    });
    controlUrl = await control.listen(0);
    registryUrl = controlUrl.replace(/\/control$/, '/registry');
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    for (const u of uploads.splice(0)) await u.close();
    await control.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists a registered server at the address it is seen from and pushes the list to browsers; it leaves when it stops', async () => {
    const { peer } = await browser();
    const urls = await startUpload('up-1');
    const pushed = await peer.nextOf('servers');
    expect(pushed.servers.map((s) => [s.id, s.url, s.httpUrl])).to.deep.equal([
      ['up-1', urls.ws, urls.http],
    ]);
    expect(pushed.servers[0]!.protocols).to.include('dup/2');
    expect(control.servers().map((s) => s.id)).to.deep.equal(['up-1']);
    await uploads.pop()!.close();
    const after = await peer.nextOf('servers');
    expect(after.servers).to.deep.equal([]);
    expect(control.servers()).to.deep.equal([]);
  });

  it('uses the URL a server advertises with publicUrl', async () => {
    await startUpload('up-1', 'https://up-1.example/');
    await until(() => control.servers().length === 1);
    expect(control.servers()[0]).to.deep.include({
      id: 'up-1',
      url: 'wss://up-1.example/dup',
      httpUrl: 'https://up-1.example',
    });
  });

  it('records the peerUrl a server registers with for the other upload servers, and never lists it to browsers', async () => {
    const { peer } = await browser();
    const server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: join(dir, 'up-1'),
      controlUrl: registryUrl,
      publicUrl: 'https://up-1.example',
      peerUrl: 'http://10.0.0.5:8081/',
    });
    uploads.push(server);
    await server.listen(0);
    const pushed = await peer.nextOf('servers');
    expect(pushed.servers).to.have.length(1);
    expect(JSON.stringify(pushed.servers)).not.to.include('10.0.0.5');
    expect(control.servers()[0]).to.deep.include({
      httpUrl: 'https://up-1.example',
      peerUrl: 'http://10.0.0.5:8081',
    });
    expect(() =>
      createUploadServer({
        id: 'up-2',
        secret: SECRET,
        dataDir: join(dir, 'up-2'),
        controlUrl: registryUrl,
        peerUrl: '10.0.0.5:8081',
      }),
    ).to.throw(TypeError, /peerUrl/);
  });

  it('completes an item only when the linked server verified it; a browser that lies about the digest gets digest-mismatch', async () => {
    const urls = await startUpload('up-1');
    await until(() => control.servers().length === 1);
    const { peer } = await browser();
    const bytes = randomBytes(4096);
    const digest = sha256(bytes).hex;
    for (const [itemId, reported] of [
      ['honest', digest],
      ['liar', 'f'.repeat(64)],
    ] as const) {
      await peer.send({
        type: 'publish',
        items: [{ itemId, name: 'a', size: bytes.length, mime: '', kind: 'file' }],
      });
      const task = await peer.nextOf('transmit');
      expect(task.ranges).to.deep.equal([{ start: 0, end: bytes.length, serverId: 'up-1' }]);
      const dup = new Dup2Peer(urls.ws);
      peers.push(dup);
      await dup.send({ type: 'hello', token: await uploadToken('up-1') });
      expect((await dup.next()).type).to.equal('welcome');
      await dup.open(1, itemId, bytes.length);
      expect((await dup.next()).type).to.equal('opened');
      await dup.data(1, 0, bytes);
      expect((await dup.next()).type).to.equal('ack');
      await dup.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
      expect((await dup.next()).type).to.equal('complete');
      await peer.send({
        type: 'complete',
        taskId: task.taskId,
        itemId,
        sha256: reported,
        servers: ['up-1'],
      });
      if (reported === digest) {
        expect(await peer.nextOf('completed')).to.deep.include({ itemId, sha256: digest });
      } else {
        expect(await peer.nextOf('error')).to.deep.include({
          code: 'digest-mismatch',
          ref: itemId,
        });
      }
    }
    const states = Object.fromEntries((await control.items()).map((i) => [i.meta.itemId, i.state]));
    expect(states).to.deep.equal({ honest: 'stored', liar: 'failed' });
  });

  it('completes an item sent over http/1 (a multipart POST, or PUT parts with Repr-Digest) once the linked server reports it, as over dup/2', async () => {
    const urls = await startUpload('up-1');
    await until(() => control.servers().length === 1);
    const { peer } = await browser();
    const bytes = randomBytes(5000);
    const digest = sha256(bytes).hex;
    const auth = { Authorization: `Bearer ${await uploadToken('up-1')}` };
    for (const itemId of ['posted', 'parts']) {
      await peer.send({
        type: 'publish',
        items: [{ itemId, name: 'a', size: bytes.length, mime: '', kind: 'file' }],
      });
      const task = await peer.nextOf('transmit');
      let answer: Response;
      if (itemId === 'posted') {
        const form = new FormData();
        form.append('itemId', itemId);
        form.append('size', String(bytes.length));
        form.append('sha256', digest);
        form.append('file', new Blob([bytes]), 'a');
        answer = await fetch(`${urls.http}/uploads`, { method: 'POST', headers: auth, body: form });
      } else {
        const put = (first: number, last: number, headers: Record<string, string> = {}) =>
          fetch(`${urls.http}/uploads/${itemId}`, {
            method: 'PUT',
            headers: { ...auth, 'Content-Range': `bytes ${first}-${last}/5000`, ...headers },
            body: bytes.subarray(first, last + 1),
          });
        expect((await put(0, 2999)).status).to.equal(200);
        const base64 = Buffer.from(sha256(bytes).bytes).toString('base64');
        answer = await put(3000, 4999, { 'Repr-Digest': `sha-256=:${base64}:` });
      }
      expect(await answer.json(), itemId).to.deep.include({ complete: true, sha256: digest });
      await peer.send({
        type: 'complete',
        taskId: task.taskId,
        itemId,
        sha256: digest,
        servers: ['up-1'],
      });
      expect(await peer.nextOf('completed'), itemId).to.deep.include({ itemId, sha256: digest });
    }
    const items = await control.items();
    expect(items.map((i) => [i.meta.itemId, i.state, i.sha256])).to.deep.equal([
      ['posted', 'stored', digest],
      ['parts', 'stored', digest],
    ]);
  });

  it('records an item completed without a digest (dup/2 FINISH of 5 bytes, dup/1 finish without sha256, http/1 Upload-Complete: ?1 or a POST without sha256) with the SHA-256 the upload server computed and reported', async () => {
    const urls = await startUpload('up-1');
    await until(() => control.servers().length === 1);
    const { peer } = await browser();
    const bytes = new Uint8Array(randomBytes(6000));
    const digest = sha256(bytes).hex;
    const token = await uploadToken('up-1');
    const auth = { Authorization: `Bearer ${token}` };
    /** Sends the item over one protocol without a digest; resolves with the server's digest. */
    const send: Record<string, (itemId: string) => Promise<string>> = {
      'dup/2': async (itemId) => {
        const dup = new Dup2Peer(urls.ws);
        peers.push(dup);
        await dup.send({ type: 'hello', token });
        expect((await dup.next()).type).to.equal('welcome');
        await dup.open(1, itemId, bytes.length);
        expect((await dup.next()).type).to.equal('opened');
        await dup.data(1, 3000, bytes.subarray(3000));
        await dup.data(1, 0, bytes.subarray(0, 3000));
        expect((await dup.next()).type).to.equal('ack');
        expect((await dup.next()).type).to.equal('ack');
        await dup.sendRaw(new Uint8Array([0x04, 0, 0, 0, 1]));
        const complete = await dup.next();
        expect(complete.type).to.equal('complete');
        return toHex((complete as { sha256: Uint8Array }).sha256);
      },
      'dup/1': async (itemId) => {
        const ws = new WebSocket(urls.ws, SUBPROTOCOL_DUP_1);
        const inbox: Record<string, unknown>[] = [];
        let wake = (): void => undefined;
        ws.on('message', (data) => {
          inbox.push(JSON.parse(String(data)) as Record<string, unknown>);
          wake();
        });
        const next = async (): Promise<Record<string, unknown>> => {
          while (inbox.length === 0) await new Promise<void>((r) => (wake = r));
          return inbox.shift()!;
        };
        await new Promise((resolve) => ws.once('open', resolve));
        try {
          ws.send(JSON.stringify({ type: 'hello', token }));
          expect((await next())['type']).to.equal('welcome');
          ws.send(JSON.stringify({ type: 'open', itemId, size: bytes.length }));
          expect((await next())['type']).to.equal('opened');
          ws.send(bytes);
          expect((await next())['type']).to.equal('ack');
          ws.send('{"type":"finish"}');
          const complete = await next();
          expect(complete['type']).to.equal('complete');
          return complete['sha256'] as string;
        } finally {
          ws.close();
        }
      },
      'http/1 PUT': async (itemId) => {
        const put = (first: number, last: number, headers: Record<string, string> = {}) =>
          fetch(`${urls.http}/uploads/${itemId}`, {
            method: 'PUT',
            headers: { ...auth, 'Content-Range': `bytes ${first}-${last}/6000`, ...headers },
            body: bytes.subarray(first, last + 1),
          });
        expect((await put(0, 5999)).status).to.equal(200);
        const answer = await put(5999, 5999, { 'Upload-Complete': '?1' });
        const body = (await answer.json()) as { complete: boolean; sha256: string };
        expect(body.complete).to.equal(true);
        return body.sha256;
      },
      'http/1 POST': async (itemId) => {
        const form = new FormData();
        form.append('itemId', itemId);
        form.append('size', String(bytes.length));
        form.append('file', new Blob([bytes]), 'a');
        const answer = await fetch(`${urls.http}/uploads`, {
          method: 'POST',
          headers: auth,
          body: form,
        });
        expect(answer.status).to.equal(201);
        return ((await answer.json()) as { sha256: string }).sha256;
      },
    };
    const itemIds = Object.keys(send).map((name) => name.replace(/\W+/g, '-'));
    for (const [n, [name, upload]] of Object.entries(send).entries()) {
      const itemId = itemIds[n]!;
      await peer.send({
        type: 'publish',
        items: [{ itemId, name: 'a', size: bytes.length, mime: '', kind: 'file' }],
      });
      const task = await peer.nextOf('transmit');
      expect(task.ranges, name).to.deep.equal([{ start: 0, end: 6000, serverId: 'up-1' }]);
      const computed = await upload(itemId);
      expect(computed, name).to.equal(digest);
      // The browser reports the digest the server gave it; the server's own report decides.
      await peer.send({
        type: 'complete',
        taskId: task.taskId,
        itemId,
        sha256: computed,
        servers: ['up-1'],
      });
      expect(await peer.nextOf('completed'), name).to.deep.include({ itemId, sha256: digest });
    }
    const items = await control.items();
    expect(items.map((i) => [i.meta.itemId, i.state, i.sha256])).to.deep.equal(
      itemIds.map((itemId) => [itemId, 'stored', digest]),
    );
  });

  it('fails an item with unverified when the browser says complete but the server never stored it', async () => {
    await startUpload('up-1');
    await until(() => control.servers().length === 1);
    const { peer } = await browser();
    await peer.send({
      type: 'publish',
      items: [{ itemId: 'ghost', name: 'a', size: 10, mime: '', kind: 'file' }],
    });
    const task = await peer.nextOf('transmit');
    await peer.send({
      type: 'complete',
      taskId: task.taskId,
      itemId: 'ghost',
      sha256: 'a'.repeat(64),
      servers: ['up-1'],
    });
    expect(await peer.nextOf('error', 3000)).to.deep.include({ code: 'unverified', ref: 'ghost' });
    expect((await control.items())[0]!.state).to.equal('failed');
  });

  it('turns a reader waiting for missing bytes into a top-priority transmit to the holder, once', async () => {
    const urls = await startUpload('up-1');
    await until(() => control.servers().length === 1);
    const { peer } = await browser();
    await peer.send({
      type: 'publish',
      items: [{ itemId: 'movie', name: 'm.mp4', size: 10_000, mime: 'video/mp4', kind: 'file' }],
    });
    await peer.nextOf('transmit');
    // The item exists on the server with nothing stored: open it over dup/2.
    const dup = new Dup2Peer(urls.ws);
    peers.push(dup);
    await dup.send({ type: 'hello', token: await uploadToken('up-1') });
    await dup.next();
    await dup.open(1, 'movie', 10_000);
    await dup.next();
    const readToken = await createReadToken(SECRET, 'up-1', { subject: 'reader', ttlSeconds: 60 });
    const reads = [0, 1].map(
      () =>
        new Promise<number>((resolve) => {
          const req = request(
            `${urls.http}/files/movie`,
            { headers: { range: 'bytes=5000-5999', authorization: `Bearer ${readToken}` } },
            (res) => {
              res.resume();
              resolve(res.statusCode!);
            },
          );
          req.on('error', () => resolve(0));
          req.end();
        }),
    );
    const task = await peer.nextOf('transmit');
    expect(task.priority).to.equal(DEMAND_PRIORITY);
    expect(task.ranges).to.deep.equal([{ start: 5000, end: 6000, serverId: 'up-1' }]);
    expect(demands.length).to.be.greaterThan(0);
    expect(demands[0]).to.deep.equal({ serverId: 'up-1', itemId: 'movie' });
    // The second reader's demand is already covered by the pending task: no second transmit.
    expect(
      await peer.next(300).then(
        (m) => m.type,
        () => 'nothing',
      ),
    ).to.equal('nothing');
    await peer.send({ type: 'accept', taskId: task.taskId, itemId: 'movie' });
    const payload = randomBytes(1000);
    await dup.data(1, 5000, payload);
    expect((await dup.next()).type).to.equal('ack');
    expect(await Promise.all(reads)).to.deep.equal([206, 206]);
  });

  it('sends a small item as one multipart POST (protocol http/1) and switches it to parts when a reader waits', async () => {
    await control.close();
    control = createControlServer({ secret: SECRET, probeWaitMs: 0, multipartMax: 64 * 1024 });
    controlUrl = await control.listen(0);
    registryUrl = controlUrl.replace(/\/control$/, '/registry');
    const urls = await startUpload('up-1');
    await until(() => control.servers().length === 1);
    const { peer } = await browser();
    await peer.send({
      type: 'publish',
      items: [
        { itemId: 'small', name: 's', size: 50_000, mime: 'video/mp4', kind: 'file' },
        { itemId: 'large', name: 'l', size: 100_000, mime: '', kind: 'file' },
      ],
    });
    const tasks = [await peer.nextOf('transmit'), await peer.nextOf('transmit')];
    const small = tasks.find((t) => t.itemId === 'small')!;
    expect(small.protocol).to.equal('http/1');
    expect(tasks.find((t) => t.itemId === 'large')!.protocol).to.equal(undefined);
    // The POST has not come yet; a reader asks for bytes of the item.
    const dup = new Dup2Peer(urls.ws);
    peers.push(dup);
    await dup.send({ type: 'hello', token: await uploadToken('up-1') });
    await dup.next();
    await dup.open(1, 'small', 50_000);
    await dup.next();
    const readToken = await createReadToken(SECRET, 'up-1', { subject: 'reader', ttlSeconds: 60 });
    const read = new Promise<number>((resolve) => {
      const req = request(
        `${urls.http}/files/small`,
        { headers: { range: 'bytes=0-99', authorization: `Bearer ${readToken}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', () => resolve(0));
      req.end();
    });
    const next = [await peer.next(), await peer.next(), await peer.next()];
    expect(next.map((m) => m.type)).to.deep.equal(['cancel', 'transmit', 'transmit']);
    expect(next[0]).to.deep.include({ taskId: small.taskId, itemId: 'small' });
    expect(next[1]).to.deep.include({ reason: 'demand', priority: DEMAND_PRIORITY });
    expect(next[1]).to.not.have.property('protocol');
    expect(next[2]).to.deep.include({
      reason: 'replan',
      ranges: [{ start: 0, end: 50_000, serverId: 'up-1' }],
    });
    await dup.data(1, 0, randomBytes(1000));
    expect((await dup.next()).type).to.equal('ack');
    expect(await read).to.equal(206);
  });

  it('re-plans a task whose server dies onto a live one, and plans a waiting item when a server joins', async () => {
    const { peer } = await browser();
    await peer.send({
      type: 'publish',
      items: [{ itemId: 'early', name: 'e', size: 100, mime: '', kind: 'file' }],
    });
    expect(await peer.nextOf('error')).to.deep.include({ code: 'no-servers', ref: 'early' });
    await startUpload('up-1');
    const first = await peer.nextOf('transmit');
    expect(first).to.deep.include({ itemId: 'early', reason: 'publish' });
    expect(first.ranges).to.deep.equal([{ start: 0, end: 100, serverId: 'up-1' }]);
    await startUpload('up-2');
    await until(() => control.servers().length === 2);
    await peer.send({
      type: 'probe',
      results: [
        { serverId: 'up-1', rttMs: 1 },
        { serverId: 'up-2', rttMs: 50 },
      ],
    });
    await peer.send({
      type: 'publish',
      items: [{ itemId: 'big', name: 'b', size: 5000, mime: '', kind: 'file' }],
    });
    const task = await peer.nextOf('transmit');
    expect(task.ranges).to.deep.equal([{ start: 0, end: 5000, serverId: 'up-1' }]);
    await uploads[0]!.close();
    const servers = await peer.nextOf('servers');
    expect(servers.servers.map((s) => s.id)).to.deep.equal(['up-2']);
    const next = [await peer.next(), await peer.next(), await peer.next(), await peer.next()];
    const cancels = next.flatMap((m) => (m.type === 'cancel' ? [m] : []));
    expect(cancels.map((c) => c.taskId).sort()).to.deep.equal([first.taskId, task.taskId].sort());
    const moved = next.flatMap((m) => (m.type === 'transmit' ? [m] : []));
    expect(moved.map((t) => [t.itemId, t.reason, t.ranges]).sort()).to.deep.equal([
      ['big', 'replan', [{ start: 0, end: 5000, serverId: 'up-2' }]],
      ['early', 'replan', [{ start: 0, end: 100, serverId: 'up-2' }]],
    ]);
  });

  it('keeps a server that sends heartbeats and drops one that falls silent within three heartbeats', async () => {
    await control.close();
    control = createControlServer({ secret: SECRET, probeWaitMs: 0, heartbeatMs: 200 });
    controlUrl = await control.listen(0);
    registryUrl = controlUrl.replace(/\/control$/, '/registry');
    const { peer } = await browser();
    const link = await rawRegister(registryUrl, {
      type: 'register',
      token: await createRegistryToken(SECRET, 'quiet'),
      id: 'quiet',
      protocols: ['dup/2'],
      port: 4321,
    });
    expect(link.answer).to.deep.include({ type: 'registered', heartbeatMs: 200 });
    expect((await peer.nextOf('servers')).servers.map((s) => s.id)).to.deep.equal(['quiet']);
    // A second of heartbeats: still listed.
    for (let i = 0; i < 10; i++) {
      link.ws.send(encodeRegistryMessage({ type: 'heartbeat' }));
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(control.servers().map((s) => s.id)).to.deep.equal(['quiet']);
    const silentSince = Date.now();
    const gone = await peer.nextOf('servers', 3000);
    expect(gone.servers).to.deep.equal([]);
    // Not before its three heartbeats (600 ms) have passed since the last one, which went about
    // 100 ms before the mark; 50 ms for timers firing a little early or late (it saw 498 once).
    // The upper bound is the wait above.
    expect(Date.now() - silentSince).to.be.at.least(450);
    await link.closed;
  });

  it('refuses a registration with a wrong token (auth-failed, 4003) or without an endpoint (no-endpoint)', async () => {
    const bad = await rawRegister(registryUrl, {
      type: 'register',
      token: await createRegistryToken('x'.repeat(32), 'up-9'),
      id: 'up-9',
      protocols: ['dup/2'],
      port: 1234,
    });
    expect(bad.answer).to.deep.include({ type: 'error', code: 'auth-failed' });
    expect(await bad.closed).to.equal(CLOSE.AUTH_FAILED);
    const other = await rawRegister(registryUrl, {
      type: 'register',
      token: await createRegistryToken(SECRET, 'up-8'),
      id: 'up-9',
      protocols: ['dup/2'],
      port: 1234,
    });
    expect(other.answer).to.deep.include({ type: 'error', code: 'auth-failed' });
    const nowhere = await rawRegister(registryUrl, {
      type: 'register',
      token: await createRegistryToken(SECRET, 'up-9'),
      id: 'up-9',
      protocols: ['dup/2'],
    });
    expect(nowhere.answer).to.deep.include({ type: 'error', code: 'no-endpoint' });
    expect(control.servers()).to.deep.equal([]);
    const good = await rawRegister(registryUrl, {
      type: 'register',
      token: await createRegistryToken(SECRET, 'up-9'),
      id: 'up-9',
      protocols: ['dup/2'],
      port: 1234,
    });
    expect(good.answer).to.deep.include({ type: 'registered', url: 'ws://127.0.0.1:1234/dup' });
    good.ws.send(encodeRegistryMessage({ type: 'heartbeat' }));
    good.ws.send('{"type":"stored"}');
    expect(await good.closed).to.equal(CLOSE.PROTOCOL_VIOLATION);
    await until(() => control.servers().length === 0);
  });
});

/** An upload token for a server, as the control server would give a browser. */
async function uploadToken(serverId: string): Promise<string> {
  return (
    await signToken(secretKey(SECRET), 'c-test', uploadAudience(serverId), 60, {
      scope: 'upload',
      uid: 'alice',
    })
  ).token;
}
