// F2: the network between the page and the upload server turns into a black hole in the middle of a
// chunk (nothing passes either way, no FIN, no RST). The engine finds the connection stalled and
// goes on over a new one; the upload server finds the dead connection by its idle timeout. Timeouts
// are scaled down from 30 s / 120 s to 1 s / 1.5 s.
import { expect } from '@open-wc/testing';
import { WsUploaderEngine, type ConnectionState } from '../../src/index.js';
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
import { holds, tracedDup2Socket, type Dup2Trace } from '../helpers/traced-socket.js';
import { until } from '../helpers/until.js';

const CHUNK = 64 * 1024;
const STALL_MS = 1000;
const IDLE_MS = 1500;

describe('a black hole between the page and an upload server (F2)', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  it('F2: the engine finds the connection stalled (4000) within its stall budget and resumes on a new one; the server finds it dead by its idle timeout and keeps what it acknowledged', async () => {
    d = await startDeployment({
      uploadServers: 1,
      controlOptions: { inlineMax: 0 },
      // The heartbeat (WebSocket pings) would find the dead peer too; here the idle timer does. A
      // window of two chunks: the page cannot get 300 KB through before ACKs come back, however
      // loaded the machine, so some acknowledged bytes are there to be kept.
      uploadOptions: {
        idleTimeoutMs: IDLE_MS,
        heartbeatMs: 60_000,
        maxChunk: CHUNK,
        window: 2 * CHUNK,
      },
    });
    const upload = d.servers[0]!;
    const proxy = await faultProxy(d, upload.id);
    const traces: Dup2Trace[] = [];
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: CHUNK,
      stallTimeoutMs: STALL_MS,
      probeIntervalMs: 500,
      retryDelays: [100, 200, 400],
      createSocket: (url, protocols) =>
        url === upload.url
          ? tracedDup2Socket(proxy.via(url), protocols, traces)
          : new WebSocket(url, protocols),
    });
    const states: ConnectionState[] = [];
    engine.on('servers', (e) => {
      const state = e.detail.servers[0]?.state;
      if (state && state !== states.at(-1)) states.push(state);
    });
    const itemErrors: string[] = [];
    engine.on('error', (e) => {
      if (e.detail.itemId) itemErrors.push(e.detail.error.code);
    });
    await engine.start();
    await until(() => engine!.servers[0]?.state === 'open');
    // About 4.6 chunks more from the page, then nothing more passes: the hole opens mid-chunk.
    expect(await proxy.blackhole(300_000)).to.equal(1);
    const file = randomFile(2 * 1024 * 1024, 'black-hole.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = new Promise<{ sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const [item] = engine.addFiles([file]);
    expect((await complete).sha256).to.equal(expected);
    expect(itemErrors).to.deep.equal([]);

    // The page's side: the first connection was closed for stalling, within its budget (the engine
    // looks for progress once per stallTimeoutMs, so a stall is found within one to two).
    const holedAt = (await proxy.stats()).events.find((e) => e.what === 'blackhole')!.at;
    const [first, second] = traces;
    expect(traces.length).to.be.at.least(2);
    expect(first!.closedByPage?.code).to.equal(4000);
    expect(first!.closedByPage!.at - holedAt).to.be.within(STALL_MS - 100, 2 * STALL_MS + 300);
    expect(states).to.include.members(['down', 'open']);
    expect(states.indexOf('down')).to.be.lessThan(states.lastIndexOf('open'));

    // The server kept every byte it acknowledged before the hole (the new connection's OPENED
    // holds them), nothing of the chunk cut in half, and the page did not send them again.
    const acked = Math.max(...first!.acks.map((a) => a.end));
    expect(acked).to.be.greaterThan(0);
    const opened = second!.opened[0]!;
    expect(holds(opened, 0, acked)).to.equal(true);
    const kept = Math.max(...opened.map((r) => r.end));
    expect(kept % CHUNK).to.equal(0);
    expect(kept).to.be.below(300_000);
    for (const trace of traces.slice(1))
      for (const sent of trace.data) expect(holds(opened, sent.start, sent.end)).to.equal(false);

    // The server's side: the dead connection was closed by the idle timer, about IDLE_MS after the
    // last byte came.
    await until(async () => (await idleTimeouts()).length > 0, 2 * IDLE_MS + 1000);
    const [idle] = await idleTimeouts();
    expect(Date.parse(idle!['time'] as string) - holedAt).to.be.within(
      IDLE_MS - 100,
      IDLE_MS + 1000,
    );
    expect(await storedSha256(d, upload.id, item!.itemId)).to.deep.equal({
      complete: true,
      size: file.size,
      sha256: expected,
    });

    async function idleTimeouts(): Promise<{ event: string; [field: string]: unknown }[]> {
      return (await uploadLogs(d!, upload.id)).filter((e) => e.event === 'idle-timeout');
    }
  });
});
