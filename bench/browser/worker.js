/* global self, navigator, performance, crypto, fetch, WebSocket, setInterval, clearInterval, setTimeout, URL, Worker */
/**
 * The dedicated Worker of the browser benchmark's page (`bench.js`): writes the source files into
 * the origin private file system, and runs the baselines that belong off the page's thread:
 *
 * - `ws-raw`: the raw WebSocket senders, which send the file in large messages to the bare sink
 *   with no protocol at all (acknowledged, or paced by `bufferedAmount` alone), or in dup/2-like
 *   frames, each with the CRC-32C of its payload (the per-byte work of the engine's `dup/2`);
 * - `ws-dup2`: the same per-byte work sent as real `dup/2` to an upload server;
 * - `hash`: the SHA-256 of the file, read as a stream (hash-wasm), beside the page's `fetch` PUT;
 * - `get-sync`: one `fetch` GET of an item written into an OPFS file through a
 *   `FileSystemSyncAccessHandle` (the download baseline).
 *
 * The codec's `crc32c` and `encodeDup2Frame` and hash-wasm come from `/worker-lib.js`, which the
 * benchmark bundles from `dist/`. Each request (`{ id, type, ... }`) is answered with
 * `{ id, result }` or `{ id, error }`.
 */

const MiB = 1024 * 1024;

let lib;
/** The codec's CRC-32C and frame encoder, and hash-wasm (`/worker-lib.js`). */
const library = () => (lib ??= import('/worker-lib.js'));

/** The source file, as a disk-backed `File`. */
async function sourceFile(name) {
  const root = await navigator.storage.getDirectory();
  return (await root.getFileHandle(name)).getFile();
}

/**
 * Writes `size` random bytes to the OPFS file `name` (kept when it already has that size).
 * `crypto.getRandomValues` gives at most 64 KiB per call: a 4 MiB buffer is filled in pieces.
 */
