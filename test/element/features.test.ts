// Every feature of <ws-uploader>, against real control and upload servers on loopback (no mock of
// the engine or of a server): the file rules and their notices, held files, drop, paste, the
// picker, inline items, the events and their details, the file row and its buttons, the server
// list, the keyboard, translations, accessibility in each state, and the reflected state.
import { expect, fixture, html, oneEvent } from '@open-wc/testing';
import { sendKeys } from '@web/test-runner-commands';
import '../../src/ws-uploader.js';
import {
  WsUploaderEngine,
  type ItemStatus,
  type WsFileRejectDetail,
  type WsUploader,
  type WsUploadProgressDetail,
} from '../../src/index.js';
import {
  controlItems,
  killUpload,
  randomFile,
  sha256Hex,
  startDeployment,
  startServers,
  stopServers,
  storedSha256,
  userToken,
  type TestDeployment,
} from '../helpers/servers.js';
import { Gate, gatedFile } from '../helpers/gated-file.js';
import { until } from '../helpers/until.js';

const MiB = 1024 * 1024;
/** The engine reads a file 4 MiB at a time. */
const BLOCK = 4 * MiB;

/** The shadow parts every test looks at. */
function parts(el: WsUploader) {
  const root = el.shadowRoot!;
  return {
    root,
    dropArea: root.querySelector<HTMLElement>('[part="drop-area"]')!,
    input: root.querySelector<HTMLInputElement>('input[type=file]')!,
    status: root.querySelector<HTMLElement>('[role=status]')!,
    row: (itemId: string) =>
      root.querySelector<HTMLElement>(`[part="file"][data-item-id="${itemId}"]`),
    rows: () => [...root.querySelectorAll<HTMLElement>('[part="file"]')],
    button: (itemId: string, action: string) =>
      root.querySelector<HTMLButtonElement>(
        `[part="file"][data-item-id="${itemId}"] [part~="${action}-button"]`,
      ),
  };
}

/** A connected element, its servers open. */
async function connected(
  d: TestDeployment,
  template = (url: string, token: string) =>
    html`<ws-uploader control-url=${url} auth-token=${token}></ws-uploader>`,
  servers = d.servers.length,
): Promise<WsUploader> {
  const el = await fixture<WsUploader>(template(d.controlUrl, d.token));
  await el.connected;
  await until(
    () => el.servers.filter((s) => s.state === 'open' && s.rttMs !== undefined).length === servers,
    10_000,
  );
  await el.updateComplete;
  return el;
}

/** The next event of a type, typed. */
function once<K extends keyof HTMLElementEventMap>(
  el: HTMLElement,
  type: K,
): Promise<HTMLElementEventMap[K]> {
  return oneEvent<HTMLElementEventMap[K]>(el, type);
}

/** Every event of a type the element fires, from now on. */
function record<K extends keyof HTMLElementEventMap>(
  el: HTMLElement,
  type: K,
): HTMLElementEventMap[K][] {
  const events: HTMLElementEventMap[K][] = [];
  el.addEventListener(type, (e) => events.push(e));
  return events;
}

/** The item with this id, as the element shows it. */
function item(el: WsUploader, itemId: string): ItemStatus | undefined {
  return el.items.find((i) => i.itemId === itemId);
}

/** A DataTransfer holding these files (and text). */
function transfer(files: File[], text?: string): DataTransfer {
  const dt = new DataTransfer();
  for (const f of files) dt.items.add(f);
  if (text !== undefined) dt.setData('text/plain', text);
  return dt;
}

function drop(target: HTMLElement, files: File[]): DragEvent {
  const e = new DragEvent('drop', {
    bubbles: true,
    composed: true,
    cancelable: true,
    dataTransfer: transfer(files),
  });
  target.dispatchEvent(e);
  return e;
}

function paste(target: HTMLElement, data: DataTransfer): ClipboardEvent {
  const e = new ClipboardEvent('paste', {
    clipboardData: data,
    bubbles: true,
    composed: true,
    cancelable: true,
  });
  target.dispatchEvent(e);
  return e;
}

