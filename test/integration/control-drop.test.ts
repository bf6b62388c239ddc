// The control channel drops in the middle of an upload: the upload goes on, the engine reconnects
// and resumes its session, and the completion it could not report reaches the control server.
import { expect } from '@open-wc/testing';
import { WsUploaderEngine } from '../../src/index.js';
import {
  controlItems,
  dropControl,
  faultProxy,
  randomFile,
  restartControl,
  sha256Hex,
  startDeployment,
  startServers,
  stopServers,
  storedSha256,
  type TestDeployment,
} from '../helpers/servers.js';
import { until } from '../helpers/until.js';

describe('control channel drop', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  it('keeps uploading while the control channel is down and reports the completion after it reconnects', async () => {
    d = await startServers(1);
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 16 * 1024,
      retryDelays: [50, 100, 200],
    });
    await engine.start();
    const states: string[] = [];
    engine.on('state', (e) => states.push(e.detail.state));
    const file = randomFile(4_000_000, 'through-the-blip.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = new Promise<{ sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const [item] = engine.addFiles([file]);
    await new Promise<void>((resolve) => {
      const off = engine!.on('progress', (e) => {
        if (e.detail.item.bytesStored > 200_000) {
          off();
          resolve();
        }
      });
    });
    expect(await dropControl(d)).to.be.above(0);
    expect((await complete).sha256).to.equal(expected);
    // The control server hears of it once the channel is back (the session resumed).
    const end = Date.now() + 10_000;
    let stored: { state: string; sha256?: string } | undefined;
    while (Date.now() < end) {
      stored = (await controlItems(d)).find((i) => i.meta.itemId === item!.itemId);
      if (stored?.state === 'stored') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(stored).to.deep.include({ state: 'stored', sha256: expected });
    expect(states).to.include('down');
    expect(states.at(-1)).to.equal('open');
  });

  it('carries on when the control server restarts with its state lost: the new one learns the item and records it stored', async () => {
    d = await startDeployment({ uploadServers: 1, linked: true, controlOptions: { inlineMax: 0 } });
    const upload = d.servers[0]!;
    // Slow enough for the restart to fall in the middle of the upload.
    const proxy = await faultProxy(d, upload.id, { bytesPerSecond: 3_000_000 });
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 64 * 1024,
      retryDelays: [50, 100, 200],
      createSocket: (url, protocols) =>
        new WebSocket(url === upload.url ? proxy.via(url) : url, protocols),
    });
    const errors: string[] = [];
    engine.on('error', (e) => errors.push(e.detail.error.code));
    await engine.start();
    const states: string[] = [];
    engine.on('state', (e) => states.push(e.detail.state));
    const file = randomFile(4_000_000, 'through-the-restart.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = new Promise<{ sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const [item] = engine.addFiles([file]);
    const itemId = item!.itemId;
    await until(() => engine!.items[0]!.bytesStored > 500_000);
    expect(await restartControl(d, 300)).to.equal(true);
    expect(engine.items[0]!.bytesStored).to.be.below(file.size);
    expect((await complete).sha256).to.equal(expected);
    // The new control server, which knew nothing, ends up with the item stored and verified.
    let known: { state: string; sha256?: string } | undefined;
    await until(async () => {
      known = (await controlItems(d!)).find((i) => i.meta.itemId === itemId);
      return known?.state === 'stored';
    }, 10_000);
    expect(known).to.deep.include({ state: 'stored', sha256: expected });
    expect(await storedSha256(d, upload.id, itemId)).to.deep.equal({
      complete: true,
      size: file.size,
      sha256: expected,
    });
    expect(states).to.include('down');
    expect(states.at(-1)).to.equal('open');
    // Only the lost connection itself; the codes show in a failure.
    expect(errors.filter((code) => code !== 'socket-closed')).to.deep.equal([]);
  });
});
