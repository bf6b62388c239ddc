// F12: resume after a page reload, against real servers. A "page" is an iframe with its own copy of
// the engine module; removing it mid-upload is the reload (its sockets close, its Web Locks go);
// the next iframe is the page loaded again, with a new engine on the same IndexedDB database.
import { expect } from '@open-wc/testing';
import {
  WsUploaderEngine,
  type ResumeError,
  type EngineEventDetails,
  type ItemStatus,
  type SocketFactory,
} from '../../src/index.js';
import type * as EngineApi from '../../src/engine/index.js';
import { DATA_HEADER_BYTES } from '../../src/protocol/dup2.js';
import { FRAME } from '../../src/protocol/constants.js';
import { IndexedDbResumeStore, type ResumeRecord } from '../../src/engine/resume-store.js';
import {
  randomFile,
  sha256Hex,
  startDeployment,
  startServers,
  stopServers,
  storedSha256,
  type TestDeployment,
} from '../helpers/servers.js';
import { until } from '../helpers/until.js';

type EngineModule = typeof EngineApi;
type PageWindow = Window & typeof globalThis & { engineModule?: EngineModule };

/** A page of the app: an iframe that loads the engine module by itself. */
interface Page {
  readonly frame: HTMLIFrameElement;
  readonly window: PageWindow;
  readonly module: EngineModule;
}

async function openPage(): Promise<Page> {
  const url = new URL('../../src/engine/index.ts', import.meta.url).href;
  const frame = document.createElement('iframe');
  frame.srcdoc = `<!doctype html><body><script type="module">window.engineModule = await import(${JSON.stringify(url)});</script></body>`;
  document.body.append(frame);
  const window = frame.contentWindow as PageWindow;
  await until(() => window.engineModule !== undefined, 20_000);
  return { frame, window, module: window.engineModule! };
}

/** The next event of a type (that passes `test`). */
function next<K extends keyof EngineEventDetails>(
  engine: Pick<WsUploaderEngine, 'on'>,
  type: K,
  test: (detail: EngineEventDetails[K]) => boolean = () => true,
): Promise<EngineEventDetails[K]> {
  return new Promise((resolve) => {
    const off = engine.on(type, (e) => {
      if (!test(e.detail)) return;
      off();
      resolve(e.detail);
    });
  });
}

/**
 * WebSockets of a page that count the payload bytes of the dup/2 `DATA` frames it sends: what
 * went to the upload servers.
 */
function countingSockets(win: PageWindow): { factory: SocketFactory; sent: () => number } {
  let sent = 0;
  const factory: SocketFactory = (url, protocols) => {
    const ws = new win.WebSocket(url, protocols);
    const send = ws.send.bind(ws);
    ws.send = (data) => {
      if (typeof data !== 'string') {
        const view = ArrayBuffer.isView(data)
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
          : new Uint8Array(data as ArrayBufferLike);
        if (view[0] === FRAME.DATA) sent += view.byteLength - DATA_HEADER_BYTES;
      }
      send(data);
    };
    return ws;
  };
  return { factory, sent: () => sent };
}

/** Writes bytes to an origin-private file; its handle needs no permission prompt. */
async function opfsFile(name: string, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
  const root = await navigator.storage.getDirectory();
  const handle = await root.getFileHandle(name, { create: true });
  const writable = await handle.createWritable();
  await writable.write(bytes);
  await writable.close();
}

function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let o = 0; o < size; o += 65536)
    crypto.getRandomValues(bytes.subarray(o, Math.min(size, o + 65536)));
  return bytes;
}

const stores = new Map<string, IndexedDbResumeStore>();

/** The records in a database, as the pages' engines wrote them. */
function records(dbName: string): Promise<ResumeRecord[]> {
  let store = stores.get(dbName);
  if (!store) stores.set(dbName, (store = new IndexedDbResumeStore(dbName)));
  return store.list();
}

function deleteDb(name: string): Promise<void> {
  return new Promise((resolve) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = req.onerror = req.onblocked = () => resolve();
  });
}

const MiB = 1024 * 1024;
const CHUNK = 256 * 1024;

