/**
 * Byte ranges are half-open: `start` is the first byte, `end` is one past the last.
 * `{start: 0, end: 10}` is the first ten bytes.
 */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * Adds `range` to a sorted list of disjoint ranges, merging neighbours.
 * @param ranges sorted, disjoint, non-adjacent ranges (as this function returns them)
 * @param range the range to add; empty ranges change nothing
 * @returns a new sorted, merged list
 */
export function addRange(ranges: readonly ByteRange[], range: ByteRange): ByteRange[] {
  if (range.end <= range.start) return [...ranges];
  const out: ByteRange[] = [];
  let { start, end } = range;
  let placed = false;
  for (const r of ranges) {
    if (r.end < start) out.push(r);
    else if (r.start > end) {
      if (!placed) {
        out.push({ start, end });
        placed = true;
      }
      out.push(r);
    } else {
      start = Math.min(start, r.start);
      end = Math.max(end, r.end);
    }
  }
  if (!placed) out.push({ start, end });
  return out;
}

/**
 * The parts of `range` that `have` does not cover.
 * @param range the wanted range
 * @param have sorted, disjoint ranges already present
 * @returns sorted ranges inside `range` missing from `have`
 */
export function missingRanges(range: ByteRange, have: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let cursor = range.start;
  for (const r of have) {
    if (r.end <= cursor) continue;
    if (r.start >= range.end) break;
    if (r.start > cursor) out.push({ start: cursor, end: Math.min(r.start, range.end) });
    cursor = Math.max(cursor, r.end);
    if (cursor >= range.end) break;
  }
  if (cursor < range.end) out.push({ start: cursor, end: range.end });
  return out;
}

/**
 * Total number of bytes in a list of disjoint ranges.
 * @param ranges disjoint ranges
 */
export function rangeBytes(ranges: readonly ByteRange[]): number {
  let n = 0;
  for (const r of ranges) n += r.end - r.start;
  return n;
}

/**
 * Whether `have` covers every byte of `range`.
 * @param have sorted, disjoint ranges
 * @param range the range to check
 */
export function covers(have: readonly ByteRange[], range: ByteRange): boolean {
  return missingRanges(range, have).length === 0;
}
