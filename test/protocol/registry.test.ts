import { expect } from 'chai';
import {
  decodeRegistryClientMessage,
  decodeRegistryServerMessage,
  decodeRelayFrame,
  encodeRegistryMessage,
  encodeRelayFrame,
  RELAY_HEADER_BYTES,
  RELAY_KIND,
  writeRelayHeader,
  type RegistryClientMessage,
  type RegistryServerMessage,
} from '../../src/protocol/index.js';
import { codeOf } from '../helpers/protocol-errors.js';

const SHA = 'ab'.repeat(32);

const CLIENT: RegistryClientMessage[] = [
  { type: 'register', token: 't', id: 'up-1', protocols: ['dup/2', 'dup/1'], port: 8081 },
  {
    type: 'register',
    token: 't',
    id: 'up-1',
    protocols: ['dup/2'],
    url: 'wss://up-1.example/dup',
    httpUrl: 'https://up-1.example',
    maxItemSize: 1000,
  },
  {
    type: 'register',
    token: 't',
    id: 'up-1',
    protocols: ['dup/2'],
    relay: true,
    maxMessage: 1048593,
  },
  { type: 'heartbeat' },
  {
    type: 'stored',
    itemId: 'a',
    size: 10,
    ranges: [{ start: 0, end: 10 }],
    complete: true,
    sha256: SHA,
  },
  {
    type: 'stored',
    itemId: 'a',
    size: 10,
    ranges: [
      { start: 0, end: 2 },
      { start: 5, end: 7 },
    ],
    complete: false,
  },
  { type: 'stored', itemId: 'empty', size: 0, ranges: [], complete: true, sha256: SHA },
  { type: 'demand', itemId: 'a', ranges: [{ start: 5000, end: 6000 }] },
  { type: 'relay-accept', channel: 1, protocol: 'ws-uploader.dup.v2' },
  { type: 'relay-accept', channel: 2, protocol: '' },
  { type: 'relay-refuse', channel: 3, status: 429 },
  { type: 'relay-close', channel: 0xffff_ffff, code: 4002, reason: 'bad frame' },
  { type: 'relay-pause', channel: 4 },
  { type: 'relay-resume', channel: 4 },
];

const SERVER: RegistryServerMessage[] = [
  {
    type: 'registered',
    heartbeatMs: 10_000,
    url: 'ws://127.0.0.1:1/dup',
    httpUrl: 'http://127.0.0.1:1',
  },
  { type: 'error', code: 'no-endpoint', message: 'send url and httpUrl, or port' },
  {
    type: 'relay-open',
    channel: 7,
    protocols: ['ws-uploader.dup.v2', 'ws-uploader.dup.v1'],
    remote: '::1',
    origin: 'https://app.example',
  },
  { type: 'relay-open', channel: 8, protocols: [], remote: '' },
  { type: 'relay-close', channel: 7, code: 1006, reason: '' },
];

/** A register message with some fields replaced. */
function register(fields: Record<string, unknown>): string {
  return JSON.stringify({
    type: 'register',
    token: 't',
    id: 'up-1',
    protocols: ['dup/2'],
    ...fields,
  });
}