async function createSource({ name, size }) {
  const t0 = performance.now();
  const root = await navigator.storage.getDirectory();
  const handle = await root.getFileHandle(name, { create: true });
  const access = await handle.createSyncAccessHandle();
  try {
    if (access.getSize() !== size) {
      access.truncate(0);
      const buffer = new Uint8Array(4 * MiB);
      for (let offset = 0; offset < size; offset += buffer.length) {
        const piece = buffer.subarray(0, Math.min(buffer.length, size - offset));
        for (let i = 0; i < piece.length; i += 65536) {
          crypto.getRandomValues(piece.subarray(i, Math.min(piece.length, i + 65536)));
        }
        for (let done = 0; done < piece.length;) {
          done += access.write(piece.subarray(done), { at: offset + done });
        }
      }
      access.flush();
    }
  } finally {
    access.close();
  }
  return { seconds: (performance.now() - t0) / 1000 };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The raw WebSocket senders: the file in `message`-byte reads to the sink.
 *
 * - `acks` (the sink answers each message once written): at most `window` bytes not yet
 *   acknowledged; the run ends with the last acknowledgement.
 * - no `acks`: the sender goes on while the socket's `bufferedAmount` is under `window`, and
 *   looks again after a `setTimeout(0)` otherwise; at the end it sends a text `end`, which the sink
 *   answers with the bytes it wrote once every message before is written.
 *
 * `mode` is `buffer` (each read into one of two buffers used in turn, as the engine reads, the next
 * read while the socket sends) or
 * `blob` (the slice itself handed to `send`, which reads it). With `frame` (bytes, a chunk size),
 * each read is cut into chunks of that size and each chunk sent as a dup/2 DATA frame with its
 * CRC-32C, encoded by the codec into one buffer used again (`send` copies it): the per-byte work
 * of the engine's `dup/2`, without its protocol.
 */
async function wsRaw({ url, urls, name, message, window, mode, acks, frame }) {
  const file = await sourceFile(name);
  const codec = frame ? await library() : undefined;
  const heap = heapSampler();
  const t0 = performance.now();
  // With `urls`, an equal part of the file to each, all at once (a sender per sink).
  const targets = urls ?? [url];
  const share = Math.ceil(file.size / targets.length);
  const sent = await Promise.all(
    targets.map((to, i) =>
      wsSend(to, file, i * share, Math.min(file.size, (i + 1) * share), codec, {
        message,
        window,
        mode,
        acks,
        frame,
      }),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { bytes: sent.reduce((a, b) => a + b, 0), seconds, heapPeak: heap() };
}

/**
 * A sender's wake-up: `wait()` resolves at the next `settle()` (a message, a close), after which
 * the sender looks at its state again.
 */
function waker() {
  let wake;
  return {
    wait: () => new Promise((resolve) => (wake = resolve)),
    settle: () => {
      const w = wake;
      wake = undefined;
      w?.();
    },
  };
}

/**
 * `bytes` (the file's, from `offset`) as dup/2 DATA frames of `frame` payload bytes each, with the
 * CRC-32C of each payload, each encoded into `buffer` (used again: send it before the next).
 */
function* dataFrames(codec, bytes, offset, frame, buffer) {
  for (let at = 0; at < bytes.length; at += frame) {
    const payload = bytes.subarray(at, Math.min(bytes.length, at + frame));
    const encoded = codec.encodeDup2Frame(
      { type: 'data', uploadId: 1, offset: offset + at, crc32c: codec.crc32c(payload), payload },
      buffer,
    );
    yield { encoded, payload };
  }
}

/** One raw WebSocket sender of `file`'s bytes `from..to`: the bytes its sink wrote. */
async function wsSend(url, file, from, to, codec, { message, window, mode, acks, frame }) {
  const size = to - from;
  // The sink's mode: whether it acknowledges each message, the frame header it does not store.
  const target = new URL(url);
  target.searchParams.set('acks', acks ? '1' : '0');
  if (frame) target.searchParams.set('header', String(codec.DATA_HEADER_BYTES));
  const ws = new WebSocket(target);
  ws.binaryType = 'arraybuffer';
  /** Sizes of the messages sent and not yet acknowledged, oldest first. */
  const unacked = [];
  let inFlight = 0;
  let acked = 0;
  /** The sink's byte count, answering `end` (no `acks`). */
  let written;
  let failure;
  const { wait, settle } = waker();
  ws.onmessage = ({ data }) => {
    if (typeof data === 'string') {
      written = Number(data);
    } else {
      const n = unacked.shift() ?? 0;
      inFlight -= n;
      acked += n;
    }
    settle();
  };
  ws.onclose = (e) => {
    failure ??= new Error(`WebSocket closed (${e.code})`);
    settle();
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
  });
  ws.onerror = () => {
    failure ??= new Error('WebSocket error');
    settle();
  };
  // Blobs as they are; bytes read as the engine reads them (two buffers used in turn: `send`
  // copies what it is given, and a read fills the buffer of two reads before).
  const blocks =
    mode === 'blob' && !frame
      ? undefined
      : (codec ?? (await library())).readBlocks(file, { start: from, end: to }, message);
  const read = async (start) => {
    if (!blocks) return file.slice(from + start, Math.min(to, from + start + message));
    return (await blocks.next()).bytes;
  };
  /** Waits until `length` more bytes may go. */
  const room = async (length) => {
    if (acks) {
      while (inFlight > 0 && inFlight + length > window && !failure) await wait();
    } else {
      while (ws.bufferedAmount > 0 && ws.bufferedAmount + length > window && !failure) {
        await sleep(0);
      }
    }
    if (failure) throw failure;
  };
  const buffer = frame ? new Uint8Array(codec.DATA_HEADER_BYTES + frame) : undefined;
  let next = size > 0 ? read(0) : undefined;
  for (let offset = 0; offset < size; offset += message) {
    const length = Math.min(message, size - offset);
    const data = await next;
    next = offset + length < size ? read(offset + length) : undefined;
    if (!frame) {
      await room(length);
      ws.send(data);
      if (acks) {
        unacked.push(length);
        inFlight += length;
      }
      continue;
    }
    for (const { encoded, payload } of dataFrames(codec, data, offset, frame, buffer)) {
      await room(encoded.length);
      ws.send(encoded);
      if (acks) {
        unacked.push(payload.length);
        inFlight += payload.length;
      }
    }
  }
  if (acks) {
    while (acked < size && !failure) await wait();
  } else {
    ws.send('end');
    while (written === undefined && !failure) await wait();
    acked = written ?? 0;
  }
  if (failure) throw failure;
  ws.onclose = null;
  ws.close(1000);
  return acked;
}

/**
 * A raw `dup/2` client: the per-byte work of `ws-crc` (4 MiB reads, a CRC-32C and a DATA frame per
 * `frame` bytes in one buffer used again) sent to a real upload server, with just enough of the
 * protocol to do it (HELLO, OPEN, DATA within the server's window and under `window` bytes
 * buffered, FINISH without a digest, so the server computes it). Both ends do the engine's work
 * per byte, and nothing else runs: what the machine allows `dup/2`, as opposed to the engine.
 */
async function wsDup2({ url, name, token, itemId, message, window, frame }) {
  const codec = await library();
  const file = await sourceFile(name);
  const heap = heapSampler();
  const t0 = performance.now();
  const ws = new WebSocket(url, [codec.SUBPROTOCOL_DUP_2]);
  ws.binaryType = 'arraybuffer';
  let inFlight = 0;
  let serverWindow = 0;
  let complete;
  let failure;
  const { wait, settle } = waker();
  let welcomed = false;
  let opened = false;
  ws.onmessage = ({ data }) => {
    const f = codec.decodeDup2ServerFrame(new Uint8Array(data));
    if (f.type === 'welcome') {
      welcomed = true;
      serverWindow = f.window;
    } else if (f.type === 'opened') opened = true;
    else if (f.type === 'ack') inFlight -= f.end - f.start;
    else if (f.type === 'complete') complete = f;
    else if (f.type === 'error') failure ??= new Error(`server: ${f.code} ${f.message}`);
    settle();
  };
  ws.onclose = (e) => {
    failure ??= new Error(`WebSocket closed (${e.code})`);
    settle();
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
  });
  const until = async (done) => {
    while (!done() && !failure) await wait();
    if (failure) throw failure;
  };
  ws.send(codec.encodeDup2Frame({ type: 'hello', token }));
  await until(() => welcomed);
  const size = file.size;
  ws.send(
    codec.encodeDup2Frame({ type: 'open', uploadId: 1, itemId, size, mime: '', name: 'bench' }),
  );
  await until(() => opened);
  const buffer = new Uint8Array(codec.DATA_HEADER_BYTES + frame);
  // Read as the engine reads: two buffers used in turn.
  const blocks = codec.readBlocks(file, { start: 0, end: size }, message);
  let next = blocks.next();
  for (let offset = 0; offset < size; offset += message) {
    const { bytes } = await next;
    next = blocks.next();
    for (const { encoded, payload } of dataFrames(codec, bytes, offset, frame, buffer)) {
      while (inFlight > 0 && inFlight + payload.length > serverWindow && !failure) await wait();
      while (ws.bufferedAmount > window && !failure) await sleep(0);
      if (failure) throw failure;
      ws.send(encoded);
      inFlight += payload.length;
    }
  }
  ws.send(codec.encodeDup2Frame({ type: 'finish', uploadId: 1 }));
  await until(() => complete !== undefined);
  const seconds = (performance.now() - t0) / 1000;
  ws.onclose = null;
  ws.close(1000);
  return { bytes: size, seconds, heapPeak: heap() };
}

/**
 * The SHA-256 of the file, read as a byte stream (`File.stream()`) into one buffer, with hash-wasm: what the engine's
 * `sha256` integrity costs, beside the page's `fetch` PUT of the same file.
 */
async function hash({ name }) {
  const { createSHA256 } = await library();
  const file = await sourceFile(name);
  const hasher = await createSHA256();
  hasher.init();
  const t0 = performance.now();
  // A BYOB reader into one 4 MiB buffer: a default reader's fresh buffer per piece doubled the
  // Worker's CPU time here.
  const reader = file.stream().getReader({ mode: 'byob' });
  let buffer = new ArrayBuffer(4 * MiB);
  let bytes = 0;
  let reads = 0;
  for (;;) {
    const { done, value } = await reader.read(new Uint8Array(buffer));
    if (done) break;
    hasher.update(value);
    bytes += value.length;
    reads++;
    buffer = value.buffer;
  }
  const sha256 = hasher.digest('hex');
  return { bytes, reads, seconds: (performance.now() - t0) / 1000, sha256 };
}

/**
 * One `fetch` GET of `url` written into the OPFS file `name` through a
 * `FileSystemSyncAccessHandle`, as the response's chunks arrive: the download baseline. Read with
 * a BYOB reader into 4 MiB buffers used again (a default reader's fresh buffer per piece made this
 * baseline half as fast here). With `hash`, each filled buffer also goes to a second Worker that
 * computes the SHA-256 of the bytes in order and sends the buffer back (the ceiling of a verified
 * download: the downloader checks every item's SHA-256).
 */
async function getSync({ url, token, name, hash }) {
  const root = await navigator.storage.getDirectory();
  const access = await (await root.getFileHandle(name, { create: true })).createSyncAccessHandle();
  const hasher = hash ? new Worker('/worker.js', { type: 'module' }) : undefined;
  const pool = [];
  if (hasher) hasher.onmessage = ({ data }) => data.back && pool.push(data.back);
  try {
    access.truncate(0);
    const t0 = performance.now();
    const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) throw new Error(`GET answered ${response.status}`);
    const reader = response.body.getReader({ mode: 'byob' });
    let buffer = new ArrayBuffer(4 * MiB);
    let filled = 0;
    let at = 0;
    const hand = () => {
      for (let written = 0; written < filled;) {
        written += access.write(new Uint8Array(buffer, written, filled - written), {
          at: at + written,
        });
      }
      at += filled;
      if (hasher) {
        hasher.postMessage({ type: 'hash-chunk', bytes: new Uint8Array(buffer, 0, filled) }, [
          buffer,
        ]);
        buffer = pool.pop() ?? new ArrayBuffer(4 * MiB);
      }
      filled = 0;
    };
    for (;;) {
      const { done, value } = await reader.read(new Uint8Array(buffer, filled));
      if (value) buffer = value.buffer;
      if (done) break;
      filled += value.length;
      if (filled === buffer.byteLength) hand();
    }
    if (filled > 0) hand();
    access.flush();
    const sha256 = hasher
      ? await new Promise((resolve) => {
          hasher.onmessage = ({ data }) => data.sha256 && resolve(data.sha256);
          hasher.postMessage({ type: 'hash-end' });
        })
      : undefined;
    return { bytes: at, seconds: (performance.now() - t0) / 1000, sha256 };
  } finally {
    hasher?.terminate();
    access.close();
    await root.removeEntry(name).catch(() => undefined);
  }
}

