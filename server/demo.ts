/**
 * The demo: one control server, three upload servers and the demo page, all on loopback.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createControlServer,
  type ControlServer,
  type UploadServerEndpoint,
} from './control/control-server.js';
import { createReadToken, createUserToken } from './tokens.js';
import { createUploadServer, type UploadServer } from './upload/upload-server.js';

/** Options of {@link startDemo}. */
export interface DemoOptions {
  /** Port of the demo page and control server. @default 0 (any free port) */
  readonly port?: number;
  /** Interface to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /** Folder for the upload servers' items (one sub-folder each). @default './data' */
  readonly dataDir?: string;
  /** Number of upload servers. @default 3 */
  readonly uploadServers?: number;
  /** Shared secret. @default random for this run */
  readonly secret?: string;
}

/** A running demo. */
export interface Demo {
  /** URL of the demo page. */
  readonly url: string;
  /** URL of the control WebSocket. */
  readonly controlUrl: string;
  /** A user token for the control server. */
  readonly token: string;
  /** The upload servers. */
  readonly uploadServers: readonly UploadServer[];
  /** The control server. */
  readonly control: ControlServer;
  /** Stops everything. */
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
};

/**
 * Starts the demo.
 * @param options see {@link DemoOptions}
 */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const host = options.host ?? '127.0.0.1';
  const dataDir = resolve(options.dataDir ?? 'data');
  const secret = options.secret ?? randomBytes(32).toString('base64url');
  const root = packageRoot();

  const uploadServers: UploadServer[] = [];
  const endpoints: UploadServerEndpoint[] = [];
  const page = createServer((req, res) => {
    serveStatic(req, res, root, config).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  let config = (): Promise<string> => Promise.resolve('{}');
  let control: ControlServer | undefined;
  try {
    for (let i = 1; i <= (options.uploadServers ?? 3); i++) {
      const id = `upload-${i}`;
      const server = createUploadServer({ id, secret, dataDir: join(dataDir, id) });
      uploadServers.push(server);
      const urls = await server.listen(0, host);
      endpoints.push({ id, url: urls.ws, httpUrl: urls.http });
    }
    control = createControlServer({ server: page, secret, uploadServers: endpoints });
    await control.listen(options.port ?? 0, host);
  } catch (e) {
    await control?.close();
    await Promise.all(uploadServers.map((s) => s.close()));
    throw e;
  }
  const controlUrl = await control.listen();
  const token = await createUserToken(secret, 'demo-user');
  // Items are read with read tokens, as an app would hand them out: fresh ones with each page load,
  // one per upload server, for any item (the demo has one user), as long-lived as its user token.
  config = async () =>
    JSON.stringify({
      controlUrl,
      token,
      readTokens: Object.fromEntries(
        await Promise.all(
          endpoints.map(
            async (e) =>
              [
                e.id,
                await createReadToken(secret, e.id, { subject: 'demo-user', ttlSeconds: 86_400 }),
              ] as const,
          ),
        ),
      ),
    });
  const { port } = page.address() as AddressInfo;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}/`;
  const running = control;

  return {
    url,
    controlUrl,
    token,
    uploadServers,
    control: running,
    async close() {
      await running.close();
      page.closeAllConnections();
      await new Promise<void>((r) => page.close(() => r()));
      await Promise.all(uploadServers.map((s) => s.close()));
    },
  };
}

async function serveStatic(
  req: IncomingMessage,
  res: ServerResponse,
  root: string,
  config: () => Promise<string>,
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (path === '/demo-config.json') {
    res
      .writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' })
      .end(await config());
    return;
  }
  if (path === '/favicon.ico') {
    res.writeHead(204).end();
    return;
  }
  let file: string | undefined;
  if (path === '/' || path === '/index.html') file = join(root, 'demo', 'index.html');
  else if (path.startsWith('/bundle/')) {
    const bundleDir = join(root, 'dist', 'bundle');
    const candidate = normalize(join(bundleDir, decodeURIComponent(path.slice('/bundle/'.length))));
    if (candidate.startsWith(bundleDir + sep)) file = candidate;
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
  res.end(await readFile(file));
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
