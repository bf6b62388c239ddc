// The downloader gets an item back by parts from every upload server that holds some of it, into
// browser storage, verifies it, and gives it back offline. Real servers, real bytes, real OPFS and
// IndexedDB.
import { expect } from '@open-wc/testing';
import type { ItemHolder, WsUploaderEngine } from '../../src/index.js';
import { DownloadError, IndexedDbItemStore, OpfsItemStore, WsDownloader } from '../../src/index.js';
import {
  corruptingProxy,
  faultProxy,
  randomFile,
  sha256Hex,
  startDeployment,
  stopServers,
  uploadLogs,
  userToken,
  type TestDeployment,
} from '../helpers/servers.js';
import { startedEngine, uploadFile } from '../helpers/engines.js';
import { opfsItemNames } from '../helpers/opfs.js';
import { until } from '../helpers/until.js';

const MiB = 1024 * 1024;

describe('downloader', () => {
  let d: TestDeployment | undefined;
  const engines: WsUploaderEngine[] = [];

  afterEach(async () => {
    for (const e of engines.splice(0)) e.stop();
    await stopServers(d);
    d = undefined;
  });

  async function blobSha256(blob: Blob): Promise<string> {
    return sha256Hex(await blob.arrayBuffer());
  }

  /** `GET /files/…` requests the upload server `up-1` has logged so far. */
  async function fileGets(): Promise<number> {
    return (await uploadLogs(d!, 'up-1')).filter(
      (e) => e.event === 'http' && e['method'] === 'GET' && String(e['path']).startsWith('/files/'),
    ).length;
  }

  /** `dup/2` connections the upload server `up-1` has logged so far. */
  async function dup2Connections(): Promise<number> {
    return (await uploadLogs(d!, 'up-1')).filter(
      (e) => e.event === 'connection' && e['protocol'] === 'ws-uploader.dup.v2',
    ).length;
  }

  /** `engine.locate()`, each holder of its answer changed by `change`. */
  function locateWith(engine: WsUploaderEngine, change: (h: ItemHolder) => Partial<ItemHolder>) {
    return async (id: string) => {
      const l = await engine.locate(id);
      return { ...l, holders: l.holders.map((h) => ({ ...h, ...change(h) })) };
    };
  }

  /** The `DownloadError` a download fails with. */
  async function downloadError(downloader: WsDownloader, itemId: string): Promise<DownloadError> {
    const error = await downloader.download(itemId).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(DownloadError);
    return error as DownloadError;
  }

  /** The SHA-256 of a stored item as a new page of the site reads it, with no server to ask. */
  async function sha256InNewPage(itemId: string): Promise<string> {
    const frame = document.createElement('iframe');
    const answer = new Promise<{ sha256?: string; error?: string }>((resolve) => {
      window.addEventListener('message', function on(e: MessageEvent) {
        if (e.source !== frame.contentWindow) return;
        window.removeEventListener('message', on);
        resolve(e.data as { sha256?: string; error?: string });
      });
    });
    frame.srcdoc = `<script type="module">
      try {
        const { WsDownloader, OpfsItemStore } = await import('/src/download/index.js');
        const downloader = new WsDownloader({
          locate: () => Promise.reject(new Error('offline')),
          store: new OpfsItemStore(),
        });
        const item = await downloader.get(${JSON.stringify(itemId)});
        const digest = await crypto.subtle.digest('SHA-256', await item.blob.arrayBuffer());
        const sha256 = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
        parent.postMessage({ sha256 }, '*');
      } catch (e) {
        parent.postMessage({ error: String(e) }, '*');
      }
    </script>`;
    document.body.append(frame);
    try {
      const { sha256, error } = await answer;
      if (error) throw new Error(error);
      return sha256!;
    } finally {
      frame.remove();
    }
  }

  it('downloads a 100 MB item split across two servers into OPFS, verified, and has it with every server stopped', async () => {
    d = await startDeployment({ uploadServers: 2, linked: true });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(100 * MiB + 123, 'big.bin');
    const expected = await blobSha256(file);
    const { itemId, servers } = await uploadFile(alice, file);
    expect(servers).to.have.length(2);

    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const store = new OpfsItemStore();
    await store.delete(itemId);
    const downloader = new WsDownloader({ locate: bob, store });
    const progress: { bytesStored: number; bytesByServer: Record<string, number> }[] = [];
    downloader.on('progress', (e) => progress.push(e.detail));
    const item = await downloader.download(itemId);
    expect(item.sha256).to.equal(expected);
    expect(item.meta).to.deep.include({ itemId, name: 'big.bin', size: file.size });
    expect(item.blob.size).to.equal(file.size);
    expect(await blobSha256(item.blob)).to.equal(expected);
    // Parts came from both servers, and progress never went backwards.
    const last = progress.at(-1)!;
    expect(last.bytesStored).to.equal(file.size);
    expect(Object.keys(last.bytesByServer).sort()).to.deep.equal(['up-1', 'up-2']);
    for (let i = 1; i < progress.length; i++)
      expect(progress[i]!.bytesStored).to.be.at.least(progress[i - 1]!.bytesStored);

    // Every server stopped; a new downloader (as after a reload) gives it back from the store.
    engines.splice(0).forEach((e) => e.stop());
    await stopServers(d);
    d = undefined;
    const offline = new WsDownloader({
      locate: () => Promise.reject(new Error('offline')),
      store: new OpfsItemStore(),
    });
    const again = await offline.download(itemId);
    expect(again.sha256).to.equal(expected);
    expect(await blobSha256(again.blob)).to.equal(expected);
    // And a new page of the site (a fresh document, with modules of its own) has it too.
    expect(await sha256InNewPage(itemId)).to.equal(expected);
    await offline.delete(itemId);
    expect(await offline.get(itemId)).to.equal(undefined);
  });

  it("fetches and stores the parts in the store's Worker, over dup/2 and HTTP, and the same bytes from the page's thread (option, or a Worker that cannot start)", async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(21 * MiB + 3, 'paths.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    /** The item's part files, read in order straight from the origin private file system. */
    const onDisk = async (): Promise<string> => {
      const dir = await (
        await (await navigator.storage.getDirectory()).getDirectoryHandle('ws-uploader-items')
      ).getDirectoryHandle(itemId);
      const files: { start: number; file: File }[] = [];
      for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) {
        const m = /^(\d+)-\d+\.part$/.exec(name);
        if (m)
          files.push({
            start: Number(m[1]),
            file: await (await dir.getFileHandle(name)).getFile(),
          });
      }
      files.sort((a, b) => a.start - b.start);
      return blobSha256(new Blob(files.map((f) => f.file)));
    };
    // What the page's thread itself reads the parts with: dup/2 connections it opens, and HTTP
    // requests for the item's bytes.
    const PageSocket = window.WebSocket;
    let pageSockets = 0;
    window.WebSocket = class extends PageSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        if (String(protocols).includes('dup.v2')) pageSockets++;
      }
    };
    performance.setResourceTimingBufferSize(100_000);
    const pageGets = (): number =>
      performance.getEntriesByType('resource').filter((e) => e.name.includes(`/files/${itemId}`))
        .length;
    try {
      for (const [store, thread, transport] of [
        [new OpfsItemStore(), 'worker', 'dup2'],
        [new OpfsItemStore(), 'worker', 'auto'],
        [new OpfsItemStore({ worker: false }), 'page', 'dup2'],
        [new OpfsItemStore({ worker: '/no-such-dir/store-worker.js' }), 'page', 'auto'],
      ] as const) {
        await store.delete(itemId);
        expect(await store.writeThread()).to.equal(thread);
        performance.clearResourceTimings();
        const [sockets, gets] = [pageSockets, pageGets()];
        const item = await new WsDownloader({ locate: bob, store, transport }).download(itemId);
        expect(item.sha256).to.equal(expected);
        expect(await onDisk()).to.equal(expected);
        expect(await blobSha256(item.blob)).to.equal(expected);
        // In the Worker's case the parts were fetched there: their bytes never reached the page.
        const read = { sockets: pageSockets - sockets, gets: pageGets() - gets };
        if (thread === 'worker') expect(read).to.deep.equal({ sockets: 0, gets: 0 });
        else if (transport === 'dup2') expect(read).to.deep.equal({ sockets: 1, gets: 0 });
        else {
          // Every part over HTTP (a Resource Timing entry may come after the body is read).
          expect(read.sockets).to.equal(0);
          await until(() => pageGets() - gets === 6);
        }
        await store.delete(itemId);
      }
    } finally {
      window.WebSocket = PageSocket;
    }
  });

  it("keeps the parts of a stopped download and fetches only the rest, on IndexedDB and in the OPFS store's Worker (no temporary file left)", async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(8 * MiB + 7, 'resume.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const temporary = async (): Promise<string[]> =>
      (await opfsItemNames(itemId)).filter((n) => n.endsWith('.tmp'));
    for (const store of [
      new IndexedDbItemStore('ws-uploader-download-test'),
      new OpfsItemStore(),
    ]) {
      const opfs = store instanceof OpfsItemStore;
      if (opfs) expect(await store.writeThread()).to.equal('worker');
      await store.delete(itemId);
      const downloader = new WsDownloader({ locate: bob, store, partSize: MiB, perServer: 2 });

      const stop = new AbortController();
      const off = downloader.on('progress', (e) => {
        if (e.detail.bytesStored >= 2 * MiB) stop.abort();
      });
      let stopped: unknown;
      await downloader
        .download(itemId, { signal: stop.signal })
        .catch((e: unknown) => (stopped = e));
      off();
      expect((stopped as Error | undefined)?.name, store.kind).to.equal('AbortError');
      // A part stopped mid-way in the Worker leaves no temporary file behind.
      if (opfs) await until(async () => (await temporary()).length === 0);
      const kept = (await store.get(itemId))!.ranges;
      const keptBytes = kept.reduce((n, r) => n + r.end - r.start, 0);
      expect(keptBytes, store.kind)
        .to.be.at.least(2 * MiB)
        .and.below(file.size);

      let fetched = 0;
      downloader.on('progress', (e) => (fetched = e.detail.bytesByServer['up-1'] ?? 0));
      const item = await downloader.download(itemId);
      expect(item.sha256).to.equal(expected);
      expect(fetched, store.kind).to.equal(file.size - keptBytes);
      expect(await blobSha256(item.blob)).to.equal(expected);
      if (opfs) expect(await temporary()).to.deep.equal([]);
      await store.delete(itemId);
    }
  });

  it('gives up an HTTP Range body that stalls (a connection that died without closing) after stallTimeout and fetches the part again, in the store Worker and on the page', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(8 * MiB + 11, 'stall.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    for (const store of [new OpfsItemStore(), new OpfsItemStore({ worker: false })]) {
      const proxy = await faultProxy(d!, 'up-1');
      await store.delete(itemId);
      const before = await fileGets();
      const downloader = new WsDownloader({
        locate: locateWith(bob, (h) => ({ httpUrl: proxy.via(h.httpUrl) })),
        store,
        transport: 'http',
        partSize: MiB,
        stallTimeout: 1000,
        retryDelays: [10, 10, 10, 10, 10],
      });
      // Once a part is stored, the connections open then go silent.
      let cut = 0;
      let cutting = false;
      downloader.on('progress', (e) => {
        if (cut > 0 || cutting || e.detail.bytesStored === 0) return;
        cutting = true;
        void proxy.blackhole().then((n) => {
          cut = n;
          cutting = false;
        });
      });
      const item = await downloader.download(itemId);
      expect(cut).to.be.at.least(1);
      expect(item.sha256).to.equal(expected);
      expect(await blobSha256(item.blob)).to.equal(expected);
      // Connections went silent with parts on them (asked for, or their bodies coming): without
      // the stall watch the download would wait for them for ever.
      expect((await proxy.stats()).blackholed).to.be.at.least(1);
      expect((await fileGets()) - before).to.be.at.least(Math.ceil(file.size / MiB));
      await store.delete(itemId);
    }
  });

  it('takes an inline item from the answer, and refuses an item no live server holds', async () => {
    d = await startDeployment({ uploadServers: 1 }); // inline items up to 64 KiB
    const alice = await startedEngine(d!, d!.token, engines);
    const { itemId } = await uploadFile(alice, new File(['inline bytes'], 'small.txt'));
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const downloader = new WsDownloader({ locate: bob, store: new OpfsItemStore() });
    const item = await downloader.download(itemId);
    expect(await item.blob.text()).to.equal('inline bytes');
    await downloader.delete(itemId);

    // A stored item whose only server is gone.
    const big = await uploadFile(alice, randomFile(200_000, 'gone.bin'));
    const gone = new WsDownloader({
      locate: async (id) => ({ ...(await bob.locate(id)), holders: [] }),
      store: new OpfsItemStore(),
    });
    let error: unknown;
    await gone.download(big.itemId).catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(DownloadError);
    expect((error as DownloadError).code).to.equal('unavailable');
    await gone.delete(big.itemId);
  });

  it('refuses an item the quota has no room for, and fetches again parts the browser evicted', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(3 * MiB, 'evicted.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const store = new OpfsItemStore();
    await store.delete(itemId);
    const downloader = new WsDownloader({ locate: bob, store, partSize: 1 * MiB });

    // The browser says there is room for 1 MiB only (a fake of the browser's answer).
    const estimate = navigator.storage.estimate.bind(navigator.storage);
    navigator.storage.estimate = () => Promise.resolve({ quota: 11 * MiB, usage: 10 * MiB });
    let refused: unknown;
    try {
      await downloader.download(itemId).catch((e: unknown) => (refused = e));
    } finally {
      navigator.storage.estimate = estimate;
    }
    expect(refused).to.be.instanceOf(DownloadError);
    expect((refused as DownloadError).code).to.equal('quota-exceeded');
    expect((await store.get(itemId))?.ranges ?? []).to.deep.equal([]);

    // Stored, then one part evicted (as the browser may under storage pressure).
    await downloader.download(itemId);
    const root = await navigator.storage.getDirectory();
    const dir = await (
      await root.getDirectoryHandle('ws-uploader-items')
    ).getDirectoryHandle(itemId);
    await dir.removeEntry(`${MiB}-${2 * MiB}.part`);
    expect(await downloader.get(itemId)).to.equal(undefined);
    let fetched = 0;
    downloader.on('progress', (e) => (fetched = e.detail.bytesByServer['up-1'] ?? 0));
    const again = await downloader.download(itemId);
    expect(fetched).to.equal(MiB);
    expect(again.sha256).to.equal(expected);
    expect(await blobSha256(again.blob)).to.equal(expected);
    await store.delete(itemId);
  });

  it("reads over dup/2 with transport 'dup2', checks every chunk, and reads a damaged chunk again; HTTP Range with transport 'http'", async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(6 * MiB + 99, 'read.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const location = await bob.locate(itemId);
    expect(location.holders[0]!.wsUrl).to.match(/^ws:\/\/.*\/dup$/);
    const store = new OpfsItemStore();
    await store.delete(itemId);

    // HTTP Range only: GET requests.
    const http = new WsDownloader({ locate: bob, store, transport: 'http', partSize: 2 * MiB });
    expect((await http.download(itemId)).sha256).to.equal(expected);
    expect(await fileGets()).to.equal(4);
    await store.delete(itemId);

    // dup/2, through a proxy that flips a byte of the third large BYTES frame on its way. After
    // the damaged part the downloader asks where the item is again; that answer fails (a control
    // server briefly away), and the download goes on with what it knew.
    const proxy = await corruptingProxy(d!, 'up-1', 3, true);
    let locates = 0;
    const downloader = new WsDownloader({
      locate: async (id) => {
        if (++locates === 2) throw new Error('control server away');
        const l = await bob.locate(id);
        return { ...l, holders: l.holders.map((h) => ({ ...h, wsUrl: proxy.url })) };
      },
      store,
      transport: 'dup2',
      partSize: 2 * MiB,
      retryDelays: [10, 10, 10],
    });
    const before = await dup2Connections();
    const item = await downloader.download(itemId);
    expect(await proxy.corrupted()).to.equal(1);
    expect(item.sha256).to.equal(expected);
    expect(await blobSha256(item.blob)).to.equal(expected);
    expect(locates).to.be.at.least(2);
    // One connection for the whole download: the damaged read was asked again on it.
    expect((await dup2Connections()) - before).to.equal(1);
    // No HTTP request for the bytes this time.
    expect(await fileGets()).to.equal(4);
    await store.delete(itemId);
  });

  it("reads over HTTP, with transport 'dup2', from a holder whose dup/2 WebSocket fails in the store's Worker (nothing listening, or a URL the WebSocket refuses)", async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(5 * MiB + 3, 'fallback.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const store = new OpfsItemStore();
    for (const wsUrl of ['ws://127.0.0.1:1/dup', 'ws://bad host/dup']) {
      await store.delete(itemId);
      const before = await fileGets();
      const downloader = new WsDownloader({
        locate: locateWith(bob, () => ({ wsUrl })),
        store,
        transport: 'dup2',
        partSize: MiB,
        retryDelays: [10, 10, 10],
      });
      const item = await downloader.download(itemId);
      expect(item.sha256, wsUrl).to.equal(expected);
      expect(await blobSha256(item.blob)).to.equal(expected);
      expect((await fileGets()) - before, wsUrl).to.be.at.least(1);
    }
    await store.delete(itemId);
  });

  it("reads over HTTP Range by default, over dup/2 from a holder whose HTTP requests say its bytes are not served that way (nothing listening, 404), not for a refused token, and fails when neither way works, in the store's Worker and on the page", async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(5 * MiB + 7, 'auto.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    // Located by the uploading engine, whose own connections (its latency probe's too) are made.
    for (const store of [new OpfsItemStore(), new OpfsItemStore({ worker: false })]) {
      await store.delete(itemId);
      // The default: every part over HTTP, no dup/2 connection.
      const [gets, sockets] = [await fileGets(), await dup2Connections()];
      const item = await new WsDownloader({ locate: alice, store, partSize: MiB }).download(itemId);
      expect(item.sha256).to.equal(expected);
      expect((await fileGets()) - gets).to.equal(6);
      expect((await dup2Connections()) - sockets).to.equal(0);
      const httpUrls = [
        (): string => 'http://127.0.0.1:1',
        (h: ItemHolder) => `${h.httpUrl}/nothing`,
      ];
      for (const httpUrl of httpUrls) {
        await store.delete(itemId);
        const before = [await fileGets(), await dup2Connections()];
        const downloader = new WsDownloader({
          locate: locateWith(alice, (h) => ({ httpUrl: httpUrl(h) })),
          store,
          partSize: MiB,
          retryDelays: [10, 10, 10],
        });
        const again = await downloader.download(itemId);
        expect(again.sha256).to.equal(expected);
        expect(await blobSha256(again.blob)).to.equal(expected);
        expect((await fileGets()) - before[0]!).to.equal(0);
        expect((await dup2Connections()) - before[1]!).to.be.at.least(1);
      }
      // A refused token says nothing of the way: asked again where the item is (a fresh token),
      // and read over HTTP still.
      await store.delete(itemId);
      let answers = 0;
      const [refusedGets, refusedSockets] = [await fileGets(), await dup2Connections()];
      const refused = new WsDownloader({
        locate: async (id) => {
          const l = await alice.locate(id);
          if (++answers > 1) return l;
          return { ...l, holders: l.holders.map((h) => ({ ...h, token: 'not-a-token' })) };
        },
        store,
        partSize: MiB,
        retryDelays: [10, 10, 10],
      });
      expect((await refused.download(itemId)).sha256).to.equal(expected);
      expect(answers).to.be.at.least(2);
      expect((await fileGets()) - refusedGets).to.be.at.least(6);
      expect((await dup2Connections()) - refusedSockets).to.equal(0);
      // Neither way works: the download fails after its attempts, it does not go round.
      await store.delete(itemId);
      const nowhere = new WsDownloader({
        locate: locateWith(alice, () => ({
          httpUrl: 'http://127.0.0.1:1',
          wsUrl: 'ws://127.0.0.1:1/dup',
        })),
        store,
        partSize: MiB,
        retryDelays: [10, 10, 10],
      });
      expect((await downloadError(nowhere, itemId)).code).to.equal('fetch-failed');
      await store.delete(itemId);
    }
  });

  it("checks the item's SHA-256 with integrity 'sha256' (the default), and takes the servers' with 'transport' unless the item is still uploading", async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(5 * MiB + 11, 'integrity.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    // The servers claim another digest than the bytes have.
    const claimed = 'ab'.repeat(32);
    const claiming = async (id: string) => ({ ...(await alice.locate(id)), sha256: claimed });
    for (const store of [new OpfsItemStore(), new OpfsItemStore({ worker: false })]) {
      await store.delete(itemId);
      // sha256: every byte hashed, and the mismatch refused (nothing kept).
      const hashed = new WsDownloader({ locate: claiming, store, partSize: MiB });
      expect((await downloadError(hashed, itemId)).code).to.equal('digest-mismatch');
      expect(await store.get(itemId)).to.equal(undefined);
      // transport: nothing hashed, the servers' digest taken; the bytes are the file's.
      const trusting = new WsDownloader({
        locate: claiming,
        store,
        partSize: MiB,
        integrity: 'transport',
      });
      const item = await trusting.download(itemId);
      expect(item.sha256).to.equal(claimed);
      expect(await blobSha256(item.blob)).to.equal(expected);
      await store.delete(itemId);
      // transport, but the first answer has no digest yet (uploading): hashed after all.
      let answers = 0;
      const uploading = new WsDownloader({
        locate: async (id) =>
          ++answers === 1
            ? { ...(await alice.locate(id)), state: 'uploading', sha256: undefined }
            : claiming(id),
        store,
        partSize: MiB,
        integrity: 'transport',
      });
      expect((await downloadError(uploading, itemId)).code).to.equal('digest-mismatch');
      expect(answers).to.be.at.least(2);
      await store.delete(itemId);
    }
    expect(() => new WsDownloader({ locate: alice, integrity: 'crc' as 'sha256' })).to.throw(
      /`integrity` must be 'sha256' or 'transport'/,
    );
  });

  it('asks again where the item is when parts fail, and moves them from a holder that went away to the ones left', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(5 * MiB + 1, 'moved.bin');
    const expected = await blobSha256(file);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    // The first answer names a second holder that is gone (nothing listens there), and gives the
    // real one a WebSocket address where nothing listens either; later answers are the truth.
    let locates = 0;
    const downloader = new WsDownloader({
      locate: async (id) => {
        const l = await bob.locate(id);
        if (++locates > 1) return l;
        const real = l.holders[0]!;
        const nowhere = { wsUrl: 'ws://127.0.0.1:9/dup', httpUrl: 'http://127.0.0.1:9' };
        return {
          ...l,
          holders: [
            { ...real, wsUrl: nowhere.wsUrl },
            { ...real, serverId: 'gone', ...nowhere },
          ],
        };
      },
      store: new OpfsItemStore(),
      partSize: 1 * MiB,
      retryDelays: [10, 10, 10],
    });
    await downloader.delete(itemId);
    let byServer: Record<string, number> = {};
    downloader.on('progress', (e) => (byServer = e.detail.bytesByServer));
    const item = await downloader.download(itemId);
    expect(item.sha256).to.equal(expected);
    expect(await blobSha256(item.blob)).to.equal(expected);
    expect(locates).to.be.at.least(2);
    expect(byServer).to.deep.equal({ 'up-1': file.size });
    await downloader.delete(itemId);
  });
});
