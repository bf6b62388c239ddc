// @ts-check
/**
 * A server process of `browser-bench.ts`: hosts one target as built in `dist/` (or the bare sinks),
 * answers its URLs, samples its own RSS and CPU time until asked to stop, then closes the target,
 * answers what it measured and exits. Plain JavaScript on plain Node, so the RSS is that of the
 * server as operators run it, without a TypeScript loader.
 *
 * Targets (see `RoleStart` in `browser-bench.ts`):
 * - `sinks`: the bare sinks of the baselines, on one port: a `ws` WebSocket sink at `/ws` that
 *   appends every binary message to a file and answers each with 1 byte once written (or, with
 *   `?acks=0`, answers nothing but the byte count once every message before a text `end` is
 *   written; `?header=N` writes and counts each message but its first N bytes, the header of a
 *   frame), and an HTTP sink that streams the body of a `PUT /put` to a file (CORS open, for the
 *   page's origin);
 * - `upload`: one reference upload server (`createUploadServer`), with an upload token for tus;
 * - `control`: the reference control server listing the upload servers, with a user token;
 * - `proxy`: a fault proxy (`test/helpers/fault-proxy.ts`, loaded through tsx) in front of each
 *   server named by a URL, shaped as asked (bandwidth, latency): a WAN between the page and them.
 *   More URLs can be put behind proxies later with another `proxy` request.
 *
 * Messages from the parent: a start request, then `'stop'`.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import WebSocket, { WebSocketServer } from 'ws';
import {
  createControlServer,
  createPlanner,
  createUploadServer,
  createUserToken,
} from '../dist/server/index.js';
import { secretKey, signToken, uploadAudience } from '../dist/server/tokens.js';

/**
 * @typedef {{ id: string, url: string, httpUrl: string }} Endpoint
 * @typedef {{ kind: 'sinks', dir: string }
 *   | { kind: 'upload', dir: string, id: string, secret: string, maxItemSize: number, controlUrl?: string,
 *       port?: number, publicUrl?: string, peerUrl?: string }
 *   | { kind: 'control', secret: string, uploadServers: Endpoint[], maxItemSize: number, maxServers?: number }
 *   | { kind: 'proxy', urls: Record<string, string>, shape: Record<string, unknown> }
 * } RoleStart
 * @typedef {{ urls: Record<string, string>, token?: string }} Started
 * @typedef {{ url: Record<string, string>, token?: string, close(): Promise<void>,
 *   bytesStored(): Promise<number>,
 *   add?(urls: Record<string, string>): Promise<Record<string, string>> }} Running
 */

const MiB = 1024 * 1024;

/**
 * Appends `bytes` to an open file, all of them.
 * @param {import('node:fs/promises').FileHandle} fh
 * @param {Uint8Array} bytes
 */
async function writeAll(fh, bytes) {
  for (let done = 0; done < bytes.length;) {
    done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
  }
}

/**
 * The bare sinks: WebSocket at `/ws`, HTTP PUT at `/put`, each writing to its own file.
 * @param {string} dir
 * @returns {Promise<Running>}
 */
