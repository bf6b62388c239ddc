// The control channel drops in the middle of an upload: the upload goes on, the engine reconnects
// and resumes its session, and the completion it could not report reaches the control server.
import { expect } from '@open-wc/testing';
import { WsUploaderEngine } from '../../src/index.js';
import {
  controlItems,
  dropControl,
  randomFile,
  sha256Hex,
  startServers,
  stopServers,
  type TestDeployment,
} from '../helpers/servers.js';

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
});
