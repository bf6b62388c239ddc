/**
 * SHA-256 that can stop part way through an item and go on elsewhere: the state at a multiple of
 * 64 bytes is the intermediate hash value H0..H7 of FIPS 180-4 (a {@link DigestState}), which
 * another server, with any SHA-256 that can start from such a value, continues from. Node's own
 * SHA-256 cannot export or import that value, so this uses `hash-wasm`, whose saved state holds it.
 * @internal
 */
import { createSHA256, type IHasher } from 'hash-wasm';
import type { DigestState } from '../../src/protocol/index.js';

/**
 * Layout of a `hash-wasm` SHA-256 saved state: a 4-byte check of its build, the 64-byte block
 * buffer, the byte count (u64, little-endian), then H0..H7 (u32 each, little-endian), then the
 * digest size. Checked against the initial value in {@link template}.
 */
const COUNT_AT = 4 + 64;
const HASH_AT = COUNT_AT + 8;
const H0 = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

let saved: Promise<Uint8Array> | undefined;

/** A fresh hasher's saved state, checked to have the layout above. */
function template(): Promise<Uint8Array> {
  saved ??= createSHA256().then((hasher) => {
    const state = hasher.init().save();
    const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
    const layout =
      state.length >= HASH_AT + 32 &&
      view.getBigUint64(COUNT_AT, true) === 0n &&
      H0.every((word, i) => view.getUint32(HASH_AT + 4 * i, true) === word);
    if (!layout)
      throw new Error('ws-uploader: hash-wasm saves its SHA-256 state in another layout');
    return state;
  });
  return saved;
}

/**
 * A SHA-256 hasher at `from` (its bytes before `from.offset` already hashed), or at the first byte.
 */
export async function resumeSha256(from?: DigestState): Promise<IHasher> {
  const hasher = await createSHA256();
  if (!from) return hasher.init();
  const state = (await template()).slice();
  const view = new DataView(state.buffer);
  view.setBigUint64(COUNT_AT, BigInt(from.offset), true);
  for (let i = 0; i < 8; i++)
    view.setUint32(HASH_AT + 4 * i, Number.parseInt(from.hash.slice(8 * i, 8 * i + 8), 16), true);
  hasher.load(state);
  return hasher;
}

/**
 * The state of `hasher` after `offset` bytes, a multiple of 64 (no bytes wait in its buffer).
 */
export function sha256State(hasher: IHasher, offset: number): DigestState {
  if (offset % 64 !== 0) throw new RangeError('a SHA-256 state is taken at a multiple of 64 bytes');
  const state = hasher.save();
  const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
  if (view.getBigUint64(COUNT_AT, true) !== BigInt(offset))
    throw new RangeError(`the hasher is not at byte ${offset}`);
  let hash = '';
  for (let i = 0; i < 8; i++)
    hash += view
      .getUint32(HASH_AT + 4 * i, true)
      .toString(16)
      .padStart(8, '0');
  return { offset, hash };
}
