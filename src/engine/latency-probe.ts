/**
 * Round-trip time estimation as TCP does it (RFC 6298): a smoothed RTT and its variation.
 */

/** Smoothed round-trip time of one server. */
export class LatencyProbe {
  #srtt: number | undefined;
  #rttvar = 0;
  #samples = 0;

  /** Smoothed RTT in ms, once there is a sample. */
  get rttMs(): number | undefined {
    return this.#srtt === undefined ? undefined : Math.round(this.#srtt * 10) / 10;
  }

  /** Variation (jitter) of the RTT in ms. */
  get jitterMs(): number {
    return Math.round(this.#rttvar * 10) / 10;
  }

  /** Number of samples taken. */
  get samples(): number {
    return this.#samples;
  }

  /**
   * Adds a measured round trip.
   * @param rttMs the measurement, in ms
   */
  sample(rttMs: number): void {
    if (!Number.isFinite(rttMs) || rttMs < 0) return;
    this.#samples++;
    if (this.#srtt === undefined) {
      this.#srtt = rttMs;
      this.#rttvar = rttMs / 2;
      return;
    }
    this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - rttMs);
    this.#srtt = 0.875 * this.#srtt + 0.125 * rttMs;
  }
}
