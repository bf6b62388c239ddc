/**
 * Which parts of an item to fetch from which upload server: the holders' ranges cut into parts,
 * minus what is stored already. Pure: no I/O.
 */
import { addRange, missingRanges, type ByteRange } from '../protocol/ranges.js';

/** A part to fetch. */
export interface PartToFetch extends ByteRange {
  /** Servers that hold it, the first one preferred (the others are tried when it fails). */
  readonly serverIds: readonly string[];
}

/**
 * Cuts the item into parts of at most `partSize` bytes, in order, each from the servers whose
 * ranges cover it; bytes in `stored` are left out, and so are bytes no server holds (see
 * {@link uncovered}).
 * @param size the item's size
 * @param holders each server's ranges
 * @param stored ranges stored already
 * @param partSize largest part, in bytes
 * @internal
 */
export function planParts(
  size: number,
  holders: readonly { readonly serverId: string; readonly ranges: readonly ByteRange[] }[],
  stored: readonly ByteRange[],
  partSize: number,
): PartToFetch[] {
  // Every boundary of a holder's range, so that each piece has one set of holders.
  const cuts = new Set<number>([0, size]);
  for (const h of holders)
    for (const r of h.ranges) {
      cuts.add(Math.min(size, r.start));
      cuts.add(Math.min(size, r.end));
    }
  const points = [...cuts].sort((a, b) => a - b);
  const parts: PartToFetch[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const piece = { start: points[i]!, end: points[i + 1]! };
    const serverIds = holders
      .filter((h) => h.ranges.some((r) => r.start <= piece.start && r.end >= piece.end))
      .map((h) => h.serverId);
    if (serverIds.length === 0) continue;
    for (const gap of missingRanges(piece, stored))
      for (let start = gap.start; start < gap.end; start += partSize)
        parts.push({ start, end: Math.min(gap.end, start + partSize), serverIds });
  }
  return parts;
}

/**
 * Bytes of the item that no holder has and that are not stored.
 * @param size the item's size
 * @param holders each server's ranges
 * @param stored ranges stored already
 * @internal
 */
export function uncovered(
  size: number,
  holders: readonly { readonly ranges: readonly ByteRange[] }[],
  stored: readonly ByteRange[],
): ByteRange[] {
  const have = holders
    .flatMap((h) => h.ranges)
    .reduce<ByteRange[]>((all, r) => addRange(all, r), [...stored]);
  return missingRanges({ start: 0, end: size }, have);
}
