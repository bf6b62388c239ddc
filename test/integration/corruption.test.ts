// A network that flips a byte of a chunk on its way to the upload server: the server finds it by
// the chunk's CRC-32C, stores none of it and says so, and the engine sends the chunk again.
import { expect } from '@open-wc/testing';
import { WsUploaderEngine } from '../../src/index.js';
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

describe('a chunk corrupted in transit', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  it('is refused by its CRC-32C (checksum-mismatch), sent again, and the item arrives intact', async () => {
    d = await startServers(1);
    const upload = d.servers[0]!;
    const proxy = await corruptingProxy(d, upload.id, 3);
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 16 * 1024,
      // The page reaches the upload server through the faulty network.
      createSocket: (url, protocols) =>
        new WebSocket(url === upload.url ? proxy.url : url, protocols),
    });
    await engine.start();
    const errors: unknown[] = [];
    engine.on('error', (e) => errors.push(e.detail.error.code));
    const file = randomFile(1_000_000, 'noisy.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = new Promise<{ sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const [item] = engine.addFiles([file]);
    expect((await complete).sha256).to.equal(expected);
    expect(await proxy.corrupted()).to.equal(1);
    const refused = (await uploadLogs(d, upload.id)).filter(
      (e) => e.event === 'upload-error' && e['code'] === 'checksum-mismatch',
    );
    expect(refused).to.have.length(1);
    expect(await storedSha256(d, upload.id, item!.itemId)).to.deep.equal({
      complete: true,
      size: 1_000_000,
      sha256: expected,
    });
    expect(errors).to.deep.equal([]);
  });
});
