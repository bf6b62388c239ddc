import { expect } from 'chai';
import fc from 'fast-check';
import {
  addRange,
  decodeControlClientMessage,
  decodeControlServerMessage,
  decodeDup2Frame,
  encodeDup2Frame,
  missingRanges,
  ProtocolError,
  WIRE_ERROR,
  type ByteRange,
  type Dup2Frame,
  type WireErrorCode,
} from '../../src/protocol/index.js';

const RUNS = { numRuns: 2000 };

/** Decoding either returns a value or throws ProtocolError, never anything else. */
function decodesOrProtocolError(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    return e instanceof ProtocolError;
  }
}

const uploadId = fc.integer({ min: 1, max: 0xffff_ffff });
const u64 = fc.maxSafeNat();
const itemId = fc.stringMatching(/^[A-Za-z0-9_-]{1,128}$/);
const digest = fc.uint8Array({ minLength: 32, maxLength: 32 });
const finite = fc.double({ noNaN: true, noDefaultInfinity: true });
const ranges = fc
  .array(fc.tuple(fc.nat(1e6), fc.integer({ min: 1, max: 1e6 })), { maxLength: 20 })
  .map((pairs) => pairs.map(([start, len]) => ({ start, end: start + len })));

const frame: fc.Arbitrary<Dup2Frame> = fc.oneof(
  fc.record({
    type: fc.constant('hello' as const),
    token: fc.string({ minLength: 1, maxLength: 100 }),
  }),
  fc.record({
    type: fc.constant('open' as const),
    uploadId,
    size: u64,
    itemId,
    mime: fc.string({ maxLength: 60 }),
    name: fc.string({ maxLength: 200 }),
  }),
  fc.record({
    type: fc.constant('data' as const),
    uploadId,
    offset: fc.nat(2 ** 40),
    crc32c: fc.nat(0xffff_ffff),
    payload: fc.uint8Array({ minLength: 1, maxLength: 512 }),
  }),
  // With a digest (37 bytes) or without (5 bytes): the key is absent, not undefined.
  fc.record(
    { type: fc.constant('finish' as const), uploadId, sha256: digest },
    { requiredKeys: ['type', 'uploadId'] },
  ),
  fc.record({ type: fc.constant('cancel' as const), uploadId }),
  fc.record({ type: fc.constant('ping' as const), time: finite }),
  fc
    .tuple(uploadId, itemId, u64, u64)
    .filter(([, , a, b]) => a !== b)
    .map(([readId, id, a, b]) => ({
      type: 'read' as const,
      readId,
      itemId: id,
      start: Math.min(a, b),
      end: Math.max(a, b),
    })),
  fc.record({
    type: fc.constant('bytes' as const),
    readId: uploadId,
    offset: fc.nat(2 ** 40),
    crc32c: fc.nat(0xffff_ffff),
    payload: fc.uint8Array({ minLength: 1, maxLength: 512 }),
  }),
  fc.record({
    type: fc.constant('welcome' as const),
    serverId: fc.string({ minLength: 1, maxLength: 30 }),
    maxChunk: fc.integer({ min: 1, max: 0xffff_ffff }),
    window: fc.integer({ min: 1, max: 0xffff_ffff }),
    maxItemSize: u64,
  }),
  fc.record({ type: fc.constant('opened' as const), uploadId, complete: fc.boolean(), ranges }),
  fc
    .tuple(uploadId, u64, u64)
    .filter(([, a, b]) => a !== b)
    .map(([id, a, b]) => ({
      type: 'ack' as const,
      uploadId: id,
      start: Math.min(a, b),
      end: Math.max(a, b),
    })),
  fc.record({ type: fc.constant('complete' as const), uploadId, sha256: digest }),
  fc.record({ type: fc.constant('pong' as const), time: finite, serverTime: finite }),
  fc.record({
    type: fc.constant('error' as const),
    uploadId: fc.nat(0xffff_ffff),
    code: fc.constantFrom(...(Object.keys(WIRE_ERROR) as WireErrorCode[])),
    message: fc.string({ maxLength: 200 }),
  }),
);

describe('protocol properties', () => {
  it('decodes arbitrary bytes to a frame or a ProtocolError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) =>
        decodesOrProtocolError(() => decodeDup2Frame(b)),
      ),
      RUNS,
    );
  });

  it('decodes arbitrary bytes after a valid type byte to a frame or a ProtocolError', () => {
    const types = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x81, 0x82, 0x83, 0x84, 0x85, 0x8f];
    fc.assert(
      fc.property(fc.constantFrom(...types), fc.uint8Array({ maxLength: 200 }), (t, rest) => {
        const b = new Uint8Array(rest.length + 1);
        b[0] = t;
        b.set(rest, 1);
        return decodesOrProtocolError(() => decodeDup2Frame(b, { maxChunk: 100 }));
      }),
      RUNS,
    );
  });

  it('round-trips every valid frame through encode and decode', () => {
    fc.assert(
      fc.property(frame, (f) => {
        const normalized = f.type === 'opened' ? { ...f, ranges: f.ranges } : f;
        expect(decodeDup2Frame(encodeDup2Frame(normalized))).to.deep.equal(normalized);
      }),
      RUNS,
    );
  });

  it('decodes arbitrary text to a control message or a ProtocolError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        return (
          decodesOrProtocolError(() => decodeControlClientMessage(text)) &&
          decodesOrProtocolError(() => decodeControlServerMessage(text))
        );
      }),
      RUNS,
    );
  });

  it('decodes objects with a known type and arbitrary fields to a message or a ProtocolError', () => {
    const types = [
      'hello',
      'publish',
      'probe',
      'accept',
      'progress',
      'complete',
      'fail',
      'welcome',
      'servers',
      'published',
      'transmit',
      'completed',
      'error',
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...types),
        fc.dictionary(fc.string(), fc.jsonValue()),
        (type, fields) => {
          const text = JSON.stringify({ ...fields, type });
          return (
            decodesOrProtocolError(() => decodeControlClientMessage(text)) &&
            decodesOrProtocolError(() => decodeControlServerMessage(text))
          );
        },
      ),
      RUNS,
    );
  });

  it('keeps byte ranges merged and agrees with a bitmap', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(200), fc.nat(40))),
        fc.nat(200),
        fc.nat(60),
        (adds, qs, ql) => {
          let have: ByteRange[] = [];
          const bits = new Uint8Array(300);
          for (const [s, l] of adds) {
            have = addRange(have, { start: s, end: s + l });
            bits.fill(1, s, s + l);
          }
          for (let i = 1; i < have.length; i++)
            expect(have[i]!.start).to.be.greaterThan(have[i - 1]!.end);
          const missing = missingRanges({ start: qs, end: qs + ql }, have);
          const expected = new Uint8Array(300);
          for (const m of missing) expected.fill(1, m.start, m.end);
          for (let i = qs; i < qs + ql; i++)
            expect(expected[i], `byte ${i}`).to.equal(bits[i] ? 0 : 1);
        },
      ),
      { numRuns: 500 },
    );
  });
});
