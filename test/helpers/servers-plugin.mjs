// A @web/test-runner plugin that starts real servers for browser tests on request:
// `executeServerCommand('ws-servers:start', {...})` from a test starts one control server and
// upload servers on loopback (port 0) with storage in a new temporary folder. `uploadOptions` go to
// every createUploadServer (for example `readAccess` or `crossOriginResourcePolicy`), and
// `ws-servers:read-token` mints read tokens for GET /files; `uploadOptionsById` adds options for
// one upload server (by its id, `up-1`…). With `linked: true` the upload servers
// are not listed by hand: they connect out to the control server's `/registry` (`controlUrl`), so
// they report demand (a reader waiting for missing bytes). `allow: { rooms }` lets browsers join or
// message only those rooms (the control server's `allow` hook); the app's side of the control
// server is reachable through `ws-servers:cancel-transmit`, `ws-servers:app-send` and
// `ws-servers:tasks` (every step of every transmit task, from `onTask`). `ws-servers:fault-proxy`
// puts a FaultProxy (./fault-proxy.ts: black hole, bandwidth, slicer, idle cut) in front of the
// control server or an upload server; `ws-servers:proxy` commands it.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { tsImport } from 'tsx/esm/api';

const servers = await tsImport('../../server/index.ts', import.meta.url);
const { FaultProxy } = await tsImport('./fault-proxy.ts', import.meta.url);
const { CONTROL_AUDIENCE } = await tsImport('../../server/tokens.ts', import.meta.url);

/** Running deployments by handle. */
const running = new Map();
let nextHandle = 1;

async function start({
  uploadServers = 2,
  controlOptions = {},
  plannerOptions,
  uploadOptions = {},
  uploadOptionsById = {},
  linked = false,
  allow,
} = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-test-'));
  const secret = randomBytes(32).toString('base64url');
  const uploads = [];
  const endpoints = [];
  const tasks = [];
  // Linked upload servers need the control server first: they connect to it.
  let control;
  let controlUrl;
  const createControl = async (uploadEndpoints, port = 0) => {
    control = servers.createControlServer({
      secret,
      uploadServers: uploadEndpoints,
      onTask: (event) => tasks.push(event),
      ...(allow ? { allow: allowRooms(allow.rooms ?? []) } : {}),
      ...(plannerOptions ? { plan: servers.createPlanner(plannerOptions) } : {}),
      ...controlOptions,
    });
    controlUrl = await control.listen(port, '127.0.0.1');
    // Its TCP connections, so a test can cut them all (a network blip).
    control.tcp = new Set();
    control.httpServer.on('connection', (socket) => {
      control.tcp.add(socket);
      socket.once('close', () => control.tcp.delete(socket));
    });
    return control;
  };
  if (linked) await createControl([]);
  /** Starts upload server `id` on `port` (0: any), with its log and HTTP log. */
  const startUpload = async (id, port = 0, logs = [], httpLog = []) => {
    const server = servers.createUploadServer({
      id,
      secret,
      dataDir: join(dir, id),
      logger: (entry) => logs.push(entry),
      ...(linked ? { controlUrl: controlUrl.replace(/\/control$/, '/registry') } : {}),
      ...uploadOptions,
      ...uploadOptionsById[id],
    });
    const urls = await server.listen(port, '127.0.0.1');
    server.urls = urls;
    // What the server answered, to check how browsers read items (for example, by ranges).
    server.httpLog = httpLog;
    server.httpServer.on('request', (req, res) =>
      res.on('finish', () =>
        server.httpLog.push({
          method: req.method,
          // The path only: the query may hold an access_token.
          url: new URL(req.url ?? '/', 'http://localhost').pathname,
          range: req.headers.range ?? null,
          contentRange: req.headers['content-range'] ?? null,
          status: res.statusCode,
        }),
      ),
    );
    // Its TCP connections, so a test can cut them all at once (a crash).
    server.tcp = new Set();
    server.httpServer.on('connection', (socket) => {
      server.tcp.add(socket);
      socket.once('close', () => server.tcp.delete(socket));
    });
    server.logs = logs;
    return server;
  };
  for (let i = 1; i <= uploadServers; i++) {
    const server = await startUpload(`up-${i}`);
    uploads.push(server);
    endpoints.push({ id: server.id, url: server.urls.ws, httpUrl: server.urls.http });
  }
  if (linked) {
    // Listed once every upload server registered.
    const end = Date.now() + 10_000;
    while (control.servers().length < uploadServers) {
      if (Date.now() > end) throw new Error('the upload servers did not register');
      await new Promise((r) => setTimeout(r, 20));
    }
  } else {
    await createControl(endpoints);
  }
  const token = await servers.createUserToken(secret, 'test-user');
  const handle = nextHandle++;
  // A new control server process on the same port: everything it knew is gone.
  const restartControl = (port) => createControl(linked ? [] : endpoints, port);
  running.set(handle, { dir, uploads, control, secret, tasks, startUpload, restartControl });
  const listed = linked
    ? control.servers().map(({ id, url, httpUrl }) => ({ id, url, httpUrl }))
    : endpoints;
  return { handle, controlUrl, token, servers: listed };
}

