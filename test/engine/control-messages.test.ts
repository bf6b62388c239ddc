// The engine's side of the control protocol's messages: inline items, send() and its refusals,
// unpublish, rooms, messages from the app, and credential renewal, against real servers.
import { expect } from '@open-wc/testing';
import {
  ConfigError,
  ServerError,
  TransportError,
  WsUploaderEngine,
  type EngineEventDetails,
  type WsUploaderError,
} from '../../src/index.js';
import {
  appSend,
  controlItems,
  randomFile,
  sha256Hex,
  startDeployment,
  startServers,
  stopServers,
  userToken,
  type TestDeployment,
} from '../helpers/servers.js';

function next<K extends keyof EngineEventDetails>(
  engine: WsUploaderEngine,
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

/** The rejection of a promise (fails when it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => {
      throw new Error(`expected a rejection, got ${String(v)}`);
    },
    (e: unknown) => e,
  );
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function base64(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

describe('WsUploaderEngine: inline items, messages, rooms, unpublish', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;
  let errors: WsUploaderError[] = [];

  function newEngine(options: Partial<ConstructorParameters<typeof WsUploaderEngine>[0]> = {}) {
    engine = new WsUploaderEngine({ controlUrl: d!.controlUrl, authToken: d!.token, ...options });
    errors = [];
    engine.on('error', (e) => errors.push(e.detail.error));
    return engine;
  }

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  it('publishes a small item inline: the control server keeps its bytes, nothing is uploaded', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const e = newEngine();
    const requests: unknown[] = [];
    e.on('transmit-request', (r) => requests.push(r.detail.task));
    await e.start();
    const file = new File(['hello inline'], 'note.txt', { type: 'text/plain' });
    const published = next(e, 'publish');
    const complete = next(e, 'complete');
    const [item] = e.addFiles([file]);
    const meta = (await published).items[0]!;
    expect(meta).to.deep.include({ itemId: item!.itemId, name: 'note.txt', size: 12 });
    expect(meta).not.to.have.property('content');
    const sha256 = await sha256Hex(await file.arrayBuffer());
    expect(await complete).to.deep.equal({
      itemId: item!.itemId,
      name: 'note.txt',
      size: 12,
      sha256,
      servers: [],
    });
    expect(e.items[0]).to.deep.include({ state: 'complete', inline: true, bytesStored: 12 });
    const held = (await controlItems(d)).find((i) => i.meta.itemId === item!.itemId)!;
    expect(held).to.deep.include({ state: 'stored', inline: true, sha256 });
    expect(held.meta.content).to.equal(base64('hello inline'));
    expect(requests).to.deep.equal([]);
    expect(errors).to.deep.equal([]);
  });

  it('uploads items over the inlineMax option and publishes the others inline', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const e = newEngine({ inlineMax: 4 });
    await e.start();
    const done = new Map<string, readonly string[]>();
    e.on('complete', (c) => done.set(c.detail.name, c.detail.servers));
    e.addFiles([new File(['abcd'], 'four'), new File(['abcde'], 'five')]);
    await until(() => done.size === 2);
    expect(done.get('four')).to.deep.equal([]);
    expect(done.get('five')).to.deep.equal(['up-1']);
    expect(
      () => new WsUploaderEngine({ controlUrl: 'ws://x', authToken: 't', inlineMax: -1 }),
    ).to.throw(ConfigError, /inlineMax/);
  });

  it('uploads an item the control server has no room for inline; send() with one rejects with quota-exceeded', async () => {
    d = await startDeployment({ uploadServers: 1, controlOptions: { inlineTotalMax: 1000 } });
    const e = newEngine();
    await e.start();
    const complete = next(e, 'complete');
    const [item] = e.addFiles([randomFile(2000)]);
    expect((await complete).servers).to.deep.equal(['up-1']);
    expect(e.items[0]).to.deep.include({ itemId: item!.itemId, inline: false, state: 'complete' });

    const refused = await rejection(e.send({ userId: 'nobody' }, { item: randomFile(3000) }));
    expect(refused).to.be.instanceOf(ServerError);
    expect(refused).to.include({ code: 'quota-exceeded' });
    // Over the control server's inlineMax: refused before anything is sent.
    const tooLarge = await rejection(e.send({ userId: 'nobody' }, { item: randomFile(70_000) }));
    expect(tooLarge).to.be.instanceOf(ServerError);
    expect(tooLarge).to.include({ code: 'too-large' });
    // Answered after the refusal of the message with the item (same connection, in order).
    expect(await e.send({ userId: 'nobody' }, { body: 'still here' })).to.equal(0);
    expect(e.items.map((i) => i.itemId)).to.deep.equal([item!.itemId]);
    expect(errors).to.deep.equal([]);
  });

  it('unpublishes items: their upload stops quietly and the control server forgets them', async () => {
    d = await startServers(1);
    const e = newEngine({ chunkSize: 64 * 1024 });
    await e.start();
    const complete = next(e, 'complete');
    const [small] = e.addFiles([new File(['x'], 'x.txt')]);
    await complete;
    const requested = next(e, 'transmit-request');
    const [big] = e.addFiles([randomFile(8 * 1024 * 1024)]);
    await requested;
    const unpublished = next(e, 'unpublished');
    const completes: string[] = [];
    e.on('complete', (c) => completes.push(c.detail.itemId));
    e.unpublish([small!.itemId, big!.itemId, 'never-published']);
    expect(e.items).to.deep.equal([]);
    expect([...(await unpublished).itemIds].sort()).to.deep.equal(
      [small!.itemId, big!.itemId].sort(),
    );
    expect(await controlItems(d)).to.deep.equal([]);
    await new Promise((r) => setTimeout(r, 300));
    expect(completes).to.deep.equal([]);
    expect(errors).to.deep.equal([]);
    expect(() => e.unpublish(['not an id'])).to.throw(ConfigError);
  });

  it('hands messages from the app to the page: no sender, and never a data: URL or an active type for SVG or HTML', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const e = newEngine();
    e.join('news'); // before start: joined on welcome
    await e.start();
    const svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>';
    const cases = [
      { mime: 'image/svg+xml', text: svg, type: 'application/octet-stream' },
      { mime: 'text/html', text: '<p>hi</p>', type: 'application/octet-stream' },
      { mime: 'text/plain;charset=utf-8', text: 'plain', type: 'text/plain;charset=utf-8' },
    ];
    for (const [i, c] of cases.entries()) {
      const size = new TextEncoder().encode(c.text).length;
      const got = next(e, 'message');
      const item = {
        itemId: `app-${i}`,
        name: `f${i}`,
        size,
        mime: c.mime,
        kind: 'file',
        content: base64(c.text),
      };
      expect(await appSend(d, { clientId: e.clientId! }, { body: 'from the app', item })).to.equal(
        1,
      );
      const m = await got;
      expect(m).not.to.have.property('from');
      expect(m.body).to.equal('from the app');
      expect(m.item!.meta).to.deep.include({ itemId: `app-${i}`, mime: c.mime, size });
      expect(m.item!.blob!.type).to.equal(c.type);
      expect(m.item!.blob!.name).to.equal(`f${i}`);
      expect(await m.item!.blob!.text()).to.equal(c.text);
      expect(m.item!.dataUrl).to.equal(undefined);
    }
    // The room joined before start reaches this page.
    const news = next(e, 'message');
    await until(async () => (await appSend(d!, { room: 'news' }, { body: 'extra' })) === 1);
    expect((await news).body).to.equal('extra');
    expect(e.rooms).to.deep.equal(['news']);
  });

  it('rejects send() with malformed arguments, before start, and when stopped', async () => {
    d = await startServers(1);
    const e = newEngine();
    expect(await rejection(e.send({ clientId: 'x' }, { body: 'hi' }))).to.be.instanceOf(
      TransportError,
    );
    const bad: [unknown, unknown][] = [
      [{}, { body: 'x' }],
      [{ clientId: 'a', room: 'b' }, { body: 'x' }],
      [{ room: 'not a room' }, { body: 'x' }],
      [{ userId: '' }, { body: 'x' }],
      [{ clientId: 'a' }, {}],
      [{ clientId: 'a' }, { body: 'x'.repeat(65_537) }],
    ];
    for (const [to, message] of bad)
      expect(await rejection(e.send(to as never, message as never))).to.be.instanceOf(ConfigError);
    expect(() => e.join('a room')).to.throw(ConfigError);
    expect(() => e.leave('')).to.throw(ConfigError);
    const started = e.start();
    const pending = e.send({ clientId: 'x' }, { body: 'hi' });
    await started;
    expect(await pending).to.equal(0);
    expect(await rejection(e.send({ clientId: 'a' }, { item: 42 as never }))).to.be.instanceOf(
      ConfigError,
    );
    // This control server takes no inline items (inlineMax 0): not even an empty one.
    expect(await rejection(e.send({ clientId: 'a' }, { item: new Blob([]) }))).to.include({
      code: 'too-large',
    });
    const empty = next(e, 'complete');
    e.addFiles([new File([], 'empty')]);
    expect(await empty).to.deep.include({ size: 0, servers: [] });
    expect(e.items.find((i) => i.name === 'empty')!.inline).not.to.equal(true);
    e.stop();
    void e.start();
    const waiting = e.send({ userId: 'x' }, { body: 'hi' });
    e.stop();
    expect((await rejection(waiting)) as DOMException).to.include({ name: 'AbortError' });
  });

  it('renews a credential that runs out with auth, staying connected', async () => {
    d = await startDeployment({ uploadServers: 1 });
    // Expired 25 s ago: the control server's 30 s leeway closes the session in about 5 s.
    const stale = await userToken(d, 'test-user', -25);
    const fresh = await userToken(d, 'test-user');
    let calls = 0;
    const e = newEngine({ auth: () => (++calls === 1 ? stale : fresh) });
    const states: string[] = [];
    e.on('state', (s) => states.push(s.detail.state));
    await e.start();
    await new Promise((r) => setTimeout(r, 6500));
    expect(calls).to.equal(2);
    expect(states).to.deep.equal(['connecting', 'open']);
    expect(await e.send({ userId: 'nobody' }, { body: 'still connected' })).to.equal(0);
    expect(errors).to.deep.equal([]);
  });

  it('reconnects with a fresh credential when the session expired, resumes it and joins its rooms again', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const stale = await userToken(d, 'test-user', -25);
    const fresh = await userToken(d, 'test-user');
    let calls = 0;
    // The renewal gets the same credential (nothing to send); the reconnect gets a fresh one.
    const e = newEngine({ auth: () => (++calls <= 2 ? stale : fresh), retryDelays: [50] });
    const states: string[] = [];
    e.on('state', (s) => states.push(s.detail.state));
    await e.start();
    e.join('lobby');
    const clientId = e.clientId;
    await until(() => errors.some((x) => x.code === 'auth-expired'), 10_000);
    await until(() => states.at(-1) === 'open' && states.includes('down'));
    expect(calls).to.equal(3);
    expect(e.clientId).to.equal(clientId);
    await until(async () => (await appSend(d!, { room: 'lobby' }, { body: 'back' })) === 1);
  });
});
