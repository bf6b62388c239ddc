/**
 * CRC-32C for the servers: the native, hardware-accelerated `@node-rs/crc32` (an optional
 * dependency) when it is installed and agrees with the protocol's portable implementation on a
 * test vector, else that portable implementation. Same results either way; the native one is
 * several times faster, which matters when a server checks every byte it takes and serves.
 * @internal
 */
import { createRequire } from 'node:module';
import { crc32c as portable } from '../../src/protocol/index.js';

/** CRC-32C of `bytes`, continuing from the CRC-32C `previous` of the bytes before them. */
type Crc32c = (bytes: Uint8Array, previous?: number) => number;

function load(): Crc32c {
  try {
    const native = (
      createRequire(import.meta.url)('@node-rs/crc32') as {
        crc32c(input: Buffer, initialState?: number): number;
      }
    ).crc32c;
    const fast: Crc32c = (bytes, previous = 0) =>
      native(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), previous) >>> 0;
    const probe = new TextEncoder().encode('123456789');
    const whole = portable(probe) >>> 0;
    if (fast(probe) === whole && fast(probe.subarray(4), fast(probe.subarray(0, 4))) === whole)
      return fast;
  } catch {
    // Not installed, or no binary for this platform.
  }
  return portable;
}

/**
 * CRC-32C (Castagnoli) of `bytes`, as an unsigned 32-bit integer; with `previous`, of the bytes
 * that gave `previous` followed by `bytes`.
 */
export const crc32c: Crc32c = load();
