/**
 * The hash Worker: computes the SHA-256 of a `Blob` (a `File`), or of chunks sent in order, off the
 * page's main thread, so the thread that sends (or downloads) is not the one that hashes. One
 * message `{ blob }`, or messages `{ chunk }` then `{ end }`, in; one message out, `{ digest }`
 * (32 bytes) or `{ error }` (and, for a chunk sent with `back`, its buffer once hashed). Built as
 * `hash-worker.js` next to the engine's modules, and as `dist/bundle/hash-worker.js` next to the
 * bundle; `ItemHasher` starts it.
 * @module
 */
import { createSHA256, type IHasher } from 'hash-wasm';
import { eachPiece } from './read-pieces.js';

/**
 * What the hash Worker is sent: a `Blob` to hash whole (one message), or an item's bytes in order,
 * chunk by chunk (their buffers transferred; with `back`, each buffer is sent back once hashed, to
 * be used again), then `end`.
 */
export type HashRequest =
  | { readonly blob: Blob }
  | { readonly chunk: Uint8Array; readonly back?: boolean }
  | { readonly end: true };

/** What the hash Worker answers, to a `blob` or an `end`. */
export type HashReply = { readonly digest: Uint8Array } | { readonly error: string };

/** A chunk's buffer sent back once hashed (a chunk sent with `back`). */
export interface HashBack {
  readonly back: ArrayBuffer;
}

// The Worker's global scope, typed by what is used here (the project compiles against the DOM lib).
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<HashRequest>) => void) | null;
  postMessage(message: HashReply | HashBack, transfer?: Transferable[]): void;
};

async function hash(blob: Blob): Promise<Uint8Array> {
  const hasher = await createSHA256();
  hasher.init();
  // A stream reads the file faster than slices in a Worker.
  await eachPiece(blob, (bytes) => hasher.update(bytes));
  return hasher.digest('binary');
}

const answer = (work: Promise<Uint8Array>): void => {
  work.then(
    (digest) => scope.postMessage({ digest }),
    (error: unknown) =>
      scope.postMessage({ error: error instanceof Error ? error.message : String(error) }),
  );
};

/** The hash of the chunks sent so far; chunks are hashed in the order they came. */
let stream: Promise<IHasher> | undefined;

scope.onmessage = (event) => {
  const request = event.data;
  if ('blob' in request) {
    answer(hash(request.blob));
    return;
  }
  stream ??= createSHA256().then((h) => {
    h.init();
    return h;
  });
  if ('chunk' in request) {
    const { chunk, back } = request;
    stream = stream.then((h) => {
      h.update(chunk);
      const buffer = chunk.buffer;
      if (back && buffer instanceof ArrayBuffer) scope.postMessage({ back: buffer }, [buffer]);
      return h;
    });
    return;
  }
  answer(stream.then((h) => h.digest('binary')));
  stream = undefined;
};
