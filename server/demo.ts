/**
 * The demo: one control server, three upload servers that speak different protocol versions, and
 * the demo page, all on loopback. The page's switches stop an upload server as a crash would and
 * start it again on its port and folder, to show failover.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createControlServer, type ControlServer } from './control/control-server.js';
import { bearerToken } from './internal/http-server.js';
import { CONTROL_AUDIENCE, createUserToken, secretKey, verifyToken } from './tokens.js';
import { createUploadServer, type UploadServer } from './upload/upload-server.js';

/** Options of {@link startDemo}. */
export interface DemoOptions {
  /** Port of the demo page and control server. @default 0 (any free port) */
  readonly port?: number;
  /** Interface to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /** Folder for the upload servers' items (one sub-folder each). @default './data' */
  readonly dataDir?: string;
  /**
   * Number of upload servers. They take turns at the protocol sets: every protocol, `dup/1` only,
   * `http/1` only. @default 3
   */
  readonly uploadServers?: number;
  /** Shared secret. @default random for this run */
  readonly secret?: string;
}

/** An upload server of the demo, as the page lists it. */
export interface DemoServer {
  readonly id: string;
  /** Data protocols it speaks, as its `/.well-known/ws-uploader` says. */
  readonly protocols: readonly string[];
  /** Its HTTP base URL. */
  readonly httpUrl: string;
  /** Whether it runs (not stopped by {@link Demo.kill}). */
  readonly running: boolean;
}

/** A running demo. */
export interface Demo {
  /** URL of the demo page. */
  readonly url: string;
  /** URL of the control WebSocket. */
  readonly controlUrl: string;
  /** A user token for the control server: the uploading user's. */
  readonly token: string;
  /** A second user's token: the downloading browser's. */
  readonly viewerToken: string;
  /** The room both users may message each other in (the only one the demo allows). */
  readonly room: string;
  /** The upload servers that run now (a restarted one is a new instance). */
  readonly uploadServers: readonly UploadServer[];
  /** Every upload server, running or not. */
  servers(): DemoServer[];
  /** The control server. */
  readonly control: ControlServer;
  /**
   * Stops an upload server as a crash would: every connection is cut at once, then it closes.
   * @returns `false` when there is no such server
   */
  kill(id: string): Promise<boolean>;
  /**
   * Starts a stopped upload server again, on its port and with its folder (what it stored is
   * kept), and waits for it to register with the control server.
   * @returns `false` when there is no such server
   */
  restart(id: string): Promise<boolean>;
  /** Stops everything. */
  close(): Promise<void>;
}

/** The room the demo's users share. */
const ROOM = 'demo';

/** What each upload server speaks, in turn: all protocols, then only older or plainer ones. */
const PROTOCOL_SETS: readonly (readonly string[])[] = [
  ['dup/2', 'dup/1', 'tus/1', 'http/1'],
  ['dup/1'],
  ['http/1'],
];

/** Largest item sent inline (through the control server, with messages), in bytes. */
const INLINE_MAX = 64 * 1024;

/** How long an upload server has to register with the control server, in ms. */
const REGISTER_TIMEOUT_MS = 10_000;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
};

/** One upload server slot: its settings, and the instance that runs now, if any. */
interface Slot {
  readonly id: string;
  readonly protocols: readonly string[];
  readonly dataDir: string;
  port: number;
  upload: UploadServer | undefined;
  http: Server | undefined;
  readonly sockets: Set<Socket>;
  /** A kill or restart in progress: the next one waits for it. */
  busy: Promise<unknown>;
}

