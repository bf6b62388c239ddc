// <ws-download> downloads one item with the app's WsDownloader and shows it. Real servers: Alice
// uploads with an engine, Bob downloads through a WsDownloader into OPFS.
import { expect, fixture, html, oneEvent, waitUntil } from '@open-wc/testing';
import '../../src/ws-download.js';
import {
  OpfsItemStore,
  WsDownloader,
  WsUploaderEngine,
  type UploadResult,
  type WsDownload,
  type WsDownloadErrorEvent,
  type WsDownloadProgressDetail,
} from '../../src/index.js';
import {
  randomFile,
  sha256Hex,
  startServers,
  stopServers,
  userToken,
  type TestDeployment,
} from '../helpers/servers.js';
import { registerItemWorker } from '../helpers/media.js';
import { startedEngine, uploadFile } from '../helpers/engines.js';
import { wav } from '../helpers/wav.js';

const KiB = 1024;

/** A PNG drawn on a canvas. */
async function drawnPng(name = 'drawing.png'): Promise<File> {
  const canvas = document.createElement('canvas');
  canvas.width = 40;
  canvas.height = 30;
  const g = canvas.getContext('2d')!;
  g.fillStyle = '#2563eb';
  g.fillRect(0, 0, 40, 30);
  g.fillStyle = '#fbbf24';
  g.beginPath();
  g.arc(20, 15, 10, 0, Math.PI * 2);
  g.fill();
  const blob = await new Promise<Blob>((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('no PNG'))), 'image/png'),
  );
  return new File([blob], name, { type: 'image/png' });
}

function loaded(media: HTMLMediaElement): Promise<void> {
  if (media.readyState >= HTMLMediaElement.HAVE_METADATA) return Promise.resolve();
  return new Promise((resolve, reject) => {
    media.addEventListener('loadedmetadata', () => resolve(), { once: true });
    media.addEventListener('error', () => reject(new Error('the media did not load')), {
      once: true,
    });
  });
}

function part<T extends Element = HTMLElement>(el: WsDownload, name: string): T | null {
  return el.shadowRoot!.querySelector<T>(`[part~="${name}"]`);
}

