/**
 * Finds a connection that stopped making progress while bytes are in flight: no acknowledgement
 * and no bytes leaving the socket's buffer for `timeoutMs`. Stalls are found by progress, not by
 * `navigator.onLine`; a half-open TCP connection never closes by itself.
 */
import type { Clock } from './options.js';

/** What the watch asks of its connection. */
export interface StallWatchTarget {
  /** Whether bytes are in flight (sent, not acknowledged). */
  busy(): boolean;
  /** The socket's `bufferedAmount`. */
  buffered(): number;
  /** Called once when the connection stalled; the watch stops. */
  stalled(): void;
}

/**
 * One timer per connection, moved on when it fires rather than at every acknowledgement (the
 * per-chunk path stays free of timer calls). Bytes leaving the buffer are seen only when the timer
 * fires, so a connection that goes silent is found within one to two `timeoutMs`.
 * @internal
 */
export class StallWatch {
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #target: StallWatchTarget;
  #timer: unknown;
  /** When the last acknowledgement came, bytes left the buffer, or sending began after a quiet spell. */
  #lastProgress = 0;
  /** `bufferedAmount` at the last look. */
  #lastBuffered = 0;
  /** Bytes handed to the socket since the last look. */
  #sentSinceLook = 0;
  #stopped = false;

  constructor(clock: Clock, timeoutMs: number, target: StallWatchTarget) {
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
    this.#target = target;
  }

  /**
   * Call before bytes go to the socket.
   * @param bytes how many
   */
  sending(bytes: number): void {
    if (this.#stopped) return;
    // Bytes going out after a quiet spell: the clock starts now, not at the last acknowledgement.
    if (!this.#target.busy()) {
      this.#lastProgress = this.#clock.now();
      this.#lastBuffered = this.#target.buffered();
      this.#sentSinceLook = 0;
    }
    this.#sentSinceLook += bytes;
    if (this.#timer === undefined) this.#arm(this.#timeoutMs);
  }

  /** Call when the server acknowledged bytes. */
  progress(): void {
    this.#lastProgress = this.#clock.now();
  }

  /** Stops watching for good. */
  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopped || !this.#target.busy()) return;
      // Bytes that left the socket's buffer count as progress: on a slow link one chunk can take
      // longer than the stall time to arrive while the connection is alive.
      const buffered = this.#target.buffered();
      if (this.#lastBuffered + this.#sentSinceLook > buffered)
        this.#lastProgress = this.#clock.now();
      this.#lastBuffered = buffered;
      this.#sentSinceLook = 0;
      const quiet = this.#clock.now() - this.#lastProgress;
      if (quiet < this.#timeoutMs) {
        this.#arm(this.#timeoutMs - quiet);
        return;
      }
      this.stop();
      this.#target.stalled();
    }, ms);
  }
}
