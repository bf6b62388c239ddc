/**
 * A server-wide cap on bytes received and not yet stored, over all connections. Each connection's
 * window bounds one client; this bounds them all together, so a hundred fast clients cannot fill
 * the server's memory faster than the disk takes the bytes: past the cap, the server stops reading
 * from every connection (TCP pushes back on the clients) until half of it is stored.
 */
import type { WebSocket } from 'ws';

/** @internal */
export class BufferBudget {
  readonly #limit: number;
  readonly #sockets = new Set<WebSocket>();
  #used = 0;
  #paused = false;

  /** @param limit bytes received and not yet stored, over all connections */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Bytes received and not yet stored. */
  get used(): number {
    return this.#used;
  }

  /** Puts a connection under the budget until it closes. */
  join(ws: WebSocket): void {
    this.#sockets.add(ws);
    ws.once('close', () => this.#sockets.delete(ws));
    if (this.#paused) ws.pause();
  }

  /** Counts bytes received. */
  take(bytes: number): void {
    this.#used += bytes;
    if (!this.#paused && this.#used > this.#limit) {
      this.#paused = true;
      for (const ws of this.#sockets) ws.pause();
    }
  }

  /** Counts bytes stored (or dropped). */
  give(bytes: number): void {
    this.#used -= bytes;
    if (this.#paused && this.#used <= this.#limit / 2) {
      this.#paused = false;
      for (const ws of this.#sockets) ws.resume();
    }
  }
}
