// The downloader's service worker serves items with Range to fetch() and to <audio>: stored parts
// from the store, missing ones fetched from the upload server on the way. Real service worker,
// real servers.
import { expect } from '@open-wc/testing';
import { OpfsItemStore, WsDownloader, WsUploaderEngine } from '../../src/index.js';
import { Gate, gatedFile } from '../helpers/gated-file.js';
import { makeWebm } from '../helpers/make-video.js';
import { nextEvent, registerItemWorker } from '../helpers/media.js';
import { until } from '../helpers/until.js';
import { wav } from '../helpers/wav.js';
import {
  startDeployment,
  stopServers,
  userToken,
  type TestDeployment,
} from '../helpers/servers.js';
import { startedEngine, uploadFile } from '../helpers/engines.js';

describe('service worker: items with Range', () => {
  let d: TestDeployment | undefined;
  const engines: WsUploaderEngine[] = [];
  let registration: ServiceWorkerRegistration | undefined;

  before(async () => {
    registration = await registerItemWorker();
  });

  after(async () => {
    await registration?.unregister();
  });

  afterEach(async () => {
    for (const e of engines.splice(0)) e.stop();
    await stopServers(d);
    d = undefined;
  });

  it('serves ranges from the upload server and the store, and an <audio> plays and seeks', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = wav(40); // 1.76 MB
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const store = new OpfsItemStore();
    await store.delete(itemId);
    const downloader = new WsDownloader({ locate: bob, store, partSize: 256 * 1024 });
    const url = await downloader.url(itemId);
    expect(new URL(url).pathname).to.equal(`/ws-uploader/items/${itemId}`);

    // A range nothing stored yet: fetched from the upload server, a part at a time, and kept.
    const response = await fetch(url, { headers: { Range: 'bytes=300000-300099' } });
    expect(response.status).to.equal(206);
    expect(response.headers.get('Content-Range')).to.equal(`bytes 300000-300099/${file.size}`);
    expect(response.headers.get('Content-Type')).to.equal('audio/wav');
    const got = new Uint8Array(await response.arrayBuffer());
    expect(got).to.deep.equal(new Uint8Array(await file.slice(300000, 300100).arrayBuffer()));
    expect((await store.get(itemId))!.ranges).to.deep.equal([{ start: 262144, end: 524288 }]);
    // Past the end: 416.
    const past = await fetch(url, { headers: { Range: `bytes=${file.size}-` } });
    expect(past.status).to.equal(416);

    // The media element reads it by ranges, plays, and seeks.
    const audio = document.createElement('audio');
    audio.muted = true;
    audio.preload = 'auto';
    audio.src = url;
    await nextEvent(audio, 'loadedmetadata');
    expect(audio.duration).to.be.closeTo(40, 0.1);
    audio.currentTime = 31;
    await nextEvent(audio, 'seeked');
    expect(audio.currentTime).to.be.closeTo(31, 0.1);
    await audio.play();
    await new Promise((r) => setTimeout(r, 300));
    expect(audio.currentTime).to.be.above(31);
    audio.pause();
    audio.removeAttribute('src');
    audio.load();

    // The parts the worker stored count for the download: it fetches only the rest.
    const item = await downloader.download(itemId);
    expect(item.blob.size).to.equal(file.size);
    const again = await fetch(url, { headers: { Range: 'bytes=0-3' } });
    expect(await again.text()).to.equal('RIFF');
    await store.delete(itemId);
  });

  it('asks the page for fresh read tokens when the upload server refuses the ones it has', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = wav(4);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const store = new OpfsItemStore();
    await store.delete(itemId);
    // The first answer carries tokens the server refuses (as a revoked or expired one would be).
    let calls = 0;
    const downloader = new WsDownloader({
      locate: async (id) => {
        const location = await bob.locate(id);
        if (calls++ > 0) return location;
        return { ...location, holders: location.holders.map((h) => ({ ...h, token: 'x.y.z' })) };
      },
      store,
      partSize: 64 * 1024,
    });
    const url = await downloader.url(itemId);
    const response = await fetch(url, { headers: { Range: 'bytes=100000-100009' } });
    expect(response.status).to.equal(206);
    expect(new Uint8Array(await response.arrayBuffer())).to.deep.equal(
      new Uint8Array(await file.slice(100000, 100010).arrayBuffer()),
    );
    expect(calls).to.equal(2);
    await store.delete(itemId);
  });

  it('seeks into a range the uploading page has not sent yet: the upload server demands it', async () => {
    d = await startDeployment({ uploadServers: 1, linked: true });
    const alice = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      chunkSize: 256 * 1024,
    });
    engines.push(alice);
    await alice.start();
    const source = wav(120); // 5.3 MB: 44 100 bytes a second
    const expected = new Uint8Array(await source.arrayBuffer());
    const MiB = 1024 * 1024;
    // The upload stops after its first 4 MiB block, until the test opens the gate.
    const gate = new Gate();
    const [item] = alice.addFiles([gatedFile(source, [[4 * MiB, 4.5 * MiB]], gate)]);
    const itemId = item!.itemId;
    await until(() => alice.items[0]?.bytesStored === 4 * MiB && gate.waiting > 0, 20_000);

    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    expect((await bob.locate(itemId)).state).to.equal('uploading');
    const store = new OpfsItemStore();
    await store.delete(itemId);
    const downloader = new WsDownloader({ locate: bob, store, partSize: 256 * 1024 });
    const audio = document.createElement('audio');
    audio.muted = true;
    audio.src = await downloader.url(itemId);
    await nextEvent(audio, 'loadedmetadata');
    expect(audio.duration).to.be.closeTo(120, 0.1);
    // 110 s is byte 4 851 044: past what the upload sent (4 MiB) and past its stall (4.5 MiB).
    audio.currentTime = 110;
    await nextEvent(audio, 'seeked');
    expect(audio.currentTime).to.be.closeTo(110, 0.1);
    await audio.play();
    await until(() => audio.currentTime > 110.2, 10_000);
    audio.pause();
    // What it played came from a demand: the uploading page sent that range first.
    const served = await fetch(audio.src, { headers: { Range: 'bytes=4851044-4851143' } });
    expect(new Uint8Array(await served.arrayBuffer())).to.deep.equal(
      expected.subarray(4851044, 4851144),
    );
    expect(alice.items[0]!.state).to.equal('uploading');
    audio.removeAttribute('src');
    audio.load();

    // The upload goes on once the gate opens; the download then completes, verified.
    const complete = new Promise((resolve) => alice.on('complete', resolve));
    gate.open();
    await complete;
    const done = await downloader.download(itemId);
    expect(new Uint8Array(await done.blob.arrayBuffer())).to.deep.equal(expected);
    await store.delete(itemId);
  });

  it('plays a real video (VP8 in WebM, made here) and seeks in it through the worker', async () => {
    d = await startDeployment({ uploadServers: 1 });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = new File([await makeWebm(30)], 'clip.webm', { type: 'video/webm' });
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const store = new OpfsItemStore();
    await store.delete(itemId);
    const downloader = new WsDownloader({ locate: bob, store, partSize: 128 * 1024 });
    const video = document.createElement('video');
    video.muted = true;
    video.src = await downloader.url(itemId);
    await nextEvent(video, 'loadedmetadata');
    expect(video.videoWidth).to.equal(320);
    expect(video.duration).to.be.closeTo(30, 0.5);
    video.currentTime = 22;
    await nextEvent(video, 'seeked');
    expect(video.currentTime).to.be.closeTo(22, 0.5);
    await video.play();
    const at = video.currentTime;
    await until(() => video.currentTime > at + 0.2, 10_000);
    video.pause();
    // The worker fetched only what the player asked for: not the whole file.
    const stored = (await store.get(itemId))!.ranges.reduce((n, r) => n + r.end - r.start, 0);
    expect(stored).to.be.below(file.size);
    video.removeAttribute('src');
    video.load();
    await store.delete(itemId);
  });
});
