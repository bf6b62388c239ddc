import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '../../src/protocol/index.js';
import {
  createReadToken,
  createUploadServer,
  type Demand,
  type UploadServer,
} from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256 } from '../helpers/node-peers.js';

const SECRET = 'b'.repeat(32);
const NINE = new TextEncoder().encode('123456789');

describe('upload server byte serving (GET /files/{itemId})', () => {
  let dir: string;
  let server: UploadServer;
  let base: string;
  let wsUrl: string;
  /** A read token for any item (reads need one by default; see read-access.test.ts). */
  let read: string;
  const demands: Demand[] = [];
  const peers: Dup2Peer[] = [];

  async function peer(): Promise<Dup2Peer> {
    const p = new Dup2Peer(wsUrl);
    peers.push(p);
    const { token } = await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, {
      uid: 'u',
    });
    await p.send({ type: 'hello', token });
    expect((await p.next()).type).to.equal('welcome');
    return p;
  }

  /** Opens an item and stores `parts` of `bytes` (all of it by default), finishing when whole. */
  async function store(
    itemId: string,
    bytes: Uint8Array,
    meta: { mime?: string; name?: string } = {},
    parts: [number, number][] = [[0, bytes.length]],
  ): Promise<Dup2Peer> {
    const p = await peer();
    await p.send({
      type: 'open',
      uploadId: 1,
      itemId,
      size: bytes.length,
      mime: meta.mime ?? '',
      name: meta.name ?? '',
    });
    expect((await p.next()).type).to.equal('opened');
    for (const [start, end] of parts) {
      const payload = bytes.subarray(start, end);
      await p.send({ type: 'data', uploadId: 1, offset: start, crc32c: crc32c(payload), payload });
      expect((await p.next()).type).to.equal('ack');
    }
    if (parts.length === 1 && parts[0]![0] === 0 && parts[0]![1] === bytes.length) {
      await p.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
      expect((await p.next()).type).to.equal('complete');
    }
    return p;
  }

  const get = (itemId: string, headers: Record<string, string> = {}, method = 'GET') =>
    fetch(`${base}/files/${itemId}`, {
      headers: { Authorization: `Bearer ${read}`, ...headers },
      method,
    });

  beforeEach(async () => {
    demands.length = 0;
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-serve-'));
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      holdMs: 300,
      onDemand: (d) => demands.push(d),
    });
    const urls = await server.listen(0);
    base = urls.http;
    wsUrl = urls.ws;
    read = await createReadToken(SECRET, 'up-1', { subject: 'reader' });
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('ranges of a complete item (RFC 9110)', () => {
    let etag: string;
    beforeEach(async () => {
      await store('nine', NINE, { mime: 'text/plain' });
      etag = `"sha256-${sha256(NINE).hex}"`;
    });

    const cases: [string, number, string | null, string | null][] = [
      ['bytes=9-50', 416, 'bytes */9', ''],
      ['bytes=-3', 206, 'bytes 6-8/9', '789'],
      ['bytes=2-50', 206, 'bytes 2-8/9', '3456789'],
      ['bytes=0-0', 206, 'bytes 0-0/9', '1'],
      ['items=0-4', 200, null, '123456789'],
      ['asdf', 200, null, '123456789'],
      ['bytes=5-2', 200, null, '123456789'],
      ['bytes=1-2,3-5', 206, 'bytes 1-5/9', '23456'],
      ['bytes=-0', 416, 'bytes */9', ''],
      [`bytes=${Array.from({ length: 200 }, () => '0-1').join(',')}`, 200, null, '123456789'],
    ];
    for (const [range, status, contentRange, body] of cases) {
      it(`P13: answers Range: ${range.slice(0, 40)} with ${status}`, async () => {
        const res = await get('nine', { Range: range });
        expect(res.status).to.equal(status);
        expect(res.headers.get('content-range')).to.equal(contentRange);
        expect(await res.text()).to.equal(body);
        expect(res.headers.get('accept-ranges')).to.equal('bytes');
      });
    }

    it('P13: answers several ranges with multipart/byteranges', async () => {
      const res = await get('nine', { Range: 'bytes=1-1,3-' });
      expect(res.status).to.equal(206);
      const type = res.headers.get('content-type')!;
      const boundary = /^multipart\/byteranges; boundary=(\w+)$/.exec(type)![1]!;
      const body = await res.text();
      expect(Number(res.headers.get('content-length'))).to.equal(Buffer.byteLength(body));
      expect(body).to.equal(
        `\r\n--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 1-1/9\r\n\r\n2` +
          `\r\n--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 3-8/9\r\n\r\n456789` +
          `\r\n--${boundary}--\r\n`,
      );
    });

    it('P13: honours If-Range only with the current strong ETag', async () => {
      const fresh = await get('nine', { Range: 'bytes=0-1', 'If-Range': etag });
      expect(fresh.status).to.equal(206);
      expect(fresh.headers.get('etag')).to.equal(etag);
      const stale = await get('nine', { Range: 'bytes=0-1', 'If-Range': '"sha256-old"' });
      expect(stale.status).to.equal(200);
      expect(await stale.text()).to.equal('123456789');
      const date = await get('nine', {
        Range: 'bytes=0-1',
        'If-Range': 'Wed, 21 Oct 2015 07:28:00 GMT',
      });
      expect(date.status).to.equal(200);
    });

    it('answers If-None-Match with the ETag with 304', async () => {
      const res = await get('nine', { 'If-None-Match': `W/${etag}` });
      expect(res.status).to.equal(304);
    });

    it('answers HEAD with the headers of the GET and no body', async () => {
      const res = await get('nine', { Range: 'bytes=2-4' }, 'HEAD');
      expect(res.status).to.equal(206);
      expect(res.headers.get('content-length')).to.equal('3');
      expect(res.headers.get('content-range')).to.equal('bytes 2-4/9');
      expect(await res.text()).to.equal('');
    });
  });

  describe('serving uploaded content safely', () => {
    const types: [string, string, string][] = [
      ['image/png', 'image/png', 'inline'],
      ['IMAGE/JPEG; q=1', 'image/jpeg', 'inline'],
      ['video/mp4', 'video/mp4', 'inline'],
      ['text/html', 'application/octet-stream', 'attachment'],
      ['image/svg+xml', 'application/octet-stream', 'attachment'],
      ['application/pdf', 'application/octet-stream', 'attachment'],
      ['image_png', 'application/octet-stream', 'attachment'],
      ['', 'application/octet-stream', 'attachment'],
    ];
    for (const [declared, served, disposition] of types) {
      it(`S1/S2: serves a declared ${JSON.stringify(declared)} as ${served}, ${disposition}`, async () => {
        await store('typed', NINE, { mime: declared });
        const res = await get('typed');
        expect(res.status).to.equal(200);
        expect(res.headers.get('content-type')).to.equal(served);
        expect(res.headers.get('content-disposition')).to.equal(disposition);
        expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
        expect(res.headers.get('content-security-policy')).to.equal("default-src 'none'; sandbox");
      });
    }

    it('P12/S4: puts a hostile file name in the header only percent-encoded', async () => {
      const name = 'a"\r\nSet-Cookie: x=1 <img src=x onerror=alert(1)> €.html';
      await store('named', NINE, { mime: 'text/html', name });
      const res = await get('named');
      const header = res.headers.get('content-disposition')!;
      expect(res.headers.get('set-cookie')).to.equal(null);
      expect(header).to.match(
        /^attachment; filename="[A-Za-z0-9._ -]+"; filename\*=UTF-8''[A-Za-z0-9%._~!-]+$/,
      );
      expect(decodeURIComponent(header.split("UTF-8''")[1]!)).to.equal(name);
    });
  });

  describe('ranges of an item still being uploaded', () => {
    it('S5: serves stored ranges at once and an open-ended range up to the stored end', async () => {
      await store('half', NINE, { mime: 'video/webm' }, [[0, 4]]);
      const exact = await get('half', { Range: 'bytes=1-3' });
      expect(exact.status).to.equal(206);
      expect(exact.headers.get('etag')).to.equal(null);
      expect(exact.headers.get('cache-control')).to.equal('private, no-store');
      expect(await exact.text()).to.equal('234');
      const open = await get('half', { Range: 'bytes=2-' });
      expect(open.status).to.equal(206);
      expect(open.headers.get('content-range')).to.equal('bytes 2-3/9');
      expect(await open.text()).to.equal('34');
      expect(demands).to.deep.equal([]);
    });

    it('raises a demand for missing bytes and answers once they are stored', async () => {
      const uploader = await store('later', NINE, {}, [[0, 2]]);
      const pending = get('later', { Range: 'bytes=5-6' });
      await waitFor(() => demands.length === 1);
      expect(demands[0]).to.deep.equal({ itemId: 'later', ranges: [{ start: 5, end: 7 }] });
      const payload = NINE.subarray(4, 9);
      await uploader.send({
        type: 'data',
        uploadId: 1,
        offset: 4,
        crc32c: crc32c(payload),
        payload,
      });
      const res = await pending;
      expect(res.status).to.equal(206);
      expect(await res.text()).to.equal('67');
    });

    it('S5: answers 503 with Retry-After when the bytes do not come in time', async () => {
      await store('never', NINE, {}, [[0, 2]]);
      const res = await get('never', { Range: 'bytes=5-6' });
      expect(res.status).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('2');
      expect(demands).to.have.length(1);
      const whole = await get('never');
      expect(whole.status).to.equal(503);
      expect(demands[1]).to.deep.equal({ itemId: 'never', ranges: [{ start: 2, end: 9 }] });
    });
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
