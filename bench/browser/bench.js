/* global window, document, navigator, performance, fetch, Worker, tus, setInterval, clearInterval, setTimeout, clearTimeout, PerformanceObserver */
/**
 * The page of the browser benchmark (`bench/browser-bench.ts`). It asks the benchmark process for
 * one step at a time (`POST /next`, with the result of the step before), runs it and reports back:
 * no DevTools protocol drives it, so Chromium sends WebSocket data at full speed.
 *
 * Steps: `source` (write a source file into OPFS, from the Worker), `ws-raw` (the raw WebSocket
 * baselines, in the Worker), `ws-dup2` (the same per-byte work as `dup/2` to an upload server, in
 * the Worker), `fetch-raw` (one `fetch` PUT of the file, and with `hash` the Worker
 * hashing the file meanwhile), `tus` (tus-js-client to an upload server's `/tus/`), `engine` (the
 * engine, `/engine.js`, through a control server), `download` (an item read back), `costs`,
 * `done`.
 *
 * Around the timed part of every step, the page tells the benchmark process (`POST /mark`, so it
 * reads Chromium's threads' CPU time then) and watches its own main thread: long tasks
 * (`PerformanceObserver`, tasks of 50 ms and more), the lateness of a 10 ms timer, and the peak JS
 * heap.
 */

let nextRequest = 1;
const waiting = new Map();
let worker = startWorker();

/** The page's Worker (raw senders, source files, hashing). */
function startWorker() {
  const w = new Worker('/worker.js', { type: 'module' });
  w.onmessage = ({ data }) => {
    const waiter = waiting.get(data.id);
    waiting.delete(data.id);
    if (data.error !== undefined) waiter?.reject(new Error(data.error));
    else waiter?.resolve(data.result);
  };
  w.onerror = (e) => log(`worker error: ${e.message}`);
  return w;
}

/** A step that did not end in time: its Worker requests fail, and a new Worker takes the next. */
function restartWorker(reason) {
  worker.terminate();
  for (const w of waiting.values()) w.reject(new Error(reason));
  waiting.clear();
  worker = startWorker();
}

/** Runs a request in the Worker. */
function inWorker(request) {
  const id = nextRequest++;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    worker.postMessage({ ...request, id });
  });
}

