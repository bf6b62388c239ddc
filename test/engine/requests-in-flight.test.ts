import { expect } from '@open-wc/testing';
import { HttpTransport, requestsInFlight } from '../../src/engine/http-transport.js';
import { resolveOptions, type EngineOptions } from '../../src/engine/options.js';
import type { LinkMeasure } from '../../src/engine/http-transport.js';
import { FakeClock } from '../helpers/fake-clock.js';

const MiB = 1024 * 1024;

/** An `HttpTransport` to a server that is never reached, with `options` and the link `link`. */
function httpTransport(options: Partial<EngineOptions> = {}, link?: () => LinkMeasure) {
  return new HttpTransport(
    {
      id: 'up-1',
      url: 'ws://127.0.0.1:1/',
      httpUrl: 'http://127.0.0.1:1',
      token: 't',
      protocols: ['http/1'],
      tokenExpiresAt: Date.now() + 60_000,
    },
    resolveOptions({
      controlUrl: 'ws://x',
      authToken: 't',
      dataWorker: false,
      resume: false,
      ...options,
    }),
    'http://127.0.0.1:1/uploads',
    undefined,
    link,
  );
}

describe('requestsInFlight (HTTP parts in flight for the measured link)', () => {
  it('keeps three requests in flight on an unmeasured or short link', () => {
    expect(requestsInFlight({ rttMs: undefined, throughput: undefined }, 8 * MiB)).to.equal(3);
    expect(requestsInFlight({ rttMs: 0.3, throughput: 100 * MiB }, 8 * MiB)).to.equal(3);
    expect(requestsInFlight({ rttMs: 20, throughput: 10 * MiB }, 8 * MiB)).to.equal(3);
    expect(requestsInFlight({ rttMs: 50, throughput: 10 * MiB }, 0)).to.equal(3);
  });

  it('covers twice the round trip at the measured rate on a long, fast link, up to eight', () => {
    // 100 ms at 100 MiB/s: 20 MiB in two round trips, three 8 MiB parts, one more sending.
    expect(requestsInFlight({ rttMs: 100, throughput: 100 * MiB }, 8 * MiB)).to.equal(4);
    // Smaller parts on the same link: more of them.
    expect(requestsInFlight({ rttMs: 100, throughput: 100 * MiB }, 2 * MiB)).to.equal(8);
    expect(requestsInFlight({ rttMs: 300, throughput: 100 * MiB }, 4 * MiB)).to.equal(8);
    expect(requestsInFlight({ rttMs: 150, throughput: 50 * MiB }, 4 * MiB)).to.equal(5);
  });
});

describe('HttpTransport part sizes', () => {
  const transport = (partSize?: number) =>
    httpTransport(partSize === undefined ? {} : { partSize });

  it('doubles the parts from 1 MiB up to 8 MiB while the rate is unknown, so they end one after another', () => {
    const t = transport();
    const sizes = Array.from({ length: 6 }, () => t.chunkSize(512 * 1024, undefined));
    expect(sizes.map((b) => b / MiB)).to.deep.equal([1, 2, 4, 8, 8, 8]);
  });

  it('sends about a second of the measured rate, up to partSize, and starts small again when the rate is unknown', () => {
    const t = transport(16 * MiB);
    t.chunkSize(512 * 1024, undefined);
    t.chunkSize(512 * 1024, undefined);
    expect(t.chunkSize(512 * 1024, 10 * MiB)).to.equal(10 * MiB);
    expect(t.chunkSize(512 * 1024, 100 * MiB)).to.equal(16 * MiB);
    // A slow link: small parts, so acknowledgements keep coming.
    expect(t.chunkSize(512 * 1024, 100 * 1024)).to.equal(96 * 1024);
    expect(t.chunkSize(512 * 1024, undefined)).to.equal(MiB);
    // Never more than partSize.
    expect(transport(MiB / 2).chunkSize(256 * 1024, undefined)).to.equal(MiB / 2);
  });
});