describe('registry codec', () => {
  it('round-trips every message of the upload server', () => {
    for (const m of CLIENT)
      expect(decodeRegistryClientMessage(encodeRegistryMessage(m))).to.deep.equal(m);
  });

  it('round-trips every message of the control server', () => {
    for (const m of SERVER)
      expect(decodeRegistryServerMessage(encodeRegistryMessage(m))).to.deep.equal(m);
  });

  it('ignores unknown fields', () => {
    expect(decodeRegistryClientMessage('{"type":"heartbeat","extra":1}')).to.deep.equal({
      type: 'heartbeat',
    });
    expect(
      decodeRegistryServerMessage(
        '{"type":"relay-close","channel":1,"code":1000,"reason":"","x":[]}',
      ),
    ).to.deep.equal({ type: 'relay-close', channel: 1, code: 1000, reason: '' });
  });

  it('refuses text that is not a JSON object, and unknown types, in either direction', () => {
    expect(codeOf(() => decodeRegistryClientMessage('nope'))).to.equal('message-invalid-json');
    expect(codeOf(() => decodeRegistryClientMessage('[1]'))).to.equal('message-invalid-json');
    expect(codeOf(() => decodeRegistryClientMessage('{"type":"registered"}'))).to.equal(
      'message-invalid',
    );
    expect(codeOf(() => decodeRegistryServerMessage('{"type":"heartbeat"}'))).to.equal(
      'message-invalid',
    );
    expect(
      codeOf(() =>
        decodeRegistryServerMessage('{"type":"relay-accept","channel":1,"protocol":""}'),
      ),
    ).to.equal('message-invalid');
    expect(
      codeOf(() =>
        decodeRegistryClientMessage('{"type":"relay-open","channel":1,"protocols":[],"remote":""}'),
      ),
    ).to.equal('message-invalid');
  });

  it('checks register: token, id, protocols, urls, port, relay and maxMessage', () => {
    const invalid = [
      register({ token: '' }),
      register({ id: 'a/b' }),
      register({ protocols: [] }),
      register({ protocols: ['DUP 2'] }),
      register({ url: 'http://x/dup', httpUrl: 'http://x' }),
      register({ url: 'ws://x/dup', httpUrl: 'ftp://x' }),
      register({ url: 'ws://x/dup' }),
      register({ port: 0 }),
      register({ port: 65536 }),
      register({ port: 80.5 }),
      register({ maxItemSize: -1 }),
      register({ relay: 'yes' }),
      register({ relay: true, port: 8081 }),
      register({ relay: true, url: 'ws://x/dup', httpUrl: 'http://x' }),
      register({ maxMessage: 0 }),
      register({ maxMessage: 64 * 1024 * 1024 + 1 }),
      register({ maxMessage: 1.5 }),
    ];
    for (const text of invalid)
      expect(
        codeOf(() => decodeRegistryClientMessage(text)),
        text,
      ).to.equal('message-invalid');
    // relay: false is only the default said out loud: the other fields still count.
    expect(decodeRegistryClientMessage(register({ relay: false, port: 1 }))).to.deep.include({
      relay: false,
      port: 1,
    });
  });

  it('checks stored and demand ranges', () => {
    const invalid = [
      '{"type":"stored","itemId":"a","size":10,"ranges":[],"complete":"yes"}',
      '{"type":"stored","itemId":"a","size":10,"ranges":[{"start":0,"end":5}],"complete":true,"sha256":"' +
        SHA +
        '"}',
      '{"type":"stored","itemId":"a","size":10,"ranges":[{"start":0,"end":10}],"complete":true}',
      '{"type":"stored","itemId":"a","size":10,"ranges":[{"start":0,"end":11}],"complete":false}',
      '{"type":"stored","itemId":"a","size":10,"ranges":[{"start":4,"end":6},{"start":5,"end":7}],"complete":false}',
      '{"type":"stored","itemId":"a","size":10,"ranges":[{"start":3,"end":3}],"complete":false}',
      '{"type":"demand","itemId":"a","ranges":[]}',
      '{"type":"demand","itemId":"a b","ranges":[{"start":0,"end":1}]}',
    ];
    for (const text of invalid)
      expect(
        codeOf(() => decodeRegistryClientMessage(text)),
        text,
      ).to.equal('message-invalid');
  });

  it('checks relay messages: channel, protocol, status, close code and reason', () => {
    const client = [
      '{"type":"relay-accept","channel":0,"protocol":""}',
      '{"type":"relay-accept","channel":4294967296,"protocol":""}',
      '{"type":"relay-accept","channel":1.5,"protocol":""}',
      '{"type":"relay-accept","channel":1,"protocol":"a b"}',
      '{"type":"relay-accept","channel":1}',
      '{"type":"relay-refuse","channel":1,"status":200}',
      '{"type":"relay-refuse","channel":1,"status":600}',
      '{"type":"relay-close","channel":1,"code":999,"reason":""}',
      '{"type":"relay-close","channel":1,"code":5000,"reason":""}',
      '{"type":"relay-close","channel":1,"code":1000}',
      `{"type":"relay-close","channel":1,"code":1000,"reason":"${'é'.repeat(62)}"}`,
      '{"type":"relay-pause"}',
    ];
    for (const text of client)
      expect(
        codeOf(() => decodeRegistryClientMessage(text)),
        text,
      ).to.equal('message-invalid');
    const server = [
      '{"type":"relay-open","channel":1,"protocols":["a b"],"remote":""}',
      '{"type":"relay-open","channel":1,"protocols":"x","remote":""}',
      '{"type":"relay-open","channel":1,"protocols":[]}',
      '{"type":"relay-open","channel":1,"protocols":[],"remote":"","origin":""}',
    ];
    for (const text of server)
      expect(
        codeOf(() => decodeRegistryServerMessage(text)),
        text,
      ).to.equal('message-invalid');
  });

  it('checks registered and error from the control server', () => {
    const invalid = [
      '{"type":"registered","heartbeatMs":10,"url":"ws://x/dup","httpUrl":"http://x"}',
      '{"type":"registered","heartbeatMs":1000,"url":"http://x/dup","httpUrl":"http://x"}',
      '{"type":"registered","heartbeatMs":1000,"url":"ws://x/dup","httpUrl":"ws://x"}',
      '{"type":"error","code":"","message":""}',
    ];
    for (const text of invalid)
      expect(
        codeOf(() => decodeRegistryServerMessage(text)),
        text,
      ).to.equal('message-invalid');
  });
});