describe('resume after a page reload (F12)', () => {
  let d: TestDeployment | undefined;
  const engines: Pick<WsUploaderEngine, 'stop'>[] = [];
  const frames: HTMLIFrameElement[] = [];
  const opfs: string[] = [];
  const dbs: string[] = [];
  let dbName = '';

  beforeEach(() => {
    dbName = `resume-it-${crypto.randomUUID()}`;
    dbs.push(dbName);
  });

  afterEach(async () => {
    for (const e of engines.splice(0)) {
      try {
        e.stop();
      } catch {
        // An engine of a page removed already.
      }
    }
    for (const f of frames.splice(0)) f.remove();
    await stopServers(d);
    d = undefined;
    const root = await navigator.storage.getDirectory();
    for (const name of opfs.splice(0)) await root.removeEntry(name).catch(() => undefined);
    for (const name of dbs.splice(0)) await deleteDb(name);
  });

  /** A page with an engine on the test's database, counting what it sends. */
  async function pageWithEngine(
    options: Partial<EngineApi.EngineOptions> = {},
  ): Promise<Page & { engine: WsUploaderEngine; sent: () => number }> {
    const page = await openPage();
    frames.push(page.frame);
    const { factory, sent } = countingSockets(page.window);
    const engine = new page.module.WsUploaderEngine({
      controlUrl: d!.controlUrl,
      authToken: d!.token,
      chunkSize: CHUNK,
      createSocket: factory,
      resume: { dbName },
      ...options,
    });
    engines.push(engine);
    return { ...page, engine, sent };
  }

  /**
   * Uploads `file` (a File or a function of the page that gives a handle) in a page and reloads
   * that page once the servers acknowledged `fraction` of it and its record is written.
   * @returns the item id and how many bytes the upload server had acknowledged by then
   */
  async function uploadAndReload(
    add: (engine: WsUploaderEngine, page: Page) => Promise<ItemStatus>,
    size: number,
    fraction: number,
  ): Promise<{ itemId: string; storedBefore: number }> {
    const a = await pageWithEngine();
    await a.engine.start();
    let itemId = '';
    let recorded = false;
    let storedBefore = -1;
    let completed = false;
    a.engine.on('complete', () => (completed = true));
    a.engine.on('progress', (e) => {
      const { item } = e.detail;
      if (storedBefore >= 0 || item.itemId !== itemId || !recorded) return;
      if (item.bytesStored < fraction * size) return;
      // The reload: the page goes at once, in the middle of whatever it was doing.
      storedBefore = item.bytesStored;
      a.frame.remove();
    });
    itemId = (await add(a.engine, a)).itemId;
    // The record is written while the upload starts; the test reloads only once it is there.
    await until(async () => (recorded = (await records(dbName)).some((r) => r.itemId === itemId)));
    await until(() => storedBefore >= 0, 30_000);
    expect(completed, 'the reload came before the upload completed').to.equal(false);
    return { itemId, storedBefore };
  }

  for (const [label, fraction] of [
    ['10 %', 0.1],
    ['50 %', 0.5],
    ['99 % (every byte stored, not verified yet)', 0.99],
  ] as const) {
    it(`takes up an upload from an origin-private file after a reload at ${label}, without asking, and sends no acknowledged byte again`, async () => {
      d = await startServers(1);
      // Large enough that at 50 % the rest is not all in flight (the server's window is 8 MiB).
      const size = 40 * MiB + 12_345;
      const bytes = randomBytes(size);
      const sha256 = await sha256Hex(bytes);
      const name = `f12-${crypto.randomUUID()}.bin`;
      opfs.push(name);
      await opfsFile(name, bytes);

      const { itemId, storedBefore } = await uploadAndReload(
        async (engine, page) => {
          const root = await page.window.navigator.storage.getDirectory();
          const [item] = await engine.addFileHandles([await root.getFileHandle(name)]);
          return item!;
        },
        size,
        fraction,
      );
      expect(storedBefore).to.be.at.least(fraction * size);
      const before = await storedSha256(d, 'up-1', itemId);
      expect(before).to.deep.include({ complete: false });

      // The page loaded again: a new engine finds the record and the handle, and goes on.
      const b = await pageWithEngine();
      const errors: unknown[] = [];
      b.engine.on('error', (e) => errors.push(e.detail.error));
      const restored = next(b.engine, 'restore');
      const complete = next(b.engine, 'complete', (c) => c.itemId === itemId);
      await b.engine.start();
      const { items } = await restored;
      expect(items.map((i) => [i.itemId, i.name, i.size])).to.deep.equal([[itemId, name, size]]);
      expect(await b.engine.unfinished()).to.deep.equal([]);
      const done = await complete;
      expect(done.sha256).to.equal(sha256);
      expect(await storedSha256(d, 'up-1', itemId)).to.deep.equal({ complete: true, size, sha256 });
      // Only what the server did not hold went out again.
      expect(b.sent()).to.be.at.most(size - storedBefore);
      if (fraction <= 0.5) expect(b.sent()).to.be.above(0);
      // Complete: no record is left.
      await until(async () => (await records(dbName)).length === 0);
      expect(errors).to.deep.equal([]);
    });
  }

  it('asks for the file again when it is gone, checks it is the same, and goes on', async () => {
    d = await startServers(1);
    const size = 6 * MiB + 1;
    const file = randomFile(size, 'picked.bin');
    const sha256 = await sha256Hex(await file.arrayBuffer());
    const { itemId, storedBefore } = await uploadAndReload(
      async (engine) => engine.addFiles([file])[0]!,
      size,
      0.3,
    );

    const b = await pageWithEngine();
    let restored = false;
    b.engine.on('restore', () => (restored = true));
    await b.engine.start();
    // A picked File does not outlive its page: the item waits for the user.
    const unfinished = await b.engine.unfinished();
    expect(restored).to.equal(false);
    expect(unfinished).to.have.length(1);
    expect(unfinished[0]).to.deep.include({
      itemId,
      name: 'picked.bin',
      size,
      mime: 'application/octet-stream',
      kind: 'file',
      lastModified: file.lastModified,
    });
    expect(unfinished[0]).not.to.have.property('handle');
    expect(b.engine.items).to.deep.equal([]);

    // The user picks the same file again.
    const complete = next(b.engine, 'complete', (c) => c.itemId === itemId);
    const item = await b.engine.resumeFile(itemId, file);
    expect(item).to.deep.include({ itemId, name: 'picked.bin', size });
    expect((await complete).sha256).to.equal(sha256);
    expect(await storedSha256(d, 'up-1', itemId)).to.deep.equal({ complete: true, size, sha256 });
    expect(b.sent()).to.be.at.most(size - storedBefore);
    await until(async () => (await records(dbName)).length === 0);
    expect(await b.engine.unfinished()).to.deep.equal([]);
  });

  it('refuses another file of the same name, size, type and date with file-mismatch, sends nothing and keeps the record', async () => {
    d = await startServers(1);
    const size = 6 * MiB;
    const file = randomFile(size, 'same-name.bin');
    const { itemId } = await uploadAndReload(
      async (engine) => engine.addFiles([file])[0]!,
      size,
      0.2,
    );

    const b = await pageWithEngine();
    const publishes: unknown[] = [];
    b.engine.on('publish', (e) => publishes.push(e.detail.items));
    await b.engine.start();
    // Other bytes, the same metadata: only the hashes of the ends tell them apart.
    const other = new File([randomBytes(size)], 'same-name.bin', {
      type: file.type,
      lastModified: file.lastModified,
    });
    let error: unknown;
    try {
      await b.engine.resumeFile(itemId, other);
    } catch (e) {
      error = e;
    }
    // Of the page's own module (another realm than this one's ResumeError).
    expect(error).to.be.instanceOf(b.window.Error);
    expect(error).to.include({ name: 'ResumeError', code: 'file-mismatch', itemId });
    expect((error as ResumeError).mismatch).to.deep.equal(['head', 'tail']);
    expect(b.engine.items).to.deep.equal([]);
    expect(b.sent()).to.equal(0);
    expect(publishes).to.deep.equal([]);
    expect((await b.engine.unfinished()).map((u) => u.itemId)).to.deep.equal([itemId]);

    // Metadata that differs is told too, without reading the file.
    const renamed = new File([file], 'other-name.bin', { lastModified: 5 });
    const refused = await b.engine.resumeFile(itemId, renamed).catch((e: ResumeError) => e);
    expect(refused).to.include({ code: 'file-mismatch' });
    expect((refused as ResumeError).mismatch).to.deep.equal(['name', 'mime', 'lastModified']);

    // Forgotten: no longer listed, and resumeFile no longer finds it.
    await b.engine.forget(itemId);
    expect(await b.engine.unfinished()).to.deep.equal([]);
    const gone = await b.engine.resumeFile(itemId, file).catch((e: ResumeError) => e);
    expect(gone).to.include({ code: 'resume-not-found', itemId });
  });

  it('leaves no record of items stored or cancelled, writes none for inline items, and none with resume: false', async () => {
    // The control server takes items up to 64 KiB inline.
    d = await startDeployment({ uploadServers: 1 });
    const idb = new IndexedDbResumeStore(dbName);
    const written: string[] = [];
    const store = {
      put: (r: ResumeRecord) => (written.push(r.itemId), idb.put(r)),
      get: (id: string) => idb.get(id),
      list: () => idb.list(),
      delete: (id: string) => idb.delete(id),
    };
    const a = await pageWithEngine({ resume: { store } });
    await a.engine.start();
    const completes: string[] = [];
    a.engine.on('complete', (e) => completes.push(e.detail.itemId));
    const [tiny, stored, cancelled] = a.engine.addFiles([
      randomFile(1000, 'tiny.bin'),
      randomFile(300_000, 'stored.bin'),
      randomFile(3 * MiB, 'cancelled.bin'),
    ]);
    await until(async () => (await records(dbName)).some((r) => r.itemId === cancelled!.itemId));
    a.engine.cancel([cancelled!.itemId]);
    await until(() => completes.length === 2);
    expect(completes).to.have.members([tiny!.itemId, stored!.itemId]);
    await until(async () => (await records(dbName)).length === 0);
    expect(written).to.have.members([stored!.itemId, cancelled!.itemId]);

    // Not remembered at all: off.
    const off = await pageWithEngine({ resume: false });
    await off.engine.start();
    const done = next(off.engine, 'complete');
    off.engine.addFiles([randomFile(200_000)]);
    await done;
    expect(await off.engine.unfinished()).to.deep.equal([]);
    expect(await records(dbName)).to.deep.equal([]);
  });

  it('keeps uploading when the records cannot be written, and says so', async () => {
    d = await startServers(1);
    const failing = {
      put: () => Promise.reject(new DOMException('the disk is full', 'QuotaExceededError')),
      get: () => Promise.resolve(undefined),
      list: () => Promise.reject(new DOMException('broken', 'UnknownError')),
      delete: () => Promise.resolve(),
    };
    const engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      resume: { store: failing },
    });
    engines.push(engine);
    const errors: unknown[] = [];
    engine.on('error', (e) => errors.push(e.detail.error));
    await engine.start();
    const file = randomFile(500_000);
    const complete = next(engine, 'complete');
    engine.addFiles([file]);
    expect((await complete).sha256).to.equal(await sha256Hex(await file.arrayBuffer()));
    // list() failed on start (the restore pass) and put() on publish: both said, nothing stopped.
    await until(() => errors.length >= 2);
    for (const e of errors) expect(e).to.include({ code: 'resume-storage-failed' });
    expect(engine.items[0]!.state).to.equal('complete');
    const listed = await engine.unfinished().catch((e: ResumeError) => e);
    expect(listed).to.include({ code: 'resume-storage-failed' });
  });

  it('lists a remembered handle whose permission is not granted, for the app to ask', async () => {
    d = await startServers(1);
    const file = new File([randomBytes(100_000)], 'needs-permission.bin', { lastModified: 42 });
    const asked: string[] = [];
    // A handle as the File System Access API gives one after a browser restart: permission
    // must be asked for again in a user gesture.
    const handle = {
      kind: 'file',
      name: file.name,
      getFile: () => Promise.resolve(file),
      queryPermission: () => {
        asked.push('query');
        return Promise.resolve('prompt');
      },
    } as unknown as FileSystemFileHandle;
    const ends = await import('../../src/engine/resume-keeper.js').then((m) => m.fileEnds(file));
    const record: ResumeRecord = {
      itemId: 'remembered-item-0000001',
      name: file.name,
      size: file.size,
      mime: '',
      lastModified: 42,
      kind: 'file',
      ...ends,
      createdAt: Date.now(),
      handle,
    };
    const kept = new Map([[record.itemId, record]]);
    const store = {
      put: async (r: ResumeRecord) => void kept.set(r.itemId, r),
      get: async (id: string) => kept.get(id),
      list: async () => [...kept.values()],
      delete: async (id: string) => void kept.delete(id),
    };
    const engine = new WsUploaderEngine({
      controlUrl: d.controlUrl,
      authToken: d.token,
      resume: { store },
    });
    engines.push(engine);
    await engine.start();
    const [waiting] = await engine.unfinished();
    expect(asked).to.deep.equal(['query']);
    expect(engine.items).to.deep.equal([]);
    expect(waiting).to.deep.include({ itemId: record.itemId, handle });

    // The app asked and the user said yes: the handle goes to resumeFile.
    const complete = next(engine, 'complete');
    await engine.resumeFile(record.itemId, handle);
    expect((await complete).itemId).to.equal(record.itemId);
    await until(() => kept.size === 0);
  });
});
