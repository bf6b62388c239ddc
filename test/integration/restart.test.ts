// F1: an upload server crashes (every connection cut at once, no close frame) at about 37 % of an
// item and comes back on its port with what it stored. The engine sees the connection drop,
// reconnects with jittered backoff, learns from OPENED what the server kept, and sends only the
// rest: every acknowledged byte survived, no stored byte is sent again, and the item verifies.
import { expect } from '@open-wc/testing';
import { WsUploaderEngine } from '../../src/index.js';
import {
  faultProxy,
  killUpload,
  randomFile,
  restartUpload,
  sha256Hex,
  startDeployment,
  stopServers,
  storedSha256,
  type TestDeployment,
} from '../helpers/servers.js';
import { tracedDup2Socket, type Dup2Trace, type Span } from '../helpers/traced-socket.js';
import { until } from '../helpers/until.js';

/** Whether `span` overlaps any of `spans`. */
const overlaps = (span: Span, spans: readonly Span[]): boolean =>
  spans.some((s) => s.start < span.end && span.start < s.end);

describe('an upload server that crashes and restarts (F1)', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  it('resumes on the restarted server from what it kept: nothing acknowledged lost, nothing stored sent again', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const upload = d.servers[0]!;
    // Slow enough to crash it in the middle (the bytes still go at 4 MB/s).
    const proxy = await faultProxy(d, upload.id, { bytesPerSecond: 4_000_000 });
    const traces: Dup2Trace[] = [];
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 128 * 1024,
      retryDelays: [100, 200, 400, 800, 1600],
      createSocket: (url, protocols) =>
        url === upload.url
          ? tracedDup2Socket(proxy.via(url), protocols, traces)
          : new WebSocket(url, protocols),
    });
    const errors: string[] = [];
    engine.on('error', (e) => errors.push(e.detail.error.code));
    const states: string[] = [];
    engine.on('servers', (e) => {
      const state = e.detail.servers[0]?.state;
      if (state && states.at(-1) !== state) states.push(state);
    });
    await engine.start();
    await until(() => engine!.servers[0]?.state === 'open');
    const file = randomFile(6_000_000, 'crash.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = new Promise<{ sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const [item] = engine.addFiles([file]);
    const itemId = item!.itemId;
    const stored = (): number => engine!.items.find((i) => i.itemId === itemId)!.bytesStored;
    await until(() => stored() >= 0.37 * file.size, 10_000);
    expect(await killUpload(d, upload.id, { crash: true })).to.equal(true);
    await until(() => states.includes('down'));
    const ackedBefore = traces.flatMap((t) => t.acks);
    expect(stored()).to.be.below(file.size);
    expect(await restartUpload(d, upload.id)).to.equal(true);

    expect((await complete).sha256).to.equal(expected);
    expect(await storedSha256(d, upload.id, itemId)).to.deep.equal({
      complete: true,
      size: file.size,
      sha256: expected,
    });
    // The first connection carried the bytes before the crash; a later one resumed.
    const [first, ...later] = traces;
    expect(first!.acks.length).to.be.above(0);
    const resumed = later.find((t) => t.opened.length > 0)!;
    expect(resumed, 'a connection after the restart opened the item').to.exist;
    const kept = resumed.opened[0]!;
    // Every byte acknowledged before the crash is among what the restarted server kept...
    for (const ack of ackedBefore)
      expect(
        kept.some((r) => r.start <= ack.start && ack.end <= r.end),
        `${ack.start}-${ack.end} kept`,
      ).to.equal(true);
    // ...and none of what it kept was sent again.
    for (const sent of later.flatMap((t) => t.data))
      expect(overlaps(sent, kept), `${sent.start}-${sent.end} sent again`).to.equal(false);
    expect(states).to.include.members(['open', 'down']);
    expect(states.at(-1)).to.equal('open');
    // The dropped connection is reported, nothing else.
    expect(errors.every((code) => code === 'socket-closed')).to.equal(true);
  });
});
