/**
 * A clock for the engine's `clock` option that only moves when the test says.
 */
import type { Clock } from '../../src/engine/options.js';

/** A clock the test moves by hand: time starts at 0, and timers fire only in `advance()`. */
export class FakeClock implements Clock {
  /** The current time, in ms. */
  time = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  /** The current time, in ms. */
  now(): number {
    return this.time;
  }

  /** Registers `fn` to run once the clock has advanced `ms` from now. */
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + ms, fn });
    return id;
  }

  /** Forgets a timer that has not fired. */
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Moves the time on by `ms` and runs, earliest first, the timers due by then (those registered
   * while they run wait for the next `advance()`).
   */
  advance(ms: number): void {
    this.time += ms;
    for (const [id, t] of [...this.#timers].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at > this.time || !this.#timers.has(id)) continue;
      this.#timers.delete(id);
      t.fn();
    }
  }
}
