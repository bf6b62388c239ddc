import { expect } from 'chai';
import fc from 'fast-check';
import { crc32c } from '../../src/protocol/index.js';

const text = (s: string) => new TextEncoder().encode(s);

describe('crc32c', () => {
  it('matches the standard check value of "123456789"', () => {
    expect(crc32c(text('123456789'))).to.equal(0xe3069283);
  });

  it('matches the RFC 3720 vector of 32 zero bytes', () => {
    expect(crc32c(new Uint8Array(32))).to.equal(0x8a9136aa);
  });

  it('matches the RFC 3720 vector of 32 bytes of 0xff', () => {
    expect(crc32c(new Uint8Array(32).fill(0xff))).to.equal(0x62a8ab43);
  });

  it('continues from a previous value', () => {
    expect(crc32c(text('56789'), crc32c(text('1234')))).to.equal(0xe3069283);
  });

  it('is 0 for no bytes', () => {
    expect(crc32c(new Uint8Array(0))).to.equal(0);
  });

  it('agrees with a bit-at-a-time reference at every alignment and length', () => {
    const reference = (bytes: Uint8Array): number => {
      let crc = ~0;
      for (const b of bytes) {
        crc ^= b;
        for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
      }
      return ~crc >>> 0;
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(7), (data, shift) => {
        const buffer = new Uint8Array(data.length + shift);
        buffer.set(data, shift);
        const view = buffer.subarray(shift);
        expect(crc32c(view)).to.equal(reference(data));
      }),
      { numRuns: 500 },
    );
  });
});
