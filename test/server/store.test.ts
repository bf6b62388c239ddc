import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { open, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { request, type ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createUploadServer,
  FileStore,
  type ItemRecord,
  type UploadServer,
} from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';

const SECRET = 's'.repeat(32);

/** File handles open in this process (Linux). */
async function openFiles(): Promise<number> {
  return (await readdir('/proc/self/fd')).length;
}

describe('file store', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-store-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('F9: does not acknowledge a write whose bytes were in a batch whose flush failed', async () => {
    // The journal append of the first batch fails while the same bytes are written again.
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as {
      appendFile: (...a: unknown[]) => Promise<void>;
      datasync: () => Promise<void>;
    };
    await probe.close();
    const { appendFile, datasync } = proto;
    let release!: () => void;
    let gate: Promise<void> | undefined = new Promise<void>((r) => (release = r));
    let fail = true;
    proto.datasync = async function (this: unknown) {
      const g = gate;
      gate = undefined;
      await g;
      return datasync.call(this);
    };
    proto.appendFile = async function (this: unknown, ...a: unknown[]) {
      if (fail) {
        fail = false;
        throw Object.assign(new Error('no space left'), { code: 'ENOSPC' });
      }
      return appendFile.apply(this, a);
    };
    try {
      const store = new FileStore(dir);
      await store.open('item', 20);
      const bytes = new Uint8Array(10).fill(65);
      const first = store.write('item', 0, bytes).then(
        () => 'ack',
        (e: { code: string }) => e.code,
      );
      await new Promise((r) => setTimeout(r, 20));
      const again = store.write('item', 0, bytes).then(
        () => 'ack',
        (e: { code: string }) => e.code,
      );
      await new Promise((r) => setTimeout(r, 20));
      release();
      expect([await first, await again]).to.deep.equal(['storage-full', 'storage-failed']);
      expect((await store.get('item'))!.ranges).to.deep.equal([]);
      // Sent once more, the bytes are stored.
      await store.write('item', 0, bytes);
      expect((await store.get('item'))!.ranges).to.deep.equal([{ start: 0, end: 10 }]);
      await store.close();
    } finally {
      proto.appendFile = appendFile;
      proto.datasync = datasync;
    }
  });

  it('I3: a complete item whose journal lost records is partial again after a restart', async () => {
    const store = new FileStore(dir);
    const bytes = new Uint8Array(randomBytes(20));
    await store.open('item', 20);
    await store.write('item', 0, bytes.subarray(0, 10));
    await store.write('item', 10, bytes.subarray(10));
    await store.finish('item', createHash('sha256').update(bytes).digest('hex'));
    await store.close();
    // The last record is gone.
    await truncate(join(dir, 'item', 'chunks'), 24);
    const again = new FileStore(dir);
    const record = (await again.get('item'))!;
    expect(record).to.deep.include({ complete: false, ranges: [{ start: 0, end: 10 }] });
    expect(record.sha256).to.equal(undefined);
    await again.write('item', 10, bytes.subarray(10));
    expect((await again.finish('item')).complete).to.equal(true);
    await again.close();
  });

  it('completes an item without a digest with the SHA-256 of its bytes, whether it hashed them as they came, read them back, or both', async () => {
    const store = new FileStore(dir, { durability: 'write' });
    const bytes = new Uint8Array(randomBytes(3000));
    const sha = createHash('sha256').update(bytes).digest('hex');
    // In order: all hashed as they came.
    await store.open('in-order', 3000);
    for (let at = 0; at < 3000; at += 1000)
      await store.write('in-order', at, bytes.subarray(at, at + 1000));
    // Out of order: the prefix [0, 1000) hashed as it came, [1000, 3000) read back.
    await store.open('out-of-order', 3000);
    await store.write('out-of-order', 2000, bytes.subarray(2000));
    await store.write('out-of-order', 1000, bytes.subarray(1000, 2000));
    await store.write('out-of-order', 0, bytes.subarray(0, 1000));
    for (const itemId of ['in-order', 'out-of-order']) {
      const record = await store.finish(itemId);
      expect(record, itemId).to.deep.include({ complete: true, sha256: sha });
      const meta = JSON.parse(await readFile(join(dir, itemId, 'meta.json'), 'utf8')) as object;
      expect(meta, itemId).to.deep.include({ complete: true, sha256: sha });
      // Again: the same digest, and a digest given then must be that one.
      expect((await store.finish(itemId)).sha256).to.equal(sha);
      expect((await store.finish(itemId, sha)).sha256).to.equal(sha);
    }
    await store.close();
    // After a restart, the bytes stored before it are read back.
    const again = new FileStore(dir, { durability: 'write' });
    await again.open('restarted', 3000);
    await again.write('restarted', 0, bytes.subarray(0, 1500));
    await again.close();
    const third = new FileStore(dir, { durability: 'write' });
    await third.open('restarted', 3000);
    await third.write('restarted', 1500, bytes.subarray(1500));
    expect((await third.finish('restarted')).sha256).to.equal(sha);
    await third.close();
  });

  it('refuses to complete without a digest while a byte is missing, with incomplete, and marks nothing', async () => {
    const store = new FileStore(dir, { durability: 'write' });
    await store.open('gap', 30);
    await store.write('gap', 0, new Uint8Array(10).fill(1));
    await store.write('gap', 20, new Uint8Array(10).fill(3));
    const error = await store.finish('gap').then(
      () => undefined,
      (e: { code: string }) => e.code,
    );
    expect(error).to.equal('incomplete');
    expect(await store.get('gap')).to.deep.include({
      complete: false,
      ranges: [
        { start: 0, end: 10 },
        { start: 20, end: 30 },
      ],
    });
    expect((await store.get('gap'))!.sha256).to.equal(undefined);
    const meta = JSON.parse(await readFile(join(dir, 'gap', 'meta.json'), 'utf8')) as object;
    expect(meta).to.deep.include({ complete: false }).and.not.have.property('sha256');
    await store.close();
  });

  it('checks the bytes it reads back to compute a digest against their CRC-32C: a changed run is forgotten, storage-failed, and once sent again the item completes', async () => {
    const corrupt: { itemId: string; range: { start: number; end: number } }[] = [];
    const store = new FileStore(dir, {
      durability: 'write',
      // Bytes ahead of a gap are not held in memory: they are read back, and checked, at FINISH.
      digestAheadBytes: 0,
      onCorrupt: (itemId, range) => corrupt.push({ itemId, range }),
    });
    const bytes = new Uint8Array(randomBytes(3000));
    const sha = createHash('sha256').update(bytes).digest('hex');
    await store.open('rot', 3000);
    // [2000, 3000) first: it is not in the running digest, and is read back at completion.
    await store.write('rot', 2000, bytes.subarray(2000));
    await store.write('rot', 0, bytes.subarray(0, 2000));
    const fh = await open(join(dir, 'rot', 'data'), 'r+');
    await fh.write(new Uint8Array([bytes[2500]! ^ 0xff]), 0, 1, 2500);
    await fh.close();
    const error = await store.finish('rot').then(
      () => undefined,
      (e: { code: string }) => e.code,
    );
    expect(error).to.equal('storage-failed');
    expect(corrupt).to.deep.equal([{ itemId: 'rot', range: { start: 2000, end: 3000 } }]);
    expect(await store.get('rot')).to.deep.include({
      complete: false,
      ranges: [{ start: 0, end: 2000 }],
    });
    await store.write('rot', 2000, bytes.subarray(2000));
    expect(await store.finish('rot')).to.deep.include({ complete: true, sha256: sha });
    // With a digest to compare with, the same damage is a digest mismatch, as always.
    await store.open('rot-2', 3000);
    await store.write('rot-2', 2000, bytes.subarray(2000));
    await store.write('rot-2', 0, bytes.subarray(0, 2000));
    const fh2 = await open(join(dir, 'rot-2', 'data'), 'r+');
    await fh2.write(new Uint8Array([bytes[2500]! ^ 0xff]), 0, 1, 2500);
    await fh2.close();
    const mismatch = await store.finish('rot-2', sha).then(
      () => undefined,
      (e: { code: string }) => e.code,
    );
    expect(mismatch).to.equal('digest-mismatch');
    expect((await store.get('rot-2'))!.ranges).to.deep.equal([]);
    await store.close();
  });

  it('F15: expiry deletes an item only under its lock; a writer that comes meanwhile gets a fresh item', async () => {
    const store = new FileStore(dir, { durability: 'write' });
    await store.open('busy', 20);
    await store.write('busy', 0, new Uint8Array(5).fill(1));
    await store.open('idle', 20);
    await store.write('idle', 0, new Uint8Array(5).fill(1));
    let reopened: Promise<unknown> | undefined;
    const expired = await store.expire(0, async (itemId) => {
      if (itemId === 'busy') return undefined;
      // A writer arrives while the item is being deleted.
      reopened = store.open(itemId, 20);
      return () => undefined;
    });
    expect(expired).to.deep.equal(['idle']);
    expect((await store.get('busy'))!.ranges).to.deep.equal([{ start: 0, end: 5 }]);
    // The writer checked the item before it was deleted, then opens it again under its lock.
    await reopened;
    expect(await store.open('idle', 20)).to.deep.include({ itemId: 'idle', ranges: [] });
    await store.write('idle', 0, new Uint8Array(5).fill(2));
    expect((await store.get('idle'))!.ranges).to.deep.equal([{ start: 0, end: 5 }]);
    await store.close();
  });

  it('P3: refuses with fragmented a write that would store an item in more pieces than it may have', async () => {
    const store = new FileStore(dir, { durability: 'write' });
    await store.open('crumbs', 4096);
    const one = new Uint8Array(1);
    // At least 1024 pieces for any item: every other byte, so no two pieces merge into a range.
    for (let i = 0; i < 2048; i += 2) await store.write('crumbs', i, one);
    const refused = await store.write('crumbs', 2048, one).then(
      () => 'stored',
      (e: { code: string }) => e.code,
    );
    expect(refused).to.equal('fragmented');
    expect((await store.get('crumbs'))!.ranges).to.have.length(1024);
    // Bytes that add no piece (already stored) are still taken.
    await store.write('crumbs', 0, one);
    await store.close();
  });

  it('forgets the oldest complete items past maxCachedItems, and reads them from disk when asked', async () => {
    const store = new FileStore(dir, { durability: 'write', maxCachedItems: 2 });
    const bytes = new Uint8Array(randomBytes(10));
    const sha = createHash('sha256').update(bytes).digest('hex');
    for (const id of ['a', 'b', 'c']) {
      await store.open(id, bytes.length);
      await store.write(id, 0, bytes);
      await store.finish(id, sha);
    }
    await store.open('d', 10);
    // `a` was forgotten: what is on disk now is what it answers.
    const metaPath = join(dir, 'a', 'meta.json');
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as Record<string, unknown>;
    await writeFile(metaPath, JSON.stringify({ ...meta, name: 'renamed.bin' }));
    expect(await store.get('a')).to.deep.include({
      complete: true,
      sha256: sha,
      name: 'renamed.bin',
    });
    const read: Buffer[] = [];
    for await (const c of store.read('a', 0, 10)) read.push(c as Buffer);
    expect(Buffer.concat(read).equals(bytes)).to.equal(true);
    await store.close();
  });

  it('keeps no file open for complete items, even when their bytes are sent again', async () => {
    const store = new FileStore(dir, { durability: 'write' });
    const before = await openFiles();
    const bytes = new Uint8Array(randomBytes(100));
    const sha = createHash('sha256').update(bytes).digest('hex');
    for (let i = 0; i < 50; i++) {
      await store.open(`item-${i}`, bytes.length);
      await store.write(`item-${i}`, 0, bytes);
      await store.finish(`item-${i}`, sha);
      await store.write(`item-${i}`, 0, bytes);
    }
    expect((await openFiles()) - before).to.be.below(5);
    await store.close();
  });
  it('writev stores parts as if joined; with commit: false they are not in the ranges until a write commits them', async () => {
    const store = new FileStore(dir);
    await store.open('item', 300);
    const bytes = new Uint8Array(randomBytes(300));
    const parts = (from: number, to: number, cut: number): Uint8Array[] => [
      bytes.subarray(from, cut),
      bytes.subarray(cut, to),
    ];
    const first = await store.writev('item', 0, parts(0, 100, 37), { commit: false });
    expect(first.ranges).to.deep.equal([]);
    await store.writev('item', 100, parts(100, 200, 101), { commit: false });
    expect((await store.get('item'))!.ranges).to.deep.equal([]);
    // No parts: commits what is pending alone.
    const committed = await store.writev('item', 200, [], { commit: true });
    expect(committed.ranges).to.deep.equal([{ start: 0, end: 200 }]);
    // A committing write takes what another left pending with its own.
    await store.writev('item', 250, parts(250, 300, 290), { commit: false });
    const last = await store.writev('item', 200, parts(200, 250, 249));
    expect(last.ranges).to.deep.equal([{ start: 0, end: 300 }]);
    // Each chunk's CRC-32C is of its joined parts: reading checks it, and the digest matches.
    const read: Buffer[] = [];
    for await (const b of store.read('item', 0, 300)) read.push(b as Buffer);
    expect(Buffer.concat(read).equals(bytes)).to.equal(true);
    const done = await store.finish('item');
    expect(done.sha256).to.equal(createHash('sha256').update(bytes).digest('hex'));
    // The same bytes again as parts compare equal; other bytes are a conflict.
    await store.writev('item', 0, parts(0, 100, 50));
    const other = new Uint8Array(100);
    const refused = await store.writev('item', 0, [other.subarray(0, 10), other.subarray(10)]).then(
      () => 'stored',
      (e: { code: string }) => e.code,
    );
    expect(refused).to.equal('conflict');
    await store.close();
  });
});