/** The SHA-256 of the chunks sent in order (`hash-chunk`, each buffer sent back), until `hash-end`. */
let chunkHash;
async function hashChunk({ bytes }) {
  chunkHash ??= (async () => {
    const h = await (await library()).createSHA256();
    h.init();
    return h;
  })();
  (await chunkHash).update(bytes);
  self.postMessage({ back: bytes.buffer }, [bytes.buffer]);
}
async function hashEnd() {
  const sha256 = (await chunkHash).digest('hex');
  chunkHash = undefined;
  self.postMessage({ sha256 });
}

/** Peak `performance.memory.usedJSHeapSize` of this worker, when Chromium gives it here. */
function heapSampler() {
  // A full collection first (Chromium runs with --js-flags=--expose-gc), so that garbage of the
  // steps before does not count.
  globalThis.gc?.();
  // Each read of performance.memory is a new snapshot (a MemoryInfo object does not change).
  const used = () => performance.memory?.usedJSHeapSize;
  if (used() === undefined) return () => undefined;
  let peak = used();
  const timer = setInterval(() => (peak = Math.max(peak, used())), 50);
  return () => {
    clearInterval(timer);
    return Math.max(peak, used());
  };
}

const handlers = {
  source: createSource,
  'ws-raw': wsRaw,
  'ws-dup2': wsDup2,
  hash,
  'get-sync': getSync,
};
/** Hashed one after the other, in the order they came. */
let hashing = Promise.resolve();

self.onmessage = async ({ data }) => {
  if (data.type === 'hash-chunk' || data.type === 'hash-end') {
    const run = data.type === 'hash-chunk' ? hashChunk : hashEnd;
    hashing = hashing.then(() => run(data));
    return;
  }
  try {
    const result = await handlers[data.type](data);
    self.postMessage({ id: data.id, result });
  } catch (e) {
    self.postMessage({ id: data.id, error: String(e?.stack ?? e) });
  }
};
