import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUploadServer, type UploadServer } from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { sha256 } from '../helpers/node-peers.js';

const SECRET = 'h'.repeat(32);

describe('upload server plain HTTP uploads (http/1)', () => {
  let dir: string;
  let server: UploadServer;
  let base: string;
  let auth: Record<string, string>;
  /** What the server's `onComplete` was told: item id, SHA-256, size. */
  const completions: [string, string, number][] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-http-'));
    completions.length = 0;
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      maxItemSize: 1_000_000,
      // Items are read back without a token: these tests are about uploading.
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

  function form(
    fields: Record<string, string>,
    file?: { bytes: Uint8Array; name: string; type: string },
  ): FormData {
    const f = new FormData();
    for (const [k, v] of Object.entries(fields)) f.append(k, v);
    if (file)
      f.append(
        'file',
        new Blob([file.bytes as Uint8Array<ArrayBuffer>], { type: file.type }),
        file.name,
      );
    return f;
  }

  it('stores a small file posted as multipart/form-data, verified, and serves it back', async () => {
    const bytes = new Uint8Array(randomBytes(5000));
    const res = await fetch(`${base}/uploads`, {
      method: 'POST',
      headers: auth,
      body: form(
        { itemId: 'posted', size: '5000', sha256: sha256(bytes).hex },
        { bytes, name: 'photo.png', type: 'image/png' },
      ),
    });
    expect(res.status).to.equal(201);
    expect(await res.json()).to.deep.include({
      itemId: 'posted',
      complete: true,
      sha256: sha256(bytes).hex,
    });
    const back = await fetch(`${base}/files/posted`);
    expect(back.headers.get('content-type')).to.equal('image/png');
    expect(back.headers.get('content-disposition')).to.match(/^inline; filename="photo.png"/);
    expect(sha256(new Uint8Array(await back.arrayBuffer())).hex).to.equal(sha256(bytes).hex);
  });

  it('I2: refuses a multipart upload whose bytes do not match its sha256 field, and does not serve it', async () => {
    const bytes = new Uint8Array(randomBytes(100));
    const res = await fetch(`${base}/uploads`, {
      method: 'POST',
      headers: auth,
      body: form(
        { itemId: 'wrong', size: '100', sha256: 'a'.repeat(64) },
        { bytes, name: 'x', type: '' },
      ),
    });
    expect(res.status).to.equal(422);
    expect(await res.json()).to.deep.include({ code: 'digest-mismatch' });
    expect((await server.store.get('wrong'))?.complete).to.equal(false);
  });

  it('A1/P3: answers missing fields, a missing token and a too-large size with documented errors', async () => {
    const bytes = new Uint8Array(10);
    const noFields = await fetch(`${base}/uploads`, {
      method: 'POST',
      headers: auth,
      body: form({}, { bytes, name: 'x', type: '' }),
    });
    expect(noFields.status).to.equal(400);
    const noToken = await fetch(`${base}/uploads`, {
      method: 'POST',
      body: form({ itemId: 'a', size: '10' }, { bytes, name: 'x', type: '' }),
    });
    expect(noToken.status).to.equal(401);
    expect(noToken.headers.get('www-authenticate')).to.equal('Bearer');
    const tooLarge = await fetch(`${base}/uploads`, {
      method: 'POST',
      headers: auth,
      body: form({ itemId: 'big', size: '2000000' }, { bytes, name: 'x', type: '' }),
    });
    expect(tooLarge.status).to.equal(413);
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('takes an item in parts with PUT and Content-Range, reports the stored ranges, and completes it', async () => {
    const bytes = new Uint8Array(randomBytes(3000));
    const put = (first: number, last: number, headers: Record<string, string> = {}) =>
      fetch(`${base}/uploads/parts`, {
        method: 'PUT',
        headers: {
          ...auth,
          'Content-Range': `bytes ${first}-${last}/3000`,
          'Item-Type': 'video/mp4',
          ...headers,
        },
        body: bytes.subarray(first, last + 1),
      });
    expect((await put(2000, 2999)).status).to.equal(200);
    const head = await fetch(`${base}/uploads/parts`, { method: 'HEAD', headers: auth });
    expect(head.headers.get('upload-ranges')).to.equal('2000-2999');
    expect(head.headers.get('upload-complete')).to.equal('?0');
    expect(head.headers.get('cache-control')).to.equal('no-store');
    const digest = `sha-256=:${Buffer.from(sha256(bytes).bytes).toString('base64')}:`;
    const last = await put(0, 1999, { 'Repr-Digest': digest });
    expect(await last.json()).to.deep.include({ complete: true, sha256: sha256(bytes).hex });
    const back = await fetch(`${base}/files/parts`);
    expect(back.headers.get('content-type')).to.equal('video/mp4');
    expect(sha256(new Uint8Array(await back.arrayBuffer())).hex).to.equal(sha256(bytes).hex);
  });

  /** `PUT /uploads/{itemId}` of `bytes[first..last]` of a 3000-byte item. */
  const putPart = (
    itemId: string,
    bytes: Uint8Array<ArrayBuffer>,
    first: number,
    last: number,
    headers: Record<string, string> = {},
  ) =>
    fetch(`${base}/uploads/${itemId}`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Range': `bytes ${first}-${last}/${bytes.length}`, ...headers },
      body: bytes.subarray(first, last + 1),
    });

  it('completes an item on a PUT with Upload-Complete: ?1 and no Repr-Digest, with the SHA-256 it computes: the answer, the bytes on disk, meta.json, onComplete and GET /files agree', async () => {
    const bytes = new Uint8Array(randomBytes(3000));
    const digest = sha256(bytes).hex;
    expect((await putPart('computed', bytes, 2000, 2999)).status).to.equal(200);
    expect((await putPart('computed', bytes, 0, 1999)).status).to.equal(200);
    expect(completions).to.deep.equal([]);
    // The last byte again, as the reference client completes an item.
    const last = await putPart('computed', bytes, 2999, 2999, { 'Upload-Complete': '?1' });
    expect(last.status).to.equal(200);
    expect(last.headers.get('upload-complete')).to.equal('?1');
    expect(await last.json()).to.deep.equal({
      itemId: 'computed',
      size: 3000,
      ranges: [{ start: 0, end: 3000 }],
      complete: true,
      sha256: digest,
    });
    expect(completions).to.deep.equal([['computed', digest, 3000]]);
    expect(Buffer.from(await readFile(join(dir, 'computed', 'data'))).equals(bytes)).to.equal(true);
    const meta = JSON.parse(await readFile(join(dir, 'computed', 'meta.json'), 'utf8')) as object;
    expect(meta).to.deep.include({ complete: true, sha256: digest });
    const back = await fetch(`${base}/files/computed`);
    expect(back.headers.get('etag')).to.equal(`"sha256-${digest}"`);
    expect(sha256(new Uint8Array(await back.arrayBuffer())).hex).to.equal(digest);
    // Again on the complete item: the same answer, reported once.
    const again = await putPart('computed', bytes, 0, 9, { 'Upload-Complete': '?1' });
    expect(await again.json()).to.deep.include({ complete: true, sha256: digest });
    expect(completions).to.have.length(1);
  });

  it('answers a PUT with Upload-Complete: ?1 while bytes are missing with complete: false and no sha256, and marks nothing complete', async () => {
    const bytes = new Uint8Array(randomBytes(3000));
    expect((await putPart('gap', bytes, 0, 999)).status).to.equal(200);
    const res = await putPart('gap', bytes, 2000, 2999, { 'Upload-Complete': '?1' });
    expect(res.status).to.equal(200);
    expect(res.headers.get('upload-complete')).to.equal('?0');
    const body = (await res.json()) as object;
    expect(body).to.deep.include({ complete: false }).and.not.have.property('sha256');
    expect((await server.store.get('gap'))!.complete).to.equal(false);
    const meta = JSON.parse(await readFile(join(dir, 'gap', 'meta.json'), 'utf8')) as object;
    expect(meta).to.deep.include({ complete: false }).and.not.have.property('sha256');
    expect(completions).to.deep.equal([]);
    // The gap filled, the same request completes it.
    await putPart('gap', bytes, 1000, 1999);
    const done = await putPart('gap', bytes, 2999, 2999, { 'Upload-Complete': '?1' });
    expect(await done.json()).to.deep.include({ complete: true, sha256: sha256(bytes).hex });
  });

  it('verifies a PUT with both Upload-Complete: ?1 and Repr-Digest against the digest; refuses a malformed Upload-Complete, or with it a Repr-Digest that is no SHA-256, with 400 and stores nothing', async () => {
    const bytes = new Uint8Array(randomBytes(3000));
    await putPart('both', bytes, 0, 2999);
    const wrong = `sha-256=:${Buffer.alloc(32).toString('base64')}:`;
    const mismatch = await putPart('both', bytes, 2999, 2999, {
      'Upload-Complete': '?1',
      'Repr-Digest': wrong,
    });
    expect(mismatch.status).to.equal(422);
    expect(await mismatch.json()).to.deep.include({ code: 'digest-mismatch' });
    // As after any digest mismatch, the stored bytes are forgotten.
    expect((await server.store.get('both'))!.ranges).to.deep.equal([]);
    await putPart('both', bytes, 0, 2999);
    const right = `sha-256=:${Buffer.from(sha256(bytes).bytes).toString('base64')}:`;
    const verified = await putPart('both', bytes, 2999, 2999, {
      'Upload-Complete': '?1',
      'Repr-Digest': right,
    });
    expect(await verified.json()).to.deep.include({ complete: true, sha256: sha256(bytes).hex });
    for (const headers of [
      { 'Upload-Complete': 'yes' } as Record<string, string>,
      { 'Upload-Complete': '?1', 'Repr-Digest': 'md5=:AAAA:' },
      { 'Upload-Complete': '?1', 'Repr-Digest': 'sha-256=:AAAA:' },
    ]) {
      const res = await putPart('refused', bytes, 0, 99, headers);
      expect(res.status, JSON.stringify(headers)).to.equal(400);
      expect(await res.json()).to.deep.include({ code: 'bad-request' });
    }
    expect(await server.store.get('refused')).to.equal(undefined);
    // The preflight lets a page send Upload-Complete.
    const preflight = await fetch(`${base}/uploads/x`, { method: 'OPTIONS' });
    expect(preflight.headers.get('access-control-allow-headers')).to.match(/\bUpload-Complete\b/);
  });

  it('stores a multipart upload without a sha256 field, answering with the SHA-256 it computed', async () => {
    const bytes = new Uint8Array(randomBytes(5000));
    const res = await fetch(`${base}/uploads`, {
      method: 'POST',
      headers: auth,
      body: form({ itemId: 'unhashed', size: '5000' }, { bytes, name: 'a.bin', type: '' }),
    });
    expect(res.status).to.equal(201);
    expect(await res.json()).to.deep.include({
      itemId: 'unhashed',
      complete: true,
      sha256: sha256(bytes).hex,
    });
    expect(completions).to.deep.equal([['unhashed', sha256(bytes).hex, 5000]]);
    const back = await fetch(`${base}/files/unhashed`);
    expect(back.headers.get('etag')).to.equal(`"sha256-${sha256(bytes).hex}"`);
    // An empty item too.
    const empty = await fetch(`${base}/uploads`, {
      method: 'POST',
      headers: auth,
      body: form(
        { itemId: 'nothing', size: '0' },
        { bytes: new Uint8Array(0), name: 'e', type: '' },
      ),
    });
    expect(await empty.json()).to.deep.include({
      complete: true,
      sha256: sha256(new Uint8Array(0)).hex,
    });
  });

  it('refuses a PUT whose body does not match its Content-Range', async () => {
    const res = await fetch(`${base}/uploads/bad`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Range': 'bytes 0-9/100' },
      body: new Uint8Array(5),
    });
    expect(res.status).to.equal(400);
    const inverted = await fetch(`${base}/uploads/bad`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Range': 'bytes 9-0/100' },
      body: new Uint8Array(0),
    });
    expect(inverted.status).to.equal(400);
    expect((await server.store.get('bad'))?.ranges ?? []).to.deep.equal([]);
  });

  it("A9: refuses another user's item with 403 and hides it from HEAD", async () => {
    await fetch(`${base}/uploads/alices`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Range': 'bytes 0-4/10' },
      body: new Uint8Array(5),
    });
    const { token } = await signToken(secretKey(SECRET), 'c2', uploadAudience('up-1'), 60, {
      uid: 'bob',
    });
    const bob = { Authorization: `Bearer ${token}` };
    const put = await fetch(`${base}/uploads/alices`, {
      method: 'PUT',
      headers: { ...bob, 'Content-Range': 'bytes 5-9/10' },
      body: new Uint8Array(5),
    });
    expect(put.status).to.equal(401);
    expect(await put.json()).to.deep.include({ code: 'unauthorized' });
    expect(
      (await fetch(`${base}/uploads/alices`, { method: 'HEAD', headers: bob })).status,
    ).to.equal(404);
    expect((await server.store.get('alices'))!.ranges).to.deep.equal([{ start: 0, end: 5 }]);
  });
});
