// A @web/test-runner plugin that starts real servers for browser tests on request:
// `executeServerCommand('ws-servers:start', {...})` from a test starts one control server and
// upload servers on loopback (port 0) with storage in a new temporary folder. `uploadOptions` go to
// every createUploadServer (for example `readAccess` or `crossOriginResourcePolicy`), and
// `ws-servers:read-token` mints read tokens for GET /files.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tsImport } from 'tsx/esm/api';

const servers = await tsImport('../../server/index.ts', import.meta.url);

/** Running deployments by handle. */
const running = new Map();
let nextHandle = 1;

async function start({ uploadServers = 2, controlOptions = {}, uploadOptions = {} } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-test-'));
  const secret = randomBytes(32).toString('base64url');
  const uploads = [];
  const endpoints = [];
  for (let i = 1; i <= uploadServers; i++) {
    const id = `up-${i}`;
    const server = servers.createUploadServer({
      id,
      secret,
      dataDir: join(dir, id),
      ...uploadOptions,
    });
    const urls = await server.listen(0, '127.0.0.1');
    // What the server answered, to check how browsers read items (for example, by ranges).
    server.httpLog = [];
    server.httpServer.on('request', (req, res) =>
      res.on('finish', () =>
        server.httpLog.push({
          method: req.method,
          // The path only: the query may hold an access_token.
          url: new URL(req.url ?? '/', 'http://localhost').pathname,
          range: req.headers.range ?? null,
          status: res.statusCode,
        }),
      ),
    );
    uploads.push(server);
    endpoints.push({ id, url: urls.ws, httpUrl: urls.http });
  }
  const control = servers.createControlServer({
    secret,
    uploadServers: endpoints,
    ...controlOptions,
  });
  const controlUrl = await control.listen(0, '127.0.0.1');
  const token = await servers.createUserToken(secret, 'test-user');
  const handle = nextHandle++;
  running.set(handle, { dir, uploads, control, secret });
  return { handle, controlUrl, token, servers: endpoints };
}

async function stop({ handle }) {
  const d = running.get(handle);
  if (!d) return false;
  running.delete(handle);
  await d.control.close();
  await Promise.all(d.uploads.map((s) => s.close()));
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

const COMMANDS = {
  'ws-servers:http-log': httpLog,
  'ws-servers:read-token': readToken,
  'ws-servers:start': start,
  'ws-servers:stop': stop,
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
