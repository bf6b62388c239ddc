import { expect } from '@open-wc/testing';
import { ServerError, TransportError, type WsUploaderError } from '../../src/errors.js';
import { toHex } from '../../src/protocol/hex.js';
import type { TargetRange } from '../../src/protocol/control.js';
import { resolveOptions, type EngineOptions } from '../../src/engine/options.js';
import {
  PartScheduler,
  type RunOptions,
  type SchedulerItem,
  type TaskProgress,
} from '../../src/engine/part-scheduler.js';
import { Backoff, backoff, shouldRetry } from '../../src/engine/retry.js';
import type { UploadResult } from '../../src/engine/types.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakePool, type FakeTransport, type FakeUpload } from '../helpers/fake-transport.js';
import { until } from '../helpers/until.js';

/** Bytes per send in these tests (the engine's `chunkSize`). */
const CHUNK = 64;
/** With `random` 0.5, the first retry waits half of 100 ms. */
const RETRY_DELAYS = [100, 200, 400];

/** A scheduler on a fake pool and a fake clock. */
function setup(options: Partial<EngineOptions> = {}) {
  const clock = new FakeClock();
  const pool = new FakePool();
  const resolved = resolveOptions({
    controlUrl: 'ws://x',
    authToken: 't',
    clock,
    random: () => 0.5,
    hashWorker: false,
    resume: false,
    dataWorker: false,
    chunkSize: CHUNK,
    retryDelays: RETRY_DELAYS,
    ...options,
  });
  const scheduler = new PartScheduler(resolved, pool.asPool);
  return { clock, pool, scheduler };
}

/** `size` bytes that differ from their neighbours. */
function content(size: number, seed = 0): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + seed * 13 + 3) & 0xff;
  return bytes;
}

function item(itemId: string, size = 300, seed = 0): SchedulerItem {
  return { itemId, name: `${itemId}.bin`, blob: new Blob([content(size, seed)]) };
}

async function sha256(blob: Blob): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer())));
}

/** A digest a "server" reports, recognisable in the result. */
const SERVER_DIGEST = new Uint8Array(32).fill(0xab);

function on(serverId: string, start: number, end: number): TargetRange {
  return { serverId, start, end };
}

/** Runs a task and keeps its progress; its promise counts as handled until the test awaits it. */
function start(
  scheduler: PartScheduler,
  what: SchedulerItem,
  ranges: readonly TargetRange[],
  options: Partial<RunOptions> = {},
) {
  const progress: TaskProgress[] = [];
  const result = scheduler.run(what, ranges, (p) => progress.push(p), {
    priority: 0,
    ...options,
  });
  let settled = false;
  result.then(
    () => (settled = true),
    () => (settled = true),
  );
  return {
    result,
    progress,
    get settled() {
      return settled;
    },
  };
}

/** What a task's promise rejected with. */
async function rejection(result: Promise<UploadResult>): Promise<unknown> {
  return result.then(
    (r) => {
      throw new Error(`resolved with ${JSON.stringify(r)}`);
    },
    (e: unknown) => e,
  );
}

/** The ranges sent on an upload, as `start-end` strings. */
function sent(upload: FakeUpload): string[] {
  return upload.sent.map((r) => `${r.start}-${r.end}`);
}

/** Waits until the upload was sent every byte of `end - start` bytes. */
async function sentAll(transport: FakeTransport, upload: FakeUpload, bytes: number) {
  await transport.waitFor(() => transport.coveredBytes(upload) === bytes, `${bytes} bytes sent`);
}

/** Checks that sent and stored bytes never went backwards and ended at `total`. */
function expectSteadyProgress(progress: readonly TaskProgress[], total: number): void {
  expect(progress.length).to.be.greaterThan(0);
  for (let i = 1; i < progress.length; i++) {
    expect(progress[i]!.bytesSent, `bytesSent at report ${i}`).to.be.at.least(
      progress[i - 1]!.bytesSent,
    );
    expect(progress[i]!.bytesStored, `bytesStored at report ${i}`).to.be.at.least(
      progress[i - 1]!.bytesStored,
    );
  }
  for (const p of progress) {
    expect(p.bytesTotal).to.equal(total);
    expect(p.bytesSent).to.be.at.most(total);
    expect(p.bytesStored).to.be.at.most(p.bytesSent);
  }
  const last = progress.at(-1)!;
  expect([last.bytesSent, last.bytesStored]).to.deep.equal([total, total]);
}

