import { expect } from 'chai';
import fc from 'fast-check';
import {
  decodeDup1ClientMessage,
  decodeDup1ServerMessage,
  encodeDup1Message,
  ProtocolError,
  type Dup1ClientMessage,
  type Dup1ServerMessage,
} from '../../src/protocol/index.js';
import { codeOf } from '../helpers/protocol-errors.js';

const SHA = 'ab'.repeat(32);

const CLIENT: Dup1ClientMessage[] = [
  { type: 'hello', token: 't' },
  { type: 'open', itemId: 'a', size: 10, mime: 'video/webm', name: 'clip.webm' },
  { type: 'seek', offset: 5 },
  { type: 'finish', sha256: SHA },
  { type: 'finish' },
  { type: 'ping', time: 1.5 },
];

const SERVER: Dup1ServerMessage[] = [
  { type: 'welcome', serverId: 's', maxChunk: 1, window: 2, maxItemSize: 3 },
  { type: 'opened', complete: false, ranges: [{ start: 0, end: 3 }] },
  { type: 'ack', start: 0, end: 3 },
  { type: 'complete', sha256: SHA },
  { type: 'pong', time: 1, serverTime: 2 },
  { type: 'error', code: 'out-of-range', message: 'no' },
];

describe('dup/1 codec', () => {
  for (const m of CLIENT) {
    it(`round-trips client message ${m.type}${'sha256' in m || m.type !== 'finish' ? '' : ' without sha256'}`, () => {
      expect(decodeDup1ClientMessage(encodeDup1Message(m))).to.deep.equal(m);
    });
  }
  for (const m of SERVER) {
    it(`round-trips server message ${m.type}`, () => {
      expect(decodeDup1ServerMessage(encodeDup1Message(m))).to.deep.equal(m);
    });
  }

  it('reads a finish without sha256 as one that asks the server for the digest, and refuses a sha256 that is not 64 lowercase hex digits', () => {
    expect(encodeDup1Message({ type: 'finish' })).to.equal('{"type":"finish"}');
    expect(decodeDup1ClientMessage('{"type":"finish"}')).to.deep.equal({ type: 'finish' });
    for (const bad of ['null', '""', '"AB"', `"${'AB'.repeat(32)}"`, '1', `"${'a'.repeat(63)}"`])
      expect(
        codeOf(() => decodeDup1ClientMessage(`{"type":"finish","sha256":${bad}}`)),
        bad,
      ).to.equal('message-invalid');
    // The server's complete always carries the digest.
    expect(codeOf(() => decodeDup1ServerMessage('{"type":"complete"}'))).to.equal(
      'message-invalid',
    );
  });

  it('sends ranges as [start, end] pairs', () => {
    expect(encodeDup1Message(SERVER[1]!)).to.equal(
      '{"type":"opened","complete":false,"ranges":[[0,3]]}',
    );
  });

  it('rejects bad messages with the documented codes', () => {
    expect(codeOf(() => decodeDup1ClientMessage('{'))).to.equal('message-invalid-json');
    expect(
      codeOf(() => decodeDup1ClientMessage('{"type":"open","itemId":"../a","size":1}')),
    ).to.equal('message-invalid');
    expect(codeOf(() => decodeDup1ClientMessage('{"type":"seek","offset":-1}'))).to.equal(
      'message-invalid',
    );
    expect(codeOf(() => decodeDup1ClientMessage('{"type":"finish","sha256":"XYZ"}'))).to.equal(
      'message-invalid',
    );
    expect(
      codeOf(() => decodeDup1ClientMessage(`{"type":"hello","token":"${'x'.repeat(20000)}"}`)),
    ).to.equal('frame-too-large');
    expect(
      codeOf(() => decodeDup1ServerMessage('{"type":"error","code":"nope","message":""}')),
    ).to.equal('message-invalid');
    expect(codeOf(() => decodeDup1ServerMessage('{"type":"opened","ranges":[[3,1]]}'))).to.equal(
      'message-invalid',
    );
  });

  it('decodes arbitrary text to a message or a ProtocolError, never anything else', () => {
    const types = [
      'hello',
      'open',
      'seek',
      'finish',
      'ping',
      'welcome',
      'opened',
      'ack',
      'complete',
      'pong',
      'error',
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...types),
        fc.dictionary(fc.string(), fc.jsonValue()),
        (type, fields) => {
          const text = JSON.stringify({ ...fields, type });
          for (const decode of [decodeDup1ClientMessage, decodeDup1ServerMessage]) {
            try {
              decode(text);
            } catch (e) {
              if (!(e instanceof ProtocolError)) return false;
            }
          }
          return true;
        },
      ),
      { numRuns: 1000 },
    );
  });
});
