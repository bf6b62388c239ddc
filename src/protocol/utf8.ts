/**
 * UTF-8 helpers for length limits that count bytes.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Number of bytes of `s` in UTF-8.
 * @param s the text
 */
export function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

/**
 * Cuts `s` to at most `maxBytes` bytes of UTF-8, at a character boundary.
 * @param s the text
 * @param maxBytes the limit
 */
export function truncateUtf8(s: string, maxBytes: number): string {
  const bytes = encoder.encode(s);
  if (bytes.length <= maxBytes) return s;
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return decoder.decode(bytes.subarray(0, end));
}
