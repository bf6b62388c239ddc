/* global self, navigator, performance, crypto, WebSocket, setInterval, clearInterval, setTimeout */
/**
 * The dedicated Worker of the browser benchmark's page (`bench.js`): writes the source file into
 * the origin private file system, and runs the raw WebSocket baseline, which sends the file in
 * large messages to the bare sink with no protocol at all.
 *
 * Each request (`{ id, type, ... }`) is answered with `{ id, result }` or `{ id, error }`.
 */

const MiB = 1024 * 1024;

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

/**
 * The raw WebSocket sender: the file in `message`-byte messages to the sink, at most `window`
 * bytes not yet acknowledged (the sink answers each message once written). `mode` is `buffer`
 * (each slice read into an ArrayBuffer, the next read while the socket sends) or `blob` (the slice
 * itself handed to `send`, which reads it).
 */
async function wsRaw({ url, name, message, window, mode, acks }) {
  const noAcks = acks === false;
  const file = await sourceFile(name);
  const size = file.size;
  const heap = heapSampler();
  const t0 = performance.now();
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  /** Sizes of the messages sent and not yet acknowledged, oldest first. */
  const unacked = [];
  let inFlight = 0;
  let acked = 0;
  let wake;
  let failure;
  const settle = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  ws.onmessage = () => {
    const n = unacked.shift() ?? 0;
    inFlight -= n;
    acked += n;
    settle();
  };
  ws.onerror = () => {
    failure ??= new Error('WebSocket error');
    settle();
  };
  ws.onclose = (e) => {
    failure ??= new Error(`WebSocket closed (${e.code})`);
    settle();
  };
  const wait = () => new Promise((resolve) => (wake = resolve));
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
  });
  ws.onerror = () => {
    failure ??= new Error('WebSocket error');
    settle();
  };
  const read = (start) => {
    const end = Math.min(size, start + message);
    const blob = file.slice(start, end);
    return mode === 'blob' ? Promise.resolve(blob) : blob.arrayBuffer();
  };
  let next = size > 0 ? read(0) : undefined;
  for (let offset = 0; offset < size; offset += message) {
    const length = Math.min(message, size - offset);
    const data = await next;
    next = offset + length < size ? read(offset + length) : undefined;
    if (noAcks) {
      while (ws.bufferedAmount + length > window && !failure) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    } else {
      while (inFlight > 0 && inFlight + length > window && !failure) await wait();
    }
    if (failure) throw failure;
    ws.send(data);
    unacked.push(length);
    inFlight += length;
  }
  while (acked < size && !failure) await wait();
  if (failure) throw failure;
  const seconds = (performance.now() - t0) / 1000;
  ws.onclose = null;
  ws.close(1000);
  return { bytes: acked, seconds, heapPeak: heap() };
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

const handlers = { source: createSource, 'ws-raw': wsRaw };

self.onmessage = async ({ data }) => {
  try {
    const result = await handlers[data.type](data);
    self.postMessage({ id: data.id, result });
  } catch (e) {
    self.postMessage({ id: data.id, error: String(e?.stack ?? e) });
  }
};
