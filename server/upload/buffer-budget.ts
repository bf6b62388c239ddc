/**
 * A server-wide cap on the memory that received bytes take, over all connections: bytes received
 * and not yet stored, plus the messages connections are in the middle of receiving. Each
 * connection's window bounds one client; this bounds them all together, so a hundred fast clients
 * cannot fill the server's memory faster than the disk takes the bytes.
 *
 * A connection reads only while it holds a *slot*: room for one whole message (the largest the
 * server accepts). It gives the slot back with every message it receives and asks for the next;
 * when the bytes waiting to be stored and the slots held would pass the cap, it stops reading (TCP
 * pushes back on its client) and waits in line until stored bytes make room. So the memory held is
 * at most the cap, at least one connection can always read, and connections take turns in order.
 */
import type { WebSocket } from 'ws';

/** @internal */
export class BufferBudget {
  readonly #limit: number;
  readonly #slot: number;
  readonly #reading = new Set<WebSocket>();
  /** Connections waiting for a slot, in the order they asked. */
  readonly #waiting = new Set<WebSocket>();
  #used = 0;

  /**
   * @param limit bytes received and not yet stored, plus one largest message per reading
   *   connection
   * @param slot the largest message a connection may receive, in bytes
   */
  constructor(limit: number, slot: number) {
    this.#limit = limit;
    this.#slot = slot;
  }

  /** Bytes received and not yet stored. */
  get used(): number {
    return this.#used;
  }

  /** Connections reading now (holding a slot). */
  get reading(): number {
    return this.#reading.size;
  }

  /** Puts a connection under the budget until it closes; it reads once it gets a slot. */
  join(ws: WebSocket): void {
    ws.once('close', () => {
      this.#reading.delete(ws);
      this.#waiting.delete(ws);
      this.#wake();
    });
    this.#ask(ws);
  }

  /**
   * A connection received a whole message (counted with {@link take} if it keeps bytes): its slot
   * ends, and it asks for the next.
   */
  received(ws: WebSocket): void {
    if (!this.#reading.delete(ws)) return;
    this.#wake();
    this.#ask(ws);
  }

  /** Counts bytes received and kept until they are stored. */
  take(bytes: number): void {
    this.#used += bytes;
  }

  /** Counts bytes stored (or dropped). */
  give(bytes: number): void {
    this.#used -= bytes;
    this.#wake();
  }

  #room(): boolean {
    return (
      this.#reading.size === 0 || this.#used + (this.#reading.size + 1) * this.#slot <= this.#limit
    );
  }

  #ask(ws: WebSocket): void {
    if (this.#waiting.size === 0 && this.#room()) {
      this.#reading.add(ws);
      return;
    }
    this.#waiting.add(ws);
    ws.pause();
  }

  /** Hands free slots to the connections that wait, first come first served. */
  #wake(): void {
    for (const ws of this.#waiting) {
      if (!this.#room()) return;
      this.#waiting.delete(ws);
      this.#reading.add(ws);
      ws.resume();
    }
  }
}
