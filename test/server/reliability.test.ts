/**
 * Rows of the reliability matrix (see docs/reliability.md) that span the upload server's protocols:
 * the item size enforced on bytes written (P3), ids and names that try to leave the data folder
 * (P11), hostile file names in HTTP upload metadata (P12), what is served of items that are not
 * complete (S5) and a lost final acknowledgement (I6).
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLOSE } from '../../src/protocol/index.js';
import {
  createReadToken,
  createUploadServer,
  type UploadServer,
  type UploadServerOptions,
} from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256, rawOpen } from '../helpers/node-peers.js';
import { until } from '../helpers/until.js';

const SECRET = 'q'.repeat(32);
const CANARY = 'canary: nothing may change this file\n';
const NINE = new TextEncoder().encode('123456789');

interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** An HTTP request whose path is sent exactly as given (`fetch` would resolve `..` segments). */
function raw(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Uint8Array,
): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers, agent: false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Every file and folder under `root`, as sorted paths relative to it. */
async function tree(root: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${e.name}` : e.name;
    out.push(path);
    if (e.isDirectory()) out.push(...(await tree(root, path)));
  }
  return out.sort();
}

describe('upload server reliability (rows P3, P11, P12, S5, I6)', () => {
  /** Holds the data folder (`store/data`) and the canary files next to and above it. */
  let root: string;
  let dir: string;
  let server: UploadServer | undefined;
  let urls: { http: string; ws: string };
  /** `Authorization` with an upload token of alice. */
  let auth: Record<string, string>;
  /** `Authorization` with a read token for any item. */
  let read: Record<string, string>;
  const peers: Dup2Peer[] = [];

  async function start(options: Partial<UploadServerOptions> = {}): Promise<void> {
    await server?.close();
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      maxItemSize: 1_000_000,
      holdMs: 100,
      ...options,
    });
    urls = await server.listen(0);
  }

  async function peer(): Promise<Dup2Peer> {
    const p = new Dup2Peer(urls.ws);
    peers.push(p);
    await p.send({ type: 'hello', token: auth['Authorization']!.slice('Bearer '.length) });
    expect((await p.next()).type).to.equal('welcome');
    return p;
  }

  /** Stores a whole item over dup/2 and finishes it (`sha256` of other bytes makes it fail). */
  async function upload(
    p: Dup2Peer,
    uploadId: number,
    itemId: string,
    bytes: Uint8Array,
    meta: { name?: string; sha256?: Uint8Array } = {},
  ): Promise<void> {
    const { name = '', sha256: digest = sha256(bytes).bytes } = meta;
    await p.send({ type: 'open', uploadId, itemId, size: bytes.length, mime: '', name });
    expect((await p.next()).type).to.equal('opened');
    await p.data(uploadId, 0, bytes);
    expect((await p.next()).type).to.equal('ack');
    await p.send({ type: 'finish', uploadId, sha256: digest });
  }

  const tusHeaders = (extra: Record<string, string> = {}) => ({
    ...auth,
    'Tus-Resumable': '1.0.0',
    ...extra,
  });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'ws-uploader-reliability-'));
    dir = join(root, 'store', 'data');
    await mkdir(dir, { recursive: true });
    await writeFile(join(root, 'canary'), CANARY);
    await writeFile(join(root, 'store', 'canary'), CANARY);
    const { token } = await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, {
      uid: 'alice',
    });
    auth = { Authorization: `Bearer ${token}` };
    read = {
      Authorization: `Bearer ${await createReadToken(SECRET, 'up-1', { subject: 'reader' })}`,
    };
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await server?.close();
    server = undefined;
    await rm(root, { recursive: true, force: true });
  });

  it('P3: bytes past the item size, and sizes over maxItemSize, are refused over dup/2, http/1 and tus/1; stored bytes stay as they were', async () => {
    await start();
    const bytes = new Uint8Array(randomBytes(11));

    // dup/2: a last chunk one byte too long; an item one byte over the limit.
    const p = await peer();
    await p.open(1, 'p3-dup', 10);
    expect((await p.next()).type).to.equal('opened');
    await p.data(1, 0, bytes.subarray(0, 5));
    expect((await p.next()).type).to.equal('ack');
    await p.data(1, 5, bytes.subarray(5, 11));
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'out-of-range' });
    expect((await server!.store.get('p3-dup'))!.ranges).to.deep.equal([{ start: 0, end: 5 }]);
    await p.open(2, 'p3-huge', 1_000_001);
    expect(await p.next()).to.deep.include({ type: 'error', uploadId: 2, code: 'too-large' });

    // http/1: 11 bytes for a 10-byte range, announced by Content-Length or streamed (chunked).
    for (const [itemId, length] of [
      ['p3-http-length', { 'Content-Length': '11' }],
      ['p3-http-chunked', { 'Transfer-Encoding': 'chunked' }],
    ] as const) {
      const res = await raw(
        urls.http,
        'PUT',
        `/uploads/${itemId}`,
        { ...auth, 'Content-Range': 'bytes 0-9/10', ...length },
        bytes,
      );
      expect(res.status, itemId).to.equal(400);
      expect(JSON.parse(res.body.toString())).to.deep.include({ code: 'bad-request' });
      expect((await server!.store.get(itemId))?.ranges ?? [], itemId).to.deep.equal([]);
    }
    const huge = await raw(
      urls.http,
      'PUT',
      '/uploads/p3-huge',
      {
        ...auth,
        'Content-Range': 'bytes 0-0/1000001',
        'Content-Length': '1',
      },
      bytes.subarray(0, 1),
    );
    expect(huge.status).to.equal(413);

    // tus/1: a PATCH one byte longer than Upload-Length; an Upload-Length over the limit.
    const created = await fetch(`${urls.http}/tus/`, {
      method: 'POST',
      headers: tusHeaders({ 'Upload-Length': '10' }),
    });
    expect(created.status).to.equal(201);
    const url = new URL(created.headers.get('location')!, urls.http).toString();
    const patch = await fetch(url, {
      method: 'PATCH',
      headers: tusHeaders({
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': '0',
      }),
      body: bytes,
    });
    expect(patch.status).to.be.within(400, 499);
    const head = await fetch(url, { method: 'HEAD', headers: tusHeaders() });
    expect(head.headers.get('upload-offset')).to.equal('0');
    const tooLong = await fetch(`${urls.http}/tus/`, {
      method: 'POST',
      headers: tusHeaders({ 'Upload-Length': '1000001' }),
    });
    expect(tooLong.status).to.equal(413);

    expect(await server!.store.get('p3-huge')).to.equal(undefined);
    expect(await readdir(dir)).to.not.include('p3-huge');
  });

  // docs/protocol.md (Plain HTTP uploads): `bad-request` (… body length) is 400.
  it('P3: a multipart POST whose file is longer than its size field gets 400 bad-request and stores nothing', async () => {
    await start();
    const form = new FormData();
    form.append('itemId', 'p3-form');
    form.append('size', '10');
    form.append('file', new Blob([new Uint8Array(11)]), 'f.bin');
    const posted = await fetch(`${urls.http}/uploads`, {
      method: 'POST',
      headers: auth,
      body: form,
      signal: AbortSignal.timeout(3000),
    });
    expect(posted.status).to.equal(400);
    expect(await posted.json()).to.deep.include({ code: 'bad-request' });
    expect((await server!.store.get('p3-form'))?.ranges ?? []).to.deep.equal([]);
  });

  it('P11: ids that would leave the data folder (.., \\, absolute, NUL, 1000 characters, leading dot) are refused by every protocol, nothing outside the folder changes, and file names are only metadata', async () => {
    await start();
    const outside = async () => (await tree(root)).filter((p) => !p.startsWith('store/data/'));
    const before = await outside();
    const segments = [
      '..%2Fcanary',
      '..%2F..%2Fcanary',
      '..%2F..%2F..%2Fcanary',
      '..%5Ccanary',
      '..%5C..%5Ccanary',
      '..',
      '%2E%2E',
      encodeURIComponent(join(root, 'canary')),
      '%2Fetc%2Fpasswd',
      'a%00b',
      'a'.repeat(1000),
      '.hidden',
      '%2Ehidden',
    ];
    const body = new TextEncoder().encode('pwned!');
    for (const segment of segments) {
      const label = segment.slice(0, 40);
      for (const method of ['GET', 'HEAD']) {
        const res = await raw(urls.http, method, `/files/${segment}`, read);
        expect(res.status, `${method} /files/${label}`).to.equal(404);
        expect(res.body.toString()).to.not.include('canary');
      }
      const put = await raw(
        urls.http,
        'PUT',
        `/uploads/${segment}`,
        { ...auth, 'Content-Range': 'bytes 0-5/6', 'Content-Length': '6' },
        body,
      );
      expect(put.status, `PUT /uploads/${label}`).to.equal(404);
      expect((await raw(urls.http, 'HEAD', `/uploads/${segment}`, auth)).status).to.equal(404);
      for (const method of ['HEAD', 'PATCH', 'DELETE']) {
        const res = await raw(
          urls.http,
          method,
          `/tus/${segment}`,
          tusHeaders({
            'Content-Type': 'application/offset+octet-stream',
            'Upload-Offset': '0',
            ...(method === 'PATCH' ? { 'Content-Length': '6' } : {}),
          }),
          method === 'PATCH' ? body : undefined,
        );
        expect(res.status, `${method} /tus/${label}`).to.equal(404);
      }
    }
    // A multipart upload naming such an item.
    const form = new FormData();
    form.append('itemId', '../canary');
    form.append('size', '6');
    form.append('file', new Blob([body]), 'f.bin');
    const posted = await fetch(`${urls.http}/uploads`, {
      method: 'POST',
      headers: auth,
      body: form,
    });
    expect(posted.status).to.equal(400);
    // A tus concatenation naming such parts.
    const concat = await fetch(`${urls.http}/tus/`, {
      method: 'POST',
      headers: tusHeaders({ 'Upload-Concat': 'final;/tus/..%2Fcanary /tus/..' }),
    });
    expect(concat.status).to.equal(400);
    // dup/2 OPEN of such ids: an undecodable frame (bad-frame, close 4002).
    for (const id of ['../canary', '..\\canary', join(root, 'canary'), 'a\0b', 'a'.repeat(1000)]) {
      const p = await peer();
      await p.sendRaw(rawOpen(1, Buffer.from(id), 6));
      expect(await p.next(), id.slice(0, 40)).to.deep.include({ type: 'error', code: 'bad-frame' });
      expect((await p.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
    }

    // File names with path parts are only metadata: the item is stored under its id.
    const p = await peer();
    await upload(p, 1, 'p11-named', NINE, { name: '../../canary' });
    expect((await p.next()).type).to.equal('complete');
    const named = new FormData();
    named.append('itemId', 'p11-form');
    named.append('size', '9');
    named.append('file', new Blob([NINE]), '../../../canary');
    const stored = await fetch(`${urls.http}/uploads`, {
      method: 'POST',
      headers: auth,
      body: named,
    });
    expect(stored.status).to.equal(201);
    // (The multipart parser keeps only the last part of a file name with folders.)
    for (const [itemId, name] of [
      ['p11-named', '../../canary'],
      ['p11-form', 'canary'],
    ]) {
      const res = await fetch(`${urls.http}/files/${itemId}`, { headers: read });
      expect(res.status).to.equal(200);
      expect(await res.text()).to.equal('123456789');
      const disposition = res.headers.get('content-disposition')!;
      expect(disposition).to.match(
        /^attachment; filename="[A-Za-z0-9._ -]+"; filename\*=UTF-8''[A-Za-z0-9%._~!-]+$/,
      );
      expect(decodeURIComponent(disposition.split("UTF-8''")[1]!)).to.equal(name);
    }
    // Ids that the id pattern allows but some systems treat specially stay inside the folder.
    for (const itemId of ['CON', '-rf']) {
      const res = await raw(
        urls.http,
        'PUT',
        `/uploads/${itemId}`,
        { ...auth, 'Content-Range': 'bytes 0-5/6', 'Content-Length': '6' },
        body,
      );
      expect(res.status, itemId).to.equal(200);
    }

    expect(await readFile(join(root, 'canary'), 'utf8')).to.equal(CANARY);
    expect(await readFile(join(root, 'store', 'canary'), 'utf8')).to.equal(CANARY);
    expect(await outside()).to.deep.equal(before);
    expect((await readdir(dir)).sort()).to.deep.equal(['-rf', 'CON', 'p11-form', 'p11-named']);
  });

  it('P12: hostile file names and media types in tus Upload-Metadata and http/1 Item-Name are kept as metadata and served percent-encoded, without splitting a header', async () => {
    await start();
    const name = 'a"\r\nSet-Cookie: x=1\r\n\r\n<b>€.html';
    const type = 'text/html\r\nX-Injected: 1';
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const metadata = `filename ${b64(name)},filetype ${b64(type)}`;
    const created = await fetch(`${urls.http}/tus/`, {
      method: 'POST',
      headers: tusHeaders({ 'Upload-Length': '9', 'Upload-Metadata': metadata }),
    });
    expect(created.status).to.equal(201);
    const url = new URL(created.headers.get('location')!, urls.http).toString();
    const patch = await fetch(url, {
      method: 'PATCH',
      headers: tusHeaders({
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': '0',
      }),
      body: NINE,
    });
    expect(patch.status).to.equal(204);
    // tus echoes the metadata base64-encoded, as it came.
    const head = await fetch(url, { method: 'HEAD', headers: tusHeaders() });
    expect(head.headers.get('upload-metadata')).to.equal(metadata);

    const put = (itemId: string, itemName: string) =>
      fetch(`${urls.http}/uploads/${itemId}`, {
        method: 'PUT',
        headers: {
          ...auth,
          'Content-Range': 'bytes 0-8/9',
          'Item-Type': 'text/plain',
          'Item-Name': encodeURIComponent(itemName),
          'Repr-Digest': `sha-256=:${Buffer.from(sha256(NINE).bytes).toString('base64')}:`,
        },
        body: NINE,
      });
    expect((await put('p12-euro', '€.txt')).status).to.equal(200);
    expect((await put('p12-crlf', name)).status).to.equal(200);

    const tusItem = url.split('/').pop()!;
    for (const [itemId, expectedName] of [
      [tusItem, name],
      ['p12-crlf', name],
      ['p12-euro', '€.txt'],
    ] as const) {
      const res = await fetch(`${urls.http}/files/${itemId}`, { headers: read });
      expect(res.status, itemId).to.equal(200);
      expect(await res.text()).to.equal('123456789');
      expect(res.headers.get('set-cookie'), itemId).to.equal(null);
      expect(res.headers.get('x-injected'), itemId).to.equal(null);
      const disposition = res.headers.get('content-disposition')!;
      expect(disposition, itemId).to.match(
        /^(inline|attachment); filename="[A-Za-z0-9._ -]+"; filename\*=UTF-8''[A-Za-z0-9%._~!-]+$/,
      );
      expect(decodeURIComponent(disposition.split("UTF-8''")[1]!), itemId).to.equal(expectedName);
    }
    const tusServed = await fetch(`${urls.http}/files/${tusItem}`, {
      method: 'HEAD',
      headers: read,
    });
    expect(tusServed.headers.get('content-type')).to.equal('application/octet-stream');
    const euro = await fetch(`${urls.http}/files/p12-euro`, { method: 'HEAD', headers: read });
    expect(euro.headers.get('content-disposition')).to.equal(
      `inline; filename="_.txt"; filename*=UTF-8''%E2%82%AC.txt`,
    );
    expect((await fetch(`${urls.http}/healthz`)).status).to.equal(200);
  });

  it('S5: an item still uploading or that failed verification is never served whole (503, never 200), a range only as far as it is stored, and an expired item is 404', async () => {
    await start();
    const bytes = new Uint8Array(randomBytes(10));
    const get = (itemId: string, headers: Record<string, string> = {}, method = 'GET') =>
      fetch(`${urls.http}/files/${itemId}`, { method, headers: { ...read, ...headers } });

    const p = await peer();
    await p.open(1, 's5-partial', 10);
    expect((await p.next()).type).to.equal('opened');
    await p.data(1, 0, bytes.subarray(0, 5));
    expect((await p.next()).type).to.equal('ack');
    for (const method of ['GET', 'HEAD']) {
      const res = await get('s5-partial', {}, method);
      expect(res.status, method).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('2');
      expect(res.headers.get('cache-control')).to.equal('private, no-store');
      expect(res.headers.get('etag')).to.equal(null);
      await res.arrayBuffer();
    }
    expect((await get('s5-partial', { Range: 'bytes=0-9' })).status).to.equal(503);
    const stored = await get('s5-partial', { Range: 'bytes=0-' });
    expect(stored.status).to.equal(206);
    expect(stored.headers.get('content-range')).to.equal('bytes 0-4/10');
    expect(stored.headers.get('content-length')).to.equal('5');
    const head = Buffer.from(await stored.arrayBuffer());
    expect(head.equals(Buffer.from(bytes.subarray(0, 5)))).to.equal(true);

    await upload(p, 2, 's5-failed', bytes, { sha256: new Uint8Array(32) });
    expect(await p.next()).to.deep.include({ type: 'error', code: 'digest-mismatch' });
    const failed = await get('s5-failed');
    expect(failed.status).to.equal(503);
    await failed.arrayBuffer();

    await upload(p, 3, 's5-done', bytes);
    expect((await p.next()).type).to.equal('complete');
    const done = await get('s5-done');
    expect(done.status).to.equal(200);
    expect(done.headers.get('content-length')).to.equal('10');
    await done.arrayBuffer();

    // No upload id holds the partial items any more; a server with a short partialTtlMs expires them.
    p.close();
    await p.closed;
    await start({ partialTtlMs: 200 });
    await until(
      async () =>
        (await server!.store.get('s5-partial')) === undefined &&
        (await server!.store.get('s5-failed')) === undefined,
    );
    for (const itemId of ['s5-partial', 's5-failed']) {
      for (const method of ['GET', 'HEAD']) {
        const res = await get(itemId, {}, method);
        expect(res.status, `${method} ${itemId}`).to.equal(404);
        await res.arrayBuffer();
      }
    }
    const kept = await get('s5-done');
    expect(kept.status).to.equal(200);
    expect(Buffer.from(await kept.arrayBuffer()).equals(Buffer.from(bytes))).to.equal(true);
  });

  it('I6: when the final acknowledgement is lost, OPEN and HEAD /uploads report the item stored and complete, and FINISH completes it without a byte sent again', async () => {
    await start();
    const bytes = new Uint8Array(randomBytes(5000));

    // COMPLETE is sent but never read: the client goes away once the server has it.
    const first = await peer();
    await upload(first, 1, 'i6-lost', bytes);
    await until(async () => (await server!.store.get('i6-lost'))?.complete === true);
    first.ws.terminate();
    const second = await peer();
    await second.open(1, 'i6-lost', bytes.length);
    expect(await second.next()).to.deep.equal({
      type: 'opened',
      uploadId: 1,
      complete: true,
      ranges: [{ start: 0, end: bytes.length }],
    });
    await second.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect(await second.next()).to.deep.equal({
      type: 'complete',
      uploadId: 1,
      sha256: sha256(bytes).bytes,
    });
    const status = await fetch(`${urls.http}/uploads/i6-lost`, { method: 'HEAD', headers: auth });
    expect(status.status).to.equal(200);
    expect(status.headers.get('upload-complete')).to.equal('?1');
    expect(status.headers.get('upload-ranges')).to.equal(`0-${bytes.length - 1}`);

    // The connection drops right after FINISH: whether or not the server got to it, every byte is
    // stored, and a FINISH on a new connection completes the item.
    const third = await peer();
    await upload(third, 1, 'i6-cut', bytes);
    third.ws.terminate();
    const fourth = await peer();
    await fourth.open(1, 'i6-cut', bytes.length);
    expect(await fourth.next()).to.deep.include({
      type: 'opened',
      ranges: [{ start: 0, end: bytes.length }],
    });
    await fourth.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await fourth.next()).type).to.equal('complete');
    const res = await fetch(`${urls.http}/files/i6-cut`, { headers: read });
    expect(res.status).to.equal(200);
    expect(res.headers.get('etag')).to.equal(`"sha256-${sha256(bytes).hex}"`);
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(bytes))).to.equal(true);
  });
});
