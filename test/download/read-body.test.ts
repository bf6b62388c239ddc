// A part's body read into the pool's buffers: every byte in place, whoever takes the pieces.
import { expect } from '@open-wc/testing';
import { BufferPool } from '../../src/download/buffer-pool.js';
import { readBody } from '../../src/download/fetch-part.js';

const MiB = 1024 * 1024;
const holder = { serverId: 'u1' };

function pattern(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7) % 251;
  return bytes;
}

describe('readBody', () => {
  it('hands each filled buffer of the pool at its offset, even to a sink that moves it away', async () => {
    const source = pattern(9 * MiB + 5);
    const pool = new BufferPool(4 * MiB);
    const got = new Uint8Array(source.length);
    const pieces: [number, number][] = [];
    const read = await readBody(
      new Response(new Blob([source])),
      holder,
      (at, bytes) => {
        pieces.push([at, bytes.length]);
        got.set(bytes, at);
        // Moved to another thread, as the hash Worker takes it: detached here.
        structuredClone(bytes, { transfer: [bytes.buffer] });
      },
      30_000,
      pool,
    );
    expect(read).to.equal(source.length);
    expect(got).to.deep.equal(source);
    // Whole buffers but the last.
    expect(pieces).to.deep.equal([
      [0, 4 * MiB],
      [4 * MiB, 4 * MiB],
      [8 * MiB, MiB + 5],
    ]);
  });

  it('reads into buffers given back to the pool, and gives back the one left unused', async () => {
    const source = pattern(8 * MiB);
    const pool = new BufferPool(4 * MiB);
    const buffers = new Set<ArrayBuffer>();
    await readBody(
      new Response(new Blob([source])),
      holder,
      (_at, bytes) => {
        buffers.add(bytes.buffer);
        pool.give(bytes.buffer);
      },
      30_000,
      pool,
    );
    // The second piece was read into the memory of the first (moved into a new ArrayBuffer by
    // the reader); the buffer taken for a third read, which found the end, is back in the pool.
    expect(buffers.size).to.equal(2);
    expect(pool.kept).to.equal(1);
  });

  it('gives the body’s own pieces without a pool', async () => {
    const source = pattern(3 * MiB);
    const got = new Uint8Array(source.length);
    let at = 0;
    const read = await readBody(new Response(new Blob([source])), holder, (offset, bytes) => {
      expect(offset).to.equal(at);
      got.set(bytes, offset);
      at += bytes.length;
    });
    expect(read).to.equal(source.length);
    expect(got).to.deep.equal(source);
  });
});