/** The control server's `allow` hook: joins and room messages only for `rooms`. */
function allowRooms(rooms) {
  return (request) => {
    const room =
      request.action === 'join' ? request.room : 'room' in request.to ? request.to.room : undefined;
    return room === undefined || rooms.includes(room);
  };
}

async function stop({ handle }) {
  const d = running.get(handle);
  if (!d) return false;
  running.delete(handle);
  await Promise.all((d.proxies ?? []).map((proxy) => proxy.close()));
  await d.control.close();
  await Promise.all(d.uploads.filter((s) => !s.killed).map((s) => s.close()));
  await rm(d.dir, { recursive: true, force: true });
  return true;
}

/** SHA-256 of an item's data file as stored on disk by one upload server. */
async function storedSha256({ handle, serverId, itemId }) {
  const d = running.get(handle);
  const record = await d.uploads.find((s) => s.id === serverId).store.get(itemId);
  if (!record) return null;
  const hash = createHash('sha256');
  if (record.size > 0) {
    await new Promise((resolve, reject) =>
      createReadStream(join(d.dir, serverId, itemId, 'data'), { start: 0, end: record.size - 1 })
        .on('data', (c) => hash.update(c))
        .on('error', reject)
        .on('end', resolve),
    );
  }
  return { complete: record.complete, size: record.size, sha256: hash.digest('hex') };
}

/** A read token for GET /files on one upload server, for `items` (default: any item). */
function readToken({ handle, serverId, items, ttlSeconds }) {
  return servers.createReadToken(running.get(handle).secret, serverId, {
    subject: 'test-reader',
    ...(items ? { items } : {}),
    ...(ttlSeconds ? { ttlSeconds } : {}),
  });
}

/** Items the control server knows. */
function controlItems({ handle }) {
  return running.get(handle).control.items();
}

/** Requests an upload server answered: method, url, Range header and status. */
function httpLog({ handle, serverId }) {
  return running.get(handle).uploads.find((s) => s.id === serverId).httpLog;
}

/**
 * A control credential for a user of the deployment. `expiresIn` (seconds, may be negative: the
 * control server tolerates 30 s of clock difference) makes one that runs out soon.
 */
async function userToken({ handle, userId, expiresIn }) {
  const { secret } = running.get(handle);
  if (expiresIn === undefined) return servers.createUserToken(secret, userId);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(userId)
    .setAudience(CONTROL_AUDIENCE)
    .setIssuedAt(Math.min(now, now + expiresIn))
    .setExpirationTime(now + expiresIn)
    .sign(new TextEncoder().encode(secret));
}

/** The app cancels a transmit task (`control.cancelTransmit`); whether it was pending. */
function cancelTransmit({ handle, taskId, reason }) {
  return running.get(handle).control.cancelTransmit(taskId, reason);
}

/** The app sends a message to browsers (`control.send`); how many it reached. */
function appSend({ handle, to, message }) {
  return running.get(handle).control.send(to, message);
}

/** Cuts every TCP connection of the control server at once; how many there were. */
function dropControl({ handle }) {
  const { control } = running.get(handle);
  const sockets = [...control.tcp];
  for (const socket of sockets) socket.destroy();
  return sockets.length;
}

/** The log entries of one upload server so far. */
function uploadLogs({ handle, serverId }) {
  return running.get(handle).uploads.find((s) => s.id === serverId).logs;
}

/**
 * A proxy in front of one upload server that flips one byte in the payload of the `frame`-th large
 * binary WebSocket message from the browser (a DATA frame: past its 17-byte header), or from the
 * server (`down`: a BYTES frame), as a faulty network would. Everything else passes unchanged.
 * @returns its WebSocket URL for `/dup`, and an id to ask how many bytes it corrupted
 */
async function corruptingProxy({ handle, serverId, frame = 3, down = false }) {
  const d = running.get(handle);
  const state = { corrupted: 0 };
  const filter = () => corruptingFilter(frame, state);
  const proxy = await FaultProxy.start({
    targetPort: portOf(d, serverId),
    ...(down ? { filterDown: filter } : { filterUp: filter }),
  });
  proxy.corruption = state;
  d.proxies ??= [];
  d.proxies.push(proxy);
  return {
    url: `ws://127.0.0.1:${proxy.port}/dup`,
    proxyId: d.proxies.length - 1,
  };
}

/**
 * A filter of one side's bytes that passes the HTTP upgrade (request or response), then whole
 * WebSocket frames (RFC 6455 §5.2) one by one, flipping a byte of the `frame`-th large binary one.
 */
