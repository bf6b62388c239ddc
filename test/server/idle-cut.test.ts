// F14 (server parts): links that sit idle behind a NAT or a proxy that cuts idle connections, scaled
// down from 60 s to well under a second. The upload server's registry link and a browser's control
// connection cross a FaultProxy in front of the control server.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { SUBPROTOCOL_CONTROL_1, encodeControlMessage } from '../../src/protocol/index.js';
import {
  createControlServer,
  createUploadServer,
  createUserToken,
  type ControlServer,
  type LogEntry,
  type UploadServer,
} from '../../server/index.js';
import { FaultProxy, type FaultShape } from '../helpers/fault-proxy.js';
import { ControlPeer } from '../helpers/node-peers.js';
import { until } from '../helpers/until.js';

const SECRET = randomBytes(32).toString('base64url');
const CUT_MS = 600;

/** A log entry with the time it was written, in `performance.now()` ms. */
type Timed = LogEntry & { at: number };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('links behind a NAT that cuts idle connections (F14)', () => {
  let dir: string;
  let control: ControlServer | undefined;
  let upload: UploadServer | undefined;
  let proxy: FaultProxy | undefined;
  let controlLog: Timed[];
  let uploadLog: Timed[];
  const sockets: WebSocket[] = [];

  afterEach(async () => {
    for (const ws of sockets.splice(0)) ws.terminate();
    await upload?.close();
    await control?.close();
    await proxy?.close();
    upload = control = proxy = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  /** A control server with `heartbeatMs`, and a proxy with `shape` in front of it. */
  async function deploy(heartbeatMs: number, shape: FaultShape): Promise<string> {
    dir = await mkdtemp(join(tmpdir(), 'wsu-idle-'));
    controlLog = [];
    uploadLog = [];
    control = createControlServer({
      secret: SECRET,
      heartbeatMs,
      logger: (e) => controlLog.push({ ...e, at: performance.now() }),
    });
    const controlUrl = await control.listen(0, '127.0.0.1');
    proxy = await FaultProxy.start({ targetPort: Number(new URL(controlUrl).port), ...shape });
    return controlUrl;
  }

  /** An upload server whose registry link goes through the proxy. */
  async function linkUpload(controlUrl: string): Promise<void> {
    upload = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: join(dir, 'up-1'),
      controlUrl: proxy!.rewrite(controlUrl.replace(/\/control$/, '/registry')),
      logger: (e) => uploadLog.push({ ...e, at: performance.now() }),
    });
    await upload.listen(0, '127.0.0.1');
    await until(() => listed().length > 0);
  }

  /** The server lists the control server announced, in order, with their times. */
  function listings(): { at: number; ids: string[] }[] {
    return controlLog
      .filter((e) => e.event === 'servers')
      .map((e) => ({ at: e.at, ids: e['servers'] as string[] }));
  }

  function listed(): string[] {
    return listings().at(-1)?.ids ?? [];
  }

  /** The states of the upload server's link, in order. */
  function linkStates(): string[] {
    return uploadLog.filter((e) => e.event === 'control-link').map((e) => e['state'] as string);
  }

  /** How many times the upload server's link was registered. */
  function registrations(): number {
    return linkStates().filter((s) => s === 'registered').length;
  }

  it('F14: a registry link stays registered across several idle cuts when its heartbeat is shorter than the cut', async () => {
    const controlUrl = await deploy(CUT_MS / 3, { idleCutMs: CUT_MS });
    await linkUpload(controlUrl);
    await sleep(4 * CUT_MS);
    expect(listings().map((l) => l.ids)).to.deep.equal([['up-1']]);
    expect(linkStates()).to.deep.equal(['registered']);
    expect(proxy!.stats()).to.include({ connections: 1, idleClosed: 0, open: 1 });
  });

  it('F14: a registry link cut for being idle (heartbeat longer than the cut) is dropped by the control server at once, and registers again', async () => {
    const controlUrl = await deploy(4 * CUT_MS, { idleCutMs: CUT_MS });
    await linkUpload(controlUrl);
    const registeredAt = listings()[0]!.at;
    await until(() => listings().length >= 3 && registrations() >= 2, 5000);
    const [, dropped, back] = listings();
    expect(dropped!.ids).to.deep.equal([]);
    // Dropped when the NAT cut the link, not three heartbeats (7.2 s) later.
    expect(dropped!.at - registeredAt).to.be.within(CUT_MS - 50, CUT_MS + 300);
    expect(back!.ids).to.deep.equal(['up-1']);
    expect(linkStates().slice(0, 3)).to.deep.equal(['registered', 'closed', 'registered']);
    expect(proxy!.stats().idleClosed).to.be.greaterThan(0);
  });

  it('F14: a link the NAT forgot is dropped by the control server after three missed heartbeats; the upload server finds it dead and registers again once the path is back', async () => {
    const heartbeatMs = 200;
    const controlUrl = await deploy(heartbeatMs, {});
    await linkUpload(controlUrl);
    // The NAT lost its state: the link is a black hole, and new connections are refused for now.
    proxy!.blackhole();
    proxy!.down = true;
    const cutAt = performance.now();
    await until(() => listed().length === 0, 5000);
    const droppedAfter = listings().at(-1)!.at - cutAt;
    expect(droppedAfter).to.be.within(2 * heartbeatMs, 3 * heartbeatMs + 300);
    // The upload server's end: no answer to its pings for a heartbeat interval.
    await until(() => linkStates().includes('closed'), 3000);
    proxy!.down = false;
    await until(() => listed().length > 0 && registrations() === 2, 8000);
    expect(listed()).to.deep.equal(['up-1']);
  });

  it("F14: the control server's pings keep an idle browser connection open across several idle cuts", async () => {
    const controlUrl = await deploy(CUT_MS / 3, { idleCutMs: CUT_MS });
    const peer = new ControlPeer(proxy!.rewrite(controlUrl));
    await peer.send({ type: 'hello', token: await createUserToken(SECRET, 'alice') });
    await peer.nextOf('welcome');
    let closed = false;
    void peer.closed.then(() => (closed = true));
    await sleep(4 * CUT_MS);
    expect(closed).to.equal(false);
    expect(proxy!.stats()).to.include({ connections: 1, idleClosed: 0, open: 1 });
    peer.close();
  });

  it('F14: a browser connection that stops answering pings is dropped after one heartbeat interval', async () => {
    const heartbeatMs = 200;
    const controlUrl = await deploy(heartbeatMs, {});
    // A browser whose network went silent: its pongs never come.
    const ws = new WebSocket(controlUrl, SUBPROTOCOL_CONTROL_1, { autoPong: false });
    sockets.push(ws);
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(encodeControlMessage({ type: 'hello', token: await createUserToken(SECRET, 'alice') }));
    await new Promise((resolve) => ws.once('message', resolve));
    const welcomedAt = performance.now();
    const code = await new Promise<number>((resolve) => ws.once('close', resolve));
    expect(code).to.equal(1006);
    expect(performance.now() - welcomedAt).to.be.within(heartbeatMs, 2 * heartbeatMs + 200);
    expect(controlLog.map((e) => e.event)).to.include('heartbeat-timeout');
  });
});
