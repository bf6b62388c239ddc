import { expect } from '@open-wc/testing';
import { BlockBuffers, eachPiece, readBlocks, type Block } from '../../src/engine/read-pieces.js';

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

describe('readBlocks (a range of a Blob, block after block)', () => {
  it('reads a range in blocks of one size, one ahead, into two buffers used in turn', async () => {
    const source = pattern(11 * MiB + 5);
    const range = { start: MiB + 1, end: 11 * MiB + 5 };
    const reader = readBlocks(new Blob([source]), range, 2 * MiB);
    const got: Block[] = [];
    const copy = new Uint8Array(range.end - range.start);
    // As the task does: the next block's read starts before the current one is used.
    let next = reader.next();
    for (;;) {
      const block = await next;
      if (!block) break;
      next = reader.next();
      copy.set(block.bytes, block.offset - range.start);
      got.push(block);
    }
    expect(copy).to.deep.equal(source.subarray(range.start, range.end));
    expect(got.map((b) => b.offset)).to.deep.equal([1, 3, 5, 7, 9, 11].map((m) => m * MiB + 1));
    // Every block but the last (4 bytes) is whole, as long as the block size.
    expect(
      got
        .slice(0, -1)
        .every((b) => b.bytes.buffer.byteLength === 2 * MiB || b.bytes.byteLength === 0),
    ).to.equal(true);
    expect(got.at(-2)?.bytes.length).to.equal(2 * MiB);
    expect(got.at(-1)?.bytes.length).to.equal(4);
    // A block's memory is read into again two blocks later (its view is then detached), so
    // no block but the last two is still readable, and none was fresh memory of its own.
    expect(got.slice(0, -2).every((b) => b.bytes.byteLength === 0)).to.equal(true);
    expect(got.slice(-2).every((b) => b.bytes.buffer.byteLength === 2 * MiB)).to.equal(true);
  });

  it('shares its two buffers with the readers of the next ranges', async () => {
    const source = pattern(8 * MiB);
    const buffers = new BlockBuffers();
    const blob = new Blob([source]);
    const first = readBlocks(blob, { start: 0, end: 2 * MiB }, MiB, buffers);
    const a = await first.next();
    const b = await first.next();
    expect(await first.next()).to.equal(undefined);
    const second = readBlocks(blob, { start: 4 * MiB, end: 6 * MiB }, MiB, buffers);
    const c = await second.next();
    const d = await second.next();
    expect(c?.bytes).to.deep.equal(source.subarray(4 * MiB, 5 * MiB));
    expect(d?.bytes).to.deep.equal(source.subarray(5 * MiB, 6 * MiB));
    // The second range's blocks were read into the first range's memory.
    expect([a?.bytes.byteLength, b?.bytes.byteLength]).to.deep.equal([0, 0]);
  });

  it('reads a range shorter than a block as one block, and an empty range as none', async () => {
    const source = pattern(1000);
    const reader = readBlocks(new Blob([source]), { start: 10, end: 990 }, MiB);
    const block = await reader.next();
    expect(block?.offset).to.equal(10);
    expect(block?.bytes).to.deep.equal(source.subarray(10, 990));
    expect(await reader.next()).to.equal(undefined);
    expect(await readBlocks(new Blob([source]), { start: 5, end: 5 }, MiB).next()).to.equal(
      undefined,
    );
  });

  it('rejects with the stream’s error when the file cannot be read', async () => {
    // A file that became unreadable: its byte stream errors.
    const blob = {
      size: 3 * MiB,
      slice: () => blob,
      stream: () =>
        new ReadableStream({
          type: 'bytes',
          pull: (c) => c.error(new DOMException('gone', 'NotReadableError')),
        }),
    } as unknown as Blob;
    const reader = readBlocks(blob, { start: 0, end: 3 * MiB }, MiB);
    const first = reader.next();
    const second = reader.next();
    for (const read of [first, second]) {
      const error = await read.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((error as DOMException | undefined)?.name).to.equal('NotReadableError');
    }
  });

  it('ends with nothing once stopped', async () => {
    const reader = readBlocks(new Blob([pattern(4 * MiB)]), { start: 0, end: 4 * MiB }, MiB);
    expect((await reader.next())?.offset).to.equal(0);
    reader.stop();
    expect(await reader.next()).to.equal(undefined);
  });

  it('reads each block with slice().arrayBuffer() where the stream is not a byte stream', async () => {
    const source = pattern(3 * MiB);
    const real = new Blob([source]);
    // A Blob whose stream has no BYOB reader; its slices are real ones.
    const blob = {
      size: real.size,
      slice: (start: number, end: number) => real.slice(start, end),
      stream: () => new ReadableStream<Uint8Array>({ pull: (c) => c.close() }),
    } as unknown as Blob;
    const reader = readBlocks(blob, { start: 0, end: 3 * MiB }, 2 * MiB);
    const first = await reader.next();
    const second = await reader.next();
    expect(first?.bytes).to.deep.equal(source.subarray(0, 2 * MiB));
    expect(second?.bytes).to.deep.equal(source.subarray(2 * MiB));
    expect(await reader.next()).to.equal(undefined);
  });
});