async function startSinks(dir) {
  let files = 0;
  let bytes = 0;
  /** @type {Set<Promise<void>>} */
  const pending = new Set();
  /** @param {Promise<void>} p */
  const track = (p) => {
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  const http = createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'PUT',
        'Access-Control-Allow-Headers': 'Content-Type',
        'Access-Control-Max-Age': '600',
      });
      res.end();
      return;
    }
    if (req.method !== 'PUT' || req.url !== '/put') {
      res.writeHead(404).end();
      return;
    }
    track(
      (async () => {
        const fh = await open(join(dir, `put-${files++}`), 'w');
        let received = 0;
        try {
          // Each chunk is written before the next is read: back-pressure on the socket.
          for await (const chunk of req) {
            await writeAll(fh, /** @type {Buffer} */ (chunk));
            received += /** @type {Buffer} */ (chunk).length;
          }
        } finally {
          await fh.close();
        }
        bytes += received;
        res.writeHead(200, { 'Content-Type': 'text/plain' }).end(String(received));
      })().catch((e) => {
        console.error('PUT sink:', e);
        res.destroy();
      }),
    );
  });
  const wss = new WebSocketServer({
    server: http,
    path: '/ws',
    perMessageDeflate: false,
    maxPayload: 64 * MiB,
  });
  const reply = Buffer.alloc(1);
  wss.on('connection', (ws, req) => {
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const acks = query.get('acks') !== '0';
    const header = Number(query.get('header') ?? 0);
    const handle = open(join(dir, `ws-${files++}`), 'w');
    /** @type {Promise<unknown>} */
    let queue = handle;
    let received = 0;
    ws.on('message', (data, isBinary) => {
      const message = /** @type {Buffer} */ (data);
      if (!isBinary) {
        // `end`: every message before it written, the byte count is the answer.
        if (message.toString() === 'end') {
          queue = queue.then(() => {
            if (ws.readyState === WebSocket.OPEN) ws.send(String(received));
          });
        }
        return;
      }
      const payload = header > 0 ? message.subarray(header) : message;
      queue = queue.then(async () => {
        await writeAll(await handle, payload);
        bytes += payload.length;
        received += payload.length;
        if (acks && ws.readyState === WebSocket.OPEN) ws.send(reply);
      });
      queue.catch(() => ws.close(1011, 'write failed'));
    });
    track(
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
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const { port } = /** @type {import('node:net').AddressInfo} */ (http.address());
  return {
    url: { ws: `ws://127.0.0.1:${port}/ws`, put: `http://127.0.0.1:${port}/put` },
    async close() {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => wss.close(() => resolve(undefined)));
      http.closeAllConnections();
      await new Promise((resolve) => http.close(() => resolve(undefined)));
      await Promise.all(pending);
    },
    bytesStored: async () => bytes,
  };
}

/**
 * One reference upload server (default options but the item size and the connections per IP),
 * and an upload token for its tus endpoint.
 * @param {Extract<RoleStart, { kind: 'upload' }>} start
 * @returns {Promise<Running>}
 */
async function startUpload(start) {
  const server = createUploadServer({
    id: start.id,
    secret: start.secret,
    dataDir: start.dir,
    maxItemSize: start.maxItemSize,
    // Every connection comes from 127.0.0.1.
    maxConnectionsPerIp: 1024,
    // Linked to the control server, for a split's digest (see the benchmark's `linked`).
    ...(start.controlUrl ? { controlUrl: start.controlUrl } : {}),
    // Behind a proxy: browsers reach it there, the other servers here.
    ...(start.publicUrl ? { publicUrl: start.publicUrl } : {}),
    ...(start.peerUrl ? { peerUrl: start.peerUrl } : {}),
  });
  const urls = await server.listen(start.port ?? 0, '127.0.0.1');
  const { token } = await signToken(
    secretKey(start.secret),
    'bench-tus',
    uploadAudience(start.id),
    3600,
    { uid: 'bench', scope: 'upload' },
  );
  return {
    url: { ws: urls.ws, http: urls.http },
    token,
    close: () => server.close(),
    // Bytes stored over every item (each item has a folder named after its id).
    async bytesStored() {
      let total = 0;
      // No folder: nothing was stored (a case that failed early).
      const entries = await readdir(start.dir, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        if (!entry.isDirectory()) continue;
        const record = await server.store.get(entry.name).catch(() => undefined);
        for (const r of record?.ranges ?? []) total += r.end - r.start;
      }
      return total;
    },
  };
}

/**
 * The reference control server listing the upload servers. Its planner cuts an item into equal
 * ranges (aligned to 1 MiB), one per upload server listed.
 * @param {Extract<RoleStart, { kind: 'control' }>} start
 * @returns {Promise<Running>}
 */
async function startControl(start) {
  const control = createControlServer({
    secret: start.secret,
    uploadServers: start.uploadServers,
    maxItemSize: start.maxItemSize,
    plan: createPlanner({
      splitMin: 0,
      maxServers: start.maxServers ?? Math.max(1, start.uploadServers.length),
      // BENCH_STRIPE: the planner's stripe, in bytes (its default otherwise).
      ...(process.env.BENCH_STRIPE ? { stripe: Number(process.env.BENCH_STRIPE) } : {}),
    }),
    // Every item is uploaded.
    inlineMax: 0,
  });
  const url = await control.listen(0, '127.0.0.1');
  return {
    url: { control: url },
    token: await createUserToken(start.secret, 'bench-user'),
    close: () => control.close(),
    bytesStored: async () => 0,
  };
}

/**
 * Fault proxies in front of servers: one per server (host and port) named by the URLs, shaped
 * alike. Each proxy is one link: with `shareBandwidth`, the connections to a server share its
 * bandwidth.
 * @param {Extract<RoleStart, { kind: 'proxy' }>} start
 * @returns {Promise<Running>}
 */
async function startProxies(start) {
  // The proxy is TypeScript, shared with the tests: loaded through tsx, in this process only.
  const { register } = await import('tsx/esm/api');
  register();
  const { FaultProxy } = await import('../test/helpers/fault-proxy.ts');
  /** @type {Map<string, import('../test/helpers/fault-proxy.ts').FaultProxy>} */
  const proxies = new Map();
  /** @param {Record<string, string>} urls */
  const add = async (urls) => {
    /** @type {Record<string, string>} */
    const proxied = {};
    for (const [name, url] of Object.entries(urls)) {
      const u = new URL(url);
      let proxy = proxies.get(u.host);
      if (!proxy) {
        proxy = await FaultProxy.start({
          targetPort: Number(u.port),
          targetHost: u.hostname,
          ...start.shape,
        });
        proxies.set(u.host, proxy);
      }
      // As given: `URL` adds a `/` to a bare origin.
      const rewritten = proxy.rewrite(url);
      proxied[name] = url.endsWith('/') ? rewritten : rewritten.replace(/\/$/, '');
    }
    return proxied;
  };
  return {
    url: await add(start.urls),
    add,
    close: async () => void (await Promise.all([...proxies.values()].map((p) => p.close()))),
    bytesStored: async () => 0,
  };
}

/**
 * RSS of this process when called, its peak until `stop` (sampled every 50 ms), and CPU time.
 * @returns {() => { rssStart: number, rssPeak: number, cpuSeconds: number }}
 */
function sample() {
  const rssStart = process.memoryUsage.rss();
  const cpu = process.cpuUsage();
  let rssPeak = rssStart;
  const timer = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage.rss())), 50);
  return () => {
    clearInterval(timer);
    const used = process.cpuUsage(cpu);
    return {
      rssStart,
      rssPeak: Math.max(rssPeak, process.memoryUsage.rss()),
      cpuSeconds: (used.user + used.system) / 1e6,
    };
  };
}

