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