/**
 * Starts the demo.
 * @param options see {@link DemoOptions}
 */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const host = options.host ?? '127.0.0.1';
  const dataDir = resolve(options.dataDir ?? 'data');
  const secret = options.secret ?? randomBytes(32).toString('base64url');
  const key = secretKey(secret);
  const root = packageRoot();
  // How browsers reach the servers: a wildcard address is not one.
  const publicHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const urlHost = publicHost.includes(':') ? `[${publicHost}]` : publicHost;

  const count = options.uploadServers ?? 3;
  const slots: Slot[] = Array.from({ length: count }, (_, i) => {
    const id = `upload-${i + 1}`;
    return {
      id,
      protocols: PROTOCOL_SETS[i % PROTOCOL_SETS.length]!,
      dataDir: join(dataDir, id),
      port: 0,
      upload: undefined,
      http: undefined,
      sockets: new Set(),
      busy: Promise.resolve(),
    };
  });

  let handle: (req: IncomingMessage, res: ServerResponse) => Promise<void> = async (_req, res) =>
    void res.writeHead(503).end();
  const page = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  const control = createControlServer({
    server: page,
    secret,
    inlineMax: INLINE_MAX,
    // Users may join the demo room and message it, and read every item; nothing else.
    allow: (request) =>
      request.action === 'read' ||
      (request.action === 'join'
        ? request.room === ROOM
        : 'room' in request.to && request.to.room === ROOM),
  });
  let registryUrl = '';

  /** Starts a slot's upload server: its own HTTP server first, so it knows its public URL. */
  const start = async (slot: Slot): Promise<void> => {
    const http = createServer();
    http.on('connection', (socket) => {
      slot.sockets.add(socket);
      socket.once('close', () => slot.sockets.delete(socket));
    });
    await new Promise<void>((done, fail) => {
      http.once('error', fail);
      http.listen(slot.port, host, () => {
        http.off('error', fail);
        done();
      });
    });
    slot.port = (http.address() as AddressInfo).port;
    slot.http = http;
    slot.upload = createUploadServer({
      id: slot.id,
      secret,
      dataDir: slot.dataDir,
      server: http,
      protocols: slot.protocols,
      // It registers with the control server, which lists it to browsers while its link lives.
      controlUrl: registryUrl,
      publicUrl: `http://${urlHost}:${slot.port}`,
    });
    await slot.upload.listen();
  };

  /** Cuts every connection of a slot's server at once, then closes it. */
  const stop = async (slot: Slot): Promise<void> => {
    const { upload, http } = slot;
    if (!upload || !http) return;
    slot.upload = undefined;
    slot.http = undefined;
    for (const socket of slot.sockets) socket.destroy();
    await upload.close();
    http.closeAllConnections();
    await new Promise<void>((done) => http.close(() => done()));
  };

  /** Waits until the control server lists these servers (they registered). */
  const registered = async (ids: readonly string[]): Promise<void> => {
    const end = Date.now() + REGISTER_TIMEOUT_MS;
    for (;;) {
      const listed = new Set(control.servers().map((s) => s.id));
      if (ids.every((id) => listed.has(id))) return;
      if (Date.now() > end) throw new Error(`ws-uploader: ${ids.join(', ')} did not register`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  let controlUrl: string;
  try {
    controlUrl = await control.listen(options.port ?? 0, host);
    const port = (page.address() as AddressInfo).port;
    registryUrl = `ws://${urlHost}:${port}/registry`;
    for (const slot of slots) await start(slot);
    await registered(slots.map((s) => s.id));
  } catch (e) {
    await Promise.all(slots.map(stop));
    await control.close();
    if (page.listening) await new Promise<void>((r) => page.close(() => r()));
    throw e;
  }

  const [token, viewerToken] = await Promise.all([
    createUserToken(secret, 'demo-user'),
    createUserToken(secret, 'demo-viewer'),
  ]);
  const { port } = page.address() as AddressInfo;
  const url = `http://${urlHost}:${port}/`;
  const servers = (): DemoServer[] =>
    slots.map((s) => ({
      id: s.id,
      protocols: s.protocols,
      httpUrl: `http://${urlHost}:${s.port}`,
      running: s.upload !== undefined,
    }));

  // One kill or restart of a server at a time, in the order asked.
  const serially = (slot: Slot, fn: () => Promise<void>): Promise<void> => {
    const next = slot.busy.then(fn);
    slot.busy = next.catch(() => undefined);
    return next;
  };
  const kill = async (id: string): Promise<boolean> => {
    const slot = slots.find((s) => s.id === id);
    if (!slot) return false;
    await serially(slot, () => stop(slot));
    return true;
  };
  const restart = async (id: string): Promise<boolean> => {
    const slot = slots.find((s) => s.id === id);
    if (!slot) return false;
    await serially(slot, async () => {
      if (slot.upload) return;
      await start(slot);
      await registered([slot.id]);
    });
    return true;
  };

  // What the page needs: who it is and where to connect (read tokens come with `located`).
  const config = async (): Promise<string> =>
    JSON.stringify({
      controlUrl,
      token,
      viewerToken,
      room: ROOM,
      inlineMax: INLINE_MAX,
      servers: servers(),
    });

  // Host names the page may be asked for: a loopback demo answers only its own, so that another
  // site cannot reach it through a name that resolves to this machine.
  const hosts = new Set(
    host === '0.0.0.0' || host === '::'
      ? []
      : [`${urlHost}:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`],
  );
  handle = async (req, res) => {
    if (hosts.size > 0 && !hosts.has(req.headers.host ?? '')) {
      res.writeHead(421, { 'Content-Type': 'text/plain' }).end('misdirected request\n');
      return;
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path.startsWith('/demo/')) {
      await demoRoute(req, res, path);
      return;
    }
    if (path === '/demo-config.json') {
      res
        .writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' })
        .end(await config());
      return;
    }
    await serveStatic(req, res, root, path);
  };

  /**
   * The page's buttons: `POST /demo/servers/{id}/kill` and `/restart`, and
   * `POST /demo/items/{itemId}/relay`, which sends a small item the uploading user published
   * inline (its bytes are with the control server) to the room, as an app would.
   */
  const demoRoute = async (req: IncomingMessage, res: ServerResponse, path: string) => {
    const json = (status: number, body: unknown): void =>
      void res
        .writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' })
        .end(JSON.stringify(body));
    if (req.method !== 'POST') {
      res.writeHead(405, { Allow: 'POST' }).end();
      return;
    }
    // Pages of other sites may not press the buttons.
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}`) {
      json(403, { error: 'forbidden' });
      return;
    }
    const action = /^\/demo\/servers\/([^/]+)\/(kill|restart)$/.exec(path);
    if (action) {
      const [, id, verb] = action;
      const done = verb === 'kill' ? await kill(id!) : await restart(id!);
      if (!done) json(404, { error: 'no such server' });
      else
        json(
          200,
          servers().find((s) => s.id === id),
        );
      return;
    }
    const relay = /^\/demo\/items\/([A-Za-z0-9_-]{1,128})\/relay$/.exec(path);
    if (relay) {
      const claims = await verifyToken(key, bearerToken(req) ?? '', CONTROL_AUDIENCE);
      if (!claims) {
        json(401, { error: 'a user token is needed' });
        return;
      }
      const item = (await control.items()).find((i) => i.meta.itemId === relay[1]);
      if (!item?.inline || item.userId !== claims.sub) {
        json(404, { error: 'no such inline item of this user' });
        return;
      }
      json(200, { delivered: control.send({ room: ROOM }, { item: item.meta }) });
      return;
    }
    json(404, { error: 'not found' });
  };

  return {
    url,
    controlUrl,
    token,
    viewerToken,
    room: ROOM,
    get uploadServers() {
      return slots.flatMap((s) => (s.upload ? [s.upload] : []));
    },
    servers,
    control,
    kill,
    restart,
    async close() {
      await Promise.all(slots.map((s) => s.busy));
      // The upload servers first: their links to the control server end with them.
      await Promise.all(slots.map(stop));
      await control.close();
      page.closeAllConnections();
      await new Promise<void>((r) => page.close(() => r()));
    },
  };
}

/** Files of the page: the demo folder, the bundle, the npm build and hash-wasm for the engine. */
async function serveStatic(
  req: IncomingMessage,
  res: ServerResponse,
  root: string,
  path: string,
): Promise<void> {
  if (path === '/favicon.ico') {
    res.writeHead(204).end();
    return;
  }
  let file: string | undefined;
  if (path === '/' || path === '/index.html') file = join(root, 'demo', 'index.html');
  else if (path === '/vendor/hash-wasm.js') file = hashWasmModule();
  else {
    // `/demo.js` from demo/, `/bundle/*` from the bundle, `/lib/*` from the npm build (dist/src).
    const [prefix, dir, allowed] = path.startsWith('/bundle/')
      ? ['/bundle/', join(root, 'dist', 'bundle'), /\.(js|map)$/]
      : path.startsWith('/lib/')
        ? ['/lib/', join(root, 'dist', 'src'), /\.(js|map)$/]
        : ['/', join(root, 'demo'), /\.(js|css)$/];
    let name = '';
    try {
      name = decodeURIComponent(path.slice(prefix.length));
    } catch {
      // not a file name
    }
    const candidate = normalize(join(dir, name));
    if (candidate.startsWith(dir + sep) && allowed.test(candidate)) file = candidate;
  }
  if (!file || !(await stat(file).catch(() => undefined))?.isFile()) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    return;
  }
  res.writeHead(200, {
    'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : await readFile(file));
}

/** The ES module build of hash-wasm, which the engine imports (the page maps the bare name to it). */
function hashWasmModule(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const manifest = require.resolve('hash-wasm/package.json');
    const { module } = require(manifest) as { module?: string };
    return module ? join(dirname(manifest), module) : undefined;
  } catch {
    return undefined;
  }
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('ws-uploader: cannot find the package folder');
    dir = up;
  }
  return dir;
}