describe('PartScheduler', () => {
  describe('sending and verifying', () => {
    it('integrity transport: sends the range in chunks, finishes without a digest and reports the server’s', async () => {
      const { pool, scheduler } = setup();
      const a = pool.transport('a');
      const it1 = item('i1');
      const task = start(scheduler, it1, [on('a', 0, 300)]);

      const up = await a.answerOpen();
      await sentAll(a, up, 300);
      expect(sent(up)).to.deep.equal(['0-64', '64-128', '128-192', '192-256', '256-300']);
      const expected = content(300);
      for (const r of up.sent)
        expect(up.payloads.get(r.start), `bytes at ${r.start}`).to.deep.equal(
          expected.subarray(r.start, r.end),
        );
      // Nothing is finished while bytes wait for their acknowledgement.
      expect(a.finishing).to.equal(false);
      a.ackSent(up);
      const { sha256: given } = await a.answerFinish(SERVER_DIGEST);
      expect(given).to.equal(undefined);

      expect(await task.result).to.deep.equal({
        itemId: 'i1',
        name: 'i1.bin',
        size: 300,
        sha256: toHex(SERVER_DIGEST),
        servers: ['a'],
      });
      const id = up.uploadId;
      expect(a.calls).to.deep.equal([
        { op: 'open', itemId: 'i1', size: 300 },
        { op: 'sendData', uploadId: id, offset: 0, length: 64 },
        { op: 'sendData', uploadId: id, offset: 64, length: 64 },
        { op: 'sendData', uploadId: id, offset: 128, length: 64 },
        { op: 'sendData', uploadId: id, offset: 192, length: 64 },
        { op: 'sendData', uploadId: id, offset: 256, length: 44 },
        { op: 'finish', uploadId: id, sha256: undefined },
        { op: 'release', uploadId: id },
      ]);
      expect(pool.gets).to.deep.equal(['a']);
      expectSteadyProgress(task.progress, 300);
      expect(task.progress.at(-1)!.bytesByServer).to.deep.equal({ a: 300 });
    });

    it('integrity sha256: finishes with the SHA-256 of the item and reports it', async () => {
      const { pool, scheduler } = setup({ integrity: 'sha256' });
      const a = pool.transport('a');
      const it1 = item('i1');
      const expected = await sha256(it1.blob);
      const task = start(scheduler, it1, [on('a', 0, 300)]);

      const up = await a.answerOpen();
      await sentAll(a, up, 300);
      a.ackSent(up);
      const { sha256: given } = await a.answerFinish();
      expect(given && toHex(given)).to.equal(expected);

      const result = await task.result;
      expect(result.sha256).to.equal(expected);
      expect(a.callsOf('finish')).to.deep.equal([
        { op: 'finish', uploadId: up.uploadId, sha256: expected },
      ]);
    });

    it('integrity sha256 on a resumed upload: the digest covers the bytes not sent this time too', async () => {
      const { pool, scheduler } = setup({ integrity: 'sha256' });
      const a = pool.transport('a');
      const it1 = item('i1');
      const expected = await sha256(it1.blob);
      const task = start(scheduler, it1, [on('a', 0, 300)]);

      const up = await a.answerOpen({ ranges: [{ start: 0, end: 100 }] });
      await sentAll(a, up, 200);
      a.ackSent(up);
      const { sha256: given } = await a.answerFinish();
      expect(given && toHex(given)).to.equal(expected);
      expect((await task.result).sha256).to.equal(expected);
    });

    it('resume: sends only the bytes the server does not hold', async () => {
      const { pool, scheduler } = setup();
      const a = pool.transport('a');
      const task = start(scheduler, item('i1'), [on('a', 0, 300)]);

      const up = await a.answerOpen({
        ranges: [
          { start: 0, end: 100 },
          { start: 200, end: 250 },
        ],
      });
      await sentAll(a, up, 150);
      expect(sent(up)).to.deep.equal(['100-164', '164-200', '250-300']);
      // Held and sent (not acknowledged yet): every byte is out.
      expect(task.progress.at(-1)).to.deep.include({ bytesSent: 300, bytesStored: 150 });
      a.ackSent(up);
      await a.answerFinish(SERVER_DIGEST);
      expect((await task.result).sha256).to.equal(toHex(SERVER_DIGEST));
      expect(a.callsOf('sendData')).to.have.length(3);
      expectSteadyProgress(task.progress, 300);
      // What the server held counts as stored from the start.
      expect(task.progress[0]!.bytesStored).to.be.at.least(100);
    });

    it('resume: a server that holds the whole item is sent nothing, and still verifies it', async () => {
      const { pool, scheduler } = setup();
      const a = pool.transport('a');
      const task = start(scheduler, item('i1'), [on('a', 0, 300)]);

      const up = await a.answerOpen({ complete: true });
      await a.answerFinish(SERVER_DIGEST);
      expect((await task.result).sha256).to.equal(toHex(SERVER_DIGEST));
      expect(a.calls.map((c) => c.op)).to.deep.equal(['open', 'finish', 'release']);
      expect(up.sent).to.deep.equal([]);
      expect(task.progress.at(-1)).to.deep.include({ bytesSent: 300, bytesStored: 300 });
    });

    it('a task for part of an item sends it, finishes nothing and has no digest', async () => {
      const { pool, scheduler } = setup();
      const a = pool.transport('a');
      const task = start(scheduler, item('i1'), [on('a', 100, 200)]);

      const up = await a.answerOpen();
      await sentAll(a, up, 100);
      expect(sent(up)).to.deep.equal(['100-164', '164-200']);
      a.ackSent(up);
      expect(await task.result).to.deep.equal({
        itemId: 'i1',
        name: 'i1.bin',
        size: 300,
        servers: ['a'],
      });
      expect(a.calls.map((c) => c.op)).to.deep.equal(['open', 'sendData', 'sendData', 'release']);
      expectSteadyProgress(task.progress, 100);
    });

    it('a whole item split over two servers: each gets only its ranges, none a finish, and the page hashes it', async () => {
      const { pool, scheduler } = setup(); // integrity transport
      const a = pool.transport('a');
      const b = pool.transport('b');
      const it1 = item('i1');
      const expected = await sha256(it1.blob);
      const task = start(scheduler, it1, [on('a', 0, 100), on('b', 100, 200), on('a', 200, 300)]);

      const upA = await a.answerOpen();
      const upB = await b.answerOpen();
      await sentAll(a, upA, 200);
      await sentAll(b, upB, 100);
      expect(sent(upA)).to.deep.equal(['0-64', '64-100', '200-264', '264-300']);
      expect(sent(upB)).to.deep.equal(['100-164', '164-200']);
      a.ackSent(upA);
      b.ackSent(upB);

      const result = await task.result;
      expect(result.sha256).to.equal(expected);
      expect(result.servers).to.deep.equal(['a', 'b']);
      expect(a.callsOf('finish')).to.deep.equal([]);
      expect(b.callsOf('finish')).to.deep.equal([]);
      expect(a.callsOf('release')).to.deep.equal([{ op: 'release', uploadId: upA.uploadId }]);
      expect(b.callsOf('release')).to.deep.equal([{ op: 'release', uploadId: upB.uploadId }]);
      expectSteadyProgress(task.progress, 300);
      expect(task.progress.at(-1)!.bytesByServer).to.deep.equal({ a: 200, b: 100 });
    });

    it('an empty item: the page hashes it, and the server verifies that digest', async () => {
      const { pool, scheduler } = setup(); // integrity transport
      const a = pool.transport('a');
      const empty = item('empty', 0);
      const expected = await sha256(empty.blob);
      const task = start(scheduler, empty, [on('a', 0, 0)]);
      const up = await a.answerOpen();
      const { sha256: given } = await a.answerFinish();
      expect(given && toHex(given)).to.equal(expected);
      expect((await task.result).sha256).to.equal(expected);
      expect(a.calls).to.deep.equal([
        { op: 'open', itemId: 'empty', size: 0 },
        { op: 'finish', uploadId: up.uploadId, sha256: expected },
        { op: 'release', uploadId: up.uploadId },
      ]);
    });

    it('a range past the end of the item fails the task with out-of-range, sending nothing', async () => {
      const { pool, scheduler } = setup();
      const task = start(scheduler, item('i1'), [on('a', 0, 301)]);
      const error = (await rejection(task.result)) as ServerError;
      expect(error).to.be.instanceOf(ServerError);
      expect(error.code).to.equal('out-of-range');
      expect(pool.gets).to.deep.equal([]);
    });
  });

  describe('failures and retries', () => {
    it('a lost connection: after the backoff delay the transport is got again and only unacknowledged bytes are sent', async () => {
      const { clock, pool, scheduler } = setup();
      const a = pool.transport('a');
      const task = start(scheduler, item('i1'), [on('a', 0, 300)]);

      const up1 = await a.answerOpen();
      await sentAll(a, up1, 300);
      a.ack(up1, 0, 64);
      a.ack(up1, 64, 128);
      a.fail(up1, new TransportError('socket-closed', 'gone', { serverId: 'a' }));
      await a.waitFor(() => up1.released, 'the failed upload released');
      await until(() => clock.pending === 1);
      // Backoff with full jitter: random 0.5 of the first delay (100 ms).
      clock.advance(49);
      expect(pool.gets).to.deep.equal(['a']);
      clock.advance(1);
      await a.waitFor(() => a.opening, 'a second open');
      expect(pool.gets).to.deep.equal(['a', 'a']);

      // The "server" answers with what it acknowledged: 0..128.
      const up2 = await a.answerOpen();
      await sentAll(a, up2, 172);
      expect(sent(up2)).to.deep.equal(['128-192', '192-256', '256-300']);
      a.ackSent(up2);
      await a.answerFinish(SERVER_DIGEST);
      expect((await task.result).sha256).to.equal(toHex(SERVER_DIGEST));
      expect(a.calls.map((c) => c.op)).to.deep.equal([
        'open',
        ...Array<string>(5).fill('sendData'),
        'release',
        'open',
        ...Array<string>(3).fill('sendData'),
        'finish',
        'release',
      ]);
      expectSteadyProgress(task.progress, 300);
    });

    it('a fresh item: its first open on each server says so, its retries and later runs do not', async () => {
      const { clock, pool, scheduler } = setup({ maxParallel: 1 });
      const a = pool.transport('a');
      const b = pool.transport('b');
      const fresh = { ...item('i1'), fresh: true };
      const task = start(scheduler, fresh, [on('a', 0, 150), on('b', 150, 300)]);
      const upA = await a.answerOpen();
      const upB = await b.answerOpen();
      expect(upA.meta.fresh).to.equal(true);
      expect(upB.meta.fresh).to.equal(true);
      await sentAll(a, upA, 150);
      a.fail(upA, new TransportError('socket-closed', 'gone', { serverId: 'a' }));
      await until(() => clock.pending === 1);
      clock.advance(50);
      // The retry asks the server what it holds.
      const upA2 = await a.answerOpen({ ranges: [{ start: 0, end: 64 }] });
      expect(upA2.meta.fresh).to.equal(false);
      await sentAll(a, upA2, 86);
      a.ackSent(upA2);
      await sentAll(b, upB, 150);
      b.ackSent(upB);
      await task.result;

      // A later task of the same item (the engine passes fresh only for the first one) and a run
      // after a preemption are not fresh either.
      const low = start(scheduler, fresh, [on('a', 0, 300)], { priority: 0 });
      const up3 = await a.answerOpen();
      expect(up3.meta.fresh).to.equal(true);
      const urgent = start(scheduler, item('urgent', 10), [on('a', 0, 10)], {
        priority: 5,
        urgent: true,
      });
      await a.waitFor(() => a.opening, 'the urgent task’s open');
      a.autoAck = true;
      await a.answerOpen();
      await a.answerFinish(SERVER_DIGEST);
      await urgent.result;
      const up4 = await a.answerOpen({ complete: true });
      expect(up4.meta.itemId).to.equal('i1');
      expect(up4.meta.fresh).to.equal(false);
      await a.answerFinish(SERVER_DIGEST);
      await low.result;
    });

    it('a digest mismatch at finish: the server forgot the item, so every byte goes again', async () => {
      const { clock, pool, scheduler } = setup({ integrity: 'sha256' });
      const a = pool.transport('a');
      const it1 = item('i1');
      const expected = await sha256(it1.blob);
      const task = start(scheduler, it1, [on('a', 0, 300)]);

      const up1 = await a.answerOpen();
      await sentAll(a, up1, 300);
      a.ackSent(up1);
      await a.failFinish(new ServerError('digest-mismatch', 'differs', { serverId: 'a' }));
      await until(() => clock.pending === 1);
      clock.advance(50);
      const up2 = await a.answerOpen({ ranges: [] });
      await sentAll(a, up2, 300);
      expect(sent(up2)).to.deep.equal(['0-64', '64-128', '128-192', '192-256', '256-300']);
      a.ackSent(up2);
      const { sha256: given } = await a.answerFinish();
      expect(given && toHex(given)).to.equal(expected);
      expect((await task.result).sha256).to.equal(expected);
      expect(a.callsOf('finish').map((c) => c.sha256)).to.deep.equal([expected, expected]);
      expect(a.callsOf('release').map((c) => c.uploadId)).to.deep.equal([1, 2]);
    });

    it('a transport the pool cannot give is asked for again after the next delay', async () => {
      const { clock, pool, scheduler } = setup();
      const a = pool.transport('a');
      pool.refuse('a', new TransportError('connect-timeout', 'no answer', { serverId: 'a' }));
      const task = start(scheduler, item('i1', 10), [on('a', 0, 10)]);

      await until(() => clock.pending === 1);
      expect(pool.gets).to.deep.equal(['a']);
      clock.advance(50); // random 0.5 of 100
      await until(() => clock.pending === 1 && pool.gets.length === 2);
      pool.accept('a');
      clock.advance(99); // random 0.5 of 200: not yet
      expect(pool.gets).to.have.length(2);
      clock.advance(1);
      const up = await a.answerOpen();
      await sentAll(a, up, 10);
      a.ackSent(up);
      await a.answerFinish(SERVER_DIGEST);
      await task.result;
      expect(pool.gets).to.deep.equal(['a', 'a', 'a']);
    });

    it('a retryable server refusal (storage-full) is tried again', async () => {
      const { clock, pool, scheduler } = setup();
      const a = pool.transport('a');
      const task = start(scheduler, item('i1', 10), [on('a', 0, 10)]);
      await a.failOpen(new ServerError('storage-full', 'full', { serverId: 'a' }));
      await until(() => clock.pending === 1);
      clock.advance(50);
      const up = await a.answerOpen();
      await sentAll(a, up, 10);
      a.ackSent(up);
      await a.answerFinish(SERVER_DIGEST);
      await task.result;
      expect(a.callsOf('open')).to.have.length(2);
    });

    it('a non-retryable server error fails the task at once with that error', async () => {
      const { clock, pool, scheduler } = setup();
      const a = pool.transport('a');
      const task = start(scheduler, item('i1'), [on('a', 0, 300)]);

      const up = await a.answerOpen();
      await sentAll(a, up, 300);
      const error = new ServerError('conflict', 'another item', { serverId: 'a', itemId: 'i1' });
      a.fail(up, error);
      expect(await rejection(task.result)).to.equal(error);
      expect(a.calls.at(-1)).to.deep.equal({ op: 'release', uploadId: up.uploadId });
      expect(a.callsOf('open')).to.have.length(1);
      expect(clock.pending).to.equal(0);
      expect(pool.gets).to.deep.equal(['a']);
    });

    it('onShouldRetry answering false stops retrying: the task fails with the error', async () => {
      const asked: [string, number, boolean][] = [];
      const { clock, pool, scheduler } = setup({
        onShouldRetry: (error, attempt, retryable) => {
          asked.push([error.code, attempt, retryable]);
          return false;
        },
      });
      const a = pool.transport('a');
      const task = start(scheduler, item('i1'), [on('a', 0, 300)]);

      const up = await a.answerOpen();
      await sentAll(a, up, 300);
      const error = new TransportError('socket-closed', 'gone', { serverId: 'a' });
      a.fail(up, error);
      expect(await rejection(task.result)).to.equal(error);
      expect(asked).to.deep.equal([['socket-closed', 0, true]]);
      expect(clock.pending).to.equal(0);
      expect(pool.gets).to.deep.equal(['a']);
    });

    it('gives up once the delays are used up, and counts again from the first after progress', async () => {
      const asked: [number, boolean][] = [];
      const { clock, pool, scheduler } = setup({
        retryDelays: [100],
        onShouldRetry: (_error, attempt, retryable) => {
          asked.push([attempt, retryable]);
          return retryable;
        },
      });
      const a = pool.transport('a');
      const lost = () => new TransportError('socket-closed', 'gone', { serverId: 'a' });
      const task = start(scheduler, item('i1'), [on('a', 0, 300)]);

      // Progress, then a failure: the first delay.
      const up1 = await a.answerOpen();
      await sentAll(a, up1, 300);
      a.ack(up1, 0, 64);
      a.fail(up1, lost());
      await until(() => clock.pending === 1);
      clock.advance(50);
      // Progress again, then a failure: still the first delay.
      const up2 = await a.answerOpen();
      await sentAll(a, up2, 236);
      a.ack(up2, 64, 128);
      a.fail(up2, lost());
      await until(() => clock.pending === 1);
      clock.advance(50);
      // No progress: the delays are used up.
      const up3 = await a.answerOpen();
      await sentAll(a, up3, 172);
      const last = lost();
      a.fail(up3, last);
      expect(await rejection(task.result)).to.equal(last);
      expect(asked).to.deep.equal([
        [0, true],
        [0, true],
        [1, false],
      ]);
      expect(a.callsOf('open')).to.have.length(3);
    });

    it('one server failing for good stops the others: their uploads are released', async () => {
      const { pool, scheduler } = setup();
      const a = pool.transport('a');
      const b = pool.transport('b');
      const task = start(scheduler, item('i1'), [on('a', 0, 150), on('b', 150, 300)]);
      const upA = await a.answerOpen();
      const upB = await b.answerOpen();
      await sentAll(a, upA, 150);
      await sentAll(b, upB, 150);
      const error = new ServerError('unauthorized', 'no', { serverId: 'b' });
      b.fail(upB, error);
      expect(await rejection(task.result)).to.equal(error);
      expect(a.calls.at(-1)).to.deep.equal({ op: 'release', uploadId: upA.uploadId });
      expect(b.calls.at(-1)).to.deep.equal({ op: 'release', uploadId: upB.uploadId });
    });
  });

  describe('progress', () => {
    it('bytesSent and bytesStored never go backwards through room waits, acks, a failure and a resume, and end at the total', async () => {
      const { clock, pool, scheduler } = setup();
      const a = pool.transport('a');
      a.holdRoom();
      const task = start(scheduler, item('i1'), [on('a', 0, 300)]);

      const up1 = await a.answerOpen({ ranges: [{ start: 0, end: 64 }] });
      await a.waitFor(() => a.waitingForRoom === 1, 'a send waiting for room');
      expect(up1.sent).to.deep.equal([]);
      expect(task.progress.at(-1)).to.deep.include({ bytesStored: 64 });
      a.grantRoom(64);
      await a.waitFor(() => up1.sent.length === 1 && a.waitingForRoom === 1, 'one send');
      expect(task.progress.at(-1)).to.deep.include({ bytesStored: 64 });
      a.ackSent(up1);
      expect(task.progress.at(-1)).to.deep.include({ bytesStored: 128 });
      a.grantRoom(128);
      await a.waitFor(() => up1.sent.length === 3, 'three sends');
      a.fail(up1, new TransportError('socket-closed', 'gone', { serverId: 'a' }));
      await until(() => clock.pending === 1);
      a.grantRoom(Infinity);
      clock.advance(50);
      const up2 = await a.answerOpen();
      await sentAll(a, up2, 172);
      for (const r of up2.sent) a.ack(up2, r.start, r.end);
      await a.answerFinish(SERVER_DIGEST);
      await task.result;
      expectSteadyProgress(task.progress, 300);
    });
  });

  describe('abort', () => {
    it('aborting a running task rejects it with an AbortError and releases its upload id', async () => {
      const { pool, scheduler } = setup();
      const a = pool.transport('a');
      const abort = new AbortController();
      const task = start(scheduler, item('i1'), [on('a', 0, 300)], { signal: abort.signal });

      const up = await a.answerOpen();
      await sentAll(a, up, 300);
      abort.abort();
      const error = (await rejection(task.result)) as DOMException;
      expect(error).to.be.instanceOf(DOMException);
      expect(error.name).to.equal('AbortError');
      expect(a.calls.at(-1)).to.deep.equal({ op: 'release', uploadId: up.uploadId });
      expect(a.callsOf('finish')).to.deep.equal([]);
    });

    it('aborting a task waiting for room rejects it and releases its upload id', async () => {
      const { pool, scheduler } = setup();
      const a = pool.transport('a');
      a.holdRoom();
      const abort = new AbortController();
      const task = start(scheduler, item('i1'), [on('a', 0, 300)], { signal: abort.signal });

      const up = await a.answerOpen();
      await a.waitFor(() => a.waitingForRoom === 1, 'a send waiting for room');
      abort.abort();
      expect(((await rejection(task.result)) as DOMException).name).to.equal('AbortError');
      expect(a.callsOf('sendData')).to.deep.equal([]);
      expect(up.released).to.equal(true);
      expect(a.waitingForRoom).to.equal(0);
    });

    it('aborting a task while its upload opens releases the upload id once it is opened', async () => {
      const { pool, scheduler } = setup();
      const a = pool.transport('a');
      const abort = new AbortController();
      const task = start(scheduler, item('i1'), [on('a', 0, 300)], { signal: abort.signal });

      await a.waitFor(() => a.opening, 'an open');
      abort.abort();
      expect(((await rejection(task.result)) as DOMException).name).to.equal('AbortError');
      const up = await a.answerOpen();
      await a.waitFor(() => up.released, 'the release');
      expect(a.calls.map((c) => c.op)).to.deep.equal(['open', 'release']);
    });

    it('aborting a queued task rejects it; it never opens', async () => {
      const { pool, scheduler } = setup({ maxParallel: 1 });
      const a = pool.transport('a');
      a.autoAck = true;
      const first = start(scheduler, item('i1', 10), [on('a', 0, 10)]);
      const abort = new AbortController();
      const queued = start(scheduler, item('i2', 10), [on('a', 0, 10)], { signal: abort.signal });
      abort.abort();
      expect(((await rejection(queued.result)) as DOMException).name).to.equal('AbortError');
      await a.answerOpen();
      await a.answerFinish(SERVER_DIGEST);
      await first.result;
      expect(a.callsOf('open').map((c) => c.itemId)).to.deep.equal(['i1']);
    });

    it('a task whose signal is already aborted rejects at once', async () => {
      const { pool, scheduler } = setup();
      const task = start(scheduler, item('i1'), [on('a', 0, 300)], {
        signal: AbortSignal.abort(),
      });
      expect(((await rejection(task.result)) as DOMException).name).to.equal('AbortError');
      expect(pool.gets).to.deep.equal([]);
    });
  });

  describe('priority and maxParallel', () => {
    /** Lets the task on `transport` whose open is pending run to its end (acks on). */
    async function complete(transport: FakeTransport): Promise<void> {
      transport.autoAck = true;
      await transport.answerOpen();
      await transport.answerFinish(SERVER_DIGEST);
    }

    it('with maxParallel 1, queued tasks run highest priority first, then earliest deadline, then in order', async () => {
      const { pool, scheduler } = setup({ maxParallel: 1 });
      const a = pool.transport('a');
      const tasks = [
        start(scheduler, item('first', 10), [on('a', 0, 10)], { priority: 0 }),
        start(scheduler, item('low', 10), [on('a', 0, 10)], { priority: 1 }),
        start(scheduler, item('high', 10), [on('a', 0, 10)], { priority: 5 }),
        start(scheduler, item('late', 10), [on('a', 0, 10)], { priority: 3, deadline: 2000 }),
        start(scheduler, item('soon', 10), [on('a', 0, 10)], { priority: 3, deadline: 1000 }),
        start(scheduler, item('low2', 10), [on('a', 0, 10)], { priority: 1 }),
      ];
      await a.waitFor(() => a.opening, 'an open');
      // One at a time: the second waits for the first to end.
      expect(a.callsOf('open')).to.have.length(1);
      for (let i = 0; i < tasks.length; i++) await complete(a);
      await Promise.all(tasks.map((t) => t.result));
      expect(a.callsOf('open').map((c) => c.itemId)).to.deep.equal([
        'first',
        'high',
        'soon',
        'late',
        'low',
        'low2',
      ]);
    });

    it('runs at most maxParallel tasks, and one task of an item at a time', async () => {
      const { pool, scheduler } = setup({ maxParallel: 2 });
      const a = pool.transport('a');
      const t1 = start(scheduler, item('i1', 10), [on('a', 0, 5)]);
      const t2 = start(scheduler, item('i1', 10), [on('a', 5, 10)]);
      const t3 = start(scheduler, item('i2', 10), [on('a', 0, 10)]);
      const t4 = start(scheduler, item('i3', 10), [on('a', 0, 10)]);
      await a.waitFor(() => a.callsOf('open').length === 2, 'two opens');
      // i1's second task waits for its first; i3 waits for a slot.
      expect(a.callsOf('open').map((c) => c.itemId)).to.deep.equal(['i1', 'i2']);
      a.autoAck = true;
      await a.answerOpen(); // i1 0..5: a part, no finish
      await t1.result;
      await a.waitFor(() => a.callsOf('open').length === 3, 'a third open');
      expect(a.callsOf('open')[2]!.itemId).to.equal('i1');
      await a.answerOpen(); // i2
      await a.answerFinish(SERVER_DIGEST);
      await t3.result;
      await a.answerOpen(); // i1 5..10
      await t2.result;
      await complete(a); // i3
      await t4.result;
      expect(a.callsOf('open').map((c) => c.itemId)).to.deep.equal(['i1', 'i2', 'i1', 'i3']);
    });

    it('a higher-priority task that is not urgent waits for a slot', async () => {
      const { pool, scheduler } = setup({ maxParallel: 1 });
      const a = pool.transport('a');
      const low = start(scheduler, item('low'), [on('a', 0, 300)], { priority: 0 });
      const up = await a.answerOpen();
      await sentAll(a, up, 300);
      const high = start(scheduler, item('high', 10), [on('a', 0, 10)], { priority: 9 });
      a.ackSent(up);
      await a.answerFinish(SERVER_DIGEST);
      await low.result;
      await complete(a);
      await high.result;
      expect(up.released).to.equal(true);
      expect(a.callsOf('open').map((c) => c.itemId)).to.deep.equal(['low', 'high']);
      expect(a.callsOf('release').map((c) => c.uploadId)).to.deep.equal([1, 2]);
    });

    it('an urgent task preempts a lower-priority running one, which resumes afterwards from what the server holds', async () => {
      const { pool, scheduler } = setup({ maxParallel: 1 });
      const a = pool.transport('a');
      const low = start(scheduler, item('low'), [on('a', 0, 300)], { priority: 0 });
      const up1 = await a.answerOpen();
      await sentAll(a, up1, 300);
      a.ack(up1, 0, 64);

      const urgent = start(scheduler, item('urgent', 10), [on('a', 0, 10)], {
        priority: 5,
        urgent: true,
      });
      // The low task stops (its upload id released) and the urgent one opens.
      await a.waitFor(() => a.opening, 'the urgent task’s open');
      expect(up1.released).to.equal(true);
      expect(a.callsOf('open').map((c) => c.itemId)).to.deep.equal(['low', 'urgent']);
      expect(low.settled).to.equal(false);
      await complete(a);
      await urgent.result;

      // The low task comes back and sends only what the server does not hold.
      const up3 = await a.answerOpen();
      expect(up3.meta.itemId).to.equal('low');
      await sentAll(a, up3, 236);
      expect(sent(up3)).to.deep.equal(['64-128', '128-192', '192-256', '256-300']);
      await a.answerFinish(SERVER_DIGEST);
      expect((await low.result).sha256).to.equal(toHex(SERVER_DIGEST));
      expect(a.callsOf('open').map((c) => c.itemId)).to.deep.equal(['low', 'urgent', 'low']);
      expectSteadyProgress(low.progress, 300);
    });

    it('an urgent task of the same item preempts its lower-priority running task', async () => {
      const { pool, scheduler } = setup({ maxParallel: 3 });
      const a = pool.transport('a');
      const whole = start(scheduler, item('i1'), [on('a', 0, 300)], { priority: 0 });
      const up1 = await a.answerOpen();
      await sentAll(a, up1, 300);
      const part = start(scheduler, item('i1'), [on('a', 200, 300)], {
        priority: 5,
        urgent: true,
      });
      await a.waitFor(() => a.opening, 'the urgent task’s open');
      expect(up1.released).to.equal(true);
      a.autoAck = true;
      await a.answerOpen();
      await part.result;
      // The whole-item task resumes: the server holds 200..300 now.
      const up3 = await a.answerOpen();
      await sentAll(a, up3, 200);
      expect(sent(up3)).to.deep.equal(['0-64', '64-128', '128-192', '192-200']);
      await a.answerFinish(SERVER_DIGEST);
      await whole.result;
    });

    it('an urgent task does not preempt a task of equal or higher priority', async () => {
      const { pool, scheduler } = setup({ maxParallel: 1 });
      const a = pool.transport('a');
      const running = start(scheduler, item('running'), [on('a', 0, 300)], { priority: 5 });
      const up = await a.answerOpen();
      await sentAll(a, up, 300);
      const urgent = start(scheduler, item('urgent', 10), [on('a', 0, 10)], {
        priority: 5,
        urgent: true,
      });
      expect(up.released).to.equal(false);
      a.ackSent(up);
      await a.answerFinish(SERVER_DIGEST);
      await running.result;
      await complete(a);
      await urgent.result;
      expect(a.callsOf('open').map((c) => c.itemId)).to.deep.equal(['running', 'urgent']);
    });
  });
});