describe('relay frames', () => {
  it('lays out u32 channel, u8 kind, then the payload', () => {
    const bytes = encodeRelayFrame({
      channel: 0x01020304,
      kind: RELAY_KIND.BINARY,
      payload: new Uint8Array([0xaa, 0xbb]),
    });
    expect([...bytes]).to.deep.equal([1, 2, 3, 4, 2, 0xaa, 0xbb]);
    const frame = decodeRelayFrame(bytes);
    expect(frame.channel).to.equal(0x01020304);
    expect(frame.kind).to.equal(RELAY_KIND.BINARY);
    expect([...frame.payload]).to.deep.equal([0xaa, 0xbb]);
    // A view, not a copy.
    expect(frame.payload.buffer).to.equal(bytes.buffer);
  });

  it('round-trips every kind, empty payloads and the largest channel', () => {
    for (const kind of Object.values(RELAY_KIND)) {
      for (const payload of [new Uint8Array(0), new TextEncoder().encode('{"type":"hello"}')]) {
        const frame = { channel: 0xffff_ffff, kind, payload };
        const back = decodeRelayFrame(encodeRelayFrame(frame));
        expect(back.channel).to.equal(0xffff_ffff);
        expect(back.kind).to.equal(kind);
        expect([...back.payload]).to.deep.equal([...payload]);
      }
    }
  });

  it('writes the header in place for a payload the caller puts after it', () => {
    const out = new Uint8Array(RELAY_HEADER_BYTES + 1);
    writeRelayHeader(out, 9, RELAY_KIND.TEXT);
    out[5] = 0x41;
    expect([...out]).to.deep.equal([0, 0, 0, 9, 1, 0x41]);
  });

  it('refuses a truncated frame, channel 0, an unknown kind and a long ping or pong', () => {
    expect(codeOf(() => decodeRelayFrame(new Uint8Array([0, 0, 0, 1])))).to.equal(
      'frame-truncated',
    );
    expect(codeOf(() => decodeRelayFrame(new Uint8Array(0)))).to.equal('frame-truncated');
    expect(codeOf(() => decodeRelayFrame(new Uint8Array([0, 0, 0, 0, 2])))).to.equal(
      'frame-invalid-field',
    );
    for (const kind of [0, 3, 8, 0x0b, 0xff])
      expect(codeOf(() => decodeRelayFrame(new Uint8Array([0, 0, 0, 1, kind])))).to.equal(
        'frame-invalid-field',
      );
    const long = new Uint8Array(RELAY_HEADER_BYTES + 126);
    long.set([0, 0, 0, 1, RELAY_KIND.PING]);
    expect(codeOf(() => decodeRelayFrame(long))).to.equal('frame-too-large');
    long[4] = RELAY_KIND.BINARY;
    expect(decodeRelayFrame(long).payload.length).to.equal(126);
    expect(
      codeOf(() =>
        encodeRelayFrame({ channel: 0, kind: RELAY_KIND.TEXT, payload: new Uint8Array(0) }),
      ),
    ).to.equal('frame-invalid-field');
    expect(
      codeOf(() => encodeRelayFrame({ channel: 1, kind: 7 as never, payload: new Uint8Array(0) })),
    ).to.equal('frame-invalid-field');
  });
});
