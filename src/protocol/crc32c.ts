/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, SCTP and ext4.
 * Every dup/2 DATA frame carries the CRC-32C of its payload.
 *
 * Slicing-by-8: eight 256-entry tables let the loop fold eight bytes per step, read as two
 * little-endian 32-bit words, which is several times faster than a byte at a time in V8.
 */

const TABLE = /* @__PURE__ */ buildTable();
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function buildTable(): Int32Array {
  const table = new Int32Array(256 * 8);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c;
  }
  // table[k*256 + n] is the CRC of byte n followed by k zero bytes.
  for (let n = 0; n < 256; n++) {
    let c = table[n]!;
    for (let k = 1; k < 8; k++) {
      c = table[c & 0xff]! ^ (c >>> 8);
      table[k * 256 + n] = c;
    }
  }
  return table;
}

/**
 * Computes the CRC-32C of `bytes`, continuing from `previous` (the CRC of the bytes before).
 * @param bytes the data
 * @param previous CRC of the preceding data, for incremental use
 * @returns the CRC as an unsigned 32-bit integer
 */
export function crc32c(bytes: Uint8Array, previous = 0): number {
  const t = TABLE;
  let crc = ~previous;
  let i = 0;
  const n = bytes.length;
  const end8 = n - (n % 8);
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0 && end8 > 0) {
    // Aligned: read the words straight from memory.
    const words = new Int32Array(bytes.buffer, bytes.byteOffset, end8 / 4);
    for (let w = 0; w < words.length; w += 2) {
      const a = words[w]! ^ crc;
      const b = words[w + 1]!;
      crc =
        t[1792 + (a & 0xff)]! ^
        t[1536 + ((a >>> 8) & 0xff)]! ^
        t[1280 + ((a >>> 16) & 0xff)]! ^
        t[1024 + (a >>> 24)]! ^
        t[768 + (b & 0xff)]! ^
        t[512 + ((b >>> 8) & 0xff)]! ^
        t[256 + ((b >>> 16) & 0xff)]! ^
        t[b >>> 24]!;
    }
    i = end8;
  }
  for (; i < end8; i += 8) {
    const a =
      (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) ^ crc;
    const b = bytes[i + 4]! | (bytes[i + 5]! << 8) | (bytes[i + 6]! << 16) | (bytes[i + 7]! << 24);
    crc =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + (b & 0xff)]! ^
      t[512 + ((b >>> 8) & 0xff)]! ^
      t[256 + ((b >>> 16) & 0xff)]! ^
      t[b >>> 24]!;
  }
  for (; i < n; i++) crc = t[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}
