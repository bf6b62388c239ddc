/**
 * Throughput to one upload server: bytes it acknowledged as stored over the last few seconds.
 */

/** How far back the meter looks, in ms. */
const WINDOW_MS = 5000;
/** Shortest span a rate is computed over, in ms. */
const MIN_SPAN_MS = 10;

/** Bytes per second stored on one server lately. */
export class ThroughputMeter {
  /** Acknowledged bytes with the time they were acknowledged, oldest first. */
  readonly #samples: { at: number; bytes: number }[] = [];
  #sum = 0;
  #last: number | undefined;
  readonly #windowMs: number;
  readonly #minSpanMs: number;

  /**
   * @param windowMs how far back the meter looks, in ms
   * @param minSpanMs the shortest span of acknowledgements a rate is computed over, in ms
   */
  constructor(windowMs = WINDOW_MS, minSpanMs = MIN_SPAN_MS) {
    this.#windowMs = windowMs;
    this.#minSpanMs = minSpanMs;
  }

  /**
   * Marks when sending to the server starts: the first acknowledgements are counted from then.
   * @param now the time, in ms
   */
  begin(now: number): void {
    this.#trim(now);
    if (this.#samples.length === 0) this.#samples.push({ at: now, bytes: 0 });
  }

  /**
   * Counts bytes the server acknowledged.
   * @param bytes how many
   * @param now the time, in ms
   */
  add(bytes: number, now: number): void {
    if (!(bytes > 0)) return;
    this.#samples.push({ at: now, bytes });
    this.#sum += bytes;
    this.#trim(now);
    this.#last = this.#compute() ?? this.#last;
  }

  /**
   * Bytes per second over the last seconds of sending; the last rate measured when nothing was
   * sent lately; `undefined` before any.
   * @param now the time, in ms
   */
  rate(now: number): number | undefined {
    this.#trim(now);
    return this.#compute() ?? this.#last;
  }

  #compute(): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (!first || !last || this.#samples.length < 2) return undefined;
    // Between the first and the last acknowledgement; the first one's bytes were sent before it.
    const span = last.at - first.at;
    if (span < this.#minSpanMs) return undefined;
    return Math.round(((this.#sum - first.bytes) * 1000) / span);
  }

  #trim(now: number): void {
    while (this.#samples.length > 0 && now - this.#samples[0]!.at > this.#windowMs) {
      this.#sum -= this.#samples.shift()!.bytes;
    }
  }
}
