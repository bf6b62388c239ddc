import { expect, fixture, html, oneEvent } from '@open-wc/testing';
import '../../src/ws-uploader.js';
import type { WsUploader } from '../../src/index.js';
import {
  randomFile,
  readToken,
  sha256Hex,
  startServers,
  stopServers,
  storedSha256,
  type TestDeployment,
} from '../helpers/servers.js';

describe('upload through <ws-uploader> to real servers', () => {
  let d: TestDeployment | undefined;

  afterEach(async () => {
    await stopServers(d);
    d = undefined;
  });

  it('takes a dropped 20 MB file to an upload server, which serves back the same bytes', async () => {
    d = await startServers(3);
    const el = await fixture<WsUploader>(
      html`<ws-uploader control-url=${d.controlUrl} auth-token=${d.token}></ws-uploader>`,
    );
    await el.connected;

    const file = randomFile(20 * 1024 * 1024, 'twenty.bin');
    const expected = await sha256Hex(await file.arrayBuffer());

    const progress: number[] = [];
    el.addEventListener('ws-upload-progress', (e) => progress.push(e.detail.bytesStored));
    const completed = oneEvent(el, 'ws-upload-complete');
    const dataTransfer = new DataTransfer();
    dataTransfer.items.add(file);
    const dropArea = el.shadowRoot!.querySelector('[part="drop-area"]')!;
    dropArea.dispatchEvent(
      new DragEvent('drop', { bubbles: true, cancelable: true, dataTransfer }),
    );

    const { detail } = await completed;
    expect(detail).to.deep.include({ name: 'twenty.bin', size: file.size, sha256: expected });
    expect(detail.servers).to.have.length(1);

    // The bytes the upload server serves back, to a holder of a read token for the item, are the
    // bytes of the file.
    const token = await readToken(d, detail.servers[0]!.id, [detail.itemId]);
    const res = await fetch(detail.servers[0]!.url, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(res.status).to.equal(200);
    expect(await sha256Hex(await res.arrayBuffer())).to.equal(expected);
    // And they are on its disk.
    expect(await storedSha256(d, detail.servers[0]!.id, detail.itemId)).to.deep.equal({
      complete: true,
      size: file.size,
      sha256: expected,
    });

    // Progress went forward only and ended at the file's size.
    expect(progress.length).to.be.greaterThan(1);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).to.be.at.least(progress[i - 1]!);
    expect(progress[progress.length - 1]).to.equal(file.size);
  });
});