describe('HttpTransport parts one after another on a short link', () => {
  /** Lets a stubbed answer reach the transport (its body is read as JSON). */
  const tick = async () => {
    for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 0));
  };
  /** PUTs the transport made, answered when the test says. */
  let requests: { range: string; answer(): void }[];
  const realFetch = globalThis.fetch;
  beforeEach(() => {
    requests = [];
    globalThis.fetch = ((_url: string, init: RequestInit) =>
      new Promise<Response>((resolve) => {
        requests.push({
          range: (init.headers as Record<string, string>)['Content-Range']!,
          answer: () => resolve(new Response('{}', { status: 200 })),
        });
      })) as typeof fetch;
  });
  afterEach(() => {
    globalThis.fetch = realFetch;
  });

  async function opened(link: LinkMeasure) {
    const clock = new FakeClock();
    const t = httpTransport({ clock }, () => link);
    const meta = {
      itemId: 'i',
      size: 64 * MiB,
      mime: '',
      name: 'n',
      blob: new Blob([]),
      fresh: true,
    };
    const { uploadId } = await t.open(meta, { ack() {}, error() {} });
    const part = new Blob([new Uint8Array(4 * MiB)]);
    /** Waits for room as the scheduler does; `room.ready` turns true once there is. */
    const room = () => {
      const state = { ready: false };
      void t.waitForRoom(uploadId, part.size).then(() => (state.ready = true));
      return state;
    };
    return { clock, t, uploadId, part, room };
  }

  it('starts the next part as the latest one is about to have been sent, or once it is answered', async () => {
    // 4 MiB at 10 MiB/s: 400 ms of sending; the next starts a round trip (1 ms), 10 ms and 15 % of
    // that (60 ms) ahead, at 329 ms.
    const { clock, t, uploadId, part, room } = await opened({ rttMs: 1, throughput: 10 * MiB });
    const first = room();
    await tick();
    expect(first.ready, 'nothing in flight').to.equal(true);
    t.sendData(uploadId, 0, part);
    const second = room();
    clock.advance(328);
    await tick();
    expect(second.ready, 'the first body is still being sent').to.equal(false);
    clock.advance(1);
    await tick();
    expect(second.ready).to.equal(true);
    t.sendData(uploadId, 4 * MiB, part);
    expect(requests.map((r) => r.range)).to.deep.equal([
      `bytes 0-${4 * MiB - 1}/${64 * MiB}`,
      `bytes ${4 * MiB}-${8 * MiB - 1}/${64 * MiB}`,
    ]);
    // The second's body is estimated to end at 800 ms. The first's answer does not change that...
    const third = room();
    requests[0]!.answer();
    await tick();
    expect(third.ready).to.equal(false);
    // ...the answer to the latest part does: its body was all sent.
    requests[1]!.answer();
    await tick();
    expect(third.ready).to.equal(true);
    expect(clock.time).to.equal(329);
  });

  it('on a short link, sends one part at a time from 4 MiB until the first answer tells the rate', async () => {
    const { clock, t, uploadId, room } = await opened({ rttMs: 1, throughput: undefined });
    const sizes = [1, 2, 3, 4].map(() => t.chunkSize(512 * 1024, undefined) / MiB);
    expect(sizes).to.deep.equal([4, 8, 16, 16]);
    t.sendData(uploadId, 0, new Blob([new Uint8Array(4 * MiB)]));
    const second = room();
    await tick();
    expect(second.ready, 'one part at a time while the rate is unknown').to.equal(false);
    clock.advance(41);
    requests[0]!.answer();
    await tick();
    expect(second.ready).to.equal(true);
    // The first part's own rate (4 MiB in 41 ms less a round trip: 100 MiB/s) paces the next:
    // 8 MiB take 80 ms, and the one after starts 23 ms before that.
    t.sendData(uploadId, 4 * MiB, new Blob([new Uint8Array(8 * MiB)]));
    const third = room();
    clock.advance(56);
    await tick();
    expect(third.ready).to.equal(false);
    clock.advance(1);
    await tick();
    expect(third.ready).to.equal(true);
  });

  it('sends parts side by side on a long link, where a late start leaves it idle for a round trip', async () => {
    const { t, uploadId, part, room } = await opened({ rttMs: 50, throughput: 10 * MiB });
    t.sendData(uploadId, 0, part);
    t.sendData(uploadId, 4 * MiB, part);
    const third = room();
    await tick();
    expect(third.ready).to.equal(true);
    t.sendData(uploadId, 8 * MiB, part);
    const fourth = room();
    await tick();
    expect(fourth.ready, 'three requests in flight').to.equal(false);
    requests[0]!.answer();
    await tick();
    expect(fourth.ready).to.equal(true);
  });
});

describe('HttpTransport asks the server what it holds (HEAD) and maps its errors', () => {
  const realFetch = globalThis.fetch;
  /** What the stubbed server answers each request with, in turn. */
  let answers: Response[];
  let methods: string[];
  beforeEach(() => {
    answers = [];
    methods = [];
    globalThis.fetch = ((_url: string, init: RequestInit) => {
      methods.push(init.method ?? 'GET');
      return Promise.resolve(answers.shift()!);
    }) as typeof fetch;
  });
  afterEach(() => {
    globalThis.fetch = realFetch;
  });
  const meta = (size: number) => ({
    itemId: 'i',
    size,
    mime: '',
    name: 'n',
    blob: new Blob([new Uint8Array(size)]),
    fresh: false,
  });
  const listener = { ack() {}, error() {} };
  /** What `promise` rejects with (`undefined` when it resolves). */
  const rejection = (promise: Promise<unknown>) =>
    promise.then(
      () => undefined,
      (e: unknown) => e,
    );

  it('resumes from the ranges the server lists (inclusive pairs), or from nothing on 404', async () => {
    answers.push(
      new Response(null, {
        status: 200,
        headers: { 'Upload-Length': '1000', 'Upload-Ranges': '0-99, 200-299,junk' },
      }),
    );
    const held = await httpTransport().open(meta(1000), listener);
    expect(methods).to.deep.equal(['HEAD']);
    expect(held.complete).to.equal(false);
    expect(held.ranges).to.deep.equal([
      { start: 0, end: 100 },
      { start: 200, end: 300 },
    ]);
    answers.push(new Response(null, { status: 404 }));
    const none = await httpTransport().open(meta(1000), listener);
    expect(none).to.include({ complete: false });
    expect(none.ranges).to.deep.equal([]);
  });

  it('refuses an item the server holds with another size (conflict)', async () => {
    answers.push(new Response(null, { status: 200, headers: { 'Upload-Length': '999' } }));
    const error = await rejection(httpTransport().open(meta(1000), listener));
    expect(error).to.include({ code: 'conflict' });
  });

  it('takes the code of a JSON error, else the status’s meaning', async () => {
    answers.push(
      new Response(JSON.stringify({ code: 'forbidden', message: 'not yours' }), { status: 403 }),
    );
    const coded = await rejection(httpTransport().open(meta(1000), listener));
    expect(coded).to.include({ code: 'forbidden', message: 'ws-uploader: not yours' });
    // A proxy's answer, without the server's JSON.
    answers.push(new Response('<html>busy</html>', { status: 507 }));
    const byStatus = await rejection(httpTransport().open(meta(1000), listener));
    expect(byStatus).to.include({ code: 'storage-full' });
  });
});
