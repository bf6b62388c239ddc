/**
 * The `Range` request header of HTTP byte serving (RFC 9110, section 14), for the `bytes` unit.
 */
import type { ByteRange } from '../../src/protocol/index.js';

/** What a `Range` header asks for, once checked against the representation's size. */
export type RangeRequest =
  /** No usable `Range` (absent, another unit, malformed, too many ranges): send the whole item. */
  | { readonly kind: 'whole' }
  /** Every range starts past the end: 416. */
  | { readonly kind: 'unsatisfiable' }
  /** Satisfiable ranges, sorted, with overlapping and adjacent ones merged; half-open. */
  | { readonly kind: 'ranges'; readonly ranges: readonly ByteRange[]; readonly openEnded: boolean };

/** Longest `Range` header read; a longer one is ignored, so parsing cost stays bounded. */
const MAX_HEADER_LENGTH = 4096;

/**
 * Parses a `Range` header against a representation of `size` bytes.
 * @param header the header's value, if any
 * @param size the representation's length
 * @param maxRanges more ranges than this and the header is ignored (the whole item is sent)
 */
export function parseRange(
  header: string | undefined,
  size: number,
  maxRanges: number,
): RangeRequest {
  if (header === undefined || header.length > MAX_HEADER_LENGTH) return { kind: 'whole' };
  const m = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!m) return { kind: 'whole' };
  const specs = m[1]!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length === 0 || specs.length > maxRanges) return { kind: 'whole' };
  const wanted: ByteRange[] = [];
  let openEnded = false;
  for (const spec of specs) {
    const r = /^(\d*)-(\d*)$/.exec(spec);
    if (!r || (r[1] === '' && r[2] === '')) return { kind: 'whole' };
    if (r[1] === '') {
      // Suffix range: the last N bytes.
      const length = Number(r[2]);
      if (!Number.isSafeInteger(length)) return { kind: 'whole' };
      if (length > 0 && size > 0) wanted.push({ start: Math.max(0, size - length), end: size });
      continue;
    }
    const first = Number(r[1]);
    const last = r[2] === '' ? Infinity : Number(r[2]);
    if (!Number.isSafeInteger(first) || (last !== Infinity && !Number.isSafeInteger(last)))
      return { kind: 'whole' };
    if (last < first) return { kind: 'whole' };
    if (r[2] === '') openEnded = true;
    if (first < size) wanted.push({ start: first, end: Math.min(last + 1, size) });
  }
  if (wanted.length === 0) return { kind: 'unsatisfiable' };
  wanted.sort((a, b) => a.start - b.start);
  const merged: ByteRange[] = [];
  for (const r of wanted) {
    const last = merged[merged.length - 1];
    if (last && r.start <= last.end)
      merged[merged.length - 1] = { start: last.start, end: Math.max(last.end, r.end) };
    else merged.push(r);
  }
  return { kind: 'ranges', ranges: merged, openEnded: openEnded && merged.length === 1 };
}
