import { expect } from '@open-wc/testing';
import { eachPiece } from '../../src/engine/read-pieces.js';

const MiB = 1024 * 1024;

/** Bytes that differ at every offset (mod 251), so a piece out of place shows. */
function pattern(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = i % 251;
  return bytes;
}

/** Reads `blob` with eachPiece, copying each piece out before the next is read. */
async function readAll(blob: Blob): Promise<{ bytes: Uint8Array; buffers: Set<number> }> {
  const bytes = new Uint8Array(blob.size);
  /** The sizes of the buffers the pieces were in, when they were handed over. */
  const buffers = new Set<number>();
  let at = 0;
  await eachPiece(blob, (piece) => {
    bytes.set(piece, at);
    at += piece.length;
    buffers.add(piece.buffer.byteLength);
  });
  expect(at).to.equal(blob.size);
  return { bytes, buffers };
}

describe('eachPiece (a Blob read in order)', () => {
  it('reads every byte in order, into one buffer used again for each piece', async () => {
    const source = pattern(9 * MiB + 3);
    const { bytes, buffers } = await readAll(new Blob([source]));
    expect(bytes).to.deep.equal(source);
    // The BYOB reader hands the same memory back, moved into a new ArrayBuffer each time: every
    // piece is a view of a buffer of the one size, whatever the piece's own length.
    expect([...buffers]).to.deep.equal([4 * MiB]);
  });

  it('reads an empty Blob as no pieces', async () => {
    let pieces = 0;
    await eachPiece(new Blob([]), () => pieces++);
    expect(pieces).to.equal(0);
  });

  it('falls back to the stream’s own pieces where it is not a byte stream', async () => {
    const source = pattern(3 * MiB);
    const chunks = [source.subarray(0, MiB), source.subarray(MiB)];
    // A Blob whose stream has no BYOB reader, as in browsers without byte streams for Blob.
    const blob = {
      size: source.length,
      stream: () =>
        new ReadableStream<Uint8Array>({
          pull(controller) {
            const next = chunks.shift();
            if (next) controller.enqueue(next);
            else controller.close();
          },
        }),
    } as unknown as Blob;
    const { bytes, buffers } = await readAll(blob);
    expect(bytes).to.deep.equal(source);
    // The stream's own chunks, views of the source.
    expect([...buffers]).to.deep.equal([3 * MiB]);
  });
});
