// PartHasher: the SHA-256 of an item from parts that arrive out of order, hashed as they come (in
// the real hash Worker), later parts held up to a bound, the rest read back at the end.
import { expect } from '@open-wc/testing';
import { hashWorkerFactory } from '../../src/engine/item-hasher.js';
import { PartHasher } from '../../src/download/part-hasher.js';
import { toHex } from '../../src/protocol/hex.js';
import { until } from '../helpers/until.js';

const MiB = 1024 * 1024;

function item(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}

/** A store that holds the whole item and counts what is read back. */
function readBack(source: Uint8Array<ArrayBuffer>) {
  const reads: [number, number][] = [];
  const read = (start: number, end: number): Promise<Uint8Array<ArrayBuffer>> => {
    reads.push([start, end]);
    return Promise.resolve(source.slice(start, end));
  };
  return { reads, read };
}

describe('PartHasher', () => {
  it('hashes parts offered in order in the hash Worker, handing their buffers over, with nothing read back', async () => {
    // The last part is large enough to travel alone (smaller pieces are gathered into a copy).
    const source = item(12 * MiB + 300 * 1024);
    const { reads, read } = readBack(source);
    const hasher = new PartHasher(source.length, read, hashWorkerFactory(true));
    const offered: Uint8Array[] = [];
    for (let at = 0; at < source.length; at += 4 * MiB) {
      const part = source.slice(at, Math.min(source.length, at + 4 * MiB));
      offered.push(part);
      hasher.offer(at, part);
    }
    expect(toHex(await hasher.digest())).to.equal(await sha256(source));
    expect(reads).to.deep.equal([]);
    // Transferred to the Worker, not copied.
    expect(offered.every((p) => p.byteLength === 0)).to.equal(true);
  });

  it('gives back every buffer offered once done with it: hashed in the Worker, held, or let go', async () => {
    const source = item(40 * MiB);
    const { read } = readBack(source);
    const released: ArrayBuffer[] = [];
    const hasher = new PartHasher(source.length, read, hashWorkerFactory(true), 16 * MiB, (b) =>
      released.push(b),
    );
    const part = (i: number) => source.slice(i * 4 * MiB, (i + 1) * 4 * MiB);
    // Parts 1 to 4 held, 5 to 9 let go at once (no room), part 1 offered again (a retry: let go).
    for (let i = 1; i < 10; i++) hasher.offer(i * 4 * MiB, part(i));
    hasher.offer(4 * MiB, part(1));
    expect(released.length).to.equal(6);
    hasher.offer(0, part(0));
    expect(toHex(await hasher.digest())).to.equal(await sha256(source));
    // The Worker sends back the buffers it hashed: parts 0 to 4, whole and usable again (the
    // bytes read back are released too).
    await until(() => released.filter((b) => b.byteLength === 4 * MiB).length >= 16);
    expect(released.every((b) => b.byteLength === 4 * MiB)).to.equal(true);
  });

  it('holds later parts up to 16 MiB for their turn, and reads back the ones it could not hold', async () => {
    const source = item(40 * MiB);
    const { reads, read } = readBack(source);
    const hasher = new PartHasher(source.length, read, hashWorkerFactory(true));
    const part = (i: number) => source.slice(i * 4 * MiB, (i + 1) * 4 * MiB);
    for (let i = 1; i < 10; i++) hasher.offer(i * 4 * MiB, part(i));
    hasher.offer(0, part(0));
    expect(toHex(await hasher.digest())).to.equal(await sha256(source));
    // Parts 1 to 4 were held (16 MiB); 5 to 9 are read back.
    expect(reads).to.deep.equal([5, 6, 7, 8, 9].map((i) => [i * 4 * MiB, (i + 1) * 4 * MiB]));
  });

  it('reads back bytes stored before (a resumed download), up to the next part it holds, on the page thread without a Worker', async () => {
    const source = item(3 * MiB + 17);
    const { reads, read } = readBack(source);
    const hasher = new PartHasher(source.length, read, undefined);
    hasher.offer(2 * MiB, source.slice(2 * MiB));
    expect(toHex(await hasher.digest())).to.equal(await sha256(source));
    expect(reads).to.deep.equal([[0, 2 * MiB]]);
  });

  it('fails its digest when the Worker cannot start (the downloader then hashes the stored item)', async () => {
    const source = item(MiB);
    const { read } = readBack(source);
    const hasher = new PartHasher(
      source.length,
      read,
      hashWorkerFactory('/no-such-dir/hash-worker.js'),
    );
    hasher.offer(0, source.slice());
    let error: unknown;
    await hasher.digest().catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(Error);
  });

  it('hashes parts as they stream in, piece by piece, and reads back a stored part it could not hold as soon as the hash reaches it', async () => {
    const source = item(48 * MiB);
    const { reads, read } = readBack(source);
    const hasher = new PartHasher(source.length, read, hashWorkerFactory(true));
    const stream = (i: number, from = 0, to = 16 * MiB) => {
      for (let at = i * 16 * MiB + from; at < i * 16 * MiB + to; at += 64 * 1024)
        hasher.offer(at, source.slice(at, at + 64 * 1024));
    };
    // Parts 1 and 2 stream in while part 0 waits: 16 MiB of them is held, the rest not.
    stream(1);
    stream(2);
    hasher.stored(16 * MiB, 32 * MiB);
    hasher.stored(32 * MiB, 48 * MiB);
    expect(reads).to.deep.equal([]);
    stream(0);
    hasher.stored(0, 16 * MiB);
    // Part 2 is read back as soon as the held part 1 is hashed, before the digest is asked for.
    await until(() => reads.length === 4);
    expect(reads).to.deep.equal([0, 1, 2, 3].map((i) => [(8 + i) * 4 * MiB, (9 + i) * 4 * MiB]));
    expect(toHex(await hasher.digest())).to.equal(await sha256(source));
  });

  it('a piece offered while stored bytes are read back is not hashed twice', async () => {
    const source = item(8 * MiB);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const hasher = new PartHasher(
      source.length,
      async (start, end) => {
        await gate;
        return source.slice(start, end);
      },
      undefined,
    );
    hasher.stored(0, 4 * MiB); // read back, held up by the gate
    // The same bytes again (a part fetched a second time), and the next part.
    hasher.offer(0, source.slice(0, 4 * MiB));
    hasher.offer(4 * MiB, source.slice(4 * MiB));
    release();
    expect(toHex(await hasher.digest())).to.equal(await sha256(source));
  });
  it("hands a dup/2 frame's payload over with its frame (no copy), and copies a small view of a large buffer, leaving it whole", async () => {
    const source = item(2 * MiB);
    const { reads, read } = readBack(source);
    const hasher = new PartHasher(source.length, read, hashWorkerFactory(true));
    // A frame: a 24-byte header, then the first MiB.
    const frame = new Uint8Array(24 + MiB);
    frame.set(source.subarray(0, MiB), 24);
    hasher.offer(0, frame.subarray(24));
    // 600 KiB in the middle of a 4 MiB buffer still in use elsewhere.
    const large = new Uint8Array(4 * MiB);
    large.set(source.subarray(MiB, MiB + 600 * 1024), MiB);
    hasher.offer(MiB, large.subarray(MiB, MiB + 600 * 1024));
    hasher.offer(MiB + 600 * 1024, source.slice(MiB + 600 * 1024));
    expect(toHex(await hasher.digest())).to.equal(await sha256(source));
    expect(reads).to.deep.equal([]);
    expect(frame.byteLength).to.equal(0); // transferred
    expect(large.byteLength).to.equal(4 * MiB);
    expect(await sha256(large.slice(MiB, MiB + 600 * 1024))).to.equal(
      await sha256(source.slice(MiB, MiB + 600 * 1024)),
    );
  });

  it('a part fetched again in other pieces (an attempt that failed) neither breaks the hash nor takes room from the parts it holds', async () => {
    const source = item(7 * MiB);
    const { reads, read } = readBack(source);
    const hasher = new PartHasher(source.length, read, undefined, 4 * MiB);
    const offerPieces = (from: number, to: number, size: number) => {
      for (let at = from; at < to; at += size)
        hasher.offer(at, source.slice(at, Math.min(to, at + size)));
    };
    offerPieces(MiB, 2 * MiB, 256 * 1024); // the first attempt at part 1
    offerPieces(MiB, 2 * MiB, 512 * 1024); // the second, in other pieces
    hasher.offer(0, source.slice(0, MiB)); // part 0: the hash goes past part 1
    // Parts 3 to 6 fill the 4 MiB the hasher holds, while part 2 is late.
    for (let i = 3; i < 7; i++) hasher.offer(i * MiB, source.slice(i * MiB, (i + 1) * MiB));
    hasher.offer(2 * MiB, source.slice(2 * MiB, 3 * MiB));
    expect(toHex(await hasher.digest())).to.equal(await sha256(source));
    // Everything was held: the pieces of the first attempt no longer counted once hashed past.
    expect(reads).to.deep.equal([]);
  });
});
