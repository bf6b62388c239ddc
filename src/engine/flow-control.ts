/**
 * Flow control shared by the WebSocket transports: unacknowledged bytes within the server's window,
 * and the socket's own buffer below a high-water mark.
 */
import type { Clock } from './options.js';

/** Bytes the socket may buffer before the sender waits. */
export const HIGH_WATER = 4 * 1024 * 1024;
/** How often to look at `bufferedAmount` while it is high, in ms (the browser has no drain event). */
const DRAIN_POLL_MS = 4;
/** Time to wait for a server's reply (a welcome, an opened, a pong), in ms. */
export const REPLY_TIMEOUT_MS = 15_000;

/** What {@link waitForRoom} looks at. */
export interface Room {
  /** Whether sending can still happen (the connection or upload is not over). */
  open(): boolean;
  /** Bytes sent and not acknowledged. */
  inFlight(): number;
  /** The server's window. */
  window(): number;
  /** The socket's `bufferedAmount`. */
  buffered(): number;
  /** Calls `wake` once when an acknowledgement (or the end) frees window. */
  onAck(wake: () => void): void;
}

/**
 * Waits until `bytes` more fit in the window and the socket buffer is not full; `signal` ends the
 * wait early (the caller checks why).
 * @internal
 */
export async function waitForRoom(
  room: Room,
  bytes: number,
  clock: Clock,
  signal?: AbortSignal,
): Promise<void> {
  while (room.open() && !signal?.aborted) {
    const inFlight = room.inFlight();
    const windowOk = inFlight === 0 || inFlight + bytes <= room.window();
    if (windowOk && room.buffered() < HIGH_WATER) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        signal?.removeEventListener('abort', done);
        resolve();
      };
      signal?.addEventListener('abort', done, { once: true });
      if (!windowOk) room.onAck(done);
      else clock.setTimeout(done, DRAIN_POLL_MS);
    });
  }
}
