/**
 * Backoff with full jitter, and the engine's answer to "try again?", for every place that tries
 * again: the control channel's and the socket pool's reconnects (`reconnectDelays`) and the part
 * scheduler's sends (`retryDelays`).
 */
import { ServerError, TransportError, type WsUploaderError } from '../errors.js';

/**
 * The wait before try `attempt` (0 for the first retry): a random time up to that attempt's delay
 * ("full jitter"), past the last delay the last one again, so a crowd of clients that lost the same
 * server do not all come back at once.
 * @param delays the delays, in ms
 * @param attempt how many tries failed before, less one
 * @param random random numbers in [0, 1)
 * @internal
 */
export function backoff(delays: readonly number[], attempt: number, random: () => number): number {
  const cap = delays[Math.min(Math.max(0, attempt), delays.length - 1)] ?? 0;
  return Math.floor(random() * cap);
}

/**
 * The engine's own answer: whether a failed send may succeed if tried again after a wait. A lost
 * or failed connection may; a server's refusal may when the server says it is passing (`busy`,
 * `storage-full`, …: `ServerError.retryable`); anything else (a bad request, an abort) never; and
 * none once the delays are used up.
 * @param error what failed
 * @param attempt how many retries were made before
 * @param delays the delays the tries wait
 * @internal
 */
export function shouldRetry(
  error: unknown,
  attempt: number,
  delays: readonly number[],
): error is WsUploaderError {
  if (attempt >= delays.length) return false;
  return error instanceof TransportError || (error instanceof ServerError && error.retryable);
}

/**
 * Counts the failed tries of one thing (a connection, a send) and says how long to wait before
 * the next.
 * @internal
 */
export class Backoff {
  readonly #delays: () => readonly number[];
  readonly #random: () => number;
  #attempt = 0;

  /**
   * @param delays the delays (read at each try, so a reconfigured engine uses the new ones)
   * @param random random numbers in [0, 1)
   */
  constructor(delays: () => readonly number[], random: () => number) {
    this.#delays = delays;
    this.#random = random;
  }

  /** Failed tries since the last success. */
  get attempt(): number {
    return this.#attempt;
  }

  /** One more failure: the wait before the next try, in ms. */
  next(): number {
    return backoff(this.#delays(), this.#attempt++, this.#random);
  }

  /** A success: the next failure waits the first delay again. */
  reset(): void {
    this.#attempt = 0;
  }
}
