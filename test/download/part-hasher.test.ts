// PartHasher: the SHA-256 of an item from parts that arrive out of order, hashed as they come (in
// the real hash Worker), later parts held up to a bound, the rest read back at the end.
import { expect } from '@open-wc/testing';
import { hashWorkerFactory } from '../../src/engine/item-hasher.js';
import { PartHasher } from '../../src/download/part-hasher.js';
import { toHex } from '../../src/protocol/hex.js';

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
    const source = item(12 * MiB + 5);
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
});
