// The engine's side of resume records, in the browser: a file's fingerprint and the checks of a
// file given back, the Web Locks that say which page holds an item, the order of each item's
// writes and deletes, and which remembered items a page takes up by itself.
import { expect } from '@open-wc/testing';
import type { ResumeError } from '../../src/index.js';
import {
  RESUME_CHECK_BYTES,
  ResumeKeeper,
  checkFile,
  compareFile,
  fileEnds,
  lockItem,
  lockedItems,
} from '../../src/engine/resume-keeper.js';
import type { ResumeRecord, ResumeStore } from '../../src/engine/resume-store.js';
import { randomFile, sha256Hex } from '../helpers/servers.js';
import { until } from '../helpers/until.js';

/** A store in memory that logs its calls; `fail` makes the named methods reject. */
function memoryStore(fail: readonly (keyof ResumeStore)[] = []) {
  const records = new Map<string, ResumeRecord>();
  const calls: string[] = [];
  const step = async (name: keyof ResumeStore, id = ''): Promise<void> => {
    calls.push(`${name} ${id}`.trim());
    // A slow disk: later calls must still wait for earlier ones of the same item.
    await new Promise((r) => setTimeout(r, name === 'put' ? 30 : 0));
    if (fail.includes(name)) throw new DOMException('no room', 'QuotaExceededError');
  };
  const store: ResumeStore = {
    put: async (r) => {
      await step('put', r.itemId);
      records.set(r.itemId, r);
    },
    get: async (id) => (await step('get', id), records.get(id)),
    list: async () => (await step('list'), [...records.values()]),
    delete: async (id) => {
      await step('delete', id);
      records.delete(id);
    },
  };
  return { store, records, calls };
}

/** A file handle as the File System Access API gives one, with a given read permission. */
function fakeHandle(file: File, permission: PermissionState | undefined): FileSystemFileHandle {
  return {
    kind: 'file',
    name: file.name,
    getFile: () => Promise.resolve(file),
    ...(permission === undefined ? {} : { queryPermission: () => Promise.resolve(permission) }),
  } as unknown as FileSystemFileHandle;
}

