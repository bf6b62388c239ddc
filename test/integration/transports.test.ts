// The engine speaks dup/2, dup/1 and HTTP parts (http/1), picks one per server from its
// `protocols` option and what the server offers, and sends a task's ranges to all their servers at
// once. Real servers, real bytes: each item arrives whole, with the SHA-256 of the source.
import { Gate, gatedFile } from '../helpers/gated-file.js';
import { expect } from '@open-wc/testing';
import { WsUploaderEngine, type ServerStatus } from '../../src/index.js';
import {
  faultProxy,
  httpLog,
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

const MiB = 1024 * 1024;

describe('transports', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    engine = undefined;
    await stopServers(d);
    d = undefined;
  });

  async function upload(
    e: WsUploaderEngine,
    file: File,
  ): Promise<{ itemId: string; sha256?: string; servers: readonly string[] }> {
    const errors: unknown[] = [];
    e.on('error', (ev) => errors.push(ev.detail.error));
    const complete = new Promise<{ itemId: string; sha256?: string; servers: readonly string[] }>(
      (resolve) => e.on('complete', (ev) => resolve(ev.detail)),
    );
    e.addFiles([file]);
    const result = await complete;
    expect(errors).to.deep.equal([]);
    return result;
  }

  for (const protocol of ['dup/1', 'http/1'] as const) {
    it(`uploads over ${protocol} when the page prefers it and the server offers it`, async () => {
      d = await startDeployment({ uploadServers: 1, linked: true });
      engine = new WsUploaderEngine({
        controlUrl: d.controlUrl,
        authToken: d.token,
        protocols: [protocol, 'dup/2'],
        chunkSize: 256 * 1024,
        partSize: 1 * MiB,
      });
      await engine.start();
      // The control server lists dup/2 only; the server's /.well-known offers the rest.
      await until(() => engine!.servers[0]?.state === 'open');
      expect(engine.servers[0]).to.include({ id: 'up-1', protocol });
      const file = randomFile(5_000_000, 'transport.bin');
      const expected = await sha256Hex(await file.arrayBuffer());
      const result = await upload(engine, file);
      expect(result.sha256).to.equal(expected);
      expect(await storedSha256(d, 'up-1', result.itemId)).to.deep.equal({
        complete: true,
        size: file.size,
        sha256: expected,
      });
      const requests = (await httpLog(d, 'up-1')).filter((r) =>
        r.url.startsWith(`/uploads/${result.itemId}`),
      );
      if (protocol === 'http/1') {
        // A new item: no HEAD (nothing can be stored yet), the parts, then the last byte again
        // with the item's digest.
        const own = requests.filter((r) => r.method !== 'OPTIONS'); // not the CORS preflights
        expect(own.map((r) => r.method)).not.to.include('HEAD');
        const puts = own.filter((r) => r.method === 'PUT');
        expect(puts.length).to.be.at.least(5 + 1);
        expect(puts.every((r) => r.status === 200)).to.equal(true);
      } else {
        expect(requests).to.deep.equal([]);
      }
    });
  }

  it('sends a small item as one multipart POST when the control server asks for http/1', async () => {
    d = await startDeployment({
      uploadServers: 1,
      linked: true,
      controlOptions: { multipartMax: 1 * MiB },
    });
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    await until(() => engine!.servers[0]?.state === 'open');
    const protocols: (string | undefined)[] = [];
    engine.on('transmit-request', (e) => protocols.push(e.detail.task.protocol));
    const file = randomFile(300_000, 'small.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const result = await upload(engine, file);
    expect(protocols).to.deep.equal(['http/1']);
    expect(result.sha256).to.equal(expected);
    expect(await storedSha256(d, 'up-1', result.itemId)).to.deep.equal({
      complete: true,
      size: file.size,
      sha256: expected,
    });
    // The server's description (for its http/1 endpoint), then one POST of the whole item, and
    // no parts.
    const requests = (await httpLog(d, 'up-1')).filter((r) => r.method !== 'OPTIONS');
    expect(requests.map((r) => [r.method, r.url, r.status])).to.deep.equal([
      ['GET', '/.well-known/ws-uploader', 200],
      ['POST', '/uploads', 201],
    ]);
  });

  it('speaks dup/2 to a server that does not offer the preferred protocol', async () => {
    d = await startDeployment({
      uploadServers: 1,
      linked: true,
      uploadOptions: { protocols: ['dup/2', 'tus/1'] },
    });
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      protocols: ['http/1', 'dup/2'],
    });
    await engine.start();
    await until(() => engine!.servers[0]?.state === 'open');
    expect(engine.servers[0]!.protocol).to.equal('dup/2');
    const file = randomFile(1_000_000, 'fallback.bin');
    const result = await upload(engine, file);
    expect(result.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
  });

  it("sends a new item's DATA right after its OPEN over dup/2, and waits for OPENED when it resumes", async () => {
    d = await startDeployment({ uploadServers: 1 });
    // A round trip of 200 ms: OPENED comes long after the first DATA could go. And a slow link,
    // so much of the item is left to send after the pause.
    const proxy = await faultProxy(d, d.servers[0]!.id, {
      latencyMs: 100,
      bytesPerSecond: 8 * MiB,
    });
    const traces: Dup2Trace[] = [];
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 256 * 1024,
      createSocket: (url, protocols) =>
        url === d!.servers[0]!.url
          ? tracedDup2Socket(proxy.via(url), protocols, traces)
          : new WebSocket(url, protocols),
    });
    await engine.start();
    await until(() => engine!.servers[0]?.state === 'open');
    const file = randomFile(24 * MiB, 'pipelined.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = new Promise<{ itemId: string; sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const [item] = engine.addFiles([file]);
    const itemId = item!.itemId;
    const status = () => engine!.items.find((i) => i.itemId === itemId)!;
    await until(() => status().bytesStored >= 2 * MiB);
    engine.pause([itemId]);
    await until(() => status().state === 'paused');
    const before = traces.map((t) => t.order.length);
    engine.resume([itemId]);
    const result = await complete;
    expect(result.sha256).to.equal(expected);
    expect(await storedSha256(d, 'up-1', itemId)).to.deep.equal({
      complete: true,
      size: file.size,
      sha256: expected,
    });
    // First upload: nothing to resume, so DATA goes before the OPENED arrives.
    const first = traces.find((t) => t.order.includes('OPEN'))!.order;
    expect(first[0]).to.equal('OPEN');
    expect(first.indexOf('DATA')).to.be.below(first.indexOf('OPENED'));
    // After the resume (on the same connection or a new one): OPEN, then what the server holds,
    // then the rest.
    const resumed = traces
      .map((t, i) => t.order.slice(before[i] ?? 0))
      .find((order) => order.includes('OPEN'))!;
    expect(resumed.slice(0, 3)).to.deep.equal(['OPEN', 'OPENED', 'DATA']);
    expect(traces.some((t) => t.opened.some((ranges) => ranges.length > 0))).to.equal(true);
  });

  it('resumes an HTTP-parts upload from what the server holds, sending no stored byte again', async () => {
    d = await startDeployment({ uploadServers: 1, linked: true });
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      protocols: ['http/1'],
      partSize: 512 * 1024,
    });
    await engine.start();
    await until(() => engine!.servers[0]?.state === 'open');
    const file = randomFile(6 * MiB, 'paused.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const complete = new Promise<{ itemId: string; sha256?: string }>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail)),
    );
    const [item] = engine.addFiles([file]);
    const itemId = item!.itemId;
    const stored = () => engine!.items.find((i) => i.itemId === itemId)!;
    await until(() => stored().bytesStored >= 2 * MiB);
    engine.pause([itemId]);
    await until(() => stored().state === 'paused');
    const before = await httpLog(d, 'up-1');
    engine.resume([itemId]);
    const result = await complete;
    expect(result.sha256).to.equal(expected);
    const after = (await httpLog(d, 'up-1')).slice(before.length);
    const puts = (log: typeof before) =>
      log
        .filter((r) => r.method === 'PUT' && r.status === 200 && r.url === `/uploads/${itemId}`)
        .map((r) => /^bytes (\d+)-(\d+)\//.exec(r.contentRange!)!.slice(1).map(Number));
    // After the resume: a HEAD that found the stored bytes, then only the rest (and the last
    // byte again, with the digest).
    expect(after.find((r) => r.method === 'HEAD')).to.include({ status: 200 });
    const last = file.size - 1;
    for (const [s1, e1] of puts(after)) {
      if (s1 === last && e1 === last) continue;
      for (const [s0, e0] of puts(before)) expect(s1 > e0! || e1! < s0!, `${s1}-${e1}`).to.be.true;
    }
    expect(await storedSha256(d, 'up-1', itemId)).to.deep.include({ complete: true });
  });

  it('sends the ranges of a split item to both of its servers at once', async () => {
    d = await startDeployment({
      uploadServers: 2,
      linked: true,
      plannerOptions: { splitMin: 4 * MiB, align: MiB },
    });
    engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 256 * 1024,
    });
    await engine.start();
    await until(() => engine!.servers.filter((s: ServerStatus) => s.state === 'open').length === 2);
    const bytes = new Uint8Array(await randomFile(8 * MiB, 'x').arrayBuffer());
    // Reads of the item's first MiB wait until the second server holds bytes: sent one server
    // after the other, the task could never finish.
    let release!: (by: string) => void;
    const gate = new Promise<string>((resolve) => (release = resolve));
    const timer = setTimeout(() => release('timeout'), 5000);
    const firstMiB = new Gate();
    void gate.then(() => firstMiB.open());
    const file = gatedFile(new File([bytes], 'split.bin'), [[0, MiB]], firstMiB);
    const tasks: { serverId: string; start: number; end: number }[][] = [];
    engine.on('transmit-request', (e) => tasks.push([...e.detail.task.ranges]));
    engine.on('progress', (e) => {
      // Bytes stored while the first range cannot be read: the second server got them.
      if (e.detail.item.bytesStored >= 2 * MiB) release('progress');
    });
    const result = await upload(engine, file);
    clearTimeout(timer);
    expect(tasks[0]!.map((r) => r.serverId).sort()).to.deep.equal(['up-1', 'up-2']);
    expect(await gate).to.equal('progress');
    expect(result.sha256).to.equal(await sha256Hex(bytes));
    expect([...result.servers].sort()).to.deep.equal(['up-1', 'up-2']);
    // Progress per server: what each holds of the item, adding up to all of it.
    const byServer = engine.items.find((i) => i.itemId === result.itemId)!.bytesByServer!;
    const ranges = tasks[0]!;
    for (const r of ranges) expect(byServer[r.serverId]).to.equal(r.end - r.start);
    expect(Object.values(byServer).reduce((a, b) => a + b, 0)).to.equal(bytes.length);
  });

  for (const splitDigest of ['read', 'steps'] as const)
    it(`lets the upload servers compute the digest of an item split in stripes (${splitDigest}), so the page reads each byte once`, async () => {
      d = await startDeployment({
        uploadServers: 2,
        linked: true,
        plannerOptions: { splitMin: 4 * MiB, align: MiB, stripe: 2 * MiB },
        controlOptions: { splitDigest },
      });
      engine = new WsUploaderEngine({
        controlUrl: d.controlUrl,
        authToken: d.token,
        dataWorker: false, // the file's reads are counted on the page
        chunkSize: 256 * 1024,
      });
      await engine.start();
      await until(
        () => engine!.servers.filter((s: ServerStatus) => s.state === 'open').length === 2,
      );
      const bytes = new Uint8Array(await randomFile(11 * MiB, 'x').arrayBuffer());
      const file = new File([bytes], 'striped.bin');
      let read = 0;
      const slice = file.slice.bind(file);
      file.slice = (start = 0, end = file.size, type?: string): Blob => {
        const part = slice(start, end, type);
        // Read whole, or as a stream (the engine reads its ranges as byte streams).
        const whole = part.arrayBuffer.bind(part);
        part.arrayBuffer = async () => {
          read += part.size;
          return whole();
        };
        const stream = part.stream.bind(part);
        part.stream = () => {
          read += part.size;
          return stream();
        };
        return part;
      };
      const tasks: { digest?: string; ranges: readonly { serverId: string }[] }[] = [];
      engine.on('transmit-request', (e) => tasks.push(e.detail.task));
      const result = await upload(engine, file);
      // Stripes of 2 MiB, one server after the other; the first server computed the digest.
      expect(tasks[0]!.digest).to.equal('server');
      const order = tasks[0]!.ranges.map((r) => r.serverId);
      expect(order).to.have.length(6);
      expect([...new Set(order)].sort()).to.deep.equal(['up-1', 'up-2']);
      order.slice(1).forEach((id, i) => expect(id).to.not.equal(order[i]));
      expect(result.sha256).to.equal(await sha256Hex(bytes));
      const digests = [...(await uploadLogs(d, 'up-1')), ...(await uploadLogs(d, 'up-2'))].filter(
        (e) => e.event === 'digest' && e['itemId'] === result.itemId,
      );
      // read: the first stripe's server read the other's stripes and hashed the whole item; steps:
      // each server hashed its own stripes, from the state the other reached, one step per stripe.
      const from = splitDigest === 'read' ? [0] : [0, 2, 4, 6, 8, 10].map((n) => n * MiB);
      expect(digests.map((e) => e['from']).sort((a, b) => Number(a) - Number(b))).to.deep.equal(
        from,
      );
      expect(digests.filter((e) => e['sha256'] === result.sha256)).to.have.length(1);
      // Hashing in the page would read the file a second time.
      expect(read).to.be.within(bytes.length, 1.1 * bytes.length);
      expect(engine.items.find((i) => i.itemId === result.itemId)).to.include({
        state: 'complete',
        sha256: result.sha256,
      });
    });
});
