// F4: a slow network that also slices the bytes into tiny writes (toxiproxy `bandwidth` 5 KB/s and
// `slicer`, scaled to 128 KB/s and 256-byte writes). A 512 KiB chunk would take about 4 s to cross
// it: longer than the engine's stall timeout and the upload server's idle timeout and heartbeat
// here, and the page's bytes leave its socket buffer at once into the loopback TCP buffers. The
// upload must still go through, on one connection, without a stall. (The upload server's part,
// bytes of a frame counting as activity, is test/server/slow-network.test.ts.)
import { expect } from '@open-wc/testing';
import { WsUploaderEngine } from '../../src/index.js';
import {
  faultProxy,
  randomFile,
  sha256Hex,
  startDeployment,
  stopServers,
  storedSha256,
  uploadLogs,
  type TestDeployment,
} from '../helpers/servers.js';
import { tracedDup2Socket, type Dup2Trace } from '../helpers/traced-socket.js';
import { until } from '../helpers/until.js';

const RATE = 128_000;
const STALL_MS = 1500;

describe('a slow network that slices the bytes (F4)', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  /**
   * Uploads `size` random bytes through a proxy at 128 KB/s in 256-byte writes, and checks that
   * they arrive intact on one connection, with no stall and no idle timeout.
   * @param chunkSize the engine's chunk size (its default when absent)
   */
  async function uploadSlowly(size: number, chunkSize?: number): Promise<void> {
    d = await startDeployment({
      uploadServers: 1,
      controlOptions: { inlineMax: 0 },
      uploadOptions: { idleTimeoutMs: STALL_MS, heartbeatMs: 1000 },
    });
    const upload = d.servers[0]!;
    const proxy = await faultProxy(d, upload.id, { bytesPerSecond: RATE, sliceBytes: 256 });
    const traces: Dup2Trace[] = [];
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      ...(chunkSize === undefined ? {} : { chunkSize }),
      stallTimeoutMs: STALL_MS,
      probeIntervalMs: 500,
      createSocket: (url, protocols) =>
        url === upload.url
          ? tracedDup2Socket(proxy.via(url), protocols, traces)
          : new WebSocket(url, protocols),
    });
    const errors: string[] = [];
    engine.on('error', (e) => errors.push(e.detail.error.code));
    await engine.start();
    await until(() => engine!.servers[0]?.state === 'open');
    const file = randomFile(size, 'slow.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = new Promise<{ sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const started = performance.now();
    const [item] = engine.addFiles([file]);
    expect((await complete).sha256).to.equal(expected);
    // The limit held: the bytes took at least size / rate.
    expect(performance.now() - started).to.be.above((file.size / RATE) * 1000);
    expect(errors).to.deep.equal([]);
    // One connection, never closed for stalling; the server never found it idle.
    expect(traces.map((t) => t.closedByPage?.code ?? 'open')).to.deep.equal(['open']);
    expect((await proxy.stats()).connections).to.equal(1);
    const logs = await uploadLogs(d, upload.id);
    expect(logs.filter((e) => e.event === 'idle-timeout')).to.deep.equal([]);
    expect(await storedSha256(d, upload.id, item!.itemId)).to.deep.equal({
      complete: true,
      size: file.size,
      sha256: expected,
    });
  }

  it('F4: with chunks that cross in less than the stall timeout (32 KiB: 0.25 s), an item goes through on one connection, intact', async () => {
    await uploadSlowly(300_000, 32 * 1024);
  });

  it('F4: with the default chunk size, a 600 KB item crosses 128 KB/s in 256-byte writes on one connection: no stall, no idle timeout, intact', async () => {
    await uploadSlowly(600_000);
  });
});
