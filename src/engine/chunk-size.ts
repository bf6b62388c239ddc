/**
 * How much to send at once on a link of a given speed.
 */

/** Smallest chunk the engine sends while the link is slow, in bytes. */
export const MIN_CHUNK = 16 * 1024;

/** Chunk size before the link's throughput is measured, in bytes. */
export const FIRST_CHUNK = 64 * 1024;

/** The time one chunk should take to send on a slow link, in seconds. */
const CHUNK_SECONDS = 0.25;

/**
 * `cap`, or less on a slow link: about `seconds` ({@link CHUNK_SECONDS} by default) of sending at
 * `throughput`, in whole multiples of {@link MIN_CHUNK}, so acknowledgements keep coming well
 * within the stall time and a lost connection loses little; {@link FIRST_CHUNK} before anything
 * was measured.
 * @param cap the most to send at once
 * @param throughput bytes per second measured lately, when known
 * @param seconds the time one chunk should take at `throughput`
 * @internal
 */
export function adaptiveChunk(
  cap: number,
  throughput: number | undefined,
  seconds = CHUNK_SECONDS,
): number {
  // Nothing measured yet: small chunks first (a slow start), so the first acknowledgements come
  // soon even on a slow link whose proxies take the bytes at once; the rate is known after them.
  if (throughput === undefined || !(throughput > 0)) return Math.min(cap, FIRST_CHUNK);
  const fit = Math.floor((throughput * seconds) / MIN_CHUNK) * MIN_CHUNK;
  return Math.min(cap, Math.max(MIN_CHUNK, fit));
}
