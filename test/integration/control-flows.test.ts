// Control flows between real pages: messages and inline items from one browsing context to
// another (the second one is an iframe with its own copy of the engine module, its own globals and
// its own sockets), demand from a reader of an upload server, the app's cancel, and refusals.
import { expect } from '@open-wc/testing';
import {
  ServerError,
  WsUploaderEngine,
  type EngineEventDetails,
  type ItemStatus,
  type RunningTask,
} from '../../src/index.js';
import {
  cancelTransmit,
  readToken,
  sha256Hex,
  startDeployment,
  stopServers,
  storedSha256,
  taskLog,
  userToken,
  type TestDeployment,
} from '../helpers/servers.js';
import type * as EngineApi from '../../src/engine/index.js';
import { Gate, gatedFile } from '../helpers/gated-file.js';

type EngineModule = typeof EngineApi;

/** A second page: an iframe that loads the engine module by itself. */
interface PeerPage {
  readonly frame: HTMLIFrameElement;
  readonly window: Window & typeof globalThis & { peer?: EngineModule };
  readonly module: EngineModule;
}

async function openPeerPage(): Promise<PeerPage> {
  const url = new URL('../../src/engine/index.ts', import.meta.url).href;
  const frame = document.createElement('iframe');
  frame.srcdoc = `<!doctype html><body><script type="module">window.peer = await import(${JSON.stringify(url)});</script></body>`;
  document.body.append(frame);
  const window = frame.contentWindow as PeerPage['window'];
  await until(() => window.peer !== undefined, 20_000);
  return { frame, window, module: window.peer! };
}

/** Waits until `check` holds, polling. */
async function until(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The next event of a type (that passes `test`) from an engine of either page. */
function next<K extends keyof EngineEventDetails>(
  engine: Pick<WsUploaderEngine, 'on'>,
  type: K,
  test: (detail: EngineEventDetails[K]) => boolean = () => true,
): Promise<EngineEventDetails[K]> {
  return new Promise((resolve) => {
    const off = engine.on(type, (e) => {
      if (!test(e.detail)) return;
      off();
      resolve(e.detail);
    });
  });
}

/** A PNG drawn on a canvas: a 64×48 picture. */
async function canvasPng(): Promise<Blob> {
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 48;
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = '#1e6';
  ctx.fillRect(0, 0, 64, 48);
  ctx.fillStyle = '#c14';
  ctx.beginPath();
  ctx.arc(32, 24, 16, 0, Math.PI * 2);
  ctx.fill();
  return new Promise((resolve) => canvas.toBlob((b) => resolve(b!), 'image/png'));
}

function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let o = 0; o < size; o += 65536)
    crypto.getRandomValues(bytes.subarray(o, Math.min(size, o + 65536)));
  return bytes;
}

function status(engine: WsUploaderEngine, itemId: string): ItemStatus {
  return engine.items.find((i) => i.itemId === itemId)!;
}

/** A reader of an upload server: `GET /files/{itemId}` for one range, with a read token. */
async function readRange(
  d: TestDeployment,
  itemId: string,
  start: number,
  end: number,
): Promise<{ status: number; contentRange: string | null; bytes: Uint8Array<ArrayBuffer> }> {
  const server = d.servers[0]!;
  const token = await readToken(d, server.id, [itemId]);
  const res = await fetch(`${server.httpUrl}/files/${itemId}`, {
    headers: { Authorization: `Bearer ${token}`, Range: `bytes=${start}-${end - 1}` },
  });
  return {
    status: res.status,
    contentRange: res.headers.get('content-range'),
    bytes: new Uint8Array(await res.arrayBuffer()),
  };
}

const MiB = 1024 * 1024;
/** The engine reads a file 4 MiB at a time (one read ahead of the one it sends). */
const BLOCK = 4 * MiB;

