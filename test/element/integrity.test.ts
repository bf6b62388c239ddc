// <ws-uploader integrity> and the data Worker seen from the element: both integrity modes store
// the right bytes, a bad value falls back with a warning, and a page whose Content-Security-Policy
// allows no Worker still uploads, saying so with ws-degraded.
import { expect, fixture, html } from '@open-wc/testing';
import '../../src/ws-uploader.js';
import type { WsUploader, WsUploadCompleteDetail } from '../../src/index.js';
import {
  randomFile,
  sha256Hex,
  startServers,
  stopServers,
  storedSha256,
  type TestDeployment,
} from '../helpers/servers.js';
import { until } from '../helpers/until.js';

/** Resolves with the next `ws-upload-complete` of an element, rejects on `ws-upload-error`. */
function completion(el: WsUploader): Promise<WsUploadCompleteDetail> {
  return new Promise((resolve, reject) => {
    el.addEventListener('ws-upload-complete', (e) => resolve(e.detail), { once: true });
    el.addEventListener('ws-upload-error', (e) => reject(e.detail.error), { once: true });
  });
}

describe('<ws-uploader integrity>', () => {
  let d: TestDeployment | undefined;

  afterEach(async () => {
    await stopServers(d);
    d = undefined;
  });

  for (const mode of ['sha256', 'transport'] as const)
    it(`integrity="${mode}": the completion's SHA-256 is the file's, and the server holds those bytes`, async () => {
      d = await startServers(1);
      const el = await fixture<WsUploader>(
        html`<ws-uploader
          control-url=${d.controlUrl}
          auth-token=${d.token}
          integrity=${mode}
        ></ws-uploader>`,
      );
      await el.connected;
      const file = randomFile(2 * 1024 * 1024 + 5, `${mode}.bin`);
      const expected = await sha256Hex(await file.arrayBuffer());
      const done = completion(el);
      el.addFiles([file]);
      const detail = await done;
      expect(detail.sha256).to.equal(expected);
      expect(await storedSha256(d, detail.servers[0]!.id, detail.itemId)).to.deep.equal({
        complete: true,
        size: file.size,
        sha256: expected,
      });
    });

  it('takes an unknown value as transport, with a console warning', async () => {
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => void warnings.push(args.join(' '));
    try {
      const el = await fixture<WsUploader>(html`<ws-uploader integrity="md5"></ws-uploader>`);
      await el.updateComplete;
      expect(el.integrity).to.equal('transport');
      expect(warnings.some((w) => w.includes('integrity="md5"'))).to.equal(true);
    } finally {
      console.warn = warn;
    }
  });

  it('uploads from a page whose Content-Security-Policy allows no Worker, and fires ws-degraded', async () => {
    d = await startServers(1);
    const module = new URL('../../src/ws-uploader.ts', import.meta.url).href;
    const frame = document.createElement('iframe');
    frame.srcdoc =
      `<!doctype html><meta http-equiv="Content-Security-Policy" content="worker-src 'none'">` +
      `<body><script type="module">await import(${JSON.stringify(module)}); window.ready = true;</script></body>`;
    document.body.append(frame);
    try {
      const win = frame.contentWindow as Window & typeof globalThis & { ready?: boolean };
      await until(() => win.ready === true, 20_000);
      const el = win.document.createElement('ws-uploader') as WsUploader;
      const degraded = new Promise<{ reason: string; message: string }>((resolve) =>
        el.addEventListener('ws-degraded', (e) => resolve(e.detail), { once: true }),
      );
      el.setAttribute('control-url', d.controlUrl);
      el.setAttribute('auth-token', d.token);
      win.document.body.append(el);
      await el.connected;
      const bytes = new Uint8Array(await randomFile(300_000, 'csp.bin').arrayBuffer());
      const file = new win.File([bytes], 'csp.bin', { type: 'application/octet-stream' });
      const done = completion(el);
      el.addFiles([file]);
      expect((await degraded).reason).to.equal('data-worker');
      const detail = await done;
      expect(detail.sha256).to.equal(await sha256Hex(bytes));
    } finally {
      frame.remove();
    }
  });
});