describe('retry.ts', () => {
  it('backoff: full jitter up to the attempt’s delay, the last delay past the end', () => {
    const delays = [100, 200, 400];
    expect(backoff(delays, 0, () => 0)).to.equal(0);
    expect(backoff(delays, 0, () => 0.5)).to.equal(50);
    expect(backoff(delays, 0, () => 0.999)).to.equal(99);
    expect(backoff(delays, 1, () => 0.999)).to.equal(199);
    expect(backoff(delays, 2, () => 0.999)).to.equal(399);
    expect(backoff(delays, 3, () => 0.999)).to.equal(399);
    expect(backoff(delays, 50, () => 0.5)).to.equal(200);
    expect(backoff(delays, -1, () => 0.5)).to.equal(50);
    expect(backoff([], 0, () => 0.5)).to.equal(0);
  });

  it('shouldRetry: connection errors and retryable server errors, while delays remain', () => {
    const delays = [100, 200];
    const lost = new TransportError('socket-closed', 'gone');
    const full = new ServerError('storage-full', 'full', { serverId: 'a' });
    const refused = new ServerError('unauthorized', 'no', { serverId: 'a' });
    expect(shouldRetry(lost, 0, delays)).to.equal(true);
    expect(shouldRetry(lost, 1, delays)).to.equal(true);
    expect(shouldRetry(lost, 2, delays)).to.equal(false);
    expect(shouldRetry(full, 0, delays)).to.equal(true);
    expect(shouldRetry(full, 2, delays)).to.equal(false);
    expect(shouldRetry(refused, 0, delays)).to.equal(false);
    expect(shouldRetry(new DOMException('stopped', 'AbortError'), 0, delays)).to.equal(false);
    expect(shouldRetry(new Error('other'), 0, delays)).to.equal(false);
    const anyError: WsUploaderError = lost;
    expect(shouldRetry(anyError, 0, [])).to.equal(false);
  });

  it('Backoff: counts failures, waits longer each time up to the last delay, and resets', () => {
    let delays = [100, 200];
    const b = new Backoff(
      () => delays,
      () => 0.5,
    );
    expect(b.attempt).to.equal(0);
    expect([b.next(), b.next(), b.next()]).to.deep.equal([50, 100, 100]);
    expect(b.attempt).to.equal(3);
    b.reset();
    expect(b.attempt).to.equal(0);
    expect(b.next()).to.equal(50);
    // The delays are read at each try.
    delays = [1000, 2000];
    expect(b.next()).to.equal(1000);
  });
});
