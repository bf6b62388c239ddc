// OpfsItemStore writes parts in its Worker through sync access handles (buffers handed over, the
// parts hashed there as they are stored), or from the page's thread where the Worker is turned off
// or cannot start; either way the files in the origin private file system hold the item's bytes.
// Real OPFS, the real store Worker.
import { expect } from '@open-wc/testing';
import { OpfsItemStore } from '../../src/download/item-store.js';
import type { ItemMeta } from '../../src/protocol/control.js';
import { toHex } from '../../src/protocol/hex.js';
import { opfsItemDir, opfsItemNames } from '../helpers/opfs.js';

const MiB = 1024 * 1024;

function item(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

async function sha256(bytes: BufferSource): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}

function meta(itemId: string, size: number): ItemMeta {
  return { itemId, name: `${itemId}.bin`, size, mime: 'application/octet-stream' } as ItemMeta;
}

/** The names in an item's folder, and the SHA-256 of its parts' files read in order straight from OPFS. */
async function onDisk(itemId: string): Promise<{ names: string[]; sha256: string }> {
  const dir = await opfsItemDir(itemId);
  const names = await opfsItemNames(itemId);
  const parts = names
    .filter((n) => n.endsWith('.part'))
    .sort((a, b) => Number(a.split('-')[0]) - Number(b.split('-')[0]));
  const files = await Promise.all(parts.map(async (n) => (await dir.getFileHandle(n)).getFile()));
  return { names, sha256: await sha256(await new Blob(files).arrayBuffer()) };
}

/** Stores `source` in 4 MiB parts, last part first, through the downloader's writer or `put()`. */
async function storeParts(
  store: OpfsItemStore,
  itemId: string,
  source: Uint8Array<ArrayBuffer>,
): Promise<{ digest?: string; handedOver: boolean }> {
  await store.delete(itemId);
  await store.begin(meta(itemId, source.length));
  const starts: number[] = [];
  for (let at = 0; at < source.length; at += 4 * MiB) starts.unshift(at);
  const writer = await store.writer(itemId, source.length);
  const parts = starts.map((at) => source.slice(at, Math.min(source.length, at + 4 * MiB)));
  await Promise.all(
    starts.map((at, i) => (writer ? writer.put(at, parts[i]!) : store.put(itemId, at, parts[i]!))),
  );
  const digest = writer && toHex(await writer.digest());
  writer?.close();
  return {
    ...(digest ? { digest } : {}),
    handedOver: parts.every((p) => p.byteLength === 0),
  };
}