async function recordOf(itemId: string, file: File, handle?: FileSystemFileHandle) {
  return {
    itemId,
    name: file.name,
    size: file.size,
    mime: file.type,
    lastModified: file.lastModified,
    kind: 'file',
    ...(await fileEnds(file)),
    createdAt: Date.now(),
    ...(handle ? { handle } : {}),
  } satisfies ResumeRecord;
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

describe('ResumeKeeper and the file checks', () => {
  describe('file checks', () => {
    it("hashes a file's first and last 64 KiB, or all of a short one", async () => {
      const big = randomFile(3 * RESUME_CHECK_BYTES + 17);
      const bytes = new Uint8Array(await big.arrayBuffer());
      expect(await fileEnds(big)).to.deep.equal({
        headSha256: await sha256Hex(bytes.subarray(0, RESUME_CHECK_BYTES)),
        tailSha256: await sha256Hex(bytes.subarray(bytes.length - RESUME_CHECK_BYTES)),
      });
      const small = randomFile(1000);
      const all = await sha256Hex(await small.arrayBuffer());
      expect(await fileEnds(small)).to.deep.equal({ headSha256: all, tailSha256: all });
    });

    it('tells what differs between a record and a file', async () => {
      const size = 2 * RESUME_CHECK_BYTES + 1000;
      const bytes = new Uint8Array(await randomFile(size).arrayBuffer());
      const file = new File([bytes], 'clip.mp4', { type: 'video/mp4', lastModified: 1234 });
      const same = record('x', {
        name: 'clip.mp4',
        size,
        mime: 'video/mp4',
        lastModified: 1234,
        ...(await fileEnds(file)),
      });
      expect(await compareFile(same, file)).to.deep.equal([]);
      // The same metadata, other bytes at the start, in the middle, at the end.
      const other = (at: number): File => {
        const copy = bytes.slice();
        copy[at]! ^= 0xff;
        return new File([copy], 'clip.mp4', { type: 'video/mp4', lastModified: 1234 });
      };
      expect(await compareFile(same, other(10))).to.deep.equal(['head']);
      expect(await compareFile(same, other(size - 10))).to.deep.equal(['tail']);
      // The middle is not checked: only the ends are.
      expect(await compareFile(same, other(size >> 1))).to.deep.equal([]);
      const renamed = new File([bytes], 'x.mp4', { type: 'video/webm', lastModified: 99 });
      expect(await compareFile(same, renamed)).to.deep.equal(['name', 'mime', 'lastModified']);
      expect(await compareFile(same, new File([bytes.subarray(1)], 'clip.mp4'))).to.include('size');
    });
  });

  describe('item locks', () => {
    it('lets one holder take an item at a time, and lists items held', async () => {
      const id = `lock-${crypto.randomUUID()}`;
      const release = await lockItem(id);
      expect(release).to.be.a('function');
      expect(await lockItem(id)).to.equal(undefined);
      expect((await lockedItems()).has(id)).to.equal(true);
      release!();
      // Let go of asynchronously (the lock manager is another process in Chromium).
      let again: (() => void) | undefined;
      await until(async () => (again = await lockItem(id)) !== undefined);
      again!();
    });
  });

  describe('ResumeKeeper', () => {
    const releases: (() => void)[] = [];
    afterEach(() => {
      for (const r of releases.splice(0)) r();
    });

    it("writes and drops each item's record in order: a drop never overtakes the write before it", async () => {
      const { store, records, calls } = memoryStore();
      const failures: unknown[] = [];
      const keeper = new ResumeKeeper(store, (e) => failures.push(e));
      const id = `order-${crypto.randomUUID()}`;
      const file = randomFile(200_000, 'a.bin');
      const { itemId, name, size, mime, lastModified, kind, createdAt } = await recordOf(id, file);
      keeper.remember({ itemId, name, size, mime, lastModified, kind, createdAt }, file);
      keeper.drop(id); // Stored at once, say: the put is still hashing and writing.
      await until(() => calls.includes(`delete ${id}`));
      expect(calls).to.deep.equal([`put ${id}`, `delete ${id}`]);
      expect(records.size).to.equal(0);
      expect(failures).to.deep.equal([]);
      keeper.unlock(id);
    });

    it('reports background failures, and rejects those it is asked to wait for', async () => {
      const { store } = memoryStore(['put', 'delete', 'list', 'get']);
      const failures: ResumeError[] = [];
      const keeper = new ResumeKeeper(store, (e) => failures.push(e));
      keeper.save(record('failing-1'));
      keeper.drop('failing-2');
      await until(() => failures.length === 2);
      expect(failures.map((e) => [e.code, e.itemId])).to.have.deep.members([
        ['resume-storage-failed', 'failing-1'],
        ['resume-storage-failed', 'failing-2'],
      ]);
      expect(failures[0]!.cause).to.be.instanceOf(DOMException);
      for (const call of [
        keeper.forget('failing-3'),
        keeper.get('failing-4'),
        keeper.waiting(() => false),
      ])
        expect(await call.catch((e: ResumeError) => e)).to.include({
          code: 'resume-storage-failed',
        });
      // The restore pass only reports it, and finds nothing.
      expect(await keeper.restorable(() => false)).to.deep.equal([]);
      expect(failures).to.have.length(3);
    });

    it('lists the records no page holds, oldest first', async () => {
      const { store, records } = memoryStore();
      const keeper = new ResumeKeeper(store, () => undefined);
      const [a, b, c] = ['w-a', 'w-b', 'w-c'].map((p) => `${p}-${crypto.randomUUID()}`);
      records.set(b!, record(b!, { createdAt: 2 }));
      records.set(a!, record(a!, { createdAt: 1 }));
      records.set(c!, record(c!, { createdAt: 3 }));
      // `c` is held by another page (its lock), `b` by this one.
      const release = await lockItem(c!);
      releases.push(release!);
      expect((await keeper.waiting((id) => id === b)).map((r) => r.itemId)).to.deep.equal([a]);
    });

    it('takes up records whose handle reads without asking and gives the same file, with their locks', async () => {
      const { store, records } = memoryStore();
      const keeper = new ResumeKeeper(store, () => undefined);
      const file = new File([await randomFile(150_000).arrayBuffer()], 'kept.bin', {
        lastModified: 7,
      });
      const changed = new File([await randomFile(150_000).arrayBuffer()], 'kept.bin', {
        lastModified: 7,
      });
      const id = (name: string) => `${name}-${crypto.randomUUID()}`;
      const cases = {
        granted: await recordOf(id('granted'), file, fakeHandle(file, 'granted')),
        noPermissionApi: await recordOf(id('opfs'), file, fakeHandle(file, undefined)),
        prompt: await recordOf(id('prompt'), file, fakeHandle(file, 'prompt')),
        changed: await recordOf(id('changed'), file, fakeHandle(changed, 'granted')),
        noHandle: await recordOf(id('none'), file),
        heldHere: await recordOf(id('held'), file, fakeHandle(file, 'granted')),
      };
      for (const r of Object.values(cases)) records.set(r.itemId, r);
      const found = await keeper.restorable((i) => i === cases.heldHere.itemId);
      releases.push(...found.map((f) => f.release));
      expect(found.map((f) => f.record.itemId)).to.have.members([
        cases.granted.itemId,
        cases.noPermissionApi.itemId,
      ]);
      expect(found.every((f) => f.file === file)).to.equal(true);
      // Their locks are taken: another page would leave them alone; the changed one's is free.
      const locked = await lockedItems();
      expect(locked.has(cases.granted.itemId)).to.equal(true);
      expect(locked.has(cases.noPermissionApi.itemId)).to.equal(true);
      let free: (() => void) | undefined;
      await until(async () => (free = await lockItem(cases.changed.itemId)) !== undefined);
      free!();
      // A second pass (another page) leaves those two alone: only the one held here without a
      // lock (in this test) is free.
      const again = await new ResumeKeeper(store, () => undefined).restorable(() => false);
      releases.push(...again.map((f) => f.release));
      expect(again.map((f) => f.record.itemId)).to.deep.equal([cases.heldHere.itemId]);
    });

    it('checks a file given back: file-mismatch with what differs, file-unreadable', async () => {
      const file = randomFile(100_000, 'x.bin');
      const r = await recordOf('checked', file);
      await checkFile(r, file);
      const other = new File([randomFile(100_000)], 'x.bin', {
        type: file.type,
        lastModified: file.lastModified,
      });
      expect(await checkFile(r, other).catch((e: ResumeError) => e)).to.deep.include({
        code: 'file-mismatch',
        itemId: 'checked',
        mismatch: ['head', 'tail'],
      });
      const unreadable = new File([file], 'x.bin', {
        type: file.type,
        lastModified: file.lastModified,
      });
      unreadable.slice = () => {
        throw new DOMException('the file changed on disk', 'NotReadableError');
      };
      expect(await checkFile(r, unreadable).catch((e: ResumeError) => e)).to.include({
        code: 'file-unreadable',
      });
    });
  });
});
