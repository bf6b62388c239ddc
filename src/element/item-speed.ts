/**
 * Upload speed and time left per item, for display: a smoothed rate of bytes stored.
 */

/** Weight of the newest sample in the smoothed rate. */
const ALPHA = 0.3;
/** Least time between two samples of an item, in ms (progress can come many times a frame). */
const MIN_INTERVAL_MS = 250;

interface Sample {
  at: number;
  bytes: number;
  rate: number | undefined;
}

/** @internal */
export class ItemSpeed {
  readonly #samples = new Map<string, Sample>();

  /**
   * Notes an item's bytes stored.
   * @param itemId the item
   * @param bytes bytes stored so far
   * @param now the time, in ms
   */
  update(itemId: string, bytes: number, now: number): void {
    const last = this.#samples.get(itemId);
    if (!last || bytes < last.bytes) {
      this.#samples.set(itemId, { at: now, bytes, rate: undefined });
      return;
    }
    const dt = now - last.at;
    if (dt < MIN_INTERVAL_MS) return;
    const rate = ((bytes - last.bytes) * 1000) / dt;
    last.rate = last.rate === undefined ? rate : ALPHA * rate + (1 - ALPHA) * last.rate;
    last.at = now;
    last.bytes = bytes;
  }

  /**
   * Bytes per second lately, once measured.
   * @param itemId the item
   */
  rate(itemId: string): number | undefined {
    return this.#samples.get(itemId)?.rate;
  }

  /**
   * Seconds left at the current rate, once measured and above zero.
   * @param itemId the item
   * @param left bytes left
   */
  secondsLeft(itemId: string, left: number): number | undefined {
    const rate = this.rate(itemId);
    return rate && rate > 0 ? left / rate : undefined;
  }

  /**
   * Forgets an item (done, failed, paused, removed).
   * @param itemId the item
   */
  forget(itemId: string): void {
    this.#samples.delete(itemId);
  }
}
