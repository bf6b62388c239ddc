// The resume records' store, in the browser: IndexedDB, an origin-private file's handle kept in it,
// and the engine's `resume` option.
import { expect } from '@open-wc/testing';
import { ConfigError, WsUploaderEngine } from '../../src/index.js';
import {
  IndexedDbResumeStore,
  resolveResume,
  type ResumeRecord,
  type ResumeStore,
} from '../../src/engine/resume-store.js';

/** A database name no other test uses. */
function freshDbName(): string {
  return `resume-store-test-${crypto.randomUUID()}`;
}

function deleteDb(name: string): Promise<void> {
  return new Promise((resolve) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = req.onerror = req.onblocked = () => resolve();
  });
}

function record(itemId: string, extra: Partial<ResumeRecord> = {}): ResumeRecord {
  return {
    itemId,
    name: 'a.bin',
    size: 10,
    mime: 'application/octet-stream',
    lastModified: 1_700_000_000_000,
    kind: 'file',
    headSha256: 'aa',
    tailSha256: 'bb',
    createdAt: Date.now(),
    ...extra,
  };
}

describe('resume records', () => {
  const dbs: string[] = [];
  afterEach(async () => {
    for (const name of dbs.splice(0)) await deleteDb(name);
  });

  describe('IndexedDbResumeStore', () => {
    it('puts, gets, lists, replaces and deletes records by item id', async () => {
      const name = freshDbName();
      dbs.push(name);
      const store = new IndexedDbResumeStore(name);
      expect(await store.list()).to.deep.equal([]);
      expect(await store.get('nope')).to.equal(undefined);
      await store.put(record('item-1'));
      await store.put(record('item-2', { name: 'b.bin' }));
      expect(await store.get('item-2')).to.deep.include({ itemId: 'item-2', name: 'b.bin' });
      await store.put(record('item-2', { name: 'c.bin' }));
      expect((await store.list()).map((r) => [r.itemId, r.name])).to.deep.equal([
        ['item-1', 'a.bin'],
        ['item-2', 'c.bin'],
      ]);
      await store.delete('item-1');
      await store.delete('item-1'); // Nothing there: no error.
      expect((await store.list()).map((r) => r.itemId)).to.deep.equal(['item-2']);
      // Another store on the same database sees the same records (another page, say).
      expect((await new IndexedDbResumeStore(name).list()).map((r) => r.itemId)).to.deep.equal([
        'item-2',
      ]);
    });

    it('keeps databases apart by name', async () => {
      const [a, b] = [freshDbName(), freshDbName()];
      dbs.push(a, b);
      await new IndexedDbResumeStore(a).put(record('only-in-a'));
      expect(await new IndexedDbResumeStore(b).list()).to.deep.equal([]);
    });

    it('keeps an origin-private file handle, which reads the file again', async () => {
      const name = freshDbName();
      dbs.push(name);
      const root = await navigator.storage.getDirectory();
      const handle = await root.getFileHandle(`${name}.bin`, { create: true });
      const writable = await handle.createWritable();
      await writable.write('some bytes');
      await writable.close();
      try {
        await new IndexedDbResumeStore(name).put(record('with-handle', { handle }));
        const back = await new IndexedDbResumeStore(name).get('with-handle');
        expect(back!.handle).to.not.equal(handle); // A copy, read back from the database.
        expect(await back!.handle!.isSameEntry(handle)).to.equal(true);
        expect(await (await back!.handle!.getFile()).text()).to.equal('some bytes');
      } finally {
        await root.removeEntry(`${name}.bin`);
      }
    });

    it('skips values that are not records (written by another version, say)', async () => {
      const name = freshDbName();
      dbs.push(name);
      const store = new IndexedDbResumeStore(name);
      await store.put(record('good'));
      await store.put({ itemId: 'bad', name: 5 } as unknown as ResumeRecord);
      expect((await store.list()).map((r) => r.itemId)).to.deep.equal(['good']);
      expect(await store.get('bad')).to.equal(undefined);
    });

    it('opens again after another page upgrades the database', async () => {
      const name = freshDbName();
      dbs.push(name);
      const store = new IndexedDbResumeStore(name);
      await store.put(record('before'));
      // A later version of the library, in another tab, takes the database to version 2.
      await new Promise<void>((resolve, reject) => {
        const req = indexedDB.open(name, 2);
        req.onsuccess = () => {
          req.result.close();
          resolve();
        };
        req.onerror = () => reject(req.error);
      });
      // This store's connection was closed for the upgrade; it opens the database again.
      await store.put(record('after'));
      expect((await store.list()).map((r) => r.itemId)).to.deep.equal(['after', 'before']);
    });
  });

  describe('the resume option', () => {
    it('is on by default where IndexedDB exists, and can be turned off or given a store', () => {
      expect(resolveResume(undefined))
        .to.have.property('store')
        .that.is.instanceOf(IndexedDbResumeStore);
      expect(resolveResume(true)).to.have.property('store');
      expect(resolveResume(false)).to.equal(false);
      const store: ResumeStore = {
        put: async () => undefined,
        get: async () => undefined,
        list: async () => [],
        delete: async () => undefined,
      };
      expect(resolveResume({ store })).to.deep.equal({ store });
    });

    it('throws ConfigError for an invalid value, at construction', () => {
      const base = { controlUrl: 'ws://127.0.0.1:1/control', authToken: 't' };
      for (const resume of [{ dbName: '' }, { store: {} }, { store: null }, 'yes']) {
        expect(
          () => new WsUploaderEngine({ ...base, resume: resume as never }),
          JSON.stringify(resume),
        ).to.throw(ConfigError, /resume/);
      }
    });
  });
});
