import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { createUploadServer, type UploadServer } from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { sha256 } from '../helpers/node-peers.js';

const SECRET = 'i'.repeat(32);

describe('upload server tus 1.0.0 (tus/1)', () => {
  let dir: string;
  let server: UploadServer;
  let base: string;
  let auth: Record<string, string>;
  /** What the server's `onComplete` was told: item id, SHA-256, size. */
  const completions: [string, string, number][] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-tus-'));
    completions.length = 0;
    // Items are read back without a token: these tests are about uploading.
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      readAccess: 'public',
      onComplete: (itemId, sha, size) => completions.push([itemId, sha, size]),
    });
    base = (await server.listen(0)).http;
    const { token } = await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, {
      uid: 'alice',
    });
    auth = { Authorization: `Bearer ${token}` };
  });

  afterEach(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  function upload(
    bytes: Buffer,
    options: Partial<tus.UploadOptions> = {},
  ): { upload: tus.Upload; done: Promise<string> } {
    let resolve!: (url: string) => void;
    let reject!: (e: Error) => void;
    const done = new Promise<string>((res, rej) => ((resolve = res), (reject = rej)));
    const u = new tus.Upload(bytes, {
      endpoint: `${base}/tus/`,
      headers: auth,
      chunkSize: 64 * 1024,
      retryDelays: [],
      metadata: { filename: 'clip.webm', filetype: 'video/webm' },
      onSuccess: () => resolve(u.url!),
      onError: reject,
      ...options,
    });
    return { upload: u, done };
  }

  it('takes an upload from tus-js-client, resumes it after an abort, and serves it back', async () => {
    const bytes = randomBytes(1024 * 1024);
    let aborted = false;
    const first = upload(bytes, {
      onProgress(sent) {
        if (!aborted && sent >= 300 * 1024) {
          aborted = true;
          void first.upload.abort();
        }
      },
    });
    first.upload.start();
    while (!aborted) await new Promise((r) => setTimeout(r, 10));
    const url = first.upload.url!;
    const head = await fetch(url, {
      method: 'HEAD',
      headers: { ...auth, 'Tus-Resumable': '1.0.0' },
    });
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).to.be.greaterThan(0).and.lessThan(bytes.length);
    expect(head.headers.get('upload-expires')).to.be.a('string');

    // A new client resumes from the server's offset.
    const second = upload(bytes, { uploadUrl: url });
    second.upload.start();
    expect(await second.done).to.equal(url);
    const itemId = url.split('/').pop()!;
    const res = await fetch(`${base}/files/${itemId}`);
    expect(res.headers.get('content-type')).to.equal('video/webm');
    expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(sha256(bytes).hex);
    // Reported complete once, with the digest of its bytes.
    expect(completions).to.deep.equal([[itemId, sha256(bytes).hex, bytes.length]]);
  });

  it('takes a parallel upload from tus-js-client (partial uploads concatenated into one)', async () => {
    const bytes = randomBytes(700 * 1024);
    const { upload: u, done } = upload(bytes, { parallelUploads: 3 });
    u.start();
    const url = await done;
    const itemId = url.split('/').pop()!;
    const res = await fetch(`${base}/files/${itemId}`);
    expect(Number(res.headers.get('content-length'))).to.equal(bytes.length);
    expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(sha256(bytes).hex);
    // The concatenation is reported complete with its digest (as are its parts, each once).
    expect(completions).to.deep.include([itemId, sha256(bytes).hex, bytes.length]);
    expect(completions).to.have.length(4);
  });

  it('answers OPTIONS with its version, extensions and limits', async () => {
    const res = await fetch(`${base}/tus/`, { method: 'OPTIONS' });
    expect(res.status).to.equal(204);
    expect(res.headers.get('tus-version')).to.equal('1.0.0');
    expect(res.headers.get('tus-extension')).to.equal(
      'creation,creation-with-upload,termination,checksum,expiration,concatenation',
    );
  });

  it('P1/I1/A1: refuses a wrong offset with 409, a bad checksum with 460, and no token with 401', async () => {
    const headers = { ...auth, 'Tus-Resumable': '1.0.0' };
    const created = await fetch(`${base}/tus/`, {
      method: 'POST',
      headers: { ...headers, 'Upload-Length': '10' },
    });
    expect(created.status).to.equal(201);
    const url = new URL(created.headers.get('location')!, base).toString();
    const body = new Uint8Array(5).fill(1);
    const patch = (offset: number, extra: Record<string, string> = {}) =>
      fetch(url, {
        method: 'PATCH',
        headers: {
          ...headers,
          'Content-Type': 'application/offset+octet-stream',
          'Upload-Offset': String(offset),
          ...extra,
        },
        body,
      });
    expect((await patch(3)).status).to.equal(409);
    const wrongSum = await patch(0, {
      'Upload-Checksum': `sha1 ${createHash('sha1').update('other').digest('base64')}`,
    });
    expect(wrongSum.status).to.equal(460);
    const rightSum = await patch(0, {
      'Upload-Checksum': `sha1 ${createHash('sha1').update(body).digest('base64')}`,
    });
    expect(rightSum.status).to.equal(204);
    expect(rightSum.headers.get('upload-offset')).to.equal('5');
    const anonymous = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    expect(anonymous.status).to.equal(401);
  });

  /** Creates a tus upload of `length` bytes with `headers`; returns its URL and item id. */
  async function create(
    length: number,
    headers: Record<string, string> = auth,
  ): Promise<{ url: string; itemId: string }> {
    const res = await fetch(`${base}/tus/`, {
      method: 'POST',
      headers: { ...headers, 'Tus-Resumable': '1.0.0', 'Upload-Length': String(length) },
    });
    expect(res.status).to.equal(201);
    const url = new URL(res.headers.get('location')!, base).toString();
    return { url, itemId: url.split('/').pop()! };
  }

  const patchAt = (url: string, offset: number, body: Uint8Array<ArrayBuffer>, headers = auth) =>
    fetch(url, {
      method: 'PATCH',
      headers: {
        ...headers,
        'Tus-Resumable': '1.0.0',
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': String(offset),
      },
      body,
    });

  it("P1: a PATCH past the server's offset (a gap) or before it (a rewind) gets 409 with the server's Upload-Offset, and stores nothing", async () => {
    const bytes = new Uint8Array(randomBytes(30));
    const { url, itemId } = await create(bytes.length);
    expect((await patchAt(url, 0, bytes.subarray(0, 10))).status).to.equal(204);
    const other = new Uint8Array(10).fill(0xee);
    // One byte of gap; a rewind by one chunk, with other bytes.
    for (const offset of [11, 0]) {
      const res = await patchAt(url, offset, other);
      expect(res.status, String(offset)).to.equal(409);
      expect(res.headers.get('upload-offset'), String(offset)).to.equal('10');
    }
    expect((await server.store.get(itemId))!.ranges).to.deep.equal([{ start: 0, end: 10 }]);
    const data = await readFile(join(dir, itemId, 'data'));
    expect(Buffer.from(data.subarray(0, 10)).equals(Buffer.from(bytes.subarray(0, 10)))).to.equal(
      true,
    );
    // The client re-syncs from the offset the server gave, and the upload completes.
    expect((await patchAt(url, 10, bytes.subarray(10))).status).to.equal(204);
    const res = await fetch(`${base}/files/${itemId}`);
    expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(sha256(bytes).hex);
  });

  it('A9: another user cannot terminate an upload (404), and a complete upload cannot be terminated (403); both stay', async () => {
    const bytes = new Uint8Array(randomBytes(10));
    const { url, itemId } = await create(bytes.length);
    expect((await patchAt(url, 0, bytes.subarray(0, 5))).status).to.equal(204);
    const { token } = await signToken(secretKey(SECRET), 'c2', uploadAudience('up-1'), 60, {
      uid: 'bob',
    });
    const bob = { Authorization: `Bearer ${token}` };
    const tus = { 'Tus-Resumable': '1.0.0' };
    expect((await fetch(url, { method: 'DELETE', headers: { ...bob, ...tus } })).status).to.equal(
      404,
    );
    expect((await fetch(url, { method: 'HEAD', headers: { ...bob, ...tus } })).status).to.equal(
      404,
    );
    const head = await fetch(url, { method: 'HEAD', headers: { ...auth, ...tus } });
    expect(head.status).to.equal(200);
    expect(head.headers.get('upload-offset')).to.equal('5');
    // Bob cannot write to it either.
    expect((await patchAt(url, 5, bytes.subarray(5), bob)).status).to.equal(404);

    expect((await patchAt(url, 5, bytes.subarray(5))).status).to.equal(204);
    const done = await fetch(url, { method: 'DELETE', headers: { ...auth, ...tus } });
    expect(done.status).to.equal(403);
    expect(await server.store.get(itemId)).to.deep.include({ complete: true });
    const res = await fetch(`${base}/files/${itemId}`);
    expect(res.status).to.equal(200);
    expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(sha256(bytes).hex);
  });

  it('terminates a partial upload with DELETE', async () => {
    const headers = { ...auth, 'Tus-Resumable': '1.0.0' };
    const created = await fetch(`${base}/tus/`, {
      method: 'POST',
      headers: { ...headers, 'Upload-Length': '10' },
    });
    const url = new URL(created.headers.get('location')!, base).toString();
    expect((await fetch(url, { method: 'DELETE', headers })).status).to.equal(204);
    expect((await fetch(url, { method: 'HEAD', headers })).status).to.equal(404);
  });
});
