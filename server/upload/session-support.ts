/**
 * What the dup/2 and dup/1 sessions share: supervising a connection (auth deadline, idle timer,
 * heartbeat, the server-wide buffer budget), draining it, token expiry and upload counting.
 * @internal
 */
import type { Readable } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { CLOCK_LEEWAY_SECONDS } from '../tokens.js';
import type { Dup2SessionContext } from './dup2-session.js';
import type { Grant } from './grant.js';

/** What a session does on each event of its connection. */
export interface ConnectionEvents {
  authTimeout(): void;
  idle(): void;
  message(data: RawData, isBinary: boolean): void;
  close(): void;
  /**
   * When the connection was last busy sending to the client of its own accord (dup/2 reads, whose
   * client sends nothing while BYTES stream), as `performance.now()`: `Infinity` while it is,
   * `-Infinity` when never. A busy connection is not idle; its idle clock starts when it stops.
   */
  lastBusy?(): number;
}

/**
 * Watches a connection: the auth deadline, the idle timer, WebSocket pings (a peer that misses one
 * is dropped: they find dead peers the idle timer would wait long for), and the buffer budget.
 * Everything stops when the connection closes.
 *
 * Any bytes arriving on `socket` count as activity and as a sign of life, not only whole messages:
 * on a slow link a large DATA frame takes longer to arrive than the idle timeout (1 MiB at 5 KB/s
 * is 200 s), and the peer's pong waits behind it. A ping or pong that arrives alone is a sign of
 * life but not activity. A relayed connection has no socket of its own; its messages count.
 * A connection busy sending ({@link ConnectionEvents.lastBusy}) is not idle either.
 * @param socket the TCP connection under `ws`, when it has one
 * @returns the auth timer, to clear once the client is welcomed
 */
export function superviseConnection(
  ws: WebSocket,
  ctx: Dup2SessionContext,
  on: ConnectionEvents,
  socket?: Readable,
): NodeJS.Timeout {
  ctx.budget.join(ws);
  const auth = setTimeout(() => on.authTimeout(), ctx.authTimeoutMs);
  let alive = true;
  // One timer, moved on when it fires rather than at every chunk of bytes (TCP chunks come far
  // more often than the timeout).
  let lastActivity = performance.now();
  const active = (): void => {
    lastActivity = performance.now();
    alive = true;
  };
  const bytes = (chunk: Buffer): void => {
    // A pong (or ping) alone proves the peer alive, but is not activity: a peer that only
    // answers the heartbeat is still idle.
    if (isControlFrame(chunk)) alive = true;
    else active();
  };
  let idle: NodeJS.Timeout;
  const watchIdle = (ms: number): void => {
    idle = setTimeout(() => {
      const busy = on.lastBusy?.() ?? -Infinity;
      // Busy now: looked at again a whole timeout later (it may end any time before).
      if (busy === Infinity) {
        watchIdle(ctx.idleTimeoutMs);
        return;
      }
      const quiet = performance.now() - Math.max(lastActivity, busy);
      if (quiet >= ctx.idleTimeoutMs) on.idle();
      else watchIdle(ctx.idleTimeoutMs - quiet);
    }, ms);
  };
  watchIdle(ctx.idleTimeoutMs);
  socket?.on('data', bytes);
  ws.on('pong', () => (alive = true));
  const heartbeat = setInterval(() => {
    if (!alive) {
      ws.terminate();
      return;
    }
    alive = false;
    ws.ping();
  }, ctx.heartbeatMs);
  ws.on('message', (data, isBinary) => {
    active();
    on.message(data, isBinary);
  });
  ws.on('close', () => {
    clearTimeout(auth);
    clearTimeout(idle);
    clearInterval(heartbeat);
    socket?.off('data', bytes);
    on.close();
  });
  ws.on('error', () => undefined);
  return auth;
}

/**
 * Whether a chunk of bytes from a client is exactly one masked ping or pong frame with a short
 * payload (RFC 6455 §5.2: FIN, opcode 0x9 or 0xA, mask bit, 7-bit length, 4-byte key).
 */
function isControlFrame(chunk: Buffer): boolean {
  return (
    chunk.length >= 6 &&
    (chunk[0] === 0x89 || chunk[0] === 0x8a) &&
    (chunk[1]! & 0x80) !== 0 &&
    chunk.length === 6 + (chunk[1]! & 0x7f)
  );
}

/**
 * Stops reading frames, waits (at most `timeoutMs`) for `work` to settle, then `close`s and reads
 * again so the closing handshake completes (frames that still come are ignored by the session).
 */
export async function drainConnection(
  ws: WebSocket,
  work: readonly Promise<unknown>[],
  timeoutMs: number,
  close: () => void,
): Promise<void> {
  ws.pause();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(work),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
  ]);
  clearTimeout(timer);
  close();
  ws.resume();
}

/**
 * Releases an ended upload's write lock once the work queued before its end and the writes already
 * started are done, so they never interleave with those of the next writer of the item.
 * @param queued settles after the upload's queued work (which may start writes)
 * @param upload the writes started, and the lock's release (once taken)
 */
export function unlockWhenSettled(
  queued: Promise<unknown>,
  upload: {
    readonly writes: ReadonlySet<Promise<void>>;
    readonly unlock?: (() => void) | undefined;
  },
): void {
  void queued
    .then(() => Promise.all(upload.writes))
    .catch(() => undefined)
    .finally(() => upload.unlock?.());
}

/** Whether the token is still valid, with the servers' clock leeway. */
export function isCurrent(grant: Pick<Grant, 'expiresAt'>): boolean {
  return Date.now() <= grant.expiresAt + CLOCK_LEEWAY_SECONDS * 1000;
}

/** Counts an upload of the client; `false` (and nothing counted) when it has its maximum. */
export function bindUpload(ctx: Dup2SessionContext, clientId: string): boolean {
  const bound = ctx.uploadsByClient.get(clientId) ?? 0;
  if (bound >= ctx.maxUploadsPerClient) return false;
  ctx.uploadsByClient.set(clientId, bound + 1);
  return true;
}

/** Uncounts an upload of the client. */
export function unbindUpload(ctx: Dup2SessionContext, clientId: string): void {
  const bound = (ctx.uploadsByClient.get(clientId) ?? 1) - 1;
  if (bound > 0) ctx.uploadsByClient.set(clientId, bound);
  else ctx.uploadsByClient.delete(clientId);
}
