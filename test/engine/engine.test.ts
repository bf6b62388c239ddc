import { expect } from '@open-wc/testing';
import {
  ConfigError,
  ServerError,
  WsUploaderEngine,
  type EngineEvent,
  type UploadResult,
} from '../../src/index.js';
import {
  randomFile,
  sha256Hex,
  startServers,
  stopServers,
  storedSha256,
  killUpload,
  restartUpload,
  controlItems,
  taskLog,
  type TestDeployment,
} from '../helpers/servers.js';
import { until } from '../helpers/until.js';

function once<K extends 'complete' | 'servers' | 'error' | 'progress' | 'unpublished'>(
  engine: WsUploaderEngine,
  type: K,
  test: (e: EngineEvent<K>) => boolean = () => true,
) {
  return new Promise<EngineEvent<K>>((resolve) => {
    const off = engine.on(type, (e) => {
      if (!test(e)) return;
      off();
      resolve(e);
    });
  });
}

describe('WsUploaderEngine', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  it('connects, lists the upload servers and measures their RTT', async () => {
    d = await startServers(2);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    const probed = once(
      engine,
      'servers',
      (e) => e.detail.servers.length === 2 && e.detail.servers.every((s) => s.rttMs !== undefined),
    );
    await engine.start();
    const { servers } = (await probed).detail;
    expect(servers.map((s) => s.id).sort()).to.deep.equal(['up-1', 'up-2']);
    for (const s of servers) {
      expect(s.state).to.equal('open');
      expect(s.rttMs).to.be.a('number').and.to.be.at.least(0);
    }
  });

  it('uploads a published file where the control server asks and reports its SHA-256', async () => {
    d = await startServers(2);
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 64 * 1024,
    });
    await engine.start();
    const file = randomFile(1_000_000, 'one-mb.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = once(engine, 'complete');
    const [item] = engine.addFiles([file]);
    const result: UploadResult = (await complete).detail;
    expect(result).to.deep.include({
      itemId: item!.itemId,
      name: 'one-mb.bin',
      size: 1_000_000,
      sha256: expected,
    });
    expect(result.servers).to.have.length(1);
    // The server that took it has a throughput now (16 chunks acknowledged); the other none.
    const [target] = result.servers;
    for (const s of engine.servers) {
      if (s.id === target) expect(s.throughput).to.be.a('number').and.to.be.above(0);
      else expect(s.throughput).to.equal(undefined);
    }
    const stored = await storedSha256(d, result.servers[0]!, result.itemId);
    expect(stored).to.deep.equal({ complete: true, size: 1_000_000, sha256: expected });
    const status = engine.items.find((i) => i.itemId === item!.itemId)!;
    expect(status).to.deep.include({
      state: 'complete',
      bytesStored: 1_000_000,
      bytesTotal: 1_000_000,
    });
  });

  it('adds text, bytes and pasted data (files, else plain text) as items, and uploads them', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token, inlineMax: 0 });
    await engine.start();
    const completes: UploadResult[] = [];
    engine.on('complete', (e) => completes.push(e.detail));
    const bytes = new Uint8Array([1, 2, 3, 250]);
    const png = new File([new Uint8Array([137, 80, 78, 71, 1, 2])], 'image.png', {
      type: 'image/png',
    });
    const withFile = new DataTransfer();
    withFile.items.add(png);
    withFile.setData('text/plain', 'not this: the file wins');
    const withText = new DataTransfer();
    withText.setData('text/plain', 'pasted words');
    const text = engine.addText('héllo', 'note.txt');
    const raw = engine.addBytes(bytes.subarray(1), { name: 'three.bin' });
    bytes[1] = 0; // copied when added
    const [pastedFile, ...more] = engine.addClipboard(withFile);
    const [pastedText] = engine.addClipboard(withText);
    expect(more).to.deep.equal([]);
    expect(engine.addClipboard(new DataTransfer())).to.deep.equal([]);
    expect(() => engine!.addText(5 as unknown as string)).to.throw(ConfigError);
    expect(() => engine!.addBytes('x' as unknown as Uint8Array)).to.throw(ConfigError);
    expect([text, raw, pastedFile, pastedText].map((i) => [i.name, i.kind, i.size])).to.deep.equal([
      ['note.txt', 'text', 6],
      ['three.bin', 'file', 3],
      ['image.png', 'clipboard', 6],
      ['pasted.txt', 'clipboard', 12],
    ]);
    await until(() => completes.length === 4);
    const expected = new Map([
      [text.itemId, await sha256Hex(new TextEncoder().encode('héllo'))],
      [raw.itemId, await sha256Hex(new Uint8Array([2, 3, 250]))],
      [pastedFile!.itemId, await sha256Hex(await png.arrayBuffer())],
      [pastedText!.itemId, await sha256Hex(new TextEncoder().encode('pasted words'))],
    ]);
    for (const c of completes) {
      expect(c.sha256).to.equal(expected.get(c.itemId));
      expect(await storedSha256(d, c.servers[0]!, c.itemId)).to.deep.include({ complete: true });
    }
  });

  it('uploads ranges by hand with transmit(), split over two servers', async () => {
    d = await startServers(2);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    // Publish without letting the control server's own task finish first: wait for it to end.
    const file = randomFile(300_000);
    const first = once(engine, 'complete');
    const [item] = engine.addFiles([file]);
    await first;
    const result = await engine.transmit({
      itemId: item!.itemId,
      ranges: [
        { start: 0, end: 100_000, serverId: 'up-1' },
        { start: 100_000, end: 300_000, serverId: 'up-2' },
      ],
    });
    expect(result.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
    expect(result.servers).to.deep.equal(['up-1', 'up-2']);
  });

  it('sends a part of an item by hand without hashing the rest of it: no sha256, item not complete', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    const file = randomFile(2_000_000);
    const first = once(engine, 'complete');
    const [item] = engine.addFiles([file]);
    await first;
    // A file whose reads past the part are counted: hashing the whole item would read them.
    let readPast = 0;
    const slice = Blob.prototype.slice;
    const watched = file;
    watched.slice = function (start?: number, end?: number, type?: string) {
      if ((end ?? this.size) > 1000) readPast++;
      return slice.call(this, start, end, type);
    };
    try {
      const result = await engine.transmit({
        itemId: item!.itemId,
        ranges: [{ start: 0, end: 1000, serverId: 'up-1' }],
      });
      expect(result).to.not.have.property('sha256');
      expect(result.servers).to.deep.equal(['up-1']);
      expect(readPast).to.equal(0);
    } finally {
      watched.slice = slice;
    }
  });

  it('pauses an upload where it is (no error), resumes it from what the server holds, and cancels another quietly', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 16 * 1024,
      maxParallel: 2,
    });
    await engine.start();
    const errors: unknown[] = [];
    engine.on('error', (e) => errors.push(e.detail));
    const file = randomFile(4_000_000, 'paused.bin');
    const [item] = engine.addFiles([file]);
    const id = item!.itemId;
    // Paused once some bytes are stored.
    await new Promise<void>((resolve) => {
      const off = engine!.on('progress', (e) => {
        if (e.detail.item.itemId === id && e.detail.item.bytesStored > 0) {
          off();
          resolve();
        }
      });
    });
    engine.pause([id]);
    const status = () => engine!.items.find((i) => i.itemId === id)!;
    expect(status().state).to.equal('paused');
    await new Promise((r) => setTimeout(r, 300));
    const held = status().bytesStored;
    await new Promise((r) => setTimeout(r, 300));
    expect(status().bytesStored).to.equal(held);
    expect(status().state).to.equal('paused');
    expect(held).to.be.below(4_000_000);
    const done = once(engine, 'complete', (e) => e.detail.itemId === id);
    engine.resume([id]);
    const result = (await done).detail;
    expect(result.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
    expect(status().state).to.equal('complete');
    // Cancel: the item goes, without an error.
    const [other] = engine.addFiles([randomFile(4_000_000, 'cancelled.bin')]);
    await once(engine, 'progress', (e) => e.detail.item.itemId === other!.itemId);
    engine.cancel([other!.itemId]);
    await once(engine, 'unpublished');
    expect(engine.items.map((i) => i.itemId)).to.deep.equal([id]);
    expect(errors).to.deep.equal([]);
  });

  it('runs a task again when resumed before its paused run has stopped in the data Worker', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 64 * 1024,
    });
    await engine.start();
    const errors: unknown[] = [];
    engine.on('error', (e) => errors.push(e.detail));
    const file = randomFile(4_000_000, 'bounced.bin');
    const [item] = engine.addFiles([file]);
    const id = item!.itemId;
    await once(
      engine,
      'progress',
      (e) => e.detail.item.itemId === id && e.detail.item.bytesStored > 0,
    );
    const done = once(engine, 'complete', (e) => e.detail.itemId === id);
    // The Worker hears of the pause only after resume() has run.
    engine.pause([id]);
    engine.resume([id]);
    expect((await done).detail.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
    expect(engine.dataThread).to.equal('worker');
    expect(errors).to.deep.equal([]);
  });

  it('asks onShouldRetry before trying a failed upload again, and stops when it says no', async () => {
    d = await startServers(1);
    const asked: [string, number, boolean][] = [];
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 16 * 1024,
      onShouldRetry: (error, attempt, retryable) => {
        asked.push([error.code, attempt, retryable]);
        return false;
      },
    });
    await engine.start();
    const failed = once(engine, 'error');
    const [item] = engine.addFiles([randomFile(4_000_000, 'doomed.bin')]);
    await once(engine, 'progress', (e) => e.detail.item.bytesStored > 0);
    expect(await killUpload(d, 'up-1')).to.equal(true);
    const { error } = (await failed).detail;
    expect(error.code).to.equal('socket-closed');
    expect(asked).to.deep.equal([['socket-closed', 0, true]]);
    expect(engine.items.find((i) => i.itemId === item!.itemId)!.state).to.equal('failed');

    // retry(): the failed item is published again and goes on where the server kept it.
    expect(await restartUpload(d, 'up-1')).to.equal(true);
    await until(() => engine!.servers[0]?.state === 'open');
    const complete = once(engine, 'complete');
    expect(engine.retry().map((i) => [i.itemId, i.state])).to.deep.equal([
      [item!.itemId, 'publishing'],
    ]);
    expect(engine.retry()).to.deep.equal([]); // nothing failed any more
    const result = (await complete).detail;
    expect(result.itemId).to.equal(item!.itemId);
    expect(await storedSha256(d, 'up-1', item!.itemId)).to.deep.include({ complete: true });
  });

  it('lets the page decline a task (no error; the item waits) or send it to another server', async () => {
    d = await startServers(2);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    await until(() => engine!.servers.every((s) => s.state === 'open'));
    const errors: unknown[] = [];
    engine.on('error', (e) => errors.push(e.detail.error));
    const file = randomFile(300_000, 'choose.bin');
    const expected = await sha256Hex(await file.arrayBuffer());

    // Declined: nothing is sent, the item is published (waiting) here and on the control server.
    const declined = new Promise<string>((resolve) => {
      const off = engine!.on('transmit-request', (e) => {
        off();
        e.preventDefault();
        resolve(e.detail.task.ranges[0]!.serverId);
      });
    });
    const [item] = engine.addFiles([file]);
    const planned = await declined;
    await until(() => engine!.items[0]?.state === 'published');
    await until(async () => (await controlItems(d!))[0]?.state === 'published');
    const fails = (await taskLog(d)).filter((t) => t.type === 'fail');
    expect(fails.map((t) => [t.itemId, t.code])).to.deep.equal([[item!.itemId, 'declined']]);

    // Sent elsewhere: the next task's ranges go to the other server.
    const other = engine.servers.find((s) => s.id !== planned)!.id;
    const off = engine.on('transmit-request', (e) => {
      expect(() => e.detail.retarget([{ start: 0, end: file.size + 1, serverId: other }])).to.throw(
        ConfigError,
      );
      e.detail.retarget([{ start: 0, end: file.size, serverId: other }]);
    });
    const complete = once(engine, 'complete');
    engine.publish([item!.itemId]);
    const result = (await complete).detail;
    off();
    expect(result).to.deep.include({ itemId: item!.itemId, sha256: expected });
    expect(result.servers).to.deep.equal([other]);
    expect(await storedSha256(d, other, item!.itemId)).to.deep.equal({
      complete: true,
      size: file.size,
      sha256: expected,
    });
    expect(errors).to.deep.equal([]);

    // transmit() by hand, declined: it rejects with an AbortError.
    const off2 = engine.on('transmit-request', (e) => e.preventDefault());
    const [second] = engine.addFiles([randomFile(1000, 'by-hand.bin')]);
    let rejection: unknown;
    await engine
      .transmit({ itemId: second!.itemId, ranges: [{ start: 0, end: 1000, serverId: other }] })
      .catch((e: unknown) => (rejection = e));
    off2();
    expect((rejection as DOMException).name).to.equal('AbortError');
    expect(errors).to.deep.equal([]);
  });

  it('completes an empty file without sending anything', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    const complete = once(engine, 'complete');
    engine.addFiles([new File([], 'empty.txt')]);
    expect((await complete).detail).to.deep.include({
      name: 'empty.txt',
      size: 0,
      sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    });
  });

  it('can be stopped and started again', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    engine.stop();
    expect(engine.state).to.equal('closed');
    const open = once(engine, 'servers', (e) => e.detail.servers.some((s) => s.state === 'open'));
    await engine.start();
    await open;
    const complete = once(engine, 'complete');
    engine.addFiles([new Blob(['again'])]);
    expect((await complete).detail.size).to.equal(5);
  });

  it('rejects a pending start() when stopped', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    const started = engine.start();
    engine.stop();
    const error = await started.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as DOMException).name).to.equal('AbortError');
  });

  it('rejects start() when the control server refuses the credential', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: 'not-a-valid-token' });
    const error = await engine.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(ServerError);
    expect((error as ServerError).code).to.equal('auth-failed');
  });

  it('changes chunkSize, maxParallel and inlineMax on a running engine, refusing bad values', () => {
    engine = new WsUploaderEngine({ controlUrl: 'ws://127.0.0.1:1', authToken: 't' });
    expect(() => engine!.configure({ chunkSize: -1 })).to.throw(ConfigError, /chunkSize/);
    expect(() => engine!.configure({ maxParallel: 0 })).to.throw(ConfigError, /maxParallel/);
    expect(() => engine!.configure({ inlineMax: 1.5 })).to.throw(ConfigError, /inlineMax/);
    engine.configure({ chunkSize: 1024, maxParallel: 5, inlineMax: 0 });
  });

  it('throws ConfigError for missing or invalid options', () => {
    expect(() => new WsUploaderEngine({ controlUrl: 'http://x', authToken: 't' })).to.throw(
      ConfigError,
      /controlUrl/,
    );
    expect(() => new WsUploaderEngine({ controlUrl: 'ws://x' })).to.throw(ConfigError, /authToken/);
    expect(
      () => new WsUploaderEngine({ controlUrl: 'ws://x', authToken: 't', chunkSize: 0 }),
    ).to.throw(ConfigError, /chunkSize/);
  });
});
