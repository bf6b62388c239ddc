/**
 * CRC-32C for the servers: the native, hardware-accelerated `@node-rs/crc32` (an optional
 * dependency) when it is installed and agrees with the protocol's portable implementation on a
 * test vector, else that portable implementation. Same results either way; the native one is
 * several times faster, which matters when a server checks every byte it takes and serves.
 * @internal
 */
import { createRequire } from 'node:module';
import { crc32c as portable } from '../../src/protocol/index.js';

type Crc32c = (bytes: Uint8Array) => number;

function load(): Crc32c {
  try {
    const native = (
      createRequire(import.meta.url)('@node-rs/crc32') as {
        crc32c(input: Buffer, initialState?: number): number;
      }
    ).crc32c;
    const fast: Crc32c = (bytes) =>
      native(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) >>> 0;
    const probe = new TextEncoder().encode('123456789');
    if (fast(probe) === portable(probe) >>> 0) return fast;
  } catch {
    // Not installed, or no binary for this platform.
  }
  return portable;
}

/** CRC-32C (Castagnoli) of `bytes`, as an unsigned 32-bit integer. */
export const crc32c: Crc32c = load();