describe('control flows between pages, readers and the app', () => {
  let d: TestDeployment | undefined;
  const engines: Pick<WsUploaderEngine, 'stop'>[] = [];
  const frames: HTMLIFrameElement[] = [];

  afterEach(async () => {
    for (const e of engines.splice(0)) e.stop();
    for (const f of frames.splice(0)) f.remove();
    await stopServers(d);
    d = undefined;
  });

  it('sends a message and an inline PNG from one page to another, by client id, room and user', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const a = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    engines.push(a);
    const page = await openPeerPage();
    frames.push(page.frame);
    const b = new page.module.WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: await userToken(d, 'bob'),
    });
    engines.push(b);
    // The second page's engine is its own: another realm, other classes, other sockets.
    expect(b).not.to.be.instanceOf(WsUploaderEngine);
    await Promise.all([a.start(), b.start()]);
    const errors: unknown[] = [];
    a.on('error', (e) => errors.push(e.detail.error));
    b.on('error', (e) => errors.push(e.detail.error));

    // B joins a room and says so; its message comes after the join, on the same connection.
    b.join('lobby');
    const hello = next(a, 'message');
    expect(await b.send({ clientId: a.clientId! }, { body: 'in the lobby' })).to.equal(1);
    expect(await hello).to.deep.include({
      from: { clientId: b.clientId, userId: 'bob' },
      body: 'in the lobby',
    });

    const png = await canvasPng();
    const pngBytes = new Uint8Array(await png.arrayBuffer());
    const pngSha = await sha256Hex(pngBytes);
    const got = next(b, 'message');
    expect(await a.send({ clientId: b.clientId! }, { body: 'a picture', item: png })).to.equal(1);
    const m = await got;
    expect(m.from).to.deep.equal({ clientId: a.clientId, userId: 'test-user' });
    expect(m.id).to.be.a('string');
    expect(m.body).to.equal('a picture');
    expect(m.item!.meta).to.deep.include({ size: png.size, mime: 'image/png', kind: 'file' });
    expect(m.item!.meta).not.to.have.property('content');
    const blob = m.item!.blob!;
    expect(blob.type).to.equal('image/png');
    expect(await sha256Hex(await blob.arrayBuffer())).to.equal(pngSha);
    expect(m.item!.dataUrl!.startsWith('data:image/png;base64,')).to.equal(true);
    // The receiving page shows it: from the data: URL and from an object URL of the Blob.
    for (const src of [m.item!.dataUrl!, page.window.URL.createObjectURL(blob)]) {
      const img = page.frame.contentDocument!.createElement('img');
      img.src = src;
      page.frame.contentDocument!.body.append(img);
      await img.decode();
      expect([img.naturalWidth, img.naturalHeight]).to.deep.equal([64, 48]);
    }

    // The sender published it inline: stored by the control server, not uploaded.
    const sent = a.items.find((i) => i.itemId === m.item!.meta.itemId)!;
    await until(() => status(a, sent.itemId).state === 'complete');
    expect(status(a, sent.itemId)).to.deep.include({
      inline: true,
      sha256: pngSha,
      servers: [],
      size: png.size,
    });

    // To the room: the same Blob is the same inline item (not published again).
    const inRoom = next(b, 'message');
    expect(await a.send({ room: 'lobby' }, { item: png })).to.equal(1);
    const r = await inRoom;
    expect(r.body).to.equal(undefined);
    expect(r.item!.meta.itemId).to.equal(sent.itemId);
    expect(await sha256Hex(await r.item!.blob!.arrayBuffer())).to.equal(pngSha);
    expect(a.items).to.have.length(1);

    // To every browser of a user, a string as a text item: a Blob without a data: URL.
    const text = next(b, 'message');
    expect(await a.send({ userId: 'bob' }, { item: 'héllo, bob' })).to.equal(1);
    const t = (await text).item!;
    expect(t.meta).to.deep.include({ kind: 'text', mime: 'text/plain;charset=utf-8' });
    expect(await t.blob!.text()).to.equal('héllo, bob');
    expect(t.dataUrl).to.equal(undefined);

    // After leaving, room messages no longer reach B.
    b.leave('lobby');
    expect(await b.send({ clientId: a.clientId! }, { body: 'left' })).to.equal(1);
    expect(await a.send({ room: 'lobby' }, { body: 'anyone?' })).to.equal(0);
    expect(errors).to.deep.equal([]);
  });

  it('sends a demanded range of a stalled upload first: the reader gets 206 with the right bytes', async () => {
    d = await startDeployment({ uploadServers: 1, linked: true });
    const a = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 256 * 1024,
    });
    engines.push(a);
    const tasks: RunningTask[] = [];
    const errors: unknown[] = [];
    a.on('transmit-request', (e) => tasks.push(e.detail.task));
    a.on('error', (e) => errors.push(e.detail.error));
    await a.start();
    const bytes = randomBytes(BLOCK + 3 * MiB);
    const gate = new Gate();
    // The publish task stalls after its first block: its reads of the next MiB wait.
    const [item] = a.addFiles([
      gatedFile(
        new File([bytes], 'slow.bin', { type: 'application/octet-stream' }),
        [[BLOCK, BLOCK + MiB]],
        gate,
      ),
    ]);
    const itemId = item!.itemId;
    await until(() => status(a, itemId).bytesStored === BLOCK && gate.waiting > 0);
    expect(tasks.map((t) => [t.reason, t.priority])).to.deep.equal([['publish', 0]]);

    // A reader waits for bytes past the stall; the upload server raises a demand.
    const [start, end] = [BLOCK + 2_000_000, BLOCK + 2_100_000];
    const read = readRange(d, itemId, start, end);
    const res = await read;
    expect(res.status).to.equal(206);
    expect(res.contentRange).to.equal(`bytes ${start}-${end - 1}/${bytes.length}`);
    expect(await sha256Hex(res.bytes)).to.equal(await sha256Hex(bytes.subarray(start, end)));
    // It came from a demand task: top priority, for exactly the reader's range.
    const demand = tasks.find((t) => t.reason === 'demand')!;
    expect(demand).to.deep.include({ itemId, priority: 1_000_000 });
    expect(demand.ranges).to.deep.equal([{ start, end, serverId: 'up-1' }]);
    expect((await taskLog(d)).some((e) => e.taskId === demand.taskId && e.type === 'accepted')).to
      .be.true;

    // Once the disk is back, the stalled upload resumes and the whole item is stored.
    const complete = next(a, 'complete', (c) => c.itemId === itemId);
    gate.open();
    const done = await complete;
    expect(done.sha256).to.equal(await sha256Hex(bytes));
    expect(await storedSha256(d, 'up-1', itemId)).to.deep.equal({
      complete: true,
      size: bytes.length,
      sha256: done.sha256,
    });
    expect(errors).to.deep.equal([]);
  });

  it('stops an upload the app cancels, without an error; the item waits again', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const a = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 256 * 1024,
    });
    engines.push(a);
    const errors: unknown[] = [];
    a.on('error', (e) => errors.push(e.detail.error));
    await a.start();
    const bytes = randomBytes(BLOCK + 2 * MiB);
    const gate = new Gate();
    const requested = next(a, 'transmit-request');
    const [item] = a.addFiles([
      gatedFile(
        new File([bytes], 'cancelled.bin', { type: 'application/octet-stream' }),
        [[BLOCK, BLOCK + MiB]],
        gate,
      ),
    ]);
    const itemId = item!.itemId;
    const { task } = await requested;
    await until(() => status(a, itemId).bytesStored === BLOCK && gate.waiting > 0);

    const cancelled = next(a, 'cancel');
    expect(await cancelTransmit(d, task.taskId, 'the app changed its mind')).to.equal(true);
    expect(await cancelled).to.deep.equal({
      taskId: task.taskId,
      itemId,
      reason: 'the app changed its mind',
    });
    expect(status(a, itemId)).to.deep.include({ state: 'published', bytesStored: BLOCK });
    // Stopped for good: with the bytes readable again, nothing more is sent.
    gate.open();
    await new Promise((r) => setTimeout(r, 500));
    expect(await storedSha256(d, 'up-1', itemId)).to.deep.include({ complete: false });
    expect(status(a, itemId).state).to.equal('published');
    expect(errors).to.deep.equal([]);
    // The control server heard no failure either.
    expect((await taskLog(d)).filter((e) => e.type === 'fail')).to.deep.equal([]);
  });

  it('lets a demand for another item preempt a lower-priority upload when every slot is taken', async () => {
    d = await startDeployment({ uploadServers: 1, linked: true });
    const a = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 256 * 1024,
      maxParallel: 1,
    });
    engines.push(a);
    const errors: unknown[] = [];
    a.on('error', (e) => errors.push(e.detail.error));
    await a.start();
    // Q: part of it stored, then its task cancelled by the app.
    const qBytes = randomBytes(BLOCK + 2 * MiB);
    const qGate = new Gate();
    const qRequested = next(a, 'transmit-request');
    const [q] = a.addFiles([gatedFile(new File([qBytes], 'q.bin'), [[BLOCK, BLOCK + MiB]], qGate)]);
    const qTask = (await qRequested).task;
    await until(() => status(a, q!.itemId).bytesStored === BLOCK && qGate.waiting > 0);
    const cancelled = next(a, 'cancel');
    await cancelTransmit(d, qTask.taskId);
    await cancelled;
    // P: takes the only slot and stalls.
    const pBytes = randomBytes(BLOCK + MiB);
    const pGate = new Gate();
    const [p] = a.addFiles([gatedFile(new File([pBytes], 'p.bin'), [[BLOCK, BLOCK + MiB]], pGate)]);
    await until(() => status(a, p!.itemId).bytesStored === BLOCK && pGate.waiting > 0);

    const [start, end] = [BLOCK + 1_500_000, BLOCK + 1_600_000];
    const res = await readRange(d, q!.itemId, start, end);
    expect(res.status).to.equal(206);
    expect(await sha256Hex(res.bytes)).to.equal(await sha256Hex(qBytes.subarray(start, end)));

    // P resumes where it stopped once its bytes are readable, and completes.
    const pComplete = next(a, 'complete', (c) => c.itemId === p!.itemId);
    pGate.open();
    qGate.open();
    expect((await pComplete).sha256).to.equal(await sha256Hex(pBytes));
    expect(await storedSha256(d, 'up-1', p!.itemId)).to.deep.include({ complete: true });
    expect(errors).to.deep.equal([]);
  });

  it('plans an upload anew when a reconnect does not resume the session (the control server forgot its task)', async () => {
    d = await startDeployment({ uploadServers: 1, controlOptions: { sessionResumeMs: 0 } });
    const controlSockets: WebSocket[] = [];
    const a = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 256 * 1024,
      retryDelays: [50],
      createSocket: (url, protocols) => {
        const ws = new WebSocket(url, protocols);
        if (url === d!.controlUrl) controlSockets.push(ws);
        return ws;
      },
    });
    engines.push(a);
    const errors: unknown[] = [];
    const tasks: RunningTask[] = [];
    a.on('error', (e) => errors.push(e.detail.error));
    a.on('transmit-request', (e) => tasks.push(e.detail.task));
    await a.start();
    const bytes = randomBytes(BLOCK + MiB);
    const gate = new Gate();
    const [item] = a.addFiles([
      gatedFile(
        new File([bytes], 'again.bin', { type: 'application/octet-stream' }),
        [[BLOCK, BLOCK + MiB]],
        gate,
      ),
    ]);
    const itemId = item!.itemId;
    await until(() => status(a, itemId).bytesStored === BLOCK && gate.waiting > 0);
    const firstClient = a.clientId;
    controlSockets[0]!.close();
    // A new session: a new client id, and a new task for the item.
    await until(() => tasks.length === 2);
    expect(a.clientId).not.to.equal(firstClient);
    expect(tasks[1]).to.deep.include({ itemId, reason: 'publish' });
    const complete = next(a, 'complete', (c) => c.itemId === itemId);
    gate.open();
    expect((await complete).sha256).to.equal(await sha256Hex(bytes));
    // The control server recorded it through the new task (the old one's id means nothing now).
    await until(() => status(a, itemId).state === 'complete');
    const log = await taskLog(d);
    expect(log.some((e) => e.taskId === tasks[1]!.taskId && e.type === 'complete')).to.equal(true);
    // Only the lost connection was reported.
    expect(errors.map((e) => (e as { code: string }).code)).to.deep.equal(['socket-closed']);
  });

  it('rejects a message to a room the app forbids with forbidden, and refuses the join', async () => {
    d = await startDeployment({ uploadServers: 1, allow: { rooms: ['lobby'] } });
    const a = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    engines.push(a);
    await a.start();
    const error = await a.send({ room: 'secret' }, { body: 'psst' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(ServerError);
    expect(error).to.include({ code: 'forbidden', serverId: 'control' });
    expect(await a.send({ room: 'lobby' }, { body: 'hi' })).to.equal(0);

    const refused = next(a, 'error');
    a.join('secret');
    expect(a.rooms).to.deep.equal(['secret']);
    const e = await refused;
    expect(e.room).to.equal('secret');
    expect(e.error.code).to.equal('forbidden');
    expect(a.rooms).to.deep.equal([]);
  });
});