describe('<ws-download>', () => {
  let d: TestDeployment | undefined;
  const engines: WsUploaderEngine[] = [];

  afterEach(async () => {
    for (const e of engines.splice(0)) e.stop();
    await stopServers(d);
    d = undefined;
  });

  /** Alice uploads the file; Bob gets a downloader over a fresh OPFS store. */
  async function uploaded(
    file: File,
    options: { partSize?: number; perServer?: number } = {},
  ): Promise<{ itemId: string; downloader: WsDownloader }> {
    d ??= await startServers(1);
    const alice = await startedEngine(d, d.token, engines);
    const { itemId } = await uploadFile(alice, file);
    const bob = await startedEngine(d!, await userToken(d!, 'bob'), engines);
    const store = new OpfsItemStore();
    await store.delete(itemId);
    return { itemId, downloader: new WsDownloader({ locate: bob, store, ...options }) };
  }

  it('is accessible while idle, and renders no item without a downloader', async () => {
    const el = await fixture<WsDownload>(html`<ws-download item-id="abc"></ws-download>`);
    expect(el.state).to.equal('idle');
    expect(el.getAttribute('state')).to.equal('idle');
    expect(part(el, 'media')).to.equal(null);
    expect(part(el, 'download-button')).to.equal(null);
    await expect(el).to.be.accessible();
  });

  it('is accessible while downloading: a labelled progress bar and a cancel button', async () => {
    const downloader = new WsDownloader({ locate: () => new Promise(() => undefined) });
    const el = await fixture<WsDownload>(
      html`<ws-download item-id="pending" .downloader=${downloader}></ws-download>`,
    );
    expect(el.state).to.equal('downloading');
    expect(el.getAttribute('state')).to.equal('downloading');
    const bar = part(el, 'progress')!;
    expect(bar.getAttribute('role')).to.equal('progressbar');
    expect(bar.getAttribute('aria-label')).to.equal('Downloading pending');
    await expect(el).to.be.accessible();
    part<HTMLButtonElement>(el, 'cancel-button')!.click();
    await el.updateComplete;
    expect(el.state).to.equal('idle');
    expect(part(el, 'progress')).to.equal(null);
    expect(part(el, 'download-button')).to.not.equal(null);
  });

  it('renders a downloaded PNG as an <img> that decodes, and is accessible when done', async () => {
    const png = await drawnPng();
    const { itemId, downloader } = await uploaded(png);
    const el = await fixture<WsDownload>(
      html`<ws-download item-id=${itemId} .downloader=${downloader}></ws-download>`,
    );
    const { detail } = await oneEvent(el, 'ws-download-complete');
    expect(detail).to.deep.equal({
      itemId,
      name: 'drawing.png',
      size: png.size,
      sha256: await sha256Hex(await png.arrayBuffer()),
      mime: 'image/png',
    });
    await el.updateComplete;
    expect(el.state).to.equal('done');
    expect(el.getAttribute('state')).to.equal('done');
    const img = part<HTMLImageElement>(el, 'media')!;
    expect(img.localName).to.equal('img');
    expect(img.alt).to.equal('drawing.png');
    expect(img.src).to.match(/^blob:/);
    await img.decode();
    expect(img.naturalWidth).to.equal(40);
    expect(img.naturalHeight).to.equal(30);
    expect(part(el, 'name')!.textContent).to.equal('drawing.png');
    expect(el.shadowRoot!.querySelector('[role=status]')!.textContent).to.contain(
      'drawing.png is downloaded',
    );
    await expect(el).to.be.accessible();

    // Gone from the document, its object URL is revoked.
    const url = img.src;
    el.remove();
    let failed = false;
    await fetch(url).catch(() => (failed = true));
    expect(failed).to.equal(true);
  });

  it('offers a text file as a save link whose blob has the text', async () => {
    const text = 'Hello from <ws-download>.\n'.repeat(100);
    const file = new File([text], 'notes.txt', { type: 'text/plain' });
    const { itemId, downloader } = await uploaded(file);
    const el = await fixture<WsDownload>(
      html`<ws-download item-id=${itemId} .downloader=${downloader}></ws-download>`,
    );
    await oneEvent(el, 'ws-download-complete');
    await el.updateComplete;
    const link = part<HTMLAnchorElement>(el, 'save-link')!;
    expect(link.localName).to.equal('a');
    expect(link.getAttribute('download')).to.equal('notes.txt');
    expect(link.textContent).to.equal('Save notes.txt');
    expect(await (await fetch(link.href)).text()).to.equal(text);
    expect(part(el, 'media')).to.equal(null);
  });

  it('fires progress (once per frame at most) and a final complete with the source SHA-256', async () => {
    const file = randomFile(3 * 1024 * KiB + 5, 'data.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const { itemId, downloader } = await uploaded(file, { partSize: 128 * KiB, perServer: 1 });
    const el = await fixture<WsDownload>(
      html`<ws-download no-auto item-id=${itemId} .downloader=${downloader}></ws-download>`,
    );
    const progress: { detail: WsDownloadProgressDetail; frame: number }[] = [];
    let frame = 0;
    let counting = true;
    const tick = () => {
      frame++;
      if (counting) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    let valueNow: string | null = null;
    el.addEventListener('ws-download-progress', (e) => {
      progress.push({ detail: e.detail, frame });
      if (valueNow === null && el.state === 'downloading')
        void el.updateComplete.then(() => {
          valueNow = part(el, 'progress')?.getAttribute('aria-valuenow') ?? null;
        });
    });
    const complete = oneEvent(el, 'ws-download-complete');
    void el.download();
    const { detail } = await complete;
    counting = false;
    expect(detail.sha256).to.equal(expected);
    expect(detail.size).to.equal(file.size);
    expect(progress.length).to.be.at.least(2);
    for (const p of progress) {
      expect(p.detail.itemId).to.equal(itemId);
      expect(p.detail.bytesTotal).to.equal(file.size);
    }
    for (let i = 1; i < progress.length; i++) {
      expect(progress[i]!.detail.bytesStored).to.be.at.least(progress[i - 1]!.detail.bytesStored);
      expect(progress[i]!.frame).to.be.above(progress[i - 1]!.frame);
    }
    expect(progress.at(-1)!.detail.bytesStored).to.equal(file.size);
    expect(valueNow).to.match(/^\d+$/);
    expect(el.progress).to.deep.equal({ bytesStored: file.size, bytesTotal: file.size });
  });

  it("shows the control server's error for an unknown item, with a retry button, and is accessible", async () => {
    d = await startServers(1);
    const bob = await startedEngine(d!, await userToken(d!, 'bob'), engines);
    const downloader = new WsDownloader({ locate: bob, store: new OpfsItemStore() });
    const el = await fixture<WsDownload>(
      html`<ws-download no-auto item-id="no-such-item" .downloader=${downloader}></ws-download>`,
    );
    const failed = oneEvent(el, 'ws-download-error');
    void el.download();
    const { detail } = (await failed) as WsDownloadErrorEvent;
    expect(detail.itemId).to.equal('no-such-item');
    expect(detail.code).to.equal('unknown-item');
    expect(detail.message).to.equal('This file does not exist');
    expect(detail.error).to.be.instanceOf(Error);
    await el.updateComplete;
    expect(el.state).to.equal('failed');
    expect(el.getAttribute('state')).to.equal('failed');
    expect(part(el, 'error')!.textContent).to.equal('This file does not exist');
    expect(part(el, 'retry-button')).to.not.equal(null);
    expect(el.shadowRoot!.querySelector('[role=status]')!.textContent).to.contain(
      'no-such-item: This file does not exist',
    );
    await expect(el).to.be.accessible();

    // Retry fails the same way, again with an event.
    const again = oneEvent(el, 'ws-download-error');
    part<HTMLButtonElement>(el, 'retry-button')!.click();
    expect((await again).detail.code).to.equal('unknown-item');
  });

  it('with no-auto, waits for download()', async () => {
    const file = new File(['wait for it'], 'wait.txt', { type: 'text/plain' });
    const { itemId, downloader } = await uploaded(file);
    let completed = 0;
    const el = await fixture<WsDownload>(
      html`<ws-download
        no-auto
        item-id=${itemId}
        .downloader=${downloader}
        @ws-download-complete=${() => completed++}
      ></ws-download>`,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(el.state).to.equal('idle');
    expect(completed).to.equal(0);
    expect(await downloader.get(itemId)).to.equal(undefined);
    part<HTMLButtonElement>(el, 'download-button')!.click();
    await waitUntil(() => el.state === 'done', 'the download did not finish', { timeout: 20_000 });
    expect(completed).to.equal(1);
  });

  it('takes an i18n override merged over the English strings', async () => {
    d = await startServers(1);
    const bob = await startedEngine(d!, await userToken(d!, 'bob'), engines);
    const downloader = new WsDownloader({ locate: bob, store: new OpfsItemStore() });
    const el = await fixture<WsDownload>(
      html`<ws-download
        no-auto
        item-id="missing"
        .downloader=${downloader}
        .i18n=${{ retry: 'Nochmal', errors: { 'unknown-item': 'Diese Datei gibt es nicht' } }}
      ></ws-download>`,
    );
    expect(part(el, 'download-button')!.textContent!.trim()).to.equal('Download');
    const failed = oneEvent(el, 'ws-download-error');
    void el.download();
    expect((await failed).detail.message).to.equal('Diese Datei gibt es nicht');
    await el.updateComplete;
    expect(part(el, 'error')!.textContent).to.equal('Diese Datei gibt es nicht');
    // A translation given later applies to the error shown.
    el.i18n = { errors: { 'unknown-item': 'Fichier inconnu' } };
    await el.updateComplete;
    expect(part(el, 'error')!.textContent).to.equal('Fichier inconnu');
    el.i18n = { retry: 'Nochmal', errors: { 'unknown-item': 'Diese Datei gibt es nicht' } };
    await el.updateComplete;
    const retry = part(el, 'retry-button')!;
    expect(retry.textContent!.trim()).to.equal('Nochmal');
    expect(retry.getAttribute('aria-label')).to.equal('Nochmal missing');
  });

  it('with stream but no service worker, downloads audio and plays it from the store', async () => {
    expect(navigator.serviceWorker.controller).to.equal(null);
    const file = wav(2, 8000);
    const { itemId, downloader } = await uploaded(file);
    const el = await fixture<WsDownload>(
      html`<ws-download stream item-id=${itemId} .downloader=${downloader}></ws-download>`,
    );
    const { detail } = await oneEvent(el, 'ws-download-complete');
    expect(detail.mime).to.equal('audio/wav');
    await el.updateComplete;
    const audio = part<HTMLAudioElement>(el, 'media')!;
    expect(audio.localName).to.equal('audio');
    expect(audio.controls).to.equal(true);
    expect(audio.src).to.match(/^blob:/);
    await loaded(audio);
    expect(audio.duration).to.be.closeTo(2, 0.05);
    await expect(el).to.be.accessible();
  });

  it('shows video/* as a <video> with controls', async () => {
    const file = new File([new Uint8Array(2000)], 'clip.webm', { type: 'video/webm' });
    const { itemId, downloader } = await uploaded(file);
    const el = await fixture<WsDownload>(
      html`<ws-download item-id=${itemId} .downloader=${downloader}></ws-download>`,
    );
    await oneEvent(el, 'ws-download-complete');
    await el.updateComplete;
    const video = part<HTMLVideoElement>(el, 'media')!;
    expect(video.localName).to.equal('video');
    expect(video.controls).to.equal(true);
    expect(video.getAttribute('aria-label')).to.equal('clip.webm');
  });

  it('never shows SVG as an image: a save link instead', async () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>';
    const file = new File([svg], 'x.svg', { type: 'image/svg+xml' });
    const { itemId, downloader } = await uploaded(file);
    const el = await fixture<WsDownload>(
      html`<ws-download item-id=${itemId} .downloader=${downloader}></ws-download>`,
    );
    await oneEvent(el, 'ws-download-complete');
    await el.updateComplete;
    expect(part(el, 'media')).to.equal(null);
    expect(part(el, 'save-link')!.getAttribute('download')).to.equal('x.svg');
  });

  it('forgets the item shown when item-id changes, and revokes its object URL', async () => {
    const { itemId, downloader } = await uploaded(new File(['one'], 'one.txt'));
    const el = await fixture<WsDownload>(
      html`<ws-download item-id=${itemId} .downloader=${downloader}></ws-download>`,
    );
    await oneEvent(el, 'ws-download-complete');
    await el.updateComplete;
    const url = part<HTMLAnchorElement>(el, 'save-link')!.href;
    el.noAuto = true;
    el.itemId = 'another';
    await el.updateComplete;
    expect(el.state).to.equal('idle');
    expect(part(el, 'save-link')).to.equal(null);
    expect(part(el, 'name')!.textContent).to.equal('another');
    let failed = false;
    await fetch(url).catch(() => (failed = true));
    expect(failed).to.equal(true);
  });

  it('shows the item again when moved in the document (a new object URL)', async () => {
    const png = await drawnPng('moved.png');
    const { itemId, downloader } = await uploaded(png);
    const el = await fixture<WsDownload>(
      html`<ws-download item-id=${itemId} .downloader=${downloader}></ws-download>`,
    );
    await oneEvent(el, 'ws-download-complete');
    await el.updateComplete;
    const before = part<HTMLImageElement>(el, 'media')!.src;
    const parent = el.parentElement!;
    el.remove();
    parent.append(el);
    await el.updateComplete;
    expect(el.state).to.equal('done');
    const img = part<HTMLImageElement>(el, 'media')!;
    expect(img.src)
      .to.match(/^blob:/)
      .and.not.equal(before);
    await img.decode();
    expect(img.naturalWidth).to.equal(40);
  });

  it('warns and ignores a bad item-id', async () => {
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (m: string) => void warnings.push(m);
    try {
      const downloader = new WsDownloader({ locate: () => new Promise(() => undefined) });
      const el = await fixture<WsDownload>(
        html`<ws-download item-id="../etc" .downloader=${downloader}></ws-download>`,
      );
      expect(el.itemId).to.equal('');
      expect(el.state).to.equal('idle');
      expect(warnings.join('\n')).to.contain('item-id');
    } finally {
      console.warn = warn;
    }
  });
});

describe('<ws-download stream> with the service worker', () => {
  let d: TestDeployment | undefined;
  const engines: WsUploaderEngine[] = [];
  let registration: ServiceWorkerRegistration | undefined;

  before(async () => {
    registration = await registerItemWorker();
  });

  after(async () => {
    for (const e of engines.splice(0)) e.stop();
    await stopServers(d);
    await registration?.unregister();
  });

  it('plays audio through the worker at once, without downloading it whole', async () => {
    d = await startServers(1);
    const alice = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: d.token });
    engines.push(alice);
    await alice.start();
    const file = wav(30, 8000); // 480 kB
    const { itemId } = await new Promise<UploadResult>((resolve) => {
      alice.on('complete', (e) => resolve(e.detail));
      alice.addFiles([file]);
    });
    const bob = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: await userToken(d, 'bob'),
    });
    engines.push(bob);
    await bob.start();
    const store = new OpfsItemStore();
    await store.delete(itemId);
    const downloader = new WsDownloader({ locate: bob, store, partSize: 64 * KiB });
    let completed = 0;
    const el = await fixture<WsDownload>(
      html`<ws-download
        stream
        item-id=${itemId}
        .downloader=${downloader}
        @ws-download-complete=${() => completed++}
      ></ws-download>`,
    );
    await waitUntil(() => el.state === 'done', 'the stream did not start', { timeout: 20_000 });
    const audio = part<HTMLAudioElement>(el, 'media')!;
    expect(audio.localName).to.equal('audio');
    expect(new URL(audio.src).pathname).to.equal(`/ws-uploader/items/${itemId}`);
    await loaded(audio);
    expect(audio.duration).to.be.closeTo(30, 0.1);
    expect(part(el, 'name')!.textContent).to.equal('tone.wav');
    expect(completed).to.equal(0);
    // Not verified as a whole: no complete event, and the downloader has no stored item yet.
    expect(await downloader.get(itemId)).to.equal(undefined);
  });
});
