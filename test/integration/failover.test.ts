// An upload server dies in the middle of an upload: the control server re-plans the rest onto a
// live server, and the item arrives whole there, verified, without an error in the page.
import { expect } from '@open-wc/testing';
import { WsUploaderEngine } from '../../src/index.js';
import {
  killUpload,
  randomFile,
  sha256Hex,
  startDeployment,
  stopServers,
  storedSha256,
  taskLog,
  type TestDeployment,
} from '../helpers/servers.js';

describe('failover', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  it('moves an upload off an upload server that dies onto a live one; the item arrives whole there', async () => {
    d = await startDeployment({ uploadServers: 2, linked: true });
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 16 * 1024,
    });
    await engine.start();
    const errors: unknown[] = [];
    engine.on('error', (e) => errors.push(e.detail.error.code));
    const file = randomFile(6_000_000, 'failover.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const first = new Promise<string>((resolve) => {
      const off = engine!.on('transmit-request', (e) => {
        off();
        resolve(e.detail.task.ranges[0]!.serverId);
      });
    });
    const [item] = engine.addFiles([file]);
    const doomed = await first;
    // Some bytes are stored on it; then it dies.
    await new Promise<void>((resolve) => {
      const off = engine!.on('progress', (e) => {
        if (e.detail.item.bytesStored > 500_000) {
          off();
          resolve();
        }
      });
    });
    const moved = new Promise<string>((resolve) => {
      const off = engine!.on('transmit-request', (e) => {
        if (e.detail.task.reason !== 'replan') return;
        off();
        resolve(e.detail.task.ranges[0]!.serverId);
      });
    });
    const complete = new Promise<{ sha256?: string; servers: readonly string[] }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    expect(await killUpload(d, doomed)).to.equal(true);
    const survivor = await moved;
    expect(survivor).to.not.equal(doomed);
    const result = await complete;
    expect(result.sha256).to.equal(expected);
    expect(result.servers).to.deep.equal([survivor]);
    expect(await storedSha256(d, survivor, item!.itemId)).to.deep.equal({
      complete: true,
      size: 6_000_000,
      sha256: expected,
    });
    // The control server recorded it stored, on the survivor; the page saw no error.
    const steps = await taskLog(d);
    expect(steps.filter((s) => s.type === 'complete').length).to.equal(1);
    expect(errors).to.deep.equal([]);
  });
});