function log(text) {
  void fetch('/log', { method: 'POST', body: String(text) }).catch(() => undefined);
}
window.addEventListener('error', (e) => log(`page error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => log(`unhandled rejection: ${e.reason}`));

/** The source file, as a disk-backed `File`. */
async function sourceFile(name) {
  const root = await navigator.storage.getDirectory();
  return (await root.getFileHandle(name)).getFile();
}

/**
 * Peak `performance.memory.usedJSHeapSize` of the page (Chromium; precise with
 * `--enable-precise-memory-info`), sampled every 50 ms until the returned function is called.
 */
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

/** Tells the benchmark process where the timed part of a step starts or ends. */
async function mark(phase) {
  await fetch('/mark', { method: 'POST', body: phase });
}

/** Timer lateness is sampled with a timer of this period, in ms. */
const LAG_PERIOD_MS = 10;

/**
 * Watches the page's main thread until the returned function is called: the longest task of 50 ms
 * or more (`longtask` entries) and how many there were, and the most a 10 ms timer fired late
 * (any task that held the thread, short ones included, and the scheduling of the machine).
 */
function responsiveness() {
  let longest = 0;
  let count = 0;
  let observer;
  try {
    observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        longest = Math.max(longest, entry.duration);
        count++;
      }
    });
    observer.observe({ type: 'longtask', buffered: false });
  } catch {
    observer = undefined;
  }
  let lag = 0;
  let last = performance.now();
  let timer;
  const tick = () => {
    const now = performance.now();
    lag = Math.max(lag, now - last - LAG_PERIOD_MS);
    last = now;
    timer = setTimeout(tick, LAG_PERIOD_MS);
  };
  timer = setTimeout(tick, LAG_PERIOD_MS);
  return () => {
    clearTimeout(timer);
    for (const entry of observer?.takeRecords() ?? []) {
      longest = Math.max(longest, entry.duration);
      count++;
    }
    observer?.disconnect();
    return {
      longestTask: observer ? longest : undefined,
      longTasks: observer ? count : undefined,
      maxLagMs: lag,
    };
  };
}

/**
 * Runs the timed part of a step: marks its start and end for the benchmark process, times it and
 * watches the page meanwhile. `fn` may answer its own `seconds` (a Worker's), which win.
 */
async function timed(fn) {
  const heap = heapSampler();
  await mark('start');
  const page = responsiveness();
  const t0 = performance.now();
  let result;
  let failure;
  try {
    result = await fn();
  } catch (e) {
    failure = e;
  }
  const seconds = (performance.now() - t0) / 1000;
  const watched = page();
  const heapPeak = heap();
  await mark('end');
  if (failure !== undefined) throw failure;
  return { seconds, ...result, heapPeak, ...watched };
}

/**
 * The raw `fetch` baseline: the whole file in one PUT to the bare HTTP sink; with `hash`, the
 * Worker computes the SHA-256 of the same file meanwhile, read as a stream, and the step ends
 * when both are done (the ceiling of the engine's `sha256` integrity).
 */
async function fetchRaw({ url, urls, name, hash }) {
  const file = await sourceFile(name);
  const putOne = async (to, body) => {
    const response = await fetch(to, { method: 'PUT', body });
    const text = await response.text();
    if (!response.ok) throw new Error(`PUT answered ${response.status}: ${text}`);
    return Number(text);
  };
  return timed(async () => {
    // With `urls`, an equal part of the file to each, all at once.
    const parts = urls ?? [url];
    const share = Math.ceil(file.size / parts.length);
    const put = Promise.all(
      parts.map((to, i) =>
        putOne(to, parts.length === 1 ? file : file.slice(i * share, (i + 1) * share)),
      ),
    ).then((sent) => sent.reduce((a, b) => a + b, 0));
    const [bytes, hashed] = await Promise.all([
      put,
      hash ? inWorker({ type: 'hash', name }) : undefined,
    ]);
    if (hashed && hashed.bytes !== file.size) {
      throw new Error(`hashed ${hashed.bytes} bytes of ${file.size}`);
    }
    return {
      bytes,
      ...(hashed ? { hashSeconds: hashed.seconds, hashReads: hashed.reads } : {}),
    };
  });
}

/** A step run by the Worker, with its own `seconds`. */
async function workerStep(step) {
  return timed(() => inWorker(step));
}

/** tus-js-client (its browser build, global `tus`), default options but those given. */
async function tusUpload({ endpoint, token, name, chunkSize }) {
  const file = await sourceFile(name);
  return timed(async () => {
    await tusSend(file, { endpoint, token, name, chunkSize });
    return { bytes: file.size };
  });
}

async function tusSend(file, { endpoint, token, name, chunkSize }) {
  await new Promise((resolve, reject) => {
    const upload = new tus.Upload(file, {
      endpoint,
      headers: { Authorization: `Bearer ${token}` },
      metadata: { filename: name, filetype: 'application/octet-stream' },
      ...(chunkSize === undefined ? {} : { chunkSize }),
      // A failure fails the case instead of retrying; nothing to resume from a former run.
      retryDelays: null,
      storeFingerprintForResuming: false,
      onSuccess: resolve,
      onError: (e) => {
        const response = e.originalResponse;
        reject(
          response ? new Error(`${e.message}: ${response.getStatus()} ${response.getBody()}`) : e,
        );
      },
    });
    upload.start();
  });
}

let enginePromise;

/** Starts an engine and waits until every upload server is connected and probed. */
async function connected(engine, servers) {
  const ready = new Promise((resolve) => {
    const off = engine.on('servers', (e) => {
      const list = e.detail.servers;
      if (list.length === servers && list.every((s) => s.state === 'open' && s.rttMs >= 0)) {
        off();
        resolve();
      }
    });
  });
  await engine.start();
  await ready;
}

/**
 * The engine: connects to the control server (which lists the upload servers and plans each item
 * as equal ranges, one per upload server), waits until every upload server is connected and
 * probed, then times from `addFiles` to the `complete` event (plan, transmit, every byte
 * acknowledged, and the SHA-256 verified by the server when one server takes the whole item).
 * With `warm`, that file is uploaded first through the same engine and servers, not timed.
 */
async function engineUpload({ controlUrl, token, name, warm, servers, options, profile }) {
  enginePromise ??= import('/engine.js');
  const { WsUploaderEngine } = await enginePromise;
  const file = await sourceFile(name);
  const engine = new WsUploaderEngine({ controlUrl, authToken: token, ...options });
  try {
    await connected(engine, servers);
    if (warm) {
      const warmFile = await sourceFile(warm);
      await new Promise((resolve, reject) => {
        const offs = [
          engine.on('complete', () => (offs.forEach((off) => off()), resolve())),
          engine.on('error', (e) => (offs.forEach((off) => off()), reject(e.detail.error))),
        ];
        engine.addFiles([warmFile]);
      });
    }
    const profiler = profile ? startProfiler() : undefined;
    const measured = await timed(async () => {
      // When the servers had every byte: what comes after is the completion (digest, verify).
      let stored;
      engine.on('progress', ({ detail: { item } }) => {
        if (stored === undefined && item.bytesStored >= item.size) stored = performance.now();
      });
      const result = await new Promise((resolve, reject) => {
        engine.on('complete', (e) => resolve(e.detail));
        engine.on('error', (e) => reject(e.detail.error));
        engine.addFiles([file]);
      });
      const tail = stored === undefined ? undefined : (performance.now() - stored) / 1000;
      return {
        bytes: file.size,
        sha256: result.sha256,
        servers: result.servers,
        ...(tail === undefined ? {} : { note: `after the last byte stored: ${tail.toFixed(2)} s` }),
      };
    });
    return { ...measured, ...(profiler ? { profile: await profiler() } : {}) };
  } finally {
    engine.stop();
  }
}

/**
 * A download: the engine uploads the source file (not timed), then the item is read back and
 * timed: by the downloader into the origin private file system (parts from every server that
 * holds some, verified; over HTTP `Range`, or dup/2 with `transport: 'dup2'`), or by one raw
 * `fetch` GET of the whole item from its first server: `fetch` pipes it into an OPFS file's
 * `createWritable()` on the page, `sync` writes it through a `FileSystemSyncAccessHandle` in the
 * Worker (the download baseline), `discard` reads the response and drops it.
 */
async function download({
  controlUrl,
  token,
  name,
  servers,
  options,
  reader,
  transport,
  downloadOptions,
}) {
  enginePromise ??= import('/engine.js');
  const { WsUploaderEngine, WsDownloader, OpfsItemStore } = await enginePromise;
  const file = await sourceFile(name);
  const engine = new WsUploaderEngine({ controlUrl, authToken: token, ...options });
  try {
    await connected(engine, servers);
    const { itemId, sha256 } = await new Promise((resolve, reject) => {
      engine.on('complete', (e) => resolve(e.detail));
      engine.on('error', (e) => reject(e.detail.error));
      engine.addFiles([file]);
    });
    const store = new OpfsItemStore();
    await store.delete(itemId);
    const root = await navigator.storage.getDirectory();
    globalThis.gc?.();
    const measured = await timed(async () => {
      if (reader === 'downloader') {
        const downloader = new WsDownloader({
          locate: engine,
          store,
          ...(transport ? { transport } : {}),
          ...downloadOptions,
        });
        let lastProgress = 0;
        downloader.on('progress', () => (lastProgress = performance.now()));
        const item = await downloader.download(itemId);
        const tail = (performance.now() - lastProgress) / 1000;
        // The upload's digest, where the engine computed one (its `sha256` integrity).
        if (sha256 !== undefined && item.sha256 !== sha256) {
          throw new Error(`downloaded ${item.sha256}, uploaded ${sha256}`);
        }
        return { bytes: file.size, note: `after the last part: ${tail.toFixed(2)} s` };
      }
      const { holders } = await engine.locate(itemId);
      const h = holders[0];
      const url = `${h.httpUrl}/files/${itemId}`;
      if (reader === 'sync' || reader === 'sync-hash') {
        const got = await inWorker({
          type: 'get-sync',
          url,
          token: h.token,
          name: 'bench-get.bin',
          hash: reader === 'sync-hash',
        });
        if (got.sha256 !== undefined && sha256 !== undefined && got.sha256 !== sha256) {
          throw new Error(`hashed ${got.sha256}, uploaded ${sha256}`);
        }
        return got;
      }
      const response = await fetch(url, { headers: { Authorization: `Bearer ${h.token}` } });
      if (!response.ok) throw new Error(`GET answered ${response.status}`);
      if (reader === 'discard') {
        const body = response.body.getReader();
        let bytes = 0;
        for (;;) {
          const { done, value } = await body.read();
          if (done) break;
          bytes += value.length;
        }
        return { bytes };
      }
      const out = await (
        await root.getFileHandle('bench-get.bin', { create: true })
      ).createWritable();
      await response.body.pipeTo(out);
      return { bytes: file.size };
    });
    if (measured.bytes !== file.size) {
      throw new Error(`read ${measured.bytes} bytes of ${file.size}`);
    }
    await store.delete(itemId);
    await root.removeEntry('bench-get.bin').catch(() => undefined);
    return { ...measured, sha256, servers };
  } finally {
    engine.stop();
  }
}

/**
 * What the engine's per-byte work costs on this page's main thread, each step alone: reading the
 * file (slices of `slice` bytes and of 4 MiB, each into fresh memory, and as the engine reads: 4 MiB
 * blocks into two buffers used in turn), SHA-256 (hash-wasm), CRC-32C (the codec's, in JavaScript)
 * and encoding a DATA frame (into fresh memory, and into one buffer used again, as the engine
 * does). The steps marked "the engine's" are what it does for each `dup/2` chunk. In ms per MiB,
 * over `bytes` of the source file.
 */
async function costs({ name, bytes, slice }) {
  enginePromise ??= import('/engine.js');
  const { crc32c, encodeDup2Frame, createSHA256, readBlocks } = await enginePromise;
  const file = await sourceFile(name);
  const total = Math.min(bytes, file.size);
  const perMiB = (ms) => ms / (total / (1024 * 1024));
  const perMiBOf = async (fn) => {
    const t0 = performance.now();
    await fn();
    return perMiB(performance.now() - t0);
  };
  const read = (size) =>
    perMiBOf(async () => {
      for (let o = 0; o < total; o += size) {
        await file.slice(o, Math.min(total, o + size)).arrayBuffer();
      }
    });
  const readReused = () =>
    perMiBOf(async () => {
      const blocks = readBlocks(file, { start: 0, end: total }, 4 * 1024 * 1024);
      while (await blocks.next());
    });
  const sample = new Uint8Array(await file.slice(0, slice).arrayBuffer());
  const repeat = (fn) =>
    perMiBOf(() => {
      for (let o = 0; o < total; o += slice) fn(sample, o);
    });
  const frame = new Uint8Array(slice + 64);
  const data = (offset) => ({ type: 'data', uploadId: 1, offset, crc32c: 0, payload: sample });
  const hasher = await createSHA256();
  hasher.init();
  return {
    [`read ${slice / 1024} KiB slices, fresh memory each`]: await read(slice),
    'read 4 MiB slices, fresh memory each': await read(4 * 1024 * 1024),
    "read 4 MiB blocks into two buffers used in turn (the engine's)": await readReused(),
    "SHA-256, hash-wasm (the engine's, sha256 integrity)": await repeat((b) => hasher.update(b)),
    "CRC-32C, JavaScript (the engine's)": await repeat((b) => crc32c(b)),
    'DATA frame encoding into fresh memory': await repeat((_, offset) =>
      encodeDup2Frame(data(offset)),
    ),
    "DATA frame encoding into one buffer used again (the engine's)": await repeat((_, offset) =>
      encodeDup2Frame(data(offset), frame),
    ),
  };
}

/**
 * Samples the page's main thread with the JS Self-Profiling API (the page is served with
 * `Document-Policy: js-profiling`) until the returned function is called, which answers the
 * share of samples per function on top of the stack (its self time), the busiest first; samples
 * without a JavaScript stack are the thread idle or in the browser's own code.
 */
function startProfiler() {
  const Profiler = globalThis.Profiler;
  if (!Profiler) return async () => ({ error: 'no JS Self-Profiling API' });
  const profiler = new Profiler({ sampleInterval: 10, maxBufferSize: 1_000_000 });
  return async () => {
    const trace = await profiler.stop();
    const self = new Map();
    for (const sample of trace.samples) {
      let key = '(no JavaScript: idle or native)';
      if (sample.stackId !== undefined) {
        const frame = trace.frames[trace.stacks[sample.stackId].frameId];
        const where = frame.resourceId === undefined ? '' : trace.resources[frame.resourceId];
        key = `${frame.name || '(anonymous)'} ${where.replace(/^.*\//, '')}:${frame.line ?? '?'}`;
      }
      self.set(key, (self.get(key) ?? 0) + 1);
    }
    const total = trace.samples.length;
    return {
      samples: total,
      top: [...self]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 15)
        .map(([key, n]) => [key, n / total]),
    };
  };
}

