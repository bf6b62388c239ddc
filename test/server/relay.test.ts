import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import {
  CLOSE,
  decodeDup1ServerMessage,
  decodeRegistryServerMessage,
  encodeDup1Message,
  encodeRegistryMessage,
  encodeRelayFrame,
  RELAY_KIND,
  RELAY_LINK_LOST,
  SUBPROTOCOL_DUP_1,
  SUBPROTOCOL_DUP_2,
  SUBPROTOCOL_REGISTRY_1,
  type Dup1ServerMessage,
  type RegistryServerMessage,
} from '../../src/protocol/index.js';
import {
  createControlServer,
  createPlanner,
  createRegistryToken,
  createUploadServer,
  createUserToken,
  type ControlServer,
  type LogEntry,
  type UploadServer,
} from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { ControlPeer, Dup2Peer, sha256 } from '../helpers/node-peers.js';
import { until } from '../helpers/until.js';

const SECRET = 'n'.repeat(32);
const MiB = 1024 * 1024;

/** An upload token for a server, as the control server would give a browser. */
async function uploadToken(serverId: string): Promise<string> {
  return (
    await signToken(secretKey(SECRET), 'c-test', uploadAudience(serverId), 60, {
      scope: 'upload',
      uid: 'alice',
    })
  ).token;
}

/** The HTTP status an upgrade gets when it is refused, or 101. */
function upgradeStatus(url: string, protocol: string, headers: Record<string, string> = {}) {
  return new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(url, protocol, { headers });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('error', (e) => {
      if (!/Unexpected server response/.test(e.message)) reject(e);
    });
  });
}

