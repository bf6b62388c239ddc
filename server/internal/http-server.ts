/**
 * Shared plumbing of the reference servers: listening, routing WebSocket upgrades by path and
 * shutting down. Internal: may change without a major version.
 * @internal
 */
import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocketServer } from 'ws';
import { CLOSE } from '../../src/protocol/index.js';

/**
 * Starts listening unless the server already does.
 * @returns `host:port` as clients reach it (IPv6 in brackets)
 */
export async function listen(server: Server, port: number, host: string): Promise<string> {
  if (!server.listening) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }
  const addr = server.address() as AddressInfo;
  return `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
}

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1), or `undefined`. */
export function bearerToken(req: IncomingMessage): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
}

/** The path of a request, without its query. */
export function pathOf(req: IncomingMessage): string {
  return new URL(req.url ?? '/', 'http://localhost').pathname;
}

/**
 * An `upgrade` listener that hands requests for `path` to `wss`, unless `admit` answers a status to
 * refuse them with. Other upgrades are left to the server's other listeners, or destroyed when the
 * server is ours alone.
 */
export function upgradeOn(
  path: string,
  wss: WebSocketServer,
  ownsServer: boolean,
  admit?: (req: IncomingMessage) => number | undefined,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    if (pathOf(req) !== path) {
      if (ownsServer) socket.destroy();
      return;
    }
    const refused = admit?.(req);
    if (refused !== undefined) {
      socket.end(
        `HTTP/1.1 ${refused} ${STATUS_CODES[refused] ?? ''}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  };
}

/** Closes every WebSocket (1001), then the HTTP server when it is ours. */
export async function shutdown(
  wss: WebSocketServer,
  server: Server,
  ownsServer: boolean,
): Promise<void> {
  for (const ws of wss.clients) ws.close(CLOSE.GOING_AWAY, 'server shutting down');
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  for (const ws of wss.clients) ws.terminate();
  if (ownsServer && server.listening) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