describe('OpfsItemStore', () => {
  it('writes parts in its Worker through sync access handles, the buffers handed over, and hashes them there', async () => {
    const store = new OpfsItemStore();
    expect(await store.writeThread()).to.equal('worker');
    const source = item(13 * MiB + 5);
    const expected = await sha256(source);
    const { digest, handedOver } = await storeParts(store, 'store-worker-item', source);
    // Transferred to the Worker, not copied; hashed there, out of order, to the item's digest.
    expect(handedOver).to.equal(true);
    expect(digest).to.equal(expected);
    const disk = await onDisk('store-worker-item');
    expect(disk.sha256).to.equal(expected);
    // Only the parts and the metadata: no temporary file left behind.
    expect(disk.names.sort()).to.deep.equal(
      [
        '0-4194304.part',
        '12582912-13631493.part',
        '4194304-8388608.part',
        '8388608-12582912.part',
        'meta.json',
      ].sort(),
    );
    expect((await store.get('store-worker-item'))!.ranges).to.deep.equal([
      { start: 0, end: source.length },
    ]);
    expect(await sha256(await (await store.blob('store-worker-item')).arrayBuffer())).to.equal(
      expected,
    );
    await store.delete('store-worker-item');
  });

  it('put() sends the Worker a copy: the caller keeps its bytes', async () => {
    const store = new OpfsItemStore();
    await store.delete('store-put-copy');
    await store.begin(meta('store-put-copy', 3 * MiB));
    const bytes = item(3 * MiB);
    const view = bytes.subarray(MiB, 2 * MiB);
    await store.put('store-put-copy', MiB, view);
    expect(view.byteLength).to.equal(MiB);
    const stored = await store.slice('store-put-copy', MiB, 2 * MiB);
    expect(await sha256(await stored!.arrayBuffer())).to.equal(await sha256(view));
    // A part of an item the store does not have fails as from the page.
    let error: unknown;
    await store.put('store-no-such-item', 0, bytes).catch((e: unknown) => (error = e));
    expect((error as DOMException).name).to.equal('NotFoundError');
    await store.delete('store-put-copy');
  });

  it('writes from the page with worker false, and where the Worker cannot start: the same bytes', async () => {
    const source = item(9 * MiB + 77);
    const expected = await sha256(source);
    for (const store of [
      new OpfsItemStore({ worker: false }),
      new OpfsItemStore({ worker: '/no-such-dir/store-worker.js' }),
    ]) {
      expect(await store.writeThread()).to.equal('page');
      expect(await store.writer('store-page-item', source.length)).to.equal(undefined);
      const { handedOver } = await storeParts(store, 'store-page-item', source);
      expect(handedOver).to.equal(false);
      expect((await onDisk('store-page-item')).sha256).to.equal(expected);
      await store.delete('store-page-item');
    }
  });

  it('reads back in its Worker the bytes it did not see: parts stored before, from another store', async () => {
    const source = item(10 * MiB);
    const before = new OpfsItemStore({ worker: false });
    await before.delete('store-resumed');
    await before.begin(meta('store-resumed', source.length));
    await before.put('store-resumed', 0, source.subarray(0, 6 * MiB));
    const store = new OpfsItemStore();
    const writer = (await store.writer('store-resumed', source.length))!;
    expect(writer.thread).to.equal('worker');
    await writer.put(6 * MiB, source.slice(6 * MiB));
    expect(toHex(await writer.digest())).to.equal(await sha256(source));
    writer.close();
    await store.delete('store-resumed');
  });

  it('does not count a part file cut short (the machine stopped before it reached the disk), and the part stored again replaces it', async () => {
    const store = new OpfsItemStore();
    await store.delete('store-torn');
    await store.begin(meta('store-torn', 3 * MiB));
    await store.put('store-torn', 0, item(MiB));
    await store.put('store-torn', 2 * MiB, item(MiB));
    // The middle part's file, named as whole but holding only part of its bytes.
    const dir = await (
      await (await navigator.storage.getDirectory()).getDirectoryHandle('ws-uploader-items')
    ).getDirectoryHandle('store-torn');
    const torn = await (
      await dir.getFileHandle(`${MiB}-${2 * MiB}.part`, { create: true })
    ).createWritable();
    await torn.write(item(1000));
    await torn.close();
    expect((await store.get('store-torn'))?.ranges).to.deep.equal([
      { start: 0, end: MiB },
      { start: 2 * MiB, end: 3 * MiB },
    ]);
    // Written a moment ago, it may be another context's: it stays until it is old, or replaced.
    const middle = item(MiB);
    await store.put('store-torn', MiB, middle.slice());
    expect((await store.get('store-torn'))?.ranges).to.deep.equal([{ start: 0, end: 3 * MiB }]);
    const stored = await (await store.slice('store-torn', MiB, 2 * MiB))!.arrayBuffer();
    expect(new Uint8Array(stored)).to.deep.equal(middle);
    await store.delete('store-torn');
  });

  it('waits for a part another context is writing under the same name', async () => {
    const store = new OpfsItemStore();
    await store.delete('store-busy');
    await store.begin(meta('store-busy', 2 * MiB));
    const dir = await (
      await (await navigator.storage.getDirectory()).getDirectoryHandle('ws-uploader-items')
    ).getDirectoryHandle('store-busy');
    // The page (as the service worker would) writes part 0..1 MiB and keeps it open a moment.
    const source = item(2 * MiB);
    const open = await (
      await dir.getFileHandle(`0-${MiB}.part`, { create: true })
    ).createWritable();
    await open.write(source.subarray(0, MiB));
    const writer = (await store.writer('store-busy', source.length))!;
    let settled = false;
    const stored = writer.put(0, source.slice(0, MiB)).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).to.equal(false);
    await open.close();
    await stored;
    await writer.put(MiB, source.slice(MiB));
    expect(toHex(await writer.digest())).to.equal(await sha256(source));
    writer.close();
    expect(await sha256(await (await store.blob('store-busy')).arrayBuffer())).to.equal(
      await sha256(source),
    );
    expect((await onDisk('store-busy')).names.sort()).to.deep.equal([
      `0-${MiB}.part`,
      `${MiB}-${2 * MiB}.part`,
      'meta.json',
    ]);
    await store.delete('store-busy');
  });

  it('lets a reader in another context see each part whole, never half written', async () => {
    const store = new OpfsItemStore();
    await store.delete('store-read-while');
    const source = item(24 * MiB);
    await store.begin(meta('store-read-while', source.length));
    const dir = await (
      await (await navigator.storage.getDirectory()).getDirectoryHandle('ws-uploader-items')
    ).getDirectoryHandle('store-read-while');
    const writer = (await store.writer('store-read-while', source.length))!;
    let writing = true;
    const seen = new Set<string>();
    // A reader that lists the folder and reads each part it finds, as the service worker does.
    const reading = (async () => {
      while (writing) {
        for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) {
          const m = /^(\d+)-(\d+)\.part$/.exec(name);
          if (!m) continue;
          const file = await (await dir.getFileHandle(name)).getFile();
          const start = Number(m[1]);
          const end = Number(m[2]);
          expect(file.size, name).to.equal(end - start);
          expect(await sha256(await file.arrayBuffer()), name).to.equal(
            await sha256(source.subarray(start, end)),
          );
          seen.add(name);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    for (let at = 0; at < source.length; at += 2 * MiB)
      await writer.put(at, source.slice(at, at + 2 * MiB));
    writing = false;
    await reading;
    expect(seen.size).to.be.at.least(2);
    expect(toHex(await writer.digest())).to.equal(await sha256(source));
    writer.close();
    await store.delete('store-read-while');
  });

  it('writes from the page where the Worker says it has no sync access handles, and fails the writes a Worker that fails had taken', async () => {
    const script = (code: string): string =>
      URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
    // A browser whose Workers have no sync access handles: the Worker says so when it loads.
    const none = new OpfsItemStore({
      worker: script("postMessage({ type: 'ready', ok: false });"),
    });
    expect(await none.writeThread()).to.equal('page');
    await none.delete('store-no-sync');
    await none.begin(meta('store-no-sync', 10));
    await none.put('store-no-sync', 0, new Uint8Array(10).fill(7));
    expect((await none.get('store-no-sync'))!.ranges).to.deep.equal([{ start: 0, end: 10 }]);
    await none.delete('store-no-sync');

    // A Worker that fails on what it is asked: the write fails (it does not hang), and the next
    // one starts a Worker again.
    const failing = new OpfsItemStore({
      worker: script(
        "postMessage({ type: 'ready', ok: true }); onmessage = () => { throw new Error('boom'); };",
      ),
    });
    expect(await failing.writeThread()).to.equal('worker');
    await failing.delete('store-failing');
    await failing.begin(meta('store-failing', 10));
    for (let i = 0; i < 2; i++) {
      let error: unknown;
      await failing.put('store-failing', 0, new Uint8Array(10)).catch((e: unknown) => (error = e));
      expect(String(error)).to.match(/boom/);
    }
    expect(await failing.writeThread()).to.equal('worker');
    await failing.delete('store-failing');
  });
});
