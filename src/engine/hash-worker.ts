/**
 * The hash Worker: computes the SHA-256 of a `Blob` (a `File`) off the page's main thread, so the
 * thread that sends is not the one that hashes. One message in, `{ blob }`; one message out,
 * `{ digest }` (32 bytes) or `{ error }`. Built as `hash-worker.js` next to the engine's modules,
 * and as `dist/bundle/hash-worker.js` next to the bundle; `ItemHasher` starts it.
 * @module
 */
import { createSHA256 } from 'hash-wasm';

/** What the hash Worker is sent. */
export interface HashRequest {
  readonly blob: Blob;
}

/** What the hash Worker answers. */
export type HashReply = { readonly digest: Uint8Array } | { readonly error: string };

// The Worker's global scope, typed by what is used here (the project compiles against the DOM lib).
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<HashRequest>) => void) | null;
  postMessage(message: HashReply): void;
};

async function hash(blob: Blob): Promise<Uint8Array> {
  const hasher = await createSHA256();
  hasher.init();
  // A stream reads the file faster than slices in a Worker, and holds one chunk at a time.
  const reader = blob.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return hasher.digest('binary');
    hasher.update(value);
  }
}

scope.onmessage = (event) => {
  hash(event.data.blob).then(
    (digest) => scope.postMessage({ digest }),
    (error: unknown) =>
      scope.postMessage({ error: error instanceof Error ? error.message : String(error) }),
  );
};