describe('upload server bodies', () => {
  let dir: string;
  let server: UploadServer;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-bodies-'));
    server = createUploadServer({ id: 'up-1', secret: SECRET, dataDir: dir, maxChunk: 64 * 1024 });
  });

  afterEach(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const token = async (): Promise<string> =>
    (await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, { uid: 'alice' })).token;

  /** A `PUT` of all `size` bytes of an item, opened: the test writes its body. */
  async function openPut(itemId: string, size: number): Promise<ClientRequest> {
    const base = (await server.listen(0)).http;
    const req = request(`${base}/uploads/${itemId}`, {
      method: 'PUT',
      headers: {
        Authorization: `Bearer ${await token()}`,
        'Content-Range': `bytes 0-${size - 1}/${size}`,
        'Content-Length': String(size),
      },
    });
    req.on('error', () => undefined);
    return req;
  }

  /** The item once it holds `[0, end)`, or as it is after about two seconds. */
  async function storedTo(itemId: string, end: number): Promise<ItemRecord | undefined> {
    let record = await server.store.get(itemId);
    for (let i = 0; i < 100 && record?.ranges[0]?.end !== end; i++) {
      await new Promise((r) => setTimeout(r, 20));
      record = await server.store.get(itemId);
    }
    return record;
  }

  /** The stored bytes `[0, end)` of an item, each chunk checked against its CRC-32C. */
  async function readBack(itemId: string, end: number): Promise<Buffer> {
    const read: Buffer[] = [];
    for await (const b of server.store.read(itemId, 0, end)) read.push(b as Buffer);
    return Buffer.concat(read);
  }

  it('stores a tus PATCH with Upload-Checksum in chunks of maxChunk, so reads check little at a time', async () => {
    const base = (await server.listen(0)).http;
    const headers = { Authorization: `Bearer ${await token()}`, 'Tus-Resumable': '1.0.0' };
    const bytes = new Uint8Array(randomBytes(256 * 1024));
    const created = await fetch(`${base}/tus/`, {
      method: 'POST',
      headers: { ...headers, 'Upload-Length': String(bytes.length) },
    });
    const url = new URL(created.headers.get('location')!, base).toString();
    const patched = await fetch(url, {
      method: 'PATCH',
      headers: {
        ...headers,
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': '0',
        'Upload-Checksum': `sha1 ${createHash('sha1').update(bytes).digest('base64')}`,
      },
      body: bytes,
    });
    expect(patched.status).to.equal(204);
    const itemId = url.split('/').pop()!;
    // Four records of 64 KiB.
    expect((await stat(join(dir, itemId, 'chunks'))).size).to.equal(4 * 24);
  });

  it('flushes an HTTP part while it comes, a flush at a time, not once per chunk', async () => {
    const base = (await server.listen(0)).http;
    const bytes = new Uint8Array(randomBytes(1024 * 1024));
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const { datasync } = proto;
    let flushes = 0;
    // A slow disk: 20 ms a flush.
    proto.datasync = async function (this: unknown) {
      flushes++;
      await new Promise((resolve) => setTimeout(resolve, 20));
      return datasync.call(this);
    };
    try {
      const put = await fetch(`${base}/uploads/item-1`, {
        method: 'PUT',
        headers: {
          Authorization: `Bearer ${await token()}`,
          'Content-Range': `bytes 0-${bytes.length - 1}/${bytes.length}`,
        },
        body: bytes,
      });
      expect(put.status).to.equal(200);
      expect(put.headers.get('upload-ranges')).to.equal(`0-${bytes.length - 1}`);
    } finally {
      proto.datasync = datasync;
    }
    // The data file and the journal once per flush, a flush at a time while the body comes: chunks
    // written meanwhile go together. Not twice per 64 KiB chunk (32 flushes, 640 ms here).
    expect(flushes).to.be.below(16);
    // Sixteen chunks of 64 KiB, each with its CRC-32C: read back whole, every chunk checked.
    expect((await stat(join(dir, 'item-1', 'chunks'))).size).to.equal(16 * 24);
    expect((await readBack('item-1', bytes.length)).equals(bytes)).to.equal(true);
  });

  it('keeps the whole chunks of a body cut short, durably, and nothing past them', async () => {
    const size = 1024 * 1024;
    const bytes = randomBytes(size);
    const req = await openPut('item-2', size);
    await new Promise<void>((resolve) => {
      req.on('error', () => resolve());
      req.write(bytes.subarray(0, 300 * 1024), () => setTimeout(() => req.destroy(), 200));
    });
    const record = await storedTo('item-2', 4 * 64 * 1024);
    // 300 KiB came: four whole chunks of 64 KiB are kept, the 44 KiB after them are not.
    expect(record!.ranges).to.deep.equal([{ start: 0, end: 4 * 64 * 1024 }]);
    const kept = await readBack('item-2', 4 * 64 * 1024);
    expect(kept.equals(bytes.subarray(0, 4 * 64 * 1024))).to.equal(true);
  });

  it('makes the chunks of a body that pauses durable without waiting for the rest of it', async () => {
    const size = 1024 * 1024;
    const req = await openPut('item-3', size);
    try {
      // Three chunks of 64 KiB at once (the last two written while the first is flushed), then
      // nothing more for now.
      req.write(randomBytes(3 * 64 * 1024));
      const record = await storedTo('item-3', 3 * 64 * 1024);
      expect(record!.ranges).to.deep.equal([{ start: 0, end: 3 * 64 * 1024 }]);
    } finally {
      req.destroy();
    }
  });
});