const STEPS = {
  costs,
  source: (step) => inWorker(step),
  'ws-raw': workerStep,
  'ws-dup2': workerStep,
  'fetch-raw': fetchRaw,
  tus: tusUpload,
  engine: engineUpload,
  download,
};

async function main() {
  const info = {
    userAgent: navigator.userAgent,
    hardwareConcurrency: navigator.hardwareConcurrency,
    preciseMemory: performance.memory !== undefined,
  };
  let report = { info };
  for (;;) {
    const response = await fetch('/next', { method: 'POST', body: JSON.stringify(report) });
    const step = await response.json();
    if (step.type === 'done') break;
    document.title = `${step.type} ${step.label ?? ''}`;
    // A step that hangs fails alone (its run counts as an error), and the benchmark goes on.
    let timer;
    const timeout = new Promise((_, reject) => {
      if (step.timeoutMs === undefined) return;
      timer = setTimeout(() => {
        const reason = `the step did not end in ${step.timeoutMs / 1000} s`;
        restartWorker(reason);
        reject(new Error(reason));
      }, step.timeoutMs);
    });
    try {
      report = { result: await Promise.race([STEPS[step.type](step), timeout]) };
    } catch (e) {
      report = { error: String(e?.stack ?? e?.message ?? e) };
    } finally {
      clearTimeout(timer);
    }
  }
  document.title = 'done';
}

main().catch((e) => log(`page failed: ${e?.stack ?? e}`));
