import { expect } from '@open-wc/testing';
import { requestsInFlight } from '../../src/engine/http-transport.js';

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
