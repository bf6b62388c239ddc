import { expect, fixture, html, oneEvent } from '@open-wc/testing';
import '../../src/ws-uploader.js';
import type { WsUploader } from '../../src/index.js';
import {
  startDeployment,
  startServers,
  stopServers,
  type TestDeployment,
} from '../helpers/servers.js';

function setupParts(el: WsUploader) {
  const root = el.shadowRoot;
  if (!root) throw new Error('<ws-uploader> has no shadow root');
  const dropArea = root.querySelector<HTMLElement>('[part="drop-area"]');
  const input = root.querySelector<HTMLInputElement>('input[type=file]');
  if (!dropArea || !input)
    throw new Error('<ws-uploader> did not render its drop area and file input');
  return { root, dropArea, input };
}

describe('<ws-uploader>', () => {
  let d: TestDeployment | undefined;

  afterEach(async () => {
    await stopServers(d);
    d = undefined;
  });

  it('is accessible before it connects', async () => {
    const el = await fixture<WsUploader>(html`<ws-uploader></ws-uploader>`);
    await expect(el).to.be.accessible();
  });

  it('renders a drop area that is a keyboard-operable button', async () => {
    const el = await fixture<WsUploader>(html`<ws-uploader></ws-uploader>`);
    const { dropArea, input } = setupParts(el);
    expect(dropArea.getAttribute('role')).to.equal('button');
    expect(dropArea.tabIndex).to.equal(0);
    let opened = 0;
    input.click = () => void opened++;
    dropArea.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    dropArea.dispatchEvent(new KeyboardEvent('keydown', { key: ' ', bubbles: true }));
    dropArea.click();
    expect(opened).to.equal(3);
  });

  it('does not open the picker or take drops when disabled', async () => {
    const el = await fixture<WsUploader>(html`<ws-uploader disabled></ws-uploader>`);
    const { dropArea, input } = setupParts(el);
    let opened = 0;
    input.click = () => void opened++;
    dropArea.click();
    expect(opened).to.equal(0);
    expect(dropArea.tabIndex).to.equal(-1);
    expect(dropArea.getAttribute('aria-disabled')).to.equal('true');
  });

  it('reflects a drag over the drop area for styling', async () => {
    const el = await fixture<WsUploader>(html`<ws-uploader></ws-uploader>`);
    const { dropArea } = setupParts(el);
    dropArea.dispatchEvent(
      new DragEvent('dragover', {
        bubbles: true,
        cancelable: true,
        dataTransfer: new DataTransfer(),
      }),
    );
    await el.updateComplete;
    expect(el.hasAttribute('dragover')).to.equal(true);
    dropArea.dispatchEvent(new DragEvent('dragleave', { bubbles: true }));
    await el.updateComplete;
    expect(el.hasAttribute('dragover')).to.equal(false);
  });

  it('warns and falls back to the default for a bad chunk-size', async () => {
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (m: string) => void warnings.push(m);
    try {
      const el = await fixture<WsUploader>(
        html`<ws-uploader chunk-size="-5" max-parallel="abc"></ws-uploader>`,
      );
      expect(el.chunkSize).to.equal(512 * 1024);
      expect(el.maxParallel).to.equal(3);
      expect(warnings.join('\n'))
        .to.match(/chunk-size/)
        .and.to.match(/max-parallel/);
    } finally {
      console.warn = warn;
    }
  });

  it('lists the upload servers with their RTT and fires ws-server-change', async () => {
    d = await startServers(2);
    const el = await fixture<WsUploader>(html`<ws-uploader></ws-uploader>`);
    const changes: number[] = [];
    el.addEventListener('ws-server-change', (e) => changes.push(e.detail.servers.length));
    el.controlUrl = d.controlUrl;
    el.authToken = d.token;
    await el.connected;
    await waitFor(() => el.servers.length === 2 && el.servers.every((s) => s.rttMs !== undefined));
    await el.updateComplete;
    const rows = [...el.shadowRoot!.querySelectorAll('[part="server"]')];
    expect(rows.map((r) => r.getAttribute('data-server-id')).sort()).to.deep.equal([
      'up-1',
      'up-2',
    ]);
    expect(rows.every((r) => r.getAttribute('data-state') === 'open')).to.equal(true);
    expect(rows[0]!.textContent).to.match(/\d ms/);
    expect(changes.length).to.be.greaterThan(0);
    await expect(el).to.be.accessible();
  });

  it('fires ws-publish, ws-transmit-request and ws-upload-complete that bubble out of a shadow root', async () => {
    d = await startServers(1);
    const host = await fixture<HTMLDivElement>(html`<div></div>`);
    const shadow = host.attachShadow({ mode: 'open' });
    const el = document.createElement('ws-uploader');
    el.controlUrl = d.controlUrl;
    el.authToken = d.token;
    shadow.append(el);
    await el.connected;
    const published = oneEvent(host, 'ws-publish');
    const requested = oneEvent(host, 'ws-transmit-request');
    const completed = oneEvent(host, 'ws-upload-complete');
    el.addFiles([new File(['hello world'], 'hello.txt', { type: 'text/plain' })]);
    const p = await published;
    expect(p.detail.items[0]).to.deep.include({
      name: 'hello.txt',
      size: 11,
      mime: 'text/plain',
      kind: 'file',
    });
    const r = await requested;
    expect(r.detail.ranges).to.deep.equal([{ start: 0, end: 11, serverId: 'up-1' }]);
    const c = await completed;
    expect(c.detail.sha256).to.equal(
      'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9',
    );
    expect(c.detail.servers).to.deep.equal([
      { id: 'up-1', url: `${d.servers[0]!.httpUrl}/files/${c.detail.itemId}` },
    ]);
    await el.updateComplete;
    const row = el.shadowRoot!.querySelector(`[part="file"][data-item-id="${c.detail.itemId}"]`)!;
    expect(row.getAttribute('data-state')).to.equal('complete');
    expect(row.querySelector('[role=progressbar]')!.getAttribute('aria-valuenow')).to.equal('100');
    el.remove();
  });

  it('publishes files chosen with the file picker', async () => {
    d = await startServers(1);
    const el = await fixture<WsUploader>(
      html`<ws-uploader multiple control-url=${d.controlUrl} auth-token=${d.token}></ws-uploader>`,
    );
    await el.connected;
    const { input } = setupParts(el);
    expect(input.multiple).to.equal(true);
    const picked = new DataTransfer();
    picked.items.add(new File(['a'], 'a.txt'));
    picked.items.add(new File(['bb'], 'b.txt'));
    input.files = picked.files;
    const published = oneEvent(el, 'ws-publish');
    input.dispatchEvent(new Event('change'));
    expect((await published).detail.items.map((i: { name: string }) => i.name)).to.deep.equal([
      'a.txt',
      'b.txt',
    ]);
    expect(input.value).to.equal('');
  });

  it('keeps its connection and files when moved in the document', async () => {
    d = await startServers(1);
    const el = await fixture<WsUploader>(
      html`<ws-uploader control-url=${d.controlUrl} auth-token=${d.token}></ws-uploader>`,
    );
    await el.connected;
    const completed = oneEvent(el, 'ws-upload-complete');
    el.addFiles([new File(['moved'], 'moved.txt')]);
    await completed;
    const other = document.createElement('section');
    document.body.append(other);
    other.append(el); // disconnect and reconnect in one task
    await new Promise((r) => setTimeout(r, 50));
    expect(el.items.map((i) => i.name)).to.deep.equal(['moved.txt']);
    expect(el.servers).to.have.length(1);
    el.remove();
    await new Promise((r) => setTimeout(r, 50));
    expect(el.items).to.deep.equal([]);
    other.remove();
  });

  it('applies chunk-size, max-parallel and inline-max to the running engine: its files stay', async () => {
    d = await startDeployment({ uploadServers: 1 }); // inline items up to 64 KiB
    const el = await fixture<WsUploader>(
      html`<ws-uploader control-url=${d.controlUrl} auth-token=${d.token}></ws-uploader>`,
    );
    await el.connected;
    let done = oneEvent(el, 'ws-upload-complete');
    el.addFiles([new File(['small'], 'first.txt')]);
    expect((await done).detail.servers).to.deep.equal([]); // inline
    el.chunkSize = 64 * 1024;
    el.maxParallel = 1;
    el.inlineMax = 0;
    await el.updateComplete;
    await el.connected;
    expect(el.items.map((i) => i.name)).to.deep.equal(['first.txt']);
    done = oneEvent(el, 'ws-upload-complete');
    el.addFiles([new File(['small too'], 'second.txt')]);
    expect((await done).detail.servers.map((s: { id: string }) => s.id)).to.deep.equal(['up-1']);
    expect(el.items.map((i) => i.name)).to.deep.equal(['first.txt', 'second.txt']);
  });

  it('fires ws-upload-error and shows an alert when the credential is refused', async () => {
    d = await startServers(1);
    const el = await fixture<WsUploader>(html`<ws-uploader></ws-uploader>`);
    const error = oneEvent(el, 'ws-upload-error');
    el.controlUrl = d.controlUrl;
    el.authToken = 'wrong';
    const e = await error;
    expect(e.detail.code).to.equal('auth-failed');
    expect(e.detail.message).to.equal('The server refused the credentials');
    await el.connected.catch(() => undefined);
    await el.updateComplete;
    expect(el.shadowRoot!.querySelector('[role=alert]')?.textContent?.trim()).to.equal(
      'The server refused the credentials',
    );
    expect(el.shadowRoot!.textContent).to.not.include('Waiting for the server list');
    await expect(el).to.be.accessible();
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