/** A PNG drawn on a canvas. */
async function canvasPng(): Promise<Blob> {
  const canvas = document.createElement('canvas');
  canvas.width = 24;
  canvas.height = 16;
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = '#1e6';
  ctx.fillRect(0, 0, 24, 16);
  return new Promise((resolve) => canvas.toBlob((b) => resolve(b!), 'image/png'));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('<ws-uploader> features', () => {
  let d: TestDeployment | undefined;

  afterEach(async () => {
    await stopServers(d);
    d = undefined;
  });

  describe('attributes', () => {
    it('takes files by accept, max-file-size and max-files; shows, announces and dismisses what it rejects', async () => {
      const el = await fixture<WsUploader>(
        html`<ws-uploader accept="image/*,.txt" max-file-size="1000" max-files="3"></ws-uploader>`,
      );
      const { root, status } = parts(el);
      const rejects = record(el, 'ws-file-reject');
      const bin = new File(['x'], 'data.bin', { type: 'application/octet-stream' });
      const png = new File(['png'], 'photo.png', { type: 'image/png' });
      const txt = new File(['text'], 'notes.txt');
      const huge = new File([new Uint8Array(1001)], 'huge.txt');
      expect(el.addFiles([bin, png, txt, huge])).to.deep.equal([]);
      await el.updateComplete;
      // Not connected: the files taken wait.
      expect(el.heldFiles).to.deep.equal([png, txt]);
      expect(rejects.map((e) => e.detail)).to.deep.equal([
        {
          file: bin,
          name: 'data.bin',
          reason: 'type',
          message: 'data.bin: this type of file is not accepted',
        },
        {
          file: huge,
          name: 'huge.txt',
          reason: 'size',
          message: 'huge.txt: the file is too large',
        },
      ] satisfies WsFileRejectDetail[]);
      expect(rejects.every((e) => e.bubbles && e.composed)).to.equal(true);
      // The count limit takes the first files that pass the other rules, held ones included.
      const a = new File(['a'], 'a.txt');
      const b = new File(['b'], 'b.txt');
      el.addFiles([a, b]);
      await el.updateComplete;
      expect(el.heldFiles).to.deep.equal([png, txt, a]);
      expect(rejects[2]!.detail).to.deep.include({ file: b, reason: 'count', name: 'b.txt' });
      expect(rejects[2]!.detail.message).to.equal('b.txt: too many files');

      const notices = () => [...root.querySelectorAll('[part="rejected-list"] li')];
      expect(notices().map((li) => li.querySelector('span')!.textContent)).to.deep.equal([
        'data.bin: this type of file is not accepted',
        'huge.txt: the file is too large',
        'b.txt: too many files',
      ]);
      expect(status.getAttribute('aria-live')).to.equal('polite');
      expect(status.textContent).to.equal('b.txt: too many files');
      await expect(el).to.be.accessible();

      const dismiss = notices()[1]!.querySelector<HTMLButtonElement>('[part~="dismiss-button"]')!;
      expect(dismiss.getAttribute('aria-label')).to.equal('Remove huge.txt');
      dismiss.click();
      await el.updateComplete;
      expect(notices().map((li) => li.querySelector('span')!.textContent)).to.deep.equal([
        'data.bin: this type of file is not accepted',
        'b.txt: too many files',
      ]);
      for (const li of notices()) li.querySelector<HTMLButtonElement>('button')!.click();
      await el.updateComplete;
      expect(root.querySelector('[part="rejected-list"]')).to.equal(null);
    });

    it('warns about bad attribute values, falls back, and keeps working', async () => {
      d = await startDeployment({ uploadServers: 1 });
      const warnings: string[] = [];
      const warn = console.warn;
      console.warn = (m: string) => void warnings.push(m);
      let el: WsUploader;
      try {
        el = await connected(
          d,
          (url, token) =>
            html`<ws-uploader
              control-url=${url}
              auth-token=${token}
              chunk-size="0"
              max-parallel="1.5"
              max-file-size="-1"
              max-files="many"
              inline-max="-3"
            ></ws-uploader>`,
        );
      } finally {
        console.warn = warn;
      }
      for (const name of ['chunk-size', 'max-parallel', 'max-file-size', 'max-files', 'inline-max'])
        expect(
          warnings.some((w) => w.includes(`ignoring ${name}=`)),
          name,
        ).to.equal(true);
      expect([
        el.chunkSize,
        el.maxParallel,
        el.maxFileSize,
        el.maxFiles,
        el.inlineMax,
      ]).to.deep.equal([512 * 1024, 3, 0, 0, undefined]);
      // No limits, and the control server's inline limit: two small files go inline.
      const complete = record(el, 'ws-upload-complete');
      expect(
        el.addFiles([new File(['one'], 'one.txt'), new File(['two'], 'two.txt')]),
      ).to.have.length(2);
      await until(() => complete.length === 2);
      expect(el.items.map((i) => i.inline)).to.deep.equal([true, true]);
    });

    it('goes back to the defaults, without a warning, when number attributes are removed', async () => {
      const el = await fixture<WsUploader>(
        html`<ws-uploader
          chunk-size="65536"
          max-parallel="2"
          max-file-size="10"
          max-files="1"
          inline-max="0"
        ></ws-uploader>`,
      );
      expect([
        el.chunkSize,
        el.maxParallel,
        el.maxFileSize,
        el.maxFiles,
        el.inlineMax,
      ]).to.deep.equal([65536, 2, 10, 1, 0]);
      const warnings: unknown[] = [];
      const warn = console.warn;
      console.warn = (m: unknown) => void warnings.push(m);
      try {
        for (const name of [
          'chunk-size',
          'max-parallel',
          'max-file-size',
          'max-files',
          'inline-max',
        ])
          el.removeAttribute(name);
        await el.updateComplete;
      } finally {
        console.warn = warn;
      }
      expect(warnings).to.deep.equal([]);
      expect([
        el.chunkSize,
        el.maxParallel,
        el.maxFileSize,
        el.maxFiles,
        el.inlineMax,
      ]).to.deep.equal([512 * 1024, 3, 0, 0, undefined]);
    });

    it('sends small files inline unless inline-max="0" sends them to an upload server', async () => {
      d = await startDeployment({ uploadServers: 1 });
      const file = randomFile(1000, 'small.bin');
      const sha = await sha256Hex(await file.arrayBuffer());

      const inline = await connected(d);
      const inlineDone = once(inline, 'ws-upload-complete');
      const [a] = inline.addFiles([file]);
      const c1 = (await inlineDone).detail;
      expect(c1).to.deep.equal({
        itemId: a!.itemId,
        name: 'small.bin',
        size: 1000,
        sha256: sha,
        servers: [],
      });
      expect(item(inline, a!.itemId)).to.deep.include({
        inline: true,
        servers: [],
        state: 'complete',
      });
      // Kept by the control server, not uploaded.
      expect((await controlItems(d)).find((i) => i.meta.itemId === a!.itemId)).to.deep.include({
        inline: true,
        servers: [],
      });
      inline.remove();

      const uploaded = await connected(
        d,
        (url, token) =>
          html`<ws-uploader control-url=${url} auth-token=${token} inline-max="0"></ws-uploader>`,
      );
      expect(uploaded.inlineMax).to.equal(0);
      const uploadedDone = once(uploaded, 'ws-upload-complete');
      const [b] = uploaded.addFiles([file]);
      const c2 = (await uploadedDone).detail;
      expect(c2.servers.map((s) => s.id)).to.deep.equal(['up-1']);
      expect(c2.sha256).to.equal(sha);
      expect(item(uploaded, b!.itemId)!.inline).to.not.equal(true);
      expect(await storedSha256(d, 'up-1', b!.itemId)).to.deep.equal({
        complete: true,
        size: 1000,
        sha256: sha,
      });
    });

    it('no-auto holds files (shown as waiting) until publish()', async () => {
      d = await startServers(1);
      const el = await connected(
        d,
        (url, token) =>
          html`<ws-uploader control-url=${url} auth-token=${token} no-auto></ws-uploader>`,
      );
      const { rows, status } = parts(el);
      const published = record(el, 'ws-publish');
      const complete = record(el, 'ws-upload-complete');
      const one = new File(['one'], 'one.txt');
      const two = new File(['two'], 'two.txt');
      const three = new File(['three'], 'three.txt');
      expect(el.addFiles([one, two, three])).to.deep.equal([]);
      await el.updateComplete;
      expect(el.heldFiles).to.deep.equal([one, two, three]);
      expect(el.items).to.deep.equal([]);
      expect(
        rows().map((r) => [r.dataset['state'], r.querySelector('.name')!.textContent]),
      ).to.deep.equal([
        ['held', 'one.txt'],
        ['held', 'two.txt'],
        ['held', 'three.txt'],
      ]);
      expect(rows()[0]!.querySelector('[part="file-state"]')!.textContent).to.equal('waiting');
      await expect(el).to.be.accessible();
      // A held file can be taken out before it goes.
      rows()[1]!.querySelector<HTMLButtonElement>('[part~="dismiss-button"]')!.click();
      await el.updateComplete;
      expect(el.heldFiles).to.deep.equal([one, three]);
      await sleep(300);
      expect(published).to.deep.equal([]);

      el.publish();
      expect(el.heldFiles).to.deep.equal([]);
      await until(() => complete.length === 2);
      expect(published.flatMap((e) => e.detail.items.map((i) => i.name))).to.deep.equal([
        'one.txt',
        'three.txt',
      ]);
      await el.updateComplete;
      expect(rows().map((r) => r.dataset['state'])).to.deep.equal(['complete', 'complete']);
      expect(status.textContent).to.match(/^(one|three)\.txt is stored$/);
    });

    it('holds files added before it is connected and publishes them once it connects', async () => {
      d = await startServers(1);
      const el = document.createElement('ws-uploader');
      const file = new File(['early bird'], 'early.txt');
      expect(el.addFiles([file])).to.deep.equal([]);
      expect(el.heldFiles).to.deep.equal([file]);
      el.controlUrl = d.controlUrl;
      el.authToken = d.token;
      const complete = once(el, 'ws-upload-complete');
      const host = await fixture<HTMLDivElement>(html`<div></div>`);
      host.append(el);
      const c = (await complete).detail;
      expect(c).to.deep.include({ name: 'early.txt', size: 10 });
      expect(c.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
      expect(el.heldFiles).to.deep.equal([]);
      expect(el.items.map((i) => i.state)).to.deep.equal(['complete']);
    });

    it('no-drop ignores dropped files while the picker still adds; multiple sets the picker', async () => {
      const el = await fixture<WsUploader>(html`<ws-uploader no-drop></ws-uploader>`);
      const { dropArea, input } = parts(el);
      const over = new DragEvent('dragover', {
        bubbles: true,
        cancelable: true,
        dataTransfer: new DataTransfer(),
      });
      dropArea.dispatchEvent(over);
      await el.updateComplete;
      expect(over.defaultPrevented).to.equal(false);
      expect(el.hasAttribute('dragover')).to.equal(false);
      expect(drop(dropArea, [new File(['x'], 'dropped.txt')]).defaultPrevented).to.equal(false);
      await el.updateComplete;
      expect(el.heldFiles).to.deep.equal([]);

      expect(input.multiple).to.equal(false);
      el.multiple = true;
      await el.updateComplete;
      expect(input.multiple).to.equal(true);
      input.files = transfer([new File(['p'], 'picked.txt'), new File(['q'], 'also.txt')]).files;
      input.dispatchEvent(new Event('change'));
      expect(el.heldFiles.map((f) => f.name)).to.deep.equal(['picked.txt', 'also.txt']);

      // Without no-drop, the same drop adds its file, and the drag-over state ends with it.
      el.noDrop = false;
      await el.updateComplete;
      dropArea.dispatchEvent(new DragEvent('dragover', { bubbles: true, cancelable: true }));
      await el.updateComplete;
      expect(el.hasAttribute('dragover')).to.equal(true);
      expect(dropArea.querySelector('.label')!.textContent).to.equal('Release to add the files');
      expect(drop(dropArea, [new File(['x'], 'dropped.txt')]).defaultPrevented).to.equal(true);
      await el.updateComplete;
      expect(el.hasAttribute('dragover')).to.equal(false);
      expect(el.heldFiles.map((f) => f.name)).to.deep.equal([
        'picked.txt',
        'also.txt',
        'dropped.txt',
      ]);
    });

    it('disabled takes nothing by drop, paste or addFiles, and is reflected', async () => {
      const el = await fixture<WsUploader>(html`<ws-uploader></ws-uploader>`);
      const { dropArea } = parts(el);
      el.disabled = true;
      await el.updateComplete;
      expect(el.hasAttribute('disabled')).to.equal(true);
      expect(el.addFiles([new File(['a'], 'a.txt')])).to.deep.equal([]);
      expect(drop(dropArea, [new File(['b'], 'b.txt')]).defaultPrevented).to.equal(false);
      const pasted = paste(dropArea, transfer([new File(['c'], 'c.png', { type: 'image/png' })]));
      expect(pasted.defaultPrevented).to.equal(false);
      expect(paste(dropArea, transfer([], 'some text')).defaultPrevented).to.equal(false);
      await el.updateComplete;
      expect(el.heldFiles).to.deep.equal([]);
      expect(parts(el).rows()).to.deep.equal([]);

      el.removeAttribute('disabled');
      await el.updateComplete;
      expect(el.disabled).to.equal(false);
      el.addFiles([new File(['a'], 'a.txt')]);
      expect(el.heldFiles.map((f) => f.name)).to.deep.equal(['a.txt']);
    });
  });

  describe('events', () => {
    it('fires ws-upload-progress with bytes sent, stored and by server, never going back', async () => {
      d = await startServers(1);
      const el = await connected(
        d,
        (url, token) =>
          html`<ws-uploader
            control-url=${url}
            auth-token=${token}
            chunk-size="65536"
          ></ws-uploader>`,
      );
      const progress = record(el, 'ws-upload-progress');
      const complete = once(el, 'ws-upload-complete');
      const file = randomFile(3 * MiB, 'progress.bin');
      const [added] = el.addFiles([file]);
      const c = (await complete).detail;
      expect(c.itemId).to.equal(added!.itemId);
      const mine = progress.map((e) => e.detail).filter((p) => p.itemId === c.itemId);
      expect(mine.length).to.be.greaterThan(0);
      for (const p of mine) {
        expect(Object.keys(p).sort()).to.deep.equal([
          'bytesByServer',
          'bytesSent',
          'bytesStored',
          'bytesTotal',
          'itemId',
        ]);
        expect(p.bytesTotal).to.equal(file.size);
        expect(p.bytesSent).to.be.at.least(p.bytesStored);
      }
      for (let i = 1; i < mine.length; i++) {
        expect(mine[i]!.bytesStored).to.be.at.least(mine[i - 1]!.bytesStored);
        expect(mine[i]!.bytesSent).to.be.at.least(mine[i - 1]!.bytesSent);
      }
      expect(mine.at(-1)).to.deep.equal({
        itemId: c.itemId,
        bytesSent: file.size,
        bytesStored: file.size,
        bytesTotal: file.size,
        bytesByServer: { 'up-1': file.size },
      } satisfies WsUploadProgressDetail);
      expect(c.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
    });

    it('ws-transmit-request: preventDefault() declines the task (no error, the item waits published)', async () => {
      d = await startServers(1);
      const el = await connected(d);
      const errors = record(el, 'ws-upload-error');
      const decline = (e: Event) => e.preventDefault();
      el.addEventListener('ws-transmit-request', decline);
      const requested = once(el, 'ws-transmit-request');
      const [added] = el.addFiles([new File(['declined'], 'declined.txt')]);
      const itemId = added!.itemId;
      const r = await requested;
      expect(r.cancelable).to.equal(true);
      expect(r.defaultPrevented).to.equal(true);
      expect(r.detail).to.deep.include({ itemId, reason: 'publish' });
      expect(r.detail.ranges).to.deep.equal([{ start: 0, end: 8, serverId: 'up-1' }]);
      await sleep(300);
      await el.updateComplete;
      expect(errors).to.deep.equal([]);
      expect(item(el, itemId)).to.deep.include({ state: 'published', bytesStored: 0 });
      const row = parts(el).row(itemId)!;
      expect(row.dataset['state']).to.equal('published');
      expect(row.querySelector('[part="file-state"]')!.textContent).to.equal('published');

      // Published again without the veto, it goes.
      el.removeEventListener('ws-transmit-request', decline);
      const complete = once(el, 'ws-upload-complete');
      el.publish([itemId]);
      expect((await complete).detail.itemId).to.equal(itemId);
      expect(errors).to.deep.equal([]);
    });

    it('ws-transmit-request: retarget(ranges) sends the task to another server', async () => {
      d = await startServers(2);
      const el = await connected(d);
      const targets: string[] = [];
      el.addEventListener('ws-transmit-request', (e) => {
        const planned = e.detail.ranges[0]!.serverId;
        const other = planned === 'up-1' ? 'up-2' : 'up-1';
        targets.push(planned, other);
        e.retarget(e.detail.ranges.map((r) => ({ ...r, serverId: other })));
      });
      const file = randomFile(200_000, 'moved.bin');
      const complete = once(el, 'ws-upload-complete');
      const [added] = el.addFiles([file]);
      const c = (await complete).detail;
      const [planned, other] = targets as [string, string];
      expect(c.servers.map((s) => s.id)).to.deep.equal([other]);
      const sha = await sha256Hex(await file.arrayBuffer());
      expect(c.sha256).to.equal(sha);
      expect(await storedSha256(d, other, added!.itemId)).to.deep.equal({
        complete: true,
        size: file.size,
        sha256: sha,
      });
      expect(item(el, added!.itemId)!.bytesByServer).to.deep.equal({ [other]: file.size });
      expect(planned).to.not.equal(other);
    });

    it('ws-upload-error: code, message, item and server; the row fails with a retry button that publishes again', async () => {
      d = await startDeployment({
        uploadServers: 2,
        controlOptions: { inlineMax: 0 },
        uploadOptionsById: { 'up-1': { maxItemSize: 1000 } },
      });
      const el = await connected(d);
      const { row, button, status } = parts(el);
      // The first task goes to up-1, which takes at most 1000 bytes; later ones to up-2.
      const requests: string[] = [];
      el.addEventListener('ws-transmit-request', (e) => {
        const to = requests.length === 0 ? 'up-1' : 'up-2';
        requests.push(e.detail.taskId);
        e.retarget([{ start: 0, end: 5000, serverId: to }]);
      });
      const published = record(el, 'ws-publish');
      const error = once(el, 'ws-upload-error');
      const file = randomFile(5000, 'big.bin');
      const [added] = el.addFiles([file]);
      const itemId = added!.itemId;
      const e = (await error).detail;
      expect(e).to.deep.include({
        itemId,
        serverId: 'up-1',
        code: 'too-large',
        message: 'The file is too large',
      });
      expect(e.error).to.be.instanceOf(Error);
      await el.updateComplete;
      expect(item(el, itemId)).to.deep.include({ state: 'failed', errorCode: 'too-large' });
      expect(row(itemId)!.dataset['state']).to.equal('failed');
      expect(row(itemId)!.querySelector('[part="file-state"]')!.textContent).to.equal(
        'The file is too large',
      );
      expect(status.textContent).to.equal('big.bin: The file is too large');
      expect(button(itemId, 'pause')).to.equal(null);
      expect(button(itemId, 'cancel')).to.not.equal(null);
      const retry = button(itemId, 'retry')!;
      expect(retry.getAttribute('aria-label')).to.equal('Retry big.bin');
      await expect(el).to.be.accessible();

      const complete = once(el, 'ws-upload-complete');
      retry.click();
      const c = (await complete).detail;
      expect(published.map((p) => p.detail.items.map((i) => i.itemId))).to.deep.equal([
        [itemId],
        [itemId],
      ]);
      expect(requests).to.have.length(2);
      expect(c.servers.map((s) => s.id)).to.deep.equal(['up-2']);
      expect(c.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
      await el.updateComplete;
      expect(row(itemId)!.dataset['state']).to.equal('complete');
      expect(row(itemId)!.querySelector('[part="file-state"]')!.textContent).to.equal('done');
      expect(row(itemId)!.querySelectorAll('button')).to.have.length(0);
      expect(status.textContent).to.equal('big.bin is stored');
      await expect(el).to.be.accessible();
    });

    it('ws-message: a text and an inline PNG from another browser', async () => {
      d = await startDeployment({ uploadServers: 1 });
      const el = await connected(d);
      const bob = new WsUploaderEngine({
        controlUrl: d.controlUrl,
        authToken: await userToken(d, 'bob'),
      });
      try {
        await bob.start();
        const hello = once(el, 'ws-message');
        expect(await bob.send({ userId: 'test-user' }, { body: 'hello from bob' })).to.equal(1);
        const m = await hello;
        expect(m.bubbles && m.composed).to.equal(true);
        expect(m.detail).to.deep.include({
          from: { clientId: bob.clientId, userId: 'bob' },
          body: 'hello from bob',
        });
        expect(m.detail.item).to.equal(undefined);

        const png = await canvasPng();
        const picture = once(el, 'ws-message');
        expect(await bob.send({ userId: 'test-user' }, { body: 'a picture', item: png })).to.equal(
          1,
        );
        const p = (await picture).detail;
        expect(p.body).to.equal('a picture');
        expect(p.item!.meta).to.deep.include({ size: png.size, mime: 'image/png' });
        expect(p.item!.dataUrl!.startsWith('data:image/png;base64,')).to.equal(true);
        expect(await sha256Hex(await p.item!.blob!.arrayBuffer())).to.equal(
          await sha256Hex(await png.arrayBuffer()),
        );
        const img = new Image();
        img.src = p.item!.dataUrl!;
        await img.decode();
        expect([img.naturalWidth, img.naturalHeight]).to.deep.equal([24, 16]);
      } finally {
        bob.stop();
      }
    });
  });

  describe('the file row', () => {
    it('shows name, size, bytes stored of total and a bar split by server while an item goes to two servers', async () => {
      d = await startServers(2);
      const el = await connected(d);
      const { row } = parts(el);
      // The control server's task is declined; the page sends the item in two halves itself.
      el.addEventListener('ws-transmit-request', (e) => {
        if (e.detail.reason !== 'page') e.preventDefault();
      });
      const size = 12 * MiB;
      const half = 6 * MiB;
      const gate = new Gate();
      // Each half stops after its first block.
      const file = gatedFile(
        randomFile(size, 'split.bin'),
        [
          [BLOCK, half],
          [half + BLOCK, size],
        ],
        gate,
      );
      const [added] = el.addFiles([file]);
      const itemId = added!.itemId;
      await until(() => item(el, itemId)?.state === 'published');
      expect(el.hasAttribute('uploading')).to.equal(false);
      const done = el.transmit({
        itemId,
        ranges: [
          { start: 0, end: half, serverId: 'up-1' },
          { start: half, end: size, serverId: 'up-2' },
        ],
      });
      done.catch(() => undefined); // awaited below, unless the test fails first
      await until(() => item(el, itemId)!.bytesStored === 2 * BLOCK && gate.waiting >= 2, 10_000);
      await el.updateComplete;
      expect(item(el, itemId)!.bytesByServer).to.deep.equal({ 'up-1': BLOCK, 'up-2': BLOCK });
      expect(el.hasAttribute('uploading')).to.equal(true);
      const r = row(itemId)!;
      expect(r.dataset['state']).to.equal('uploading');
      expect(r.querySelector('.name')!.textContent).to.equal('split.bin');
      expect(r.querySelector('.size')!.textContent).to.equal('13 MB');
      expect(r.querySelector('[part="file-state"]')!.textContent).to.equal('uploading');
      expect(r.querySelector('.figures')!.textContent).to.match(/^8\.4 MB of 13 MB/);
      const bar = r.querySelector('[role=progressbar]')!;
      expect(bar.getAttribute('aria-valuenow')).to.equal('66');
      expect(bar.getAttribute('aria-valuetext')).to.equal('8.4 MB of 13 MB');
      expect(bar.getAttribute('aria-label')).to.equal('split.bin: uploading');
      const segments = [...r.querySelectorAll<HTMLElement>('[part~="progress-segment"]')];
      expect(segments.map((s) => s.dataset['serverId']).sort()).to.deep.equal(['up-1', 'up-2']);
      for (const s of segments) expect(parseFloat(s.style.width)).to.be.closeTo(100 / 3, 0.01);
      expect(r.querySelector('.shares')!.textContent!.split(' · ').sort()).to.deep.equal([
        'up-1: 4.2 MB',
        'up-2: 4.2 MB',
      ]);
      await expect(el).to.be.accessible();

      gate.open();
      const result = await done;
      const sha = await sha256Hex(await file.arrayBuffer());
      expect(result.sha256).to.equal(sha);
      expect([...result.servers].sort()).to.deep.equal(['up-1', 'up-2']);
      await until(() => item(el, itemId)!.state === 'complete');
      await el.updateComplete;
      expect(el.hasAttribute('uploading')).to.equal(false);
      expect(row(itemId)!.querySelectorAll('[part~="progress-segment"]')).to.have.length(1);
      expect(row(itemId)!.querySelector('.figures')!.textContent).to.equal('13 MB of 13 MB');
      expect(
        row(itemId)!.querySelector('[role=progressbar]')!.getAttribute('aria-valuenow'),
      ).to.equal('100');
    });

    it('pause and resume buttons, reached with Tab and pressed with the keyboard; the item completes intact', async () => {
      d = await startServers(1);
      const el = await connected(d);
      const { root, row, button, dropArea } = parts(el);
      const errors = record(el, 'ws-upload-error');
      const gate = new Gate();
      const file = gatedFile(
        randomFile(BLOCK + 2 * MiB, 'paused.bin'),
        [[BLOCK, BLOCK + MiB]],
        gate,
      );
      const [added] = el.addFiles([file]);
      const itemId = added!.itemId;
      await until(() => item(el, itemId)!.bytesStored === BLOCK && gate.waiting > 0, 10_000);
      await el.updateComplete;
      expect(el.hasAttribute('uploading')).to.equal(true);

      // The row's buttons are real buttons, named with the file, next in the Tab order.
      const pause = button(itemId, 'pause')!;
      const cancel = button(itemId, 'cancel')!;
      for (const [b, name] of [
        [pause, 'Pause paused.bin'],
        [cancel, 'Cancel paused.bin'],
      ] as const) {
        expect(b.localName).to.equal('button');
        expect(b.type).to.equal('button');
        expect(b.tabIndex).to.equal(0);
        expect(b.getAttribute('aria-label')).to.equal(name);
      }
      dropArea.focus();
      await sendKeys({ press: 'Tab' });
      expect(root.activeElement).to.equal(pause);
      await sendKeys({ press: 'Tab' });
      expect(root.activeElement).to.equal(cancel);
      await sendKeys({ down: 'Shift' });
      await sendKeys({ press: 'Tab' });
      await sendKeys({ up: 'Shift' });
      expect(root.activeElement).to.equal(pause);
      await sendKeys({ press: 'Enter' });
      await until(() => item(el, itemId)!.state === 'paused');
      await el.updateComplete;
      expect(row(itemId)!.dataset['state']).to.equal('paused');
      expect(row(itemId)!.querySelector('[part="file-state"]')!.textContent).to.equal('paused');
      expect(el.hasAttribute('uploading')).to.equal(false);
      expect(button(itemId, 'pause')).to.equal(null);
      await expect(el).to.be.accessible();

      // Paused: with the bytes readable again, nothing more is sent.
      gate.open();
      await sleep(300);
      expect(item(el, itemId)).to.deep.include({ state: 'paused', bytesStored: BLOCK });
      expect(await storedSha256(d, 'up-1', itemId)).to.deep.include({ complete: false });

      const complete = once(el, 'ws-upload-complete');
      const resume = button(itemId, 'resume')!;
      expect(resume.getAttribute('aria-label')).to.equal('Resume paused.bin');
      resume.focus();
      await sendKeys({ press: 'Space' });
      const c = (await complete).detail;
      const sha = await sha256Hex(await file.arrayBuffer());
      expect(c.sha256).to.equal(sha);
      expect(await storedSha256(d, 'up-1', itemId)).to.deep.equal({
        complete: true,
        size: file.size,
        sha256: sha,
      });
      expect(errors).to.deep.equal([]);
      await el.updateComplete;
      expect(el.hasAttribute('uploading')).to.equal(false);
      expect(row(itemId)!.dataset['state']).to.equal('complete');
    });

    it('the cancel button stops an upload and takes the item out, without an error', async () => {
      d = await startServers(1);
      const el = await connected(d);
      const { row, button } = parts(el);
      const errors = record(el, 'ws-upload-error');
      const gate = new Gate();
      const [added] = el.addFiles([
        gatedFile(randomFile(BLOCK + MiB, 'cancelled.bin'), [[BLOCK, BLOCK + MiB]], gate),
      ]);
      const itemId = added!.itemId;
      await until(() => item(el, itemId)!.bytesStored === BLOCK && gate.waiting > 0, 10_000);
      await el.updateComplete;
      button(itemId, 'cancel')!.click();
      await el.updateComplete;
      expect(item(el, itemId)).to.equal(undefined);
      expect(row(itemId)).to.equal(null);
      expect(el.hasAttribute('uploading')).to.equal(false);
      gate.open();
      await sleep(300);
      expect(el.items).to.deep.equal([]);
      expect(errors).to.deep.equal([]);
      expect(await storedSha256(d, 'up-1', itemId)).to.deep.include({ complete: false });
    });
  });

  describe('server list', () => {
    it('shows each server with its protocol and RTT, and follows a server going down', async () => {
      d = await startServers(2);
      const el = await connected(d);
      await expect(el).to.be.accessible();
      const rows = () => [...parts(el).root.querySelectorAll<HTMLElement>('[part="server"]')];
      expect(rows().map((r) => r.dataset['serverId'])).to.deep.equal(['up-1', 'up-2']);
      for (const r of rows()) {
        expect(r.dataset['state']).to.equal('open');
        expect(r.querySelector('.server-state')!.textContent).to.equal('connected');
        expect(r.querySelector('[part~="protocol"]')!.textContent).to.equal('dup/2');
        expect(r.querySelector('.rtt')!.textContent).to.match(/^\d+(\.\d)? ms$/);
      }
      const changes = record(el, 'ws-server-change');
      await killUpload(d, 'up-2', { crash: true });
      await until(() =>
        changes.some((e) => e.detail.servers.find((s) => s.id === 'up-2')!.state !== 'open'),
      );
      const last = changes.at(-1)!.detail.servers;
      expect(last.find((s) => s.id === 'up-1')!.state).to.equal('open');
      await el.updateComplete;
      const down = rows().find((r) => r.dataset['serverId'] === 'up-2')!;
      expect(down.dataset['state']).to.equal(el.servers.find((s) => s.id === 'up-2')!.state);
      expect(down.dataset['state']).to.not.equal('open');
      await expect(el).to.be.accessible();
    });

    it('shows http/1 for a server that speaks only HTTP', async () => {
      d = await startDeployment({
        uploadServers: 1,
        linked: true,
        controlOptions: { inlineMax: 0 },
        uploadOptions: { protocols: ['http/1'] },
      });
      const el = await connected(d);
      const complete = once(el, 'ws-upload-complete');
      const file = randomFile(100_000, 'http.bin');
      el.addFiles([file]);
      expect((await complete).detail.sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
      await el.updateComplete;
      const server = parts(el).root.querySelector('[part="server"]')!;
      expect(server.querySelector('[part~="protocol"]')!.textContent).to.equal('http/1');
      expect(el.servers[0]!.protocol).to.equal('http/1');
    });
  });

  describe('paste', () => {
    it('adds a pasted image file, or the pasted text as pasted.txt, as clipboard items', async () => {
      d = await startServers(1);
      const el = await connected(d);
      const { dropArea } = parts(el);
      const complete = record(el, 'ws-upload-complete');

      const png = new File([await canvasPng()], 'image.png', { type: 'image/png' });
      const published = once(el, 'ws-publish');
      expect(paste(dropArea, transfer([png])).defaultPrevented).to.equal(true);
      expect((await published).detail.items[0]).to.deep.include({
        name: 'image.png',
        size: png.size,
        mime: 'image/png',
        kind: 'clipboard',
      });

      const text = 'pasted words';
      const publishedText = once(el, 'ws-publish');
      expect(paste(dropArea, transfer([], text)).defaultPrevented).to.equal(true);
      const meta = (await publishedText).detail.items[0]!;
      expect(meta).to.deep.include({ name: 'pasted.txt', size: text.length, kind: 'clipboard' });
      expect(meta.mime).to.match(/^text\/plain/);

      // Nothing to take: the paste is left alone.
      expect(paste(dropArea, new DataTransfer()).defaultPrevented).to.equal(false);
      await until(() => complete.length === 2);
      const textDone = complete.find((c) => c.detail.itemId === meta.itemId)!.detail;
      expect(textDone.sha256).to.equal(await sha256Hex(new TextEncoder().encode(text)));
      expect(el.items.map((i) => [i.name, i.kind])).to.deep.equal([
        ['image.png', 'clipboard'],
        ['pasted.txt', 'clipboard'],
      ]);
    });

    it('takes pasted text under accept="text/plain" (its type carries a charset)', async () => {
      const el = await fixture<WsUploader>(html`<ws-uploader accept="text/plain"></ws-uploader>`);
      const rejects = record(el, 'ws-file-reject');
      paste(parts(el).dropArea, transfer([], 'plain words'));
      el.addFiles([new File(['<p>'], 'page.html', { type: 'text/html; charset=utf-8' })]);
      expect(el.heldFiles.map((f) => [f.name, f.type])).to.deep.equal([
        ['pasted.txt', 'text/plain;charset=utf-8'],
      ]);
      expect(rejects.map((e) => [e.detail.name, e.detail.reason])).to.deep.equal([
        ['page.html', 'type'],
      ]);
    });
  });

  describe('i18n', () => {
    it('a partial translation replaces only its strings', async () => {
      d = await startServers(1);
      const el = await connected(
        d,
        (url, token) =>
          html`<ws-uploader
            control-url=${url}
            auth-token=${token}
            max-file-size=${BLOCK + MiB}
          ></ws-uploader>`,
      );
      // Typed as an app would write it: nested groups give only some of their keys.
      el.i18n = {
        pause: 'Pausieren',
        itemState: { uploading: 'lädt hoch' },
        rejected: { size: (n) => `${n}: zu groß` },
      };
      const { root, row, button, dropArea } = parts(el);
      const reject = once(el, 'ws-file-reject');
      el.addFiles([new File([new Uint8Array(BLOCK + MiB + 1)], 'riesig.bin')]);
      expect((await reject).detail.message).to.equal('riesig.bin: zu groß');
      const gate = new Gate();
      const [added] = el.addFiles([
        gatedFile(randomFile(BLOCK + MiB, 'datei.bin'), [[BLOCK, BLOCK + MiB]], gate),
      ]);
      const itemId = added!.itemId;
      await until(() => item(el, itemId)!.bytesStored === BLOCK && gate.waiting > 0, 10_000);
      await el.updateComplete;
      expect(row(itemId)!.querySelector('[part="file-state"]')!.textContent).to.equal('lädt hoch');
      expect(button(itemId, 'pause')!.textContent!.trim()).to.equal('Pausieren');
      expect(button(itemId, 'pause')!.getAttribute('aria-label')).to.equal('Pausieren datei.bin');
      expect(root.querySelector('[part="rejected-list"] li span')!.textContent).to.equal(
        'riesig.bin: zu groß',
      );
      // The rest stays English.
      expect(button(itemId, 'cancel')!.textContent!.trim()).to.equal('Cancel');
      expect(dropArea.querySelector('.label')!.textContent).to.equal(
        'Drop files here, or press to choose files',
      );
      expect(root.querySelector('#servers-heading')!.textContent).to.equal('Upload servers');
      expect(root.querySelector('.server-state')!.textContent).to.equal('connected');
      expect(root.querySelector('#rejected-heading')!.textContent).to.equal('Not added');
      el.accept = '.txt';
      const typeReject = once(el, 'ws-file-reject');
      el.addFiles([new File(['x'], 'x.bin')]);
      expect((await typeReject).detail.message).to.equal(
        'x.bin: this type of file is not accepted',
      );
      el.pause([itemId]);
      await el.updateComplete;
      expect(row(itemId)!.querySelector('[part="file-state"]')!.textContent).to.equal('paused');
      gate.open();
    });
  });
});
