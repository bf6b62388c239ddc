import { expect } from '@open-wc/testing';
import { WsUploaderEngine } from '../../src/index.js';
import { nextEvent } from '../helpers/media.js';
import { makeWebm } from '../helpers/make-video.js';
import {
  httpLog,
  readToken,
  startServers,
  stopServers,
  type TestDeployment,
} from '../helpers/servers.js';

describe('a video uploaded with ws-uploader', () => {
  let d: TestDeployment | undefined;
  let engine: WsUploaderEngine | undefined;

  afterEach(async () => {
    engine?.stop();
    await stopServers(d);
    d = undefined;
  });

  it('plays and seeks in <video> straight from the upload server', async () => {
    const video = await makeWebm(4);
    expect(video.size).to.be.greaterThan(500_000);
    // This page (localhost) and the upload server (127.0.0.1) are different sites, as an app and
    // its upload servers on their own domains would be: the items need CORP cross-origin.
    d = await startServers(1, { crossOriginResourcePolicy: 'cross-origin' });
    engine = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    await engine.start();
    const done = new Promise<string>((resolve) =>
      engine!.on('complete', (e) => resolve(e.detail.itemId)),
    );
    engine.addFiles([new File([video], 'clip.webm', { type: 'video/webm' })]);
    const itemId = await done;

    const url = `${d.servers[0]!.httpUrl}/files/${itemId}`;
    // Items are read with a read token: in a header where the page can send one…
    const token = await readToken(d, d.servers[0]!.id, [itemId]);
    expect((await fetch(url, { method: 'HEAD' })).status).to.equal(401);
    const head = await fetch(url, {
      method: 'HEAD',
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(head.status).to.equal(200);
    expect(head.headers.get('content-type')).to.equal('video/webm');
    expect(head.headers.get('accept-ranges')).to.equal('bytes');

    const el = document.createElement('video');
    el.muted = true;
    el.preload = 'auto';
    // …and in the URL where it cannot: <video src> sends no headers of the page's choosing.
    el.src = `${url}?access_token=${encodeURIComponent(token)}`;
    document.body.append(el);
    try {
      await nextEvent(el, 'loadedmetadata');
      expect(el.duration).to.be.closeTo(4, 0.2);
      el.currentTime = 2.5;
      await nextEvent(el, 'seeked');
      expect(el.currentTime).to.be.closeTo(2.5, 0.1);
      await el.play();
      const from = el.currentTime;
      await new Promise((r) => setTimeout(r, 400));
      expect(el.currentTime).to.be.greaterThan(from);
      el.currentTime = 0.5;
      await nextEvent(el, 'seeked');
      expect(el.currentTime).to.be.closeTo(0.5, 0.2);
      expect(el.error).to.equal(null);
      // The player read the item by ranges, and the server answered them as ranges.
      const reads = (await httpLog(d, d.servers[0]!.id)).filter(
        (r) => r.url === `/files/${itemId}` && r.method === 'GET',
      );
      expect(reads.some((r) => r.range !== null && r.status === 206)).to.equal(true);
    } finally {
      el.remove();
    }
  });
});
