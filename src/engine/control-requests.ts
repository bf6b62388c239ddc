/**
 * Requests to the control server that wait for an answer (`message` waits for `sent`, `locate` for
 * `located`), in one map by request id, and calls waiting for the control channel to open.
 */
import { TransportError } from '../errors.js';

interface Pending {
  readonly resolve: (value: never) => void;
  readonly reject: (error: unknown) => void;
  /** The item a message carries, when it carries one. */
  readonly itemId: string | undefined;
}

/**
 * The engine's requests waiting for the control server.
 * @internal
 */
export class ControlRequests {
  readonly #pending = new Map<string, Pending>();
  #openWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  /**
   * Waits for the answer to a request sent under `id`.
   * @param id the request's id
   * @param send sends the request
   * @param itemId the item a message carries (its refusal refuses the message too)
   */
  wait<T>(id: string, send: () => void, itemId?: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: never) => void, reject, itemId });
      send();
    });
  }

  /**
   * The answer to request `id`, when one waits for it.
   * @returns whether one waited
   */
  answer<T>(id: string, value: T): boolean {
    const pending = this.#pending.get(id);
    if (!pending) return false;
    this.#pending.delete(id);
    (pending.resolve as (value: T) => void)(value);
    return true;
  }

  /**
   * The control server refused request `ref`, when one waits under that id.
   * @returns whether one waited
   */
  refuse(ref: string, error: unknown): boolean {
    const pending = this.#pending.get(ref);
    if (!pending) return false;
    this.#pending.delete(ref);
    pending.reject(error);
    return true;
  }

  /**
   * Refuses the messages waiting that carry an item.
   * @returns how many
   */
  refuseItem(itemId: string, error: unknown): number {
    let n = 0;
    for (const [id, pending] of this.#pending) {
      if (pending.itemId !== itemId) continue;
      this.#pending.delete(id);
      pending.reject(error);
      n++;
    }
    return n;
  }

  /** Refuses every request waiting: their answers will never come (the connection was lost). */
  refuseAll(error: unknown): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
  }

  /**
   * Resolves once the control channel is open: now, or when {@link ControlRequests.opened} is
   * called.
   * @param open whether it is open now
   * @param started whether the engine was started (else the wait rejects at once)
   */
  whenOpen(open: boolean, started: boolean): Promise<void> {
    if (open) return Promise.resolve();
    if (!started)
      return Promise.reject(
        new TransportError('socket-closed', 'start() the engine first', { serverId: 'control' }),
      );
    return new Promise((resolve, reject) => this.#openWaiters.push({ resolve, reject }));
  }

  /** The control channel is open: the calls waiting for it go on. */
  opened(): void {
    for (const w of this.#openWaiters.splice(0)) w.resolve();
  }

  /** The calls waiting for the channel to open fail (the engine stopped, credentials refused). */
  refuseWaiters(error: unknown): void {
    for (const w of this.#openWaiters.splice(0)) w.reject(error);
  }
}
