import { expect } from '@open-wc/testing';
import { HttpTransport, requestsInFlight } from '../../src/engine/http-transport.js';
import { resolveOptions } from '../../src/engine/options.js';

const MiB = 1024 * 1024;

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
    new HttpTransport(
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
        ...(partSize === undefined ? {} : { partSize }),
      }),
      'http://127.0.0.1:1/uploads',
      undefined,
    );

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
