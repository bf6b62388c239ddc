import { createHash } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { AHEAD_IDLE_MS, AheadBudget, RunningDigest } from '../../server/upload/running-digest.js';

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
    const budget = new AheadBudget(500);
    const d = new RunningDigest(budget);
    d.offer(100, item.subarray(100, 700));
    expect(d.heldBytes).to.equal(0);
    expect(budget.used).to.equal(0);
    d.offer(0, item.subarray(0, 100));
    expect(d.hashedTo).to.equal(100);
    expect(await finish(d, item)).to.deep.equal({ hex: sha256(item), from: 100 });
  });

  it('shares its bound with other digests: an idle one lets its held bytes go', async () => {
    let now = 0;
    // Held bytes may end anywhere within the bound here: this is about sharing it.
    const budget = new AheadBudget(500, () => now, 500);
    const [a, b] = [new RunningDigest(budget), new RunningDigest(budget)];
    a.offer(100, item.subarray(100, 400));
    b.offer(100, item.subarray(100, 300));
    expect([a.heldBytes, b.heldBytes, budget.used]).to.deep.equal([300, 200, 500]);
    // Both busy: b's next bytes are not held, a keeps its own.
    b.offer(300, item.subarray(300, 500));
    expect([a.heldBytes, b.heldBytes, budget.used]).to.deep.equal([300, 200, 500]);
    // a took no room for a while: its bytes go (read back when its gap fills), b's are held.
    now += AHEAD_IDLE_MS;
    b.offer(300, item.subarray(300, 500));
    expect([a.heldBytes, b.heldBytes, budget.used]).to.deep.equal([0, 400, 400]);
    // b's gap fills: its held bytes are fed and given back.
    b.offer(0, item.subarray(0, 100));
    expect([b.hashedTo, b.heldBytes, budget.used]).to.deep.equal([500, 0, 0]);
    a.offer(0, item.subarray(0, 100));
    expect(a.hashedTo).to.equal(100);
    expect(await finish(a, item)).to.deep.equal({ hex: sha256(item), from: 100 });
    expect(await finish(b, item)).to.deep.equal({ hex: sha256(item), from: 500 });
  });

  it('lets idle bytes go only when that makes the room, and counts a digest fed in order as busy', async () => {
    let now = 0;
    const budget = new AheadBudget(32, () => now);
    const [idle, a, c] = [
      new RunningDigest(budget),
      new RunningDigest(budget),
      new RunningDigest(budget),
    ];
    idle.offer(1, item.subarray(1, 9));
    now += 5000;
    a.offer(1, item.subarray(1, 21));
    expect(budget.used).to.equal(28);
    // 16 more: letting idle's 8 go would leave 20 + 16 > 32, so nothing is let go.
    c.offer(1, item.subarray(1, 17));
    expect([idle.heldBytes, a.heldBytes, c.heldBytes, budget.used]).to.deep.equal([8, 20, 0, 28]);
    // 12 more fit once idle's 8 go.
    c.offer(1, item.subarray(1, 13));
    expect([idle.heldBytes, c.heldBytes, budget.used]).to.deep.equal([0, 12, 32]);
  });

  it('counts a digest fed in order as busy: its held bytes stay', () => {
    let now = 0;
    const budget = new AheadBudget(32, () => now, 32);
    const [a, b] = [new RunningDigest(budget), new RunningDigest(budget)];
    a.offer(10, item.subarray(10, 30));
    // Three seconds on, its gap is filling: bytes at its place, fed.
    now += 3000;
    a.offer(0, item.subarray(0, 5));
    expect([a.hashedTo, a.heldBytes]).to.deep.equal([5, 20]);
    // One second later a took no room for 4 s, but was fed 1 s ago: not idle, b gets no room.
    now += 1000;
    b.offer(1, item.subarray(1, 17));
    expect([a.heldBytes, b.heldBytes, budget.used]).to.deep.equal([20, 0, 20]);
  });

  it('holds nothing far past the gap: a stripe of a split that this server may never join up', async () => {
    const budget = new AheadBudget(300);
    const d = new RunningDigest(budget);
    // Ends 400 bytes past the digest's place: more than the budget allows ahead.
    d.offer(300, item.subarray(300, 400));
    expect([d.heldBytes, budget.used]).to.deep.equal([0, 0]);
    // Within the bound, but not within three quarters of it (225 bytes): not held either.
    d.offer(100, item.subarray(100, 300));
    expect([d.heldBytes, budget.used]).to.deep.equal([0, 0]);
    // Within 225 bytes of it: held.
    d.offer(100, item.subarray(100, 225));
    expect([d.heldBytes, budget.used]).to.deep.equal([125, 125]);
    d.offer(0, item.subarray(0, 100));
    expect(d.hashedTo).to.equal(225);
    expect(await finish(d, item)).to.deep.equal({ hex: sha256(item), from: 225 });
  });

  it('holds the parts of one write all or none, so its place never stops inside a write', async () => {
    const budget = new AheadBudget(300);
    const d = new RunningDigest(budget);
    // The write ends 250 bytes past: over the span (225), though its first part alone is not.
    d.offerParts(100, [item.subarray(100, 150), item.subarray(150, 250)]);
    expect([d.heldBytes, budget.used]).to.deep.equal([0, 0]);
    // Within it: both parts held, and fed once the gap fills.
    d.offerParts(100, [item.subarray(100, 150), item.subarray(150, 200)]);
    expect([d.heldBytes, budget.used]).to.deep.equal([100, 100]);
    d.offerParts(0, [item.subarray(0, 60), item.subarray(60, 100)]);
    expect([d.hashedTo, d.heldBytes, budget.used]).to.deep.equal([200, 0, 0]);
    expect(await finish(d, item)).to.deep.equal({ hex: sha256(item), from: 200 });
  });

  it('gives back what it held when dropped or taken', async () => {
    const budget = new AheadBudget(1000);
    const a = new RunningDigest(budget);
    a.offer(100, item.subarray(100, 300));
    a.drop();
    expect(budget.used).to.equal(0);
    a.offer(500, item.subarray(500, 600));
    expect(budget.used).to.equal(100);
    await a.take();
    expect(budget.used).to.equal(0);
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
