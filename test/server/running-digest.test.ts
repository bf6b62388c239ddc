import { createHash } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { HELD_AHEAD_MAX, RunningDigest } from '../../server/upload/running-digest.js';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** What a digest gives at completion: its hash, finished with the bytes it did not reach. */
async function finish(d: RunningDigest, item: Uint8Array): Promise<{ hex: string; from: number }> {
  const { hash, from } = await d.take();
  return { hex: hash.update(item.subarray(from)).digest('hex'), from };
}

describe('RunningDigest', () => {
  const item = Buffer.alloc(1000, 0).map((_, i) => (i * 7) % 251);

  it('feeds bytes written in order, and reads nothing back', async () => {
    const d = new RunningDigest();
    for (let at = 0; at < item.length; at += 100) d.offer(at, item.subarray(at, at + 100));
    expect(await finish(d, item)).to.deep.equal({ hex: sha256(item), from: item.length });
  });

  it('holds bytes that arrive ahead of a gap, and feeds them once it fills', async () => {
    const d = new RunningDigest();
    d.offer(400, item.subarray(400, 700));
    d.offer(700, item.subarray(700, 1000));
    expect(d.hashedTo).to.equal(0);
    expect(d.heldBytes).to.equal(600);
    d.offer(0, item.subarray(0, 400));
    expect(d.hashedTo).to.equal(1000);
    expect(d.heldBytes).to.equal(0);
    expect(await finish(d, item)).to.deep.equal({ hex: sha256(item), from: 1000 });
  });

  it('lets held bytes go past its bound: they are read back at completion', async () => {
    const big = new Uint8Array(HELD_AHEAD_MAX + 2);
    const d = new RunningDigest();
    d.offer(1, big.subarray(1, HELD_AHEAD_MAX + 2));
    expect(d.heldBytes).to.equal(0);
    d.offer(0, big.subarray(0, 1));
    expect(d.hashedTo).to.equal(1);
    expect(await finish(d, big)).to.deep.equal({ hex: sha256(big), from: 1 });
  });

  it('takes no more bytes once taken', async () => {
    const d = new RunningDigest();
    d.offer(0, item.subarray(0, 500));
    const taking = d.take();
    d.offer(500, item.subarray(500));
    const { hash, from } = await taking;
    expect(from).to.equal(500);
    expect(hash.update(item.subarray(from)).digest('hex')).to.equal(sha256(item));
  });

  it('gives the right digest whatever the order and overlap of the writes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(999), fc.integer({ min: 1, max: 300 })), { maxLength: 30 }),
        async (writes) => {
          const d = new RunningDigest();
          for (const [start, length] of writes)
            d.offer(start, item.subarray(start, Math.min(item.length, start + length)));
          const { hex, from } = await finish(d, item);
          expect(hex).to.equal(sha256(item));
          expect(from).to.be.at.most(item.length);
        },
      ),
      { numRuns: 300 },
    );
  });
});