// A full garbage collection once the target listens, so garbage of the start-up does not count.
setFlagsFromString('--expose-gc');
const collectGarbage = /** @type {() => void} */ (runInNewContext('gc'));

/** @type {Running | undefined} */
let running;
/** @type {ReturnType<typeof sample> | undefined} */
let stop;
const send = /** @type {NonNullable<typeof process.send>} */ (process.send).bind(process);
process.on('message', (/** @type {RoleStart | 'stop'} */ message) => {
  const add = running?.add;
  const work =
    message !== 'stop' && message.kind === 'proxy' && add
      ? (async () => send({ urls: await add(message.urls) }))()
      : message === 'stop'
        ? (async () => {
            const measured = /** @type {NonNullable<typeof stop>} */ (stop)();
            const bytesStored = (await running?.bytesStored()) ?? 0;
            await running?.close();
            send({ ...measured, bytesStored }, () => process.exit(0));
          })()
        : (async () => {
            running =
              message.kind === 'sinks'
                ? await startSinks(message.dir)
                : message.kind === 'upload'
                  ? await startUpload(message)
                  : message.kind === 'proxy'
                    ? await startProxies(message)
                    : await startControl(message);
            collectGarbage();
            stop = sample();
            send(/** @type {Started} */ ({ urls: running.url, token: running.token }));
          })();
  work.catch((/** @type {unknown} */ e) => {
    console.error(e);
    process.exit(1);
  });
});
process.on('disconnect', () => process.exit(0));
