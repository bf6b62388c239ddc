// @ts-check
/**
 * The server process of `server-bench.ts`: hosts one target (the bare sink, or the reference upload
 * server as built in `dist/`), answers its URL, samples its own RSS until asked to stop, then
 * closes the target, answers the RSS and exits. Plain JavaScript on plain Node, so the RSS is that
 * of the server as operators run it, without a TypeScript loader.
 *
 * Messages from the parent: a start request (see `ServerStart` in `server-bench.ts`), then `'stop'`.
 */
import { once } from 'node:events';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import WebSocket, { WebSocketServer } from 'ws';
import { createUploadServer } from '../dist/server/index.js';

/**
 * @typedef {{ url: string, close(): Promise<void> }} Running
 * @typedef {{ kind: 'sink' | 'dup2', durability?: 'fsync' | 'write' }} Target
 * @typedef {{ target: Target, dir: string, size: number, maxPayload: number,
 *   secret: string, serverId: string, maxItemSize: number }} ServerStart
 */

/**
 * The bare sink: every binary message appended to a file, then a 1-byte reply.
 * @param {string} dir
 * @param {number} maxPayload
 * @returns {Promise<Running>}
 */
async function startSink(dir, maxPayload) {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload,
  });
  await once(wss, 'listening');
  const reply = Buffer.alloc(1);
  /** @type {Promise<void>[]} */
  const files = [];
  wss.on('connection', (ws) => {
    const handle = open(join(dir, `sink-${files.length}`), 'w');
    /** @type {Promise<unknown>} */
    let queue = handle;
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return;
      const bytes = /** @type {Buffer} */ (data);
      queue = queue.then(async () => {
        const fh = await handle;
        for (let done = 0; done < bytes.length;) {
          done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
        }
        if (ws.readyState === WebSocket.OPEN) ws.send(reply);
      });
      queue.catch(() => ws.close(1011, 'write failed'));
    });
    files.push(
      new Promise((resolve) =>
        ws.once('close', () =>
          queue
            .catch(() => undefined)
            .then(async () => (await handle).close())
            .catch(() => undefined)
            .then(() => resolve()),
        ),
      ),
    );
  });
  const { port } = /** @type {import('node:net').AddressInfo} */ (wss.address());
  return {
    url: `ws://127.0.0.1:${port}/`,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => wss.close(() => resolve(undefined)));
      await Promise.all(files);
    },
  };
}

/**
 * `{ [option]: n }` when the environment variable `name` holds a positive integer `n`, else `{}`.
 * @param {string} option
 * @param {string} name
 * @returns {Record<string, number>}
 */
function numberOption(option, name) {
  const value = process.env[name];
  if (value === undefined || value === '') return {};
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return { [option]: n };
}

/**
 * The reference upload server with a durability policy.
 * @param {ServerStart} start
 * @returns {Promise<Running>}
 */
async function startReference(start) {
  const server = createUploadServer({
    id: start.serverId,
    secret: start.secret,
    dataDir: start.dir,
    durability: start.target.durability ?? 'fsync',
    maxItemSize: Math.max(start.maxItemSize, start.size),
    // Every client connects from 127.0.0.1.
    maxConnectionsPerIp: 1024,
    // BENCH_MAX_CHUNK, BENCH_MAX_BUFFERED: other maxChunk and maxBufferedBytes (see bench/README.md).
    ...numberOption('maxChunk', 'BENCH_MAX_CHUNK'),
    ...numberOption('maxBufferedBytes', 'BENCH_MAX_BUFFERED'),
  });
  const { ws } = await server.listen(0, '127.0.0.1');
  return { url: ws, close: () => server.close() };
}

/**
 * RSS of this process when called, and its peak until `stop`, sampled every 50 ms.
 * @returns {() => { start: number, peak: number }}
 */
function sampleRss() {
  const start = process.memoryUsage.rss();
  let peak = start;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
  return () => {
    clearInterval(timer);
    return { start, peak: Math.max(peak, process.memoryUsage.rss()) };
  };
}

// A full garbage collection once the target listens, so garbage of the start-up does not count.
setFlagsFromString('--expose-gc');
const collectGarbage = /** @type {() => void} */ (runInNewContext('gc'));

/** @type {Running | undefined} */
let running;
/** @type {(() => { start: number, peak: number }) | undefined} */
let stop;
process.on('message', (/** @type {ServerStart | 'stop'} */ message) => {
  const work =
    message === 'stop'
      ? (async () => {
          const rss = /** @type {NonNullable<typeof stop>} */ (stop)();
          await running?.close();
          const send = /** @type {NonNullable<typeof process.send>} */ (process.send);
          send.call(process, { rssStart: rss.start, rssPeak: rss.peak }, () => process.exit(0));
        })()
      : (async () => {
          running =
            message.target.kind === 'sink'
              ? await startSink(message.dir, message.maxPayload)
              : await startReference(message);
          collectGarbage();
          stop = sampleRss();
          /** @type {NonNullable<typeof process.send>} */ (process.send).call(process, running.url);
        })();
  work.catch((/** @type {unknown} */ e) => {
    console.error(e);
    process.exit(1);
  });
});
