/**
 * The chunk journal of an item: an append-only file of fixed-size records, one per stored run of
 * bytes, each naming its range and the CRC-32C of its bytes. It is the durable list of what is
 * stored (a record is appended only once its bytes are durable), and what reads check the bytes
 * against, so bytes changed at rest are found before they are served.
 *
 * A record is 24 bytes, little-endian: `start` (f64), `end` (f64), `crc32c` (u32) of the bytes
 * `[start, end)`, and `check` (u32), the CRC-32C of the 20 bytes before it. A torn or damaged
 * record, and whatever follows it, is not part of the journal.
 */
import { crc32c, type ByteRange } from '../../src/protocol/index.js';

/** A run of stored bytes and their CRC-32C. */
export interface Chunk extends ByteRange {
  readonly crc32c: number;
}

/** Bytes per journal record. */
export const CHUNK_RECORD_BYTES = 24;

/** Encodes chunks as journal records. */
export function encodeChunks(chunks: readonly Chunk[]): Uint8Array {
  const bytes = new Uint8Array(chunks.length * CHUNK_RECORD_BYTES);
  const view = new DataView(bytes.buffer);
  chunks.forEach((c, i) => {
    const at = i * CHUNK_RECORD_BYTES;
    view.setFloat64(at, c.start, true);
    view.setFloat64(at + 8, c.end, true);
    view.setUint32(at + 16, c.crc32c, true);
    view.setUint32(at + 20, crc32c(bytes.subarray(at, at + 20)), true);
  });
  return bytes;
}

/**
 * Decodes a journal up to its first torn or damaged record.
 * @returns the chunks, and how many bytes of the journal are valid
 */
export function decodeChunks(bytes: Uint8Array): { chunks: Chunk[]; validBytes: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks: Chunk[] = [];
  let at = 0;
  for (; at + CHUNK_RECORD_BYTES <= bytes.length; at += CHUNK_RECORD_BYTES) {
    if (view.getUint32(at + 20, true) !== crc32c(bytes.subarray(at, at + 20))) break;
    const start = view.getFloat64(at, true);
    const end = view.getFloat64(at + 8, true);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start)
      break;
    chunks.push({ start, end, crc32c: view.getUint32(at + 16, true) });
  }
  return { chunks, validBytes: at };
}

/**
 * Inserts chunks into a list sorted by `start` whose chunks do not overlap (in place); the new
 * chunks must not overlap those of the list either. Chunks that come in order are appended.
 */
export function insertChunks(list: Chunk[], added: readonly Chunk[]): void {
  for (const c of added) {
    if (list.length === 0 || list[list.length - 1]!.start < c.start) {
      list.push(c);
      continue;
    }
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]!.start < c.start) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, c);
  }
}

/** The chunks of a sorted, non-overlapping list that overlap `[start, end)`. */
export function chunksOverlapping(list: readonly Chunk[], start: number, end: number): Chunk[] {
  // Binary search for the first chunk that ends after `start`.
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.end <= start) lo = mid + 1;
    else hi = mid;
  }
  const found: Chunk[] = [];
  for (let i = lo; i < list.length && list[i]!.start < end; i++) found.push(list[i]!);
  return found;
}
