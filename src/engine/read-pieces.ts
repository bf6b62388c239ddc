/**
 * Reading a `Blob` from start to end with as little fresh memory as the browser allows.
 * @module
 */

/** The buffer a `Blob` is read into, piece after piece. */
const READ_BUFFER = 4 * 1024 * 1024;

/**
 * Reads a `Blob` in order, each piece into the same buffer (a BYOB reader of its byte stream):
 * fresh memory for every piece, as a default reader or `slice().arrayBuffer()` give, cost more than
 * the SHA-256 itself (the memory is mapped, zeroed and collected again, 500 MiB for a 500 MiB
 * file). Where the stream is not a byte stream, its own pieces. `use` must be done with a piece
 * when it returns.
 * @internal
 */
export async function eachPiece(blob: Blob, use: (bytes: Uint8Array) => void): Promise<void> {
  const stream = blob.stream();
  const byob = byobReader(stream);
  if (!byob) {
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      use(value);
    }
  }
  let buffer = new ArrayBuffer(READ_BUFFER);
  for (;;) {
    const { done, value } = await byob.read(new Uint8Array(buffer));
    if (done || !value) return;
    use(value);
    buffer = value.buffer as ArrayBuffer;
  }
}

/**
 * A BYOB reader of `stream`, or `undefined` where it is not a byte stream in this browser (the
 * stream is then still unlocked, for a default reader).
 * @internal
 */
export function byobReader(
  stream: ReadableStream<Uint8Array>,
): ReadableStreamBYOBReader | undefined {
  try {
    return stream.getReader({ mode: 'byob' });
  } catch {
    return undefined;
  }
}

/** Bytes of the item at an offset, as {@link readBlocks} hands them out. */
export interface Block {
  readonly offset: number;
  readonly bytes: Uint8Array;
}

/** The blocks of one range of a `Blob`, in order: see {@link readBlocks}. */
export interface BlockReader {
  /**
   * Starts reading the next block and resolves with it (`undefined` past the end). A block's bytes
   * stay valid until the second `next()` after the one that gave it: the caller reads one block
   * ahead of the one it uses, and the reader fills the one before.
   */
  next(): Promise<Block | undefined>;
  /** Stops reading; a read under way ends (its promise may reject, and nobody need wait for it). */
  stop(): void;
}

/**
 * Two buffers that block readers use in turn (see {@link readBlocks}): one reader after another,
 * the ranges of one sender share them.
 * @internal
 */
export class BlockBuffers {
  readonly #ring: (ArrayBuffer | undefined)[] = [undefined, undefined];
  #blocks = 0;

  /** The buffer for the next block (at least `size` bytes; fresh where none is held) and its slot. */
  take(size: number): { slot: number; buffer: ArrayBuffer } {
    const slot = this.#blocks++ % 2;
    const held = this.#ring[slot];
    this.#ring[slot] = undefined;
    return { slot, buffer: held && held.byteLength >= size ? held : new ArrayBuffer(size) };
  }

  /** Gives back the buffer of `slot`, as the last read left it, for the block after next. */
  give(slot: number, buffer: ArrayBuffer): void {
    this.#ring[slot] = buffer;
  }
}

/**
 * Reads `range` of `blob` in blocks of `block` bytes (the last one shorter), into two buffers used
 * in turn (a BYOB reader of the range's byte stream, filled to the block's size): a fresh buffer
 * per block, as `slice().arrayBuffer()` gives, is memory mapped, zeroed and collected again for
 * every byte sent. Where the stream is not a byte stream, each block is `slice().arrayBuffer()`.
 * @param blob the item
 * @param range the bytes to read, `[start, end)`
 * @param block the size of each block, in bytes
 * @param buffers the two buffers, when shared with the readers of the sender's other ranges (their
 *   blocks must be used by then)
 * @internal
 */
export function readBlocks(
  blob: Blob,
  range: { readonly start: number; readonly end: number },
  block: number,
  buffers = new BlockBuffers(),
): BlockReader {
  let offset = range.start;
  let stopped = false;
  let byob: ReadableStreamBYOBReader | undefined;
  let started = false;
  /** Reads one after another: a BYOB reader takes one read at a time. */
  let previous: Promise<unknown> = Promise.resolve();

  const fill = async (at: number, length: number): Promise<Block> => {
    if (!started) {
      started = true;
      if (range.end > range.start) byob = byobReader(blob.slice(range.start, range.end).stream());
    }
    if (!byob)
      return { offset: at, bytes: new Uint8Array(await blob.slice(at, at + length).arrayBuffer()) };
    // Each read moves the buffer's memory to a new ArrayBuffer: the last one goes back.
    const taken = buffers.take(block);
    const { slot } = taken;
    let { buffer } = taken;
    let filled = 0;
    while (filled < length) {
      const { done, value } = await byob.read(new Uint8Array(buffer, filled, length - filled));
      if (!value) throw new DOMException('the read was cancelled', 'AbortError');
      buffer = value.buffer as ArrayBuffer;
      filled += value.byteLength;
      if (done) break;
    }
    buffers.give(slot, buffer);
    if (filled < length)
      throw new DOMException(
        `the file ended at ${at + filled}, before ${at + length}`,
        'NotReadableError',
      );
    return { offset: at, bytes: new Uint8Array(buffer, 0, length) };
  };

  return {
    next: () => {
      if (stopped || offset >= range.end) return Promise.resolve(undefined);
      const at = offset;
      const length = Math.min(range.end - at, block);
      offset = at + length;
      const read = previous.then(() => (stopped ? undefined : fill(at, length)));
      // The next read waits for this one, failed or not; a read nobody waits for any more (the
      // caller stopped) must not be an unhandled rejection.
      previous = read.catch(ignore);
      return read;
    },
    stop: () => {
      stopped = true;
      byob?.cancel().catch(ignore);
    },
  };
}

/** A failure nobody needs to hear of (see {@link readBlocks}). */
function ignore(): void {
  // Nothing to do.
}
