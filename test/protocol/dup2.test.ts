import { expect } from 'chai';
import {
  DATA_HEADER_BYTES,
  decodeDup2ClientFragments,
  decodeDup2ClientFrame,
  decodeDup2Frame,
  decodeDup2ServerFrame,
  encodeDup2Frame,
  type Dup2Frame,
} from '../../src/protocol/index.js';
import { hex } from '../helpers/hex.js';
import { codeOf } from '../helpers/protocol-errors.js';

const SHA = new Uint8Array(32).fill(0xab);

/** The pieces as one buffer (this suite runs in the browser too: no `Buffer`). */
function joined(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
const SHA_HEX = 'ab'.repeat(32);

/** Each frame with the exact bytes docs/protocol.md gives for it. */
const VECTORS: [string, Dup2Frame, string][] = [
  ['HELLO', { type: 'hello', token: 'abc' }, '01 0003 616263'],
  [
    'OPEN',
    { type: 'open', uploadId: 1, size: 1024, itemId: 'item-1', mime: 'text/plain', name: 'a.txt' },
    '02 00000001 0000000000000400 0006 6974656d2d31 000a 746578742f706c61696e 0005 612e747874',
  ],
  [
    'DATA',
    { type: 'data', uploadId: 2, offset: 2 ** 32 + 5, crc32c: 0xf130f21e, payload: hex('010203') },
    '03 00000002 0000000100000005 f130f21e 010203',
  ],
  ['FINISH', { type: 'finish', uploadId: 1, sha256: SHA }, `04 00000001 ${SHA_HEX}`],
  ['FINISH without digest', { type: 'finish', uploadId: 1 }, '04 00000001'],
  ['CANCEL', { type: 'cancel', uploadId: 7 }, '05 00000007'],
  ['PING', { type: 'ping', time: 1.5 }, '06 3ff8000000000000'],
  [
    'READ',
    { type: 'read', readId: 9, itemId: 'item-1', start: 4096, end: 8192 },
    '07 00000009 0000000000001000 0000000000002000 0006 6974656d2d31',
  ],
  [
    'WELCOME',
    { type: 'welcome', serverId: 's1', maxChunk: 1048576, window: 8388608, maxItemSize: 524288000 },
    '81 00100000 00800000 000000001f400000 0002 7331',
  ],
  [
    'OPENED',
    {
      type: 'opened',
      uploadId: 1,
      complete: false,
      ranges: [
        { start: 0, end: 10 },
        { start: 20, end: 30 },
      ],
    },
    '82 00000001 00 0002 0000000000000000 000000000000000a 0000000000000014 000000000000001e',
  ],
  [
    'ACK',
    { type: 'ack', uploadId: 3, start: 0, end: 65536 },
    '83 00000003 0000000000000000 0000000000010000',
  ],
  ['COMPLETE', { type: 'complete', uploadId: 1, sha256: SHA }, `84 00000001 ${SHA_HEX}`],
  ['PONG', { type: 'pong', time: 1, serverTime: 2 }, '85 3ff0000000000000 4000000000000000'],
  [
    'BYTES',
    { type: 'bytes', readId: 9, offset: 4096, crc32c: 0xf130f21e, payload: hex('010203') },
    '86 00000009 0000000000001000 f130f21e 010203',
  ],
  [
    'ERROR',
    { type: 'error', uploadId: 0, code: 'checksum-mismatch', message: 'bad' },
    '8f 00000000 0004 0003 626164',
  ],
];

describe('dup/2 codec', () => {
  for (const [name, frame, bytes] of VECTORS) {
    it(`encodes ${name} to its documented bytes`, () => {
      expect(Array.from(encodeDup2Frame(frame))).to.deep.equal(Array.from(hex(bytes)));
    });

    it(`decodes ${name} from its documented bytes`, () => {
      expect(decodeDup2Frame(hex(bytes))).to.deep.equal(frame);
    });

    it(`rejects ${name} cut short at every length`, () => {
      const full = hex(bytes);
      // DATA and BYTES have their payload last: any cut inside the payload is another valid frame.
      const minimum = frame.type === 'data' || frame.type === 'bytes' ? 18 : full.length;
      for (let n = 1; n < minimum; n++) {
        // A FINISH cut right after its upload id is the FINISH without a digest.
        if (frame.type === 'finish' && n === 5) continue;
        expect(
          codeOf(() => decodeDup2Frame(full.subarray(0, n))),
          `length ${n}`,
        ).to.be.oneOf(['frame-truncated', 'frame-invalid-field', 'frame-too-large']);
      }
    });
  }

  it('writes a frame into a given buffer when it is large enough, with the same bytes', () => {
    const payload = new Uint8Array(1000).map((_, i) => i * 7);
    const frame: Dup2Frame = { type: 'data', uploadId: 3, offset: 2 ** 40, crc32c: 99, payload };
    const fresh = encodeDup2Frame(frame);
    const target = new Uint8Array(4096).fill(0xee);
    const reused = encodeDup2Frame(frame, target);
    expect([...reused]).to.deep.equal([...fresh]);
    expect(reused.buffer).to.equal(target.buffer);
    expect(target[fresh.length]).to.equal(0xee); // nothing written past the frame
    // Written again: the same buffer, the new frame.
    const next = encodeDup2Frame({ ...frame, offset: 5, payload: payload.subarray(0, 10) }, target);
    expect(next.buffer).to.equal(target.buffer);
    expect(decodeDup2Frame(next)).to.deep.include({ offset: 5 });
    // Too small: a fresh buffer, the target untouched.
    const small = new Uint8Array(10);
    expect(encodeDup2Frame(frame, small).buffer).to.not.equal(small.buffer);
    expect([...small]).to.deep.equal(new Array(10).fill(0));
  });

  it('decodes a FINISH of 5 bytes as one without a digest and one of 37 with it; any other length is refused', () => {
    const full = hex(`04 00000009 ${SHA_HEX}`);
    expect(decodeDup2ClientFrame(full.subarray(0, 5))).to.deep.equal({
      type: 'finish',
      uploadId: 9,
    });
    expect((decodeDup2ClientFrame(full.subarray(0, 5)) as { sha256?: unknown }).sha256).to.equal(
      undefined,
    );
    expect(decodeDup2ClientFrame(full)).to.deep.equal({ type: 'finish', uploadId: 9, sha256: SHA });
    const longer = new Uint8Array(64).fill(0xcd);
    longer.set(full);
    for (let n = 1; n <= longer.length; n++) {
      if (n === 5 || n === 37) continue;
      const expected = n < 5 || n < 37 ? 'frame-truncated' : 'frame-trailing-bytes';
      expect(
        codeOf(() => decodeDup2ClientFrame(longer.subarray(0, n))),
        `length ${n}`,
      ).to.equal(expected);
    }
    // The documented example: a digest of 2 bytes.
    expect(codeOf(() => decodeDup2Frame(hex('04 00000001 abab')))).to.equal('frame-truncated');
    // Upload id 0 is refused in both forms.
    expect(codeOf(() => decodeDup2Frame(hex('04 00000000')))).to.equal('frame-invalid-field');
  });

  it('encodes a FINISH without a digest in 5 bytes, with one in 37, and no other digest length', () => {
    expect(encodeDup2Frame({ type: 'finish', uploadId: 2 })).to.have.length(5);
    expect(encodeDup2Frame({ type: 'finish', uploadId: 2, sha256: undefined })).to.have.length(5);
    expect(encodeDup2Frame({ type: 'finish', uploadId: 2, sha256: SHA })).to.have.length(37);
    for (const length of [0, 1, 31, 33])
      expect(
        codeOf(() =>
          encodeDup2Frame({ type: 'finish', uploadId: 2, sha256: new Uint8Array(length) }),
        ),
        `digest of ${length} bytes`,
      ).to.equal('frame-invalid-field');
    // Into a reused buffer too: exactly 5 bytes, nothing past them.
    const target = new Uint8Array(64).fill(0xee);
    expect([...encodeDup2Frame({ type: 'finish', uploadId: 2 }, target)]).to.deep.equal([
      4, 0, 0, 0, 2,
    ]);
    expect(target[5]).to.equal(0xee);
  });

  it('rejects an empty frame with frame-empty', () => {
    expect(codeOf(() => decodeDup2Frame(new Uint8Array(0)))).to.equal('frame-empty');
  });

  it('rejects an unknown type with frame-unknown-type', () => {
    expect(codeOf(() => decodeDup2Frame(hex('7f')))).to.equal('frame-unknown-type');
  });

  it('rejects bytes after a fixed-size frame with frame-trailing-bytes', () => {
    expect(codeOf(() => decodeDup2Frame(hex('05 00000007 00')))).to.equal('frame-trailing-bytes');
  });

  it('rejects upload id 0 with frame-invalid-field', () => {
    expect(codeOf(() => decodeDup2Frame(hex('05 00000000')))).to.equal('frame-invalid-field');
  });

  it('rejects a u64 above 2^53-1 with frame-invalid-field', () => {
    expect(
      codeOf(() => decodeDup2Frame(hex('02 00000001 0020000000000000 0001 61 0000 0000'))),
    ).to.equal('frame-invalid-field');
  });

  it('rejects an item id with a path separator', () => {
    expect(
      codeOf(() => decodeDup2Frame(hex('02 00000001 0000000000000001 0005 2e2e2f6161 0000 0000'))),
    ).to.equal('frame-invalid-field');
  });

  it('rejects a token that is not UTF-8', () => {
    expect(codeOf(() => decodeDup2Frame(hex('01 0002 c328')))).to.equal('frame-invalid-field');
  });

  it('rejects a DATA payload over the limit with frame-too-large', () => {
    const frame = encodeDup2Frame({
      type: 'data',
      uploadId: 1,
      offset: 0,
      crc32c: 0,
      payload: new Uint8Array(11),
    });
    expect(codeOf(() => decodeDup2Frame(frame, { maxChunk: 10 }))).to.equal('frame-too-large');
    expect(decodeDup2Frame(frame, { maxChunk: 11 }).type).to.equal('data');
  });

  it('decodes a DATA message from its fragments without joining the payload, and joins any other', () => {
    const payload = new Uint8Array(1000).map((_, i) => i % 251);
    const bytes = encodeDup2Frame({ type: 'data', uploadId: 3, offset: 7, crc32c: 9, payload });
    const cut = (at: number[]) =>
      [0, ...at].map((a, i) => bytes.subarray(a, [...at, bytes.length][i]));
    // The header whole in the first fragment: the payload's pieces, views of the fragments.
    const fragments = cut([DATA_HEADER_BYTES + 1, 400]);
    const split = decodeDup2ClientFragments(fragments);
    expect(split.frame).to.deep.include({ type: 'data', uploadId: 3, offset: 7, crc32c: 9 });
    expect(split.parts!.map((p) => p.length)).to.deep.equal([
      1,
      400 - DATA_HEADER_BYTES - 1,
      bytes.length - 400,
    ]);
    expect(split.parts![1]!.buffer).to.equal(fragments[1]!.buffer);
    expect(joined(split.parts!)).to.deep.equal(payload);
    // The header cut, or only the header in the first fragment: joined and decoded whole.
    for (const at of [[5, 600], [DATA_HEADER_BYTES]]) {
      const whole = decodeDup2ClientFragments(cut(at));
      expect(whole.parts, String(at)).to.equal(undefined);
      expect(whole.frame, String(at)).to.deep.equal({
        type: 'data',
        uploadId: 3,
        offset: 7,
        crc32c: 9,
        payload,
      });
    }
    // One fragment, and other frames.
    expect(decodeDup2ClientFragments([bytes]).frame).to.deep.include({ offset: 7 });
    const open = encodeDup2Frame({
      type: 'open',
      uploadId: 1,
      size: 5,
      itemId: 'a',
      mime: '',
      name: '',
    });
    expect(
      decodeDup2ClientFragments([open.subarray(0, 3), open.subarray(3)]).frame,
    ).to.deep.include({ type: 'open', itemId: 'a' });
  });

  it('checks a DATA payload in fragments as a whole one: the limit, the end, a server frame, none', () => {
    const payload = new Uint8Array(100);
    const bytes = encodeDup2Frame({ type: 'data', uploadId: 1, offset: 0, crc32c: 0, payload });
    const two = [bytes.subarray(0, DATA_HEADER_BYTES + 10), bytes.subarray(DATA_HEADER_BYTES + 10)];
    expect(codeOf(() => decodeDup2ClientFragments(two, { maxChunk: 99 }))).to.equal(
      'frame-too-large',
    );
    expect(decodeDup2ClientFragments(two, { maxChunk: 100 }).parts).to.have.length(2);
    // Its first piece ends before 2^53−1, the whole payload after it.
    const far = bytes.slice();
    new DataView(far.buffer).setBigUint64(5, BigInt(2 ** 53 - 1 - 50));
    expect(
      codeOf(() => decodeDup2ClientFragments([far.subarray(0, 30), far.subarray(30)])),
    ).to.equal('frame-invalid-field');
    const bytesFrame = encodeDup2Frame({ type: 'bytes', readId: 1, offset: 0, crc32c: 0, payload });
    expect(
      codeOf(() =>
        decodeDup2ClientFragments([bytesFrame.subarray(0, 30), bytesFrame.subarray(30)]),
      ),
    ).to.equal('frame-unknown-type');
    expect(codeOf(() => decodeDup2ClientFragments([]))).to.equal('frame-empty');
  });

  it('rejects an empty DATA payload', () => {
    expect(codeOf(() => decodeDup2Frame(hex('03 00000001 0000000000000000 00000000')))).to.equal(
      'frame-invalid-field',
    );
  });

  it('rejects a READ whose end is not after its start, or with a bad item id', () => {
    expect(
      codeOf(() => decodeDup2Frame(hex('07 00000001 0000000000000005 0000000000000005 0001 61'))),
    ).to.equal('frame-invalid-field');
    expect(
      codeOf(() => decodeDup2Frame(hex('07 00000001 0000000000000000 0000000000000005 0002 2e2f'))),
    ).to.equal('frame-invalid-field');
    expect(() =>
      encodeDup2Frame({ type: 'read', readId: 1, itemId: 'a', start: 5, end: 5 }),
    ).to.throw();
  });

  it('bounds a BYTES payload by the limit given to the client decoder', () => {
    const frame = encodeDup2Frame({
      type: 'bytes',
      readId: 1,
      offset: 0,
      crc32c: 0,
      payload: new Uint8Array(11),
    });
    expect(codeOf(() => decodeDup2ServerFrame(frame, { maxChunk: 10 }))).to.equal(
      'frame-too-large',
    );
    expect(decodeDup2ServerFrame(frame, { maxChunk: 11 }).type).to.equal('bytes');
    expect(codeOf(() => decodeDup2ClientFrame(frame))).to.equal('frame-unknown-type');
  });

  it('rejects an ACK whose end is not after its start', () => {
    expect(
      codeOf(() => decodeDup2Frame(hex('83 00000001 0000000000000005 0000000000000005'))),
    ).to.equal('frame-invalid-field');
  });

  it('rejects an unknown error code', () => {
    expect(codeOf(() => decodeDup2Frame(hex('8f 00000000 0fff 0000')))).to.equal(
      'frame-invalid-field',
    );
  });

  it('keeps client and server frames apart', () => {
    expect(
      codeOf(() => decodeDup2ClientFrame(hex('85 3ff0000000000000 4000000000000000'))),
    ).to.equal('frame-unknown-type');
    expect(codeOf(() => decodeDup2ServerFrame(hex('05 00000007')))).to.equal('frame-unknown-type');
  });

  it('refuses to encode out-of-range fields', () => {
    expect(codeOf(() => encodeDup2Frame({ type: 'cancel', uploadId: 0 }))).to.equal(
      'frame-invalid-field',
    );
    expect(
      codeOf(() =>
        encodeDup2Frame({ type: 'open', uploadId: 1, size: -1, itemId: 'a', mime: '', name: '' }),
      ),
    ).to.equal('frame-invalid-field');
    expect(
      codeOf(() =>
        encodeDup2Frame({ type: 'open', uploadId: 1, size: 1, itemId: 'a/b', mime: '', name: '' }),
      ),
    ).to.equal('frame-invalid-field');
    expect(
      codeOf(() => encodeDup2Frame({ type: 'finish', uploadId: 1, sha256: new Uint8Array(31) })),
    ).to.equal('frame-invalid-field');
  });

  it('truncates a long error message at a character boundary', () => {
    const message = 'é'.repeat(1000);
    const decoded = decodeDup2Frame(
      encodeDup2Frame({ type: 'error', uploadId: 1, code: 'internal', message }),
    );
    expect(decoded.type).to.equal('error');
    const m = (decoded as { message: string }).message;
    expect(m.length).to.equal(512);
    expect(message.startsWith(m)).to.equal(true);
  });
});
