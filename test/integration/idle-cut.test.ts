// F14: the page reaches its servers through a NAT (or proxy) that cuts connections idle for longer
// than 1 s (60 s scaled down), and the user pauses an upload for several of those periods. Both
// the control connection and the upload-server connection cross the NAT (a FaultProxy each, which
// also slows the upload to 512 KB/s so that there is something to pause).
import { expect } from '@open-wc/testing';
import { WsUploaderEngine, type ConnectionState, type EngineOptions } from '../../src/index.js';
import {
  faultProxy,
  randomFile,
  sha256Hex,
  startDeployment,
  stopServers,
  storedSha256,
  type TestDeployment,
  type TestFaultProxy,
} from '../helpers/servers.js';
import { until } from '../helpers/until.js';

const CUT_MS = 1000;
const CHUNK = 32 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('a NAT that cuts idle connections while an upload is paused (F14)', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  /**
   * A deployment behind the NAT, an engine with `options`, and a 512 KiB item paused once a quarter
   * of it is stored. Records the control channel's and the upload server's states.
   * @param heartbeatMs the control server's ping interval
   */
  async function setupPaused(
    heartbeatMs: number,
    options: Partial<EngineOptions>,
  ): Promise<{
    control: TestFaultProxy;
    upload: TestFaultProxy;
    controlStates: ConnectionState[];
    serverStates: ConnectionState[];
    file: File;
    itemId: string;
    complete: Promise<{ sha256?: string }>;
  }> {
    d = await startDeployment({
      uploadServers: 1,
      controlOptions: { inlineMax: 0, heartbeatMs },
      // At most two chunks in flight: pausing stops the bytes soon.
      uploadOptions: { maxChunk: CHUNK, window: 2 * CHUNK },
    });
    const server = d.servers[0]!;
    const control = await faultProxy(d, 'control', { idleCutMs: CUT_MS });
    const upload = await faultProxy(d, server.id, { idleCutMs: CUT_MS, bytesPerSecond: 512_000 });
    engine = new WsUploaderEngine({
      controlUrl: control.via(d.controlUrl),
      authToken: d.token,
      chunkSize: CHUNK,
      retryDelays: [100, 200, 400],
      createSocket: (url, protocols) =>
        new WebSocket(url === server.url ? upload.via(url) : url, protocols),
      ...options,
    });
    const controlStates: ConnectionState[] = [];
    const serverStates: ConnectionState[] = [];
    engine.on('state', (e) => controlStates.push(e.detail.state));
    engine.on('servers', (e) => {
      const state = e.detail.servers[0]?.state;
      if (state && state !== serverStates.at(-1)) serverStates.push(state);
    });
    await engine.start();
    await until(() => engine!.servers[0]?.state === 'open');
    const file = randomFile(512 * 1024, 'paused.bin');
    const complete = new Promise<{ sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const [item] = engine.addFiles([file]);
    const itemId = item!.itemId;
    const status = (): { state: string; bytesStored: number } =>
      engine!.items.find((i) => i.itemId === itemId)!;
    await until(() => status().bytesStored >= file.size / 4, 10_000);
    engine.pause([itemId]);
    expect(status().state).to.equal('paused');
    // From here on: the states since the pause, starting with the current ones.
    controlStates.splice(0, Infinity, engine.state);
    serverStates.splice(0, Infinity, engine.servers[0]!.state);
    return { control, upload, controlStates, serverStates, file, itemId, complete };
  }

  it('F14: pings shorter than the cut keep both connections open through three and a half idle periods while paused; resume completes the item', async () => {
    const { control, upload, controlStates, serverStates, file, itemId, complete } =
      await setupPaused(250, { probeIntervalMs: 300 });
    const before = [(await control.stats()).connections, (await upload.stats()).connections];
    await sleep(3.5 * CUT_MS);
    // Nothing was cut, nothing reconnected, no state changed.
    for (const proxy of [control, upload])
      expect(await proxy.stats()).to.include({ idleClosed: 0, open: 1 });
    expect([(await control.stats()).connections, (await upload.stats()).connections]).to.deep.equal(
      before,
    );
    expect(controlStates).to.deep.equal(['open']);
    expect(serverStates).to.deep.equal(['open']);
    expect(engine!.state).to.equal('open');
    const stored = engine!.items.find((i) => i.itemId === itemId)!.bytesStored;
    expect(stored).to.be.below(file.size);
    engine!.resume([itemId]);
    expect((await complete).sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
    expect((await storedSha256(d!, d!.servers[0]!.id, itemId))?.complete).to.equal(true);
  });

  it('F14: with heartbeats longer than the cut the idle connections are cut; the engine reconnects cleanly (down, then open) and resume completes the item', async () => {
    const { control, upload, controlStates, serverStates, file, itemId, complete } =
      await setupPaused(10_000, { probeIntervalMs: 10_000 });
    // Both connections are cut and come back at least once.
    await until(
      () =>
        controlStates.includes('down') &&
        controlStates.at(-1) === 'open' &&
        serverStates.includes('down') &&
        serverStates.at(-1) === 'open',
      4 * CUT_MS,
    );
    expect((await control.stats()).idleClosed).to.be.at.least(1);
    expect((await upload.stats()).idleClosed).to.be.at.least(1);
    expect(controlStates.indexOf('down')).to.be.below(controlStates.lastIndexOf('open'));
    engine!.resume([itemId]);
    expect((await complete).sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
    expect((await storedSha256(d!, d!.servers[0]!.id, itemId))?.complete).to.equal(true);
  });
});