/** Reads a whole stream into one buffer. */
async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** A raw registry link the test speaks for an upload server. */
class RawLink {
  readonly ws: WebSocket;
  readonly texts: RegistryServerMessage[] = [];
  readonly frames: Buffer[] = [];
  readonly closed: Promise<number>;
  readonly #waiters: (() => void)[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url, SUBPROTOCOL_REGISTRY_1);
    this.closed = new Promise((resolve) => this.ws.once('close', resolve));
    this.ws.on('message', (data, isBinary) => {
      if (isBinary) this.frames.push(data as Buffer);
      else this.texts.push(decodeRegistryServerMessage(data.toString()));
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  async open(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return;
    await new Promise((resolve, reject) => this.ws.once('open', resolve).once('error', reject));
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** The next text message of a type (removed from the list). */
  async next<T extends RegistryServerMessage['type']>(
    type: T,
  ): Promise<Extract<RegistryServerMessage, { type: T }>> {
    const end = Date.now() + 5000;
    for (;;) {
      const i = this.texts.findIndex((m) => m.type === type);
      if (i >= 0) return this.texts.splice(i, 1)[0] as Extract<RegistryServerMessage, { type: T }>;
      if (Date.now() > end) throw new Error(`timed out waiting for ${type}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }
}

/** A raw dup/1 client. */
class Dup1Peer {
  readonly ws: WebSocket;
  readonly #inbox: Dup1ServerMessage[] = [];
  readonly #waiters: (() => void)[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url, SUBPROTOCOL_DUP_1);
    this.ws.on('message', (data, isBinary) => {
      if (!isBinary) this.#inbox.push(decodeDup1ServerMessage(data.toString()));
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  async send(message: Parameters<typeof encodeDup1Message>[0] | Uint8Array): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN)
      await new Promise((resolve, reject) => this.ws.once('open', resolve).once('error', reject));
    this.ws.send(message instanceof Uint8Array ? message : encodeDup1Message(message));
  }

  async next(): Promise<Dup1ServerMessage> {
    const end = Date.now() + 5000;
    while (this.#inbox.length === 0) {
      if (Date.now() > end) throw new Error('timed out waiting for a dup/1 message');
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.#inbox.shift()!;
  }
}

describe('relay (upload servers behind NAT, reached through the control server)', () => {
  let dir: string;
  let control: ControlServer;
  let controlUrl: string;
  let registryUrl: string;
  let base: string;
  const uploads: UploadServer[] = [];
  const sockets: { close(): void }[] = [];

  /** An upload server that listens nowhere: only its link to the control server reaches it. */
  async function startRelayed(
    id: string,
    extra: Partial<Parameters<typeof createUploadServer>[0]> = {},
  ): Promise<{ server: UploadServer; url: string }> {
    const server = createUploadServer({
      id,
      secret: SECRET,
      dataDir: join(dir, id),
      controlUrl: registryUrl,
      relay: true,
      durability: 'write',
      ...extra,
    });
    uploads.push(server);
    await until(() => control.servers().some((s) => s.id === id));
    return { server, url: control.servers().find((s) => s.id === id)!.url };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wsu-relay-'));
    control = createControlServer({ secret: SECRET, probeWaitMs: 0, verifyWaitMs: 2000 });
    controlUrl = await control.listen(0);
    base = controlUrl.replace(/\/control$/, '');
    registryUrl = `${base}/registry`;
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close();
    for (const u of uploads.splice(0)) await u.close();
    await control.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists a relayed server at /relay/{id} on the control server; a dup/2 upload of 5 MiB through the relay arrives intact and is verified', async () => {
    const { server, url } = await startRelayed('nat-1');
    expect(server.httpServer.listening).to.equal(false);
    expect(control.servers()[0]).to.deep.include({
      id: 'nat-1',
      url: `${base}/relay/nat-1`,
      httpUrl: `${base.replace(/^ws/, 'http')}/relay/nat-1`,
    });
    // Only what the relay carries: not tus/1 or http/1.
    expect(control.servers()[0]!.protocols).to.deep.equal(['dup/2', 'dup/1']);

    const browser = new ControlPeer(controlUrl);
    sockets.push(browser);
    await browser.send({ type: 'hello', token: await createUserToken(SECRET, 'alice') });
    const welcome = await browser.nextOf('welcome');
    const info = welcome.servers.find((s) => s.id === 'nat-1')!;
    expect(info.url).to.equal(url);
    const bytes = randomBytes(5 * MiB + 12345);
    const digest = sha256(bytes);
    await browser.send({
      type: 'publish',
      items: [{ itemId: 'movie', name: 'm.bin', size: bytes.length, mime: '', kind: 'file' }],
    });
    const task = await browser.nextOf('transmit');
    expect(task.ranges).to.deep.equal([{ start: 0, end: bytes.length, serverId: 'nat-1' }]);

    const dup = new Dup2Peer(info.url);
    sockets.push(dup);
    await dup.send({ type: 'hello', token: info.token });
    expect(await dup.next()).to.deep.include({ type: 'welcome', serverId: 'nat-1' });
    await dup.open(1, 'movie', bytes.length);
    expect(await dup.next()).to.deep.include({ type: 'opened', ranges: [] });
    const chunk = MiB;
    let acked = 0;
    for (let offset = 0; offset < bytes.length; offset += chunk)
      await dup.data(1, offset, bytes.subarray(offset, offset + chunk));
    while (acked < bytes.length) {
      const frame = await dup.next();
      expect(frame.type).to.equal('ack');
      if (frame.type === 'ack') acked += frame.end - frame.start;
    }
    await dup.send({ type: 'finish', uploadId: 1, sha256: digest.bytes });
    expect(await dup.next()).to.deep.include({ type: 'complete' });

    // The upload server reported it over the same link: the control server confirms it.
    await browser.send({
      type: 'complete',
      taskId: task.taskId,
      itemId: 'movie',
      sha256: digest.hex,
      servers: ['nat-1'],
    });
    expect(await browser.nextOf('completed')).to.deep.include({
      itemId: 'movie',
      sha256: digest.hex,
    });
    const record = await server.store.get('movie');
    expect(record?.complete).to.equal(true);
    const stored = await readAll(server.store.read('movie', 0, bytes.length));
    expect(sha256(stored).hex).to.equal(digest.hex);
  });

  it('has relayed servers hash an item split across them in turn (digest steps), which no server could read from another', async () => {
    await control.close();
    control = createControlServer({
      secret: SECRET,
      probeWaitMs: 0,
      verifyWaitMs: 5000,
      plan: createPlanner({ splitMin: 2 * MiB, align: MiB, stripe: MiB }),
    });
    controlUrl = await control.listen(0);
    base = controlUrl.replace(/\/control$/, '');
    registryUrl = `${base}/registry`;
    const logs: LogEntry[] = [];
    await startRelayed('nat-1', { logger: (e) => logs.push(e) });
    await startRelayed('nat-2', { logger: (e) => logs.push(e) });
    const browser = new ControlPeer(controlUrl);
    sockets.push(browser);
    await browser.send({ type: 'hello', token: await createUserToken(SECRET, 'alice') });
    const welcome = await browser.nextOf('welcome');
    const bytes = randomBytes(5 * MiB + 1000);
    await browser.send({
      type: 'publish',
      items: [{ itemId: 'split', name: 's.bin', size: bytes.length, mime: '', kind: 'file' }],
    });
    const task = await browser.nextOf('transmit');
    expect(task.digest).to.equal('server');
    expect(new Set(task.ranges.map((r) => r.serverId))).to.deep.equal(new Set(['nat-1', 'nat-2']));
    // Each server's stripes over the relay; no FINISH (neither holds the whole item).
    for (const id of ['nat-1', 'nat-2']) {
      const info = welcome.servers.find((s) => s.id === id)!;
      const dup = new Dup2Peer(info.url);
      sockets.push(dup);
      await dup.send({ type: 'hello', token: info.token });
      expect(await dup.next()).to.deep.include({ type: 'welcome', serverId: id });
      await dup.open(1, 'split', bytes.length);
      expect(await dup.next()).to.deep.include({ type: 'opened' });
      for (const r of task.ranges.filter((r) => r.serverId === id)) {
        await dup.data(1, r.start, bytes.subarray(r.start, r.end));
        expect(await dup.next()).to.deep.include({ type: 'ack', start: r.start, end: r.end });
      }
    }
    await browser.send({
      type: 'complete',
      taskId: task.taskId,
      itemId: 'split',
      servers: ['nat-1', 'nat-2'],
    });
    expect(await browser.nextOf('completed')).to.deep.include({
      itemId: 'split',
      sha256: sha256(bytes).hex,
    });
    // One step per stripe, on the server that holds it, from the state the stripe before reached.
    const steps = logs.filter((e) => e.event === 'digest' && e['itemId'] === 'split');
    expect(steps.map((e) => [e.server, e['from']])).to.deep.equal(
      [...task.ranges].sort((a, b) => a.start - b.start).map((r) => [r.serverId, r.start]),
    );
  });

  it('pauses a relayed browser while the upload server is over its buffer budget, and the upload still arrives intact', async () => {
    const { server, url } = await startRelayed('nat-1', {
      maxBufferedBytes: 256 * 1024,
      maxChunk: 128 * 1024,
    });
    const bytes = randomBytes(3 * MiB + 1);
    const digest = sha256(bytes);
    const dup = new Dup2Peer(url);
    sockets.push(dup);
    await dup.send({ type: 'hello', token: await uploadToken('nat-1') });
    expect((await dup.next()).type).to.equal('welcome');
    await dup.open(1, 'budget', bytes.length);
    expect((await dup.next()).type).to.equal('opened');
    for (let offset = 0; offset < bytes.length; offset += 128 * 1024)
      await dup.data(1, offset, bytes.subarray(offset, offset + 128 * 1024));
    let acked = 0;
    while (acked < bytes.length) {
      const frame = await dup.next();
      expect(frame.type).to.equal('ack');
      if (frame.type === 'ack') acked += frame.end - frame.start;
    }
    await dup.send({ type: 'finish', uploadId: 1, sha256: digest.bytes });
    expect((await dup.next()).type).to.equal('complete');
    const stored = await readAll(server.store.read('budget', 0, bytes.length));
    expect(sha256(stored).hex).to.equal(digest.hex);
  });

  it('closes a browser whose message is over the upload server’s limit with 1009', async () => {
    const { url } = await startRelayed('nat-1', { maxChunk: 64 * 1024 });
    const dup = new Dup2Peer(url);
    sockets.push(dup);
    await dup.send({ type: 'hello', token: await uploadToken('nat-1') });
    expect((await dup.next()).type).to.equal('welcome');
    await dup.sendRaw(new Uint8Array(200 * 1024));
    expect((await dup.closed).code).to.equal(CLOSE.MESSAGE_TOO_BIG);
  });

  it('relays WebSocket pings: an idle relayed connection answers the server’s pings and stays open', async () => {
    const { url } = await startRelayed('nat-1', { heartbeatMs: 100 });
    const dup = new Dup2Peer(url);
    sockets.push(dup);
    let pings = 0;
    dup.ws.on('ping', () => pings++);
    await dup.send({ type: 'hello', token: await uploadToken('nat-1') });
    expect((await dup.next()).type).to.equal('welcome');
    await new Promise((r) => setTimeout(r, 500));
    expect(pings).to.be.greaterThan(2);
    await dup.send({ type: 'ping', time: 7 });
    expect(await dup.next()).to.deep.include({ type: 'pong', time: 7 });
  });

  it('takes a dup/1 upload through the relay too', async () => {
    const { server, url } = await startRelayed('nat-1');
    const bytes = randomBytes(2 * MiB + 7);
    const digest = sha256(bytes).hex;
    const dup = new Dup1Peer(url);
    sockets.push(dup.ws);
    await dup.send({ type: 'hello', token: await uploadToken('nat-1') });
    expect(await dup.next()).to.deep.include({ type: 'welcome', serverId: 'nat-1' });
    expect(dup.ws.protocol).to.equal(SUBPROTOCOL_DUP_1);
    await dup.send({ type: 'open', itemId: 'old', size: bytes.length, mime: '', name: '' });
    expect(await dup.next()).to.deep.include({ type: 'opened', complete: false });
    for (let offset = 0; offset < bytes.length; offset += 512 * 1024)
      await dup.send(bytes.subarray(offset, offset + 512 * 1024));
    let acked = 0;
    while (acked < bytes.length) {
      const m = await dup.next();
      expect(m.type).to.equal('ack');
      if (m.type === 'ack') acked = m.end;
    }
    await dup.send({ type: 'finish', sha256: digest });
    expect(await dup.next()).to.deep.equal({ type: 'complete', sha256: digest });
    const stored = await readAll(server.store.read('old', 0, bytes.length));
    expect(sha256(stored).hex).to.equal(digest);
  });

  it('applies the upload server’s own checks before the upgrade: a bad token closes with 4003, a foreign origin gets 403', async () => {
    const { url } = await startRelayed('nat-1', { allowedOrigins: ['https://app.example'] });
    expect(
      await upgradeStatus(url, SUBPROTOCOL_DUP_2, { origin: 'https://evil.example' }),
    ).to.equal(403);
    expect(await upgradeStatus(url, SUBPROTOCOL_DUP_2, { origin: 'https://app.example' })).to.equal(
      101,
    );
    const dup = new Dup2Peer(url);
    sockets.push(dup);
    await dup.send({ type: 'hello', token: await uploadToken('elsewhere') });
    expect(await dup.next()).to.deep.include({ type: 'error', code: 'unauthorized' });
    expect((await dup.closed).code).to.equal(CLOSE.AUTH_FAILED);
  });

  it('closes a browser that offers no subprotocol with 4005, as a direct one', async () => {
    const { url } = await startRelayed('nat-1');
    const ws = new WebSocket(url);
    sockets.push(ws);
    const closed = new Promise<number>((resolve) => ws.once('close', resolve));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    expect(ws.protocol).to.equal('');
    expect(await closed).to.equal(CLOSE.UNSUPPORTED_PROTOCOL);
  });

  it('refuses an unknown server id, and a server that is not relayed, with 404', async () => {
    expect(await upgradeStatus(`${base}/relay/nobody`, SUBPROTOCOL_DUP_2)).to.equal(404);
    expect(await upgradeStatus(`${base}/relay/`, SUBPROTOCOL_DUP_2)).to.equal(404);
    const direct = createUploadServer({
      id: 'direct',
      secret: SECRET,
      dataDir: join(dir, 'direct'),
      controlUrl: registryUrl,
    });
    uploads.push(direct);
    await direct.listen(0);
    await until(() => control.servers().length === 1);
    expect(await upgradeStatus(`${base}/relay/direct`, SUBPROTOCOL_DUP_2)).to.equal(404);
    await startRelayed('nat-1');
    expect(await upgradeStatus(`${base}/relay/nat-1/x`, SUBPROTOCOL_DUP_2)).to.equal(404);
    expect(await upgradeStatus(`${base}/relay/nat-1`, SUBPROTOCOL_DUP_2)).to.equal(101);
  });

  it('closes relayed browsers with 4010 when the link is lost, and the server leaves the list', async () => {
    const link = new RawLink(registryUrl);
    await link.open();
    link.send({
      type: 'register',
      token: await createRegistryToken(SECRET, 'raw-1'),
      id: 'raw-1',
      protocols: ['dup/2'],
      relay: true,
    });
    const registered = await link.next('registered');
    expect(registered.url).to.equal(`${base}/relay/raw-1`);
    const browser = new Dup2Peer(registered.url);
    sockets.push(browser);
    const open = await link.next('relay-open');
    expect(open).to.deep.include({ channel: 1, protocols: [SUBPROTOCOL_DUP_2] });
    expect(open.remote).to.match(/127\.0\.0\.1/);
    link.send({ type: 'relay-accept', channel: 1, protocol: SUBPROTOCOL_DUP_2 });
    await browser.opened;
    expect(browser.ws.protocol).to.equal(SUBPROTOCOL_DUP_2);
    // Both ways: a browser frame reaches the link with its channel, a link frame the browser.
    await browser.sendRaw(new Uint8Array([0x06, 1, 2, 3, 4, 5, 6, 7, 8]));
    await until(() => link.frames.length === 1);
    expect([...link.frames[0]!]).to.deep.equal([
      0,
      0,
      0,
      1,
      RELAY_KIND.BINARY,
      6,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
    ]);
    link.ws.send(
      encodeRelayFrame({
        channel: 1,
        kind: RELAY_KIND.BINARY,
        payload: new Uint8Array([0x85, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 9]),
      }),
    );
    expect(await browser.next()).to.deep.include({ type: 'pong' });
    link.ws.terminate();
    expect((await browser.closed).code).to.equal(RELAY_LINK_LOST);
    await until(() => control.servers().length === 0);
    expect(await upgradeStatus(registered.url, SUBPROTOCOL_DUP_2)).to.equal(404);
  });

  it('closes relayed browsers of a real upload server with 1001 when the control server closes', async () => {
    const { url } = await startRelayed('nat-1');
    const dup = new Dup2Peer(url);
    sockets.push(dup);
    await dup.send({ type: 'hello', token: await uploadToken('nat-1') });
    expect((await dup.next()).type).to.equal('welcome');
    await control.close();
    expect((await dup.closed).code).to.equal(CLOSE.GOING_AWAY);
    control = createControlServer({ secret: SECRET });
  });

  it('passes closes both ways and stops reading a browser while its channel is paused', async () => {
    const link = new RawLink(registryUrl);
    await link.open();
    link.send({
      type: 'register',
      token: await createRegistryToken(SECRET, 'raw-1'),
      id: 'raw-1',
      protocols: ['dup/2'],
      relay: true,
    });
    const { url } = await link.next('registered');
    const first = new Dup2Peer(url);
    sockets.push(first);
    link.send({
      type: 'relay-accept',
      channel: (await link.next('relay-open')).channel,
      protocol: SUBPROTOCOL_DUP_2,
    });
    await first.opened;
    link.send({ type: 'relay-pause', channel: 1 });
    await new Promise((r) => setTimeout(r, 50));
    await first.sendRaw(new Uint8Array([0x06, 0, 0, 0, 0, 0, 0, 0, 1]));
    await new Promise((r) => setTimeout(r, 200));
    expect(link.frames.length).to.equal(0);
    link.send({ type: 'relay-resume', channel: 1 });
    await until(() => link.frames.length === 1);
    // The upload server closes: the browser gets its code; the browser's close comes back.
    link.send({ type: 'relay-close', channel: 1, code: 4008, reason: 'idle' });
    expect(await first.closed).to.deep.equal({ code: 4008, reason: 'idle' });
    expect(await link.next('relay-close')).to.deep.include({ channel: 1, code: 4008 });
    // The browser closes: the link is told.
    const second = new Dup2Peer(url);
    sockets.push(second);
    link.send({
      type: 'relay-accept',
      channel: (await link.next('relay-open')).channel,
      protocol: SUBPROTOCOL_DUP_2,
    });
    await second.opened;
    second.ws.close(1000, 'bye');
    expect(await link.next('relay-close')).to.deep.include({
      channel: 2,
      code: 1000,
      reason: 'bye',
    });
    // Refused by the upload server: the browser gets the status.
    const third = upgradeStatus(url, SUBPROTOCOL_DUP_2);
    link.send({
      type: 'relay-refuse',
      channel: (await link.next('relay-open')).channel,
      status: 429,
    });
    expect(await third).to.equal(429);
  });

  it('stops reading every browser of a link while the link lags, and delivers everything once it drains', async () => {
    const link = new RawLink(registryUrl);
    await link.open();
    link.send({
      type: 'register',
      token: await createRegistryToken(SECRET, 'raw-1'),
      id: 'raw-1',
      protocols: ['dup/2'],
      relay: true,
    });
    const { url } = await link.next('registered');
    const browser = new Dup2Peer(url);
    sockets.push(browser);
    link.send({
      type: 'relay-accept',
      channel: (await link.next('relay-open')).channel,
      protocol: SUBPROTOCOL_DUP_2,
    });
    await browser.opened;
    // The upload server's end of the link stops reading: the control server's link buffer fills.
    link.ws.pause();
    const message = new Uint8Array(MiB);
    const count = 64;
    for (let i = 0; i < count; i++) browser.ws.send(message);
    await new Promise((r) => setTimeout(r, 1000));
    // The control server stopped reading the browser: most of it still waits on the browser's side
    // (without the pause it would all sit in the control server's memory, queued for the link).
    expect(browser.ws.bufferedAmount).to.be.greaterThan(24 * MiB);
    link.ws.resume();
    await until(() => link.frames.length === count, 10_000);
    expect(link.frames.every((f) => f.length === MiB + 5)).to.equal(true);
  });

  it('answers a malformed link frame with error bad-message and closes the link with 4002', async () => {
    for (const bad of [
      new Uint8Array([0, 0, 1]),
      new Uint8Array([0, 0, 0, 1, 0x07]),
      encodeRelayFrame({ channel: 99, kind: RELAY_KIND.TEXT, payload: new Uint8Array(1) }),
      encodeRegistryMessage({ type: 'relay-accept', channel: 5, protocol: '' }),
    ]) {
      const link = new RawLink(registryUrl);
      await link.open();
      link.send({
        type: 'register',
        token: await createRegistryToken(SECRET, 'raw-1'),
        id: 'raw-1',
        protocols: ['dup/2'],
        relay: true,
      });
      await link.next('registered');
      link.ws.send(bad);
      const error = await link.next('error');
      expect(error.code).to.equal('bad-message');
      expect(error.message).to.match(/^(frame-truncated|frame-invalid-field|message-invalid):/);
      expect(await link.closed).to.equal(CLOSE.PROTOCOL_VIOLATION);
    }
    // A server that is not relayed may not send relay frames at all.
    const direct = new RawLink(registryUrl);
    await direct.open();
    direct.send({
      type: 'register',
      token: await createRegistryToken(SECRET, 'raw-2'),
      id: 'raw-2',
      protocols: ['dup/2'],
      port: 1234,
    });
    await direct.next('registered');
    direct.ws.send(
      encodeRelayFrame({ channel: 1, kind: RELAY_KIND.TEXT, payload: new Uint8Array(1) }),
    );
    expect((await direct.next('error')).code).to.equal('bad-message');
    expect(await direct.closed).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('refuses to relay a server that speaks no WebSocket protocol (no-endpoint)', async () => {
    const link = new RawLink(registryUrl);
    await link.open();
    link.send({
      type: 'register',
      token: await createRegistryToken(SECRET, 'raw-1'),
      id: 'raw-1',
      protocols: ['tus/1', 'http/1'],
      relay: true,
    });
    expect(await link.next('error')).to.deep.include({ code: 'no-endpoint' });
    expect(await link.closed).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('lists relayed servers under the control server’s publicUrl, and answers HTTP under /relay/ with 502 (not relayed)', async () => {
    await control.close();
    control = createControlServer({
      secret: SECRET,
      publicUrl: 'https://app.example',
      probeWaitMs: 0,
    });
    controlUrl = await control.listen(0);
    base = controlUrl.replace(/\/control$/, '');
    registryUrl = `${base}/registry`;
    const { url } = await startRelayed('hidden');
    expect(url).to.equal('wss://app.example/relay/hidden');
    expect(control.servers().find((s) => s.id === 'hidden')?.httpUrl).to.equal(
      'https://app.example/relay/hidden',
    );
    const http = base.replace(/^ws/, 'http');
    expect((await fetch(`${http}/relay/hidden/files/x`)).status).to.equal(502);
    expect((await fetch(`${http}/relay/nobody/files/x`)).status).to.equal(404);
    expect((await fetch(`${http}/elsewhere`)).status).to.equal(404);
    expect(() => createControlServer({ secret: SECRET, publicUrl: 'ftp://x' })).to.throw(TypeError);
  });

  it('refuses contradictory options: relay without controlUrl, relay with publicUrl', () => {
    expect(() =>
      createUploadServer({ id: 'x', secret: SECRET, dataDir: join(dir, 'x'), relay: true }),
    ).to.throw(TypeError, /controlUrl/);
    expect(() =>
      createUploadServer({
        id: 'x',
        secret: SECRET,
        dataDir: join(dir, 'x'),
        relay: true,
        controlUrl: registryUrl,
        publicUrl: 'https://x.example',
      }),
    ).to.throw(TypeError, /publicUrl/);
  });
});
