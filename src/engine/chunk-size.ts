/**
 * How much to send at once on a link of a given speed.
 */
import { ThroughputMeter } from './throughput-meter.js';

/** Smallest chunk the engine sends while the link is slow, in bytes. */
export const MIN_CHUNK = 16 * 1024;

/** Chunk size before the link's throughput is measured, in bytes. */
export const FIRST_CHUNK = 64 * 1024;

/** The time one chunk should take to send on a slow link, by default, in seconds. */
const CHUNK_SECONDS = 0.25;

/**
 * The part of the stall timeout one chunk may take to send, on a WebSocket connection: the
 * connection counts as stalled when nothing was acknowledged for that long, so a chunk that takes
 * an eighth of it leaves room for a slow server's flushes and a late acknowledgement. (On a link
 * of 128 KiB/s that is a chunk, and a progress event, every 3.75 s.) Chunks are also the unit of
 * the browser's and the server's per-frame work: a quarter of a second made them 64 to 400 KiB on
 * WAN links of 20 MiB/s whose servers stored 1 to 2.5 MiB/s in their first second (a split over
 * three servers, on a machine they share with the browser), and many small frames cost CPU the
 * split needed.
 */
export const STALL_SHARE = 1 / 8;

/**
 * Bytes a connection has unacknowledged, at most, before its rate is known: the first chunks are
 * small, and so few of them go out before the rate sizes the next ones (a window's worth, 8 MiB,
 * was sent in 64 KiB chunks on a WAN link before its rate was known). 1 MiB is a link of 20 MiB/s
 * over a round trip of 50 ms.
 */
export const FIRST_WINDOW = 1024 * 1024;

/** How far back {@link ChunkSizer} looks at acknowledgements, in ms. */
const ACK_WINDOW_MS = 2000;
/** Shortest span of acknowledgements {@link ChunkSizer} computes a rate over, in ms. */
const ACK_SPAN_MS = 50;

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

/**
 * The chunk sizes of one WebSocket connection, from the rate at which its acknowledgements come
 * (a {@link ThroughputMeter} of the last two seconds, counted from the first acknowledgement):
 * what that rate sends in {@link STALL_SHARE} of the stall timeout, up to the cap;
 * {@link FIRST_CHUNK}, and at most {@link FIRST_WINDOW} unacknowledged, until acknowledgements span
 * 50 ms. The server's throughput measured from when sending began (the planner's) counts the first
 * round trip and the server's first flushes too: on three WAN links of 20 MiB/s it said 0.4 to
 * 2 MiB/s for the first half second.
 * @internal
 */
export class ChunkSizer {
  readonly #seconds: number;
  /** The acknowledgements' rate, from the first of them (no `begin`). */
  readonly #acks = new ThroughputMeter(ACK_WINDOW_MS, ACK_SPAN_MS);
  #lastAck = 0;

  /**
   * @param stallTimeoutMs the time without an acknowledgement after which the connection counts as
   *   stalled
   */
  constructor(stallTimeoutMs: number) {
    this.#seconds = (stallTimeoutMs * STALL_SHARE) / 1000;
  }

  /**
   * Counts an acknowledgement.
   * @param bytes how many bytes it acknowledged
   * @param now the time, in ms
   */
  acknowledged(bytes: number, now: number): void {
    this.#acks.add(bytes, now);
    this.#lastAck = now;
  }

  /**
   * Bytes per second acknowledged lately, when acknowledgements spanned enough time (after a pause,
   * the rate before it).
   */
  get rate(): number | undefined {
    return this.#acks.rate(this.#lastAck);
  }

  /**
   * The bytes the connection may have unacknowledged: `window`, or {@link FIRST_WINDOW} while its
   * rate is not known.
   * @param window the server's window
   */
  window(window: number): number {
    return this.rate === undefined ? Math.min(window, FIRST_WINDOW) : window;
  }

  /**
   * The next chunk's size.
   * @param cap the most to send at once
   */
  size(cap: number): number {
    return adaptiveChunk(cap, this.rate, this.#seconds);
  }
}
