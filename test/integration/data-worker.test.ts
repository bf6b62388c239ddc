// The data Worker: the engine's sockets, reads and checksums run off the page's thread, in both
// integrity modes and over every transport, and where no Worker starts the page does the work.
import { expect } from '@open-wc/testing';
import { WsUploaderEngine, type EngineOptions, type UploadResult } from '../../src/index.js';
import {
  corruptingProxy,
  randomFile,
  sha256Hex,
  startServers,
  stopServers,
  storedSha256,
  uploadLogs,
  type TestDeployment,
} from '../helpers/servers.js';

/** Uploads `file` and resolves with its `complete`, noting every progress of it. */
function upload(
  engine: WsUploaderEngine,
  file: File,
): { done: Promise<UploadResult>; progress: { sent: number; stored: number }[] } {
  const progress: { sent: number; stored: number }[] = [];
  engine.on('progress', (e) =>
    progress.push({ sent: e.detail.item.bytesSent, stored: e.detail.item.bytesStored }),
  );
  const done = new Promise<UploadResult>((resolve, reject) => {
    engine.on('complete', (e) => resolve(e.detail));
    engine.on('error', (e) => reject(e.detail.error));
  });
  engine.addFiles([file]);
  return { done, progress };
}

describe('the data Worker', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  const cases: {
    protocol: 'dup/2' | 'dup/1' | 'http/1';
    integrity: 'sha256' | 'transport';
    worker: boolean;
  }[] = [];
  for (const worker of [true, false])
    for (const protocol of ['dup/2', 'dup/1', 'http/1'] as const)
      for (const integrity of ['transport', 'sha256'] as const)
        cases.push({ protocol, integrity, worker });

  for (const { protocol, integrity, worker } of cases) {
    const where = worker ? 'in the data Worker' : 'on the page (dataWorker: false)';
    it(`uploads over ${protocol} with integrity ${integrity} ${where}: the completion's SHA-256 is the bytes on disk`, async () => {
      d = await startServers(1);
      engine = new WsUploaderEngine({
        controlUrl: d.controlUrl,
        authToken: d.token,
        protocols: [protocol],
        integrity,
        dataWorker: worker,
      });
      await engine.start();
      expect(engine.dataThread).to.equal(worker ? 'worker' : 'page');
      const file = randomFile(3 * 1024 * 1024 + 17, 'worker.bin');
      const expected = await sha256Hex(await file.arrayBuffer());
      const { done, progress } = upload(engine, file);
      const result = await done;
      expect(result.sha256).to.equal(expected);
      expect(await storedSha256(d, d.servers[0]!.id, result.itemId)).to.deep.equal({
        complete: true,
        size: file.size,
        sha256: expected,
      });
      expect(engine.servers[0]!.protocol).to.equal(protocol);
      // Progress never goes backwards, and ends at the whole item.
      for (let i = 1; i < progress.length; i++) {
        expect(progress[i]!.sent).to.be.at.least(progress[i - 1]!.sent);
        expect(progress[i]!.stored).to.be.at.least(progress[i - 1]!.stored);
      }
      expect(progress.at(-1)!.stored).to.equal(file.size);
    });
  }

  it('splits an item over two servers in transport mode; the page hashes it, and each server stores its part', async () => {
    d = await startServers(2);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    const file = randomFile(2 * 1024 * 1024, 'split.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    engine.on('transmit-request', (e) =>
      e.detail.retarget([
        { start: 0, end: 1024 * 1024, serverId: d!.servers[0]!.id },
        { start: 1024 * 1024, end: file.size, serverId: d!.servers[1]!.id },
      ]),
    );
    const result = await upload(engine, file).done;
    expect(result.sha256).to.equal(expected);
    expect([...result.servers].sort()).to.deep.equal([d.servers[0]!.id, d.servers[1]!.id].sort());
  });

  it('falls back to the page when its script cannot be loaded, says so in a degraded event, and uploads', async () => {
    d = await startServers(1);
    const options: EngineOptions = {
      controlUrl: d.controlUrl,
      authToken: d.token,
      dataWorker: new URL('/no-such-data-worker.js', location.href),
    };
    engine = new WsUploaderEngine(options);
    const degraded = new Promise<{ reason: string; message: string }>((resolve) =>
      engine!.on('degraded', (e) => resolve(e.detail)),
    );
    await engine.start();
    const file = randomFile(1024 * 1024, 'fallback.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const { done } = upload(engine, file);
    expect((await degraded).reason).to.equal('data-worker');
    expect(engine.dataThread).to.equal('page');
    const result = await done;
    expect(result.sha256).to.equal(expected);
    expect((await storedSha256(d, d.servers[0]!.id, result.itemId))?.sha256).to.equal(expected);
  });

  it('ends its Worker on stop(), and starts a new one when started again', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    const first = randomFile(200_000, 'first.bin');
    expect((await upload(engine, first).done).sha256).to.equal(
      await sha256Hex(await first.arrayBuffer()),
    );
    engine.stop();
    expect(engine.servers).to.deep.equal([]);
    await engine.start();
    expect(engine.dataThread).to.equal('worker');
    const second = randomFile(300_000, 'second.bin');
    const result = await upload(engine, second).done;
    expect(result.sha256).to.equal(await sha256Hex(await second.arrayBuffer()));
    expect((await storedSha256(d, d.servers[0]!.id, result.itemId))?.complete).to.equal(true);
  });

  it('keeps the work on the page with dataWorker: false, without a degraded event', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      dataWorker: false,
    });
    let degraded = 0;
    engine.on('degraded', () => degraded++);
    await engine.start();
    expect(engine.dataThread).to.equal('page');
    const file = randomFile(300_000, 'page.bin');
    const result = await upload(engine, file).done;
    expect(result.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
    expect(degraded).to.equal(0);
  });

  it('asks the page whether to try again (onShouldRetry) from the Worker', async () => {
    d = await startServers(1, { maxItemSize: 1000 });
    const asked: string[] = [];
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      onShouldRetry: (error) => {
        asked.push(error.code);
        return false;
      },
    });
    await engine.start();
    expect(engine.dataThread).to.equal('worker');
    const failed = new Promise<string>((resolve) =>
      engine!.on('error', (e) => resolve(e.detail.error.code)),
    );
    engine.addFiles([randomFile(5000, 'big.bin')]);
    const code = await failed;
    expect(code).to.equal('too-large');
    expect(asked).to.deep.equal(['too-large']);
  });

  for (const integrity of ['transport', 'sha256'] as const)
    it(`a chunk corrupted in transit is refused by its CRC-32C and sent again (integrity ${integrity})`, async () => {
      d = await startServers(1);
      const server = d.servers[0]!;
      const proxy = await corruptingProxy(d, server.id, 3);
      engine = new WsUploaderEngine({
        controlUrl: d.controlUrl,
        authToken: d.token,
        integrity,
        chunkSize: 16 * 1024,
        createSocket: (url, protocols) =>
          new WebSocket(url === server.url ? proxy.url : url, protocols),
      });
      await engine.start();
      const file = randomFile(400_000, 'noisy.bin');
      const expected = await sha256Hex(await file.arrayBuffer());
      const result = await upload(engine, file).done;
      expect(result.sha256).to.equal(expected);
      expect(await proxy.corrupted()).to.equal(1);
      const refused = (await uploadLogs(d, server.id)).filter(
        (e) => e.event === 'upload-error' && e['code'] === 'checksum-mismatch',
      );
      expect(refused).to.have.length(1);
      expect((await storedSha256(d, server.id, result.itemId))?.sha256).to.equal(expected);
    });
});