function corruptingFilter(frame, state) {
  let upgraded = false;
  let pending = Buffer.alloc(0);
  let large = 0;
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    const out = [];
    if (!upgraded) {
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return Buffer.alloc(0);
      out.push(pending.subarray(0, end + 4));
      pending = pending.subarray(end + 4);
      upgraded = true;
    }
    for (;;) {
      if (pending.length < 2) break;
      let length = pending[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (pending.length < 4) break;
        length = pending.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (pending.length < 10) break;
        length = Number(pending.readBigUInt64BE(2));
        offset = 10;
      }
      if (pending[1] & 0x80) offset += 4;
      if (pending.length < offset + length) break;
      const message = Buffer.from(pending.subarray(0, offset + length));
      const binary = (pending[0] & 0x0f) === 2;
      // Flipping masked bits flips the same bits of the payload once unmasked.
      if (binary && length > 4096 && ++large === frame) {
        message[offset + 50] ^= 0xff;
        state.corrupted++;
      }
      out.push(message);
      pending = pending.subarray(offset + length);
    }
    return Buffer.concat(out);
  };
}

/** How many bytes a corrupting proxy flipped. */
function proxyCorrupted({ handle, proxyId }) {
  return running.get(handle).proxies[proxyId].corruption.corrupted;
}

/** The port of the control server (`to: 'control'`) or of an upload server of a deployment. */
function portOf(d, to) {
  const http =
    to === 'control' ? d.control.httpServer : d.uploads.find((s) => s.id === to).httpServer;
  return http.address().port;
}

/**
 * A FaultProxy (./fault-proxy.ts) in front of the control server (`to: 'control'`) or an upload
 * server, shaped by `shape` (bandwidth, slicer, idle cut).
 * @returns its id and port
 */
async function faultProxy({ handle, to, shape = {} }) {
  const d = running.get(handle);
  const proxy = await FaultProxy.start({ targetPort: portOf(d, to), ...shape });
  d.proxies ??= [];
  d.proxies.push(proxy);
  return { proxyId: d.proxies.length - 1, port: proxy.port };
}

/**
 * Commands a fault proxy: `blackhole` (the open connections, after `afterBytes` more bytes of
 * each client; answers how many), `shape` (new shaping), `down` (refuse new connections or not),
 * `stats` (answers its counts and events).
 */
function proxyCommand({ handle, proxyId, action, afterBytes, shape, down }) {
  const proxy = running.get(handle).proxies[proxyId];
  switch (action) {
    case 'blackhole':
      return proxy.blackhole(afterBytes ?? 0);
    case 'shape':
      proxy.shape(shape ?? {});
      return true;
    case 'down':
      proxy.down = Boolean(down);
      return true;
    case 'stats':
      return { ...proxy.stats(), events: proxy.events() };
    default:
      return undefined;
  }
}

/** Stops one upload server (as if its process died: connections drop, its link ends). */
async function killUpload({ handle, serverId, crash = false }) {
  const d = running.get(handle);
  const server = d.uploads.find((s) => s.id === serverId);
  if (!server || server.killed) return false;
  server.killed = true;
  // A crash: every connection cut at once, no close frame, nothing answered.
  if (crash) for (const socket of server.tcp) socket.destroy();
  await server.close();
  return true;
}

/**
 * Stops the control server as a crash would (every connection cut, nothing said), and starts a new
 * one with the same options on the same port after `downMs`: all its state is gone.
 */
async function restartControl({ handle, downMs = 0 }) {
  const d = running.get(handle);
  const port = d.control.httpServer.address().port;
  for (const socket of d.control.tcp) socket.destroy();
  await d.control.close();
  await new Promise((r) => setTimeout(r, downMs));
  d.control = await d.restartControl(port);
  return true;
}

/** Starts a killed upload server again: same id, port and folder (what it stored is kept). */
async function restartUpload({ handle, serverId }) {
  const d = running.get(handle);
  const at = d.uploads.findIndex((s) => s.id === serverId);
  const old = d.uploads[at];
  if (!old?.killed) return false;
  const port = Number(new URL(old.urls.http).port);
  d.uploads[at] = await d.startUpload(serverId, port, old.logs, old.httpLog);
  return true;
}

/** Every step of every transmit task so far (the control server's `onTask`). */
function taskLog({ handle }) {
  return running.get(handle).tasks;
}

const COMMANDS = {
  'ws-servers:app-send': appSend,
  'ws-servers:cancel-transmit': cancelTransmit,
  'ws-servers:tasks': taskLog,
  'ws-servers:user-token': userToken,
  'ws-servers:http-log': httpLog,
  'ws-servers:read-token': readToken,
  'ws-servers:start': start,
  'ws-servers:stop': stop,
  'ws-servers:kill-upload': killUpload,
  'ws-servers:restart-upload': restartUpload,
  'ws-servers:restart-control': restartControl,
  'ws-servers:drop-control': dropControl,
  'ws-servers:upload-logs': uploadLogs,
  'ws-servers:corrupting-proxy': corruptingProxy,
  'ws-servers:proxy-corrupted': proxyCorrupted,
  'ws-servers:fault-proxy': faultProxy,
  'ws-servers:proxy': proxyCommand,
  'ws-servers:stored-sha256': storedSha256,
  'ws-servers:control-items': controlItems,
};

export function testServersPlugin() {
  return {
    name: 'ws-uploader-test-servers',
    async executeCommand({ command, payload }) {
      const fn = COMMANDS[command];
      return fn ? await fn(payload ?? {}) : undefined;
    },
    async serverStop() {
      for (const handle of [...running.keys()]) await stop({ handle });
    },
  };
}
