import { expect } from 'chai';
import {
  decodeControlClientMessage,
  decodeControlServerMessage,
  encodeControlMessage,
  type ControlClientMessage,
  type ControlServerMessage,
} from '../../src/protocol/index.js';
import { codeOf } from '../helpers/protocol-errors.js';

const SHA = 'ab'.repeat(32);

const CLIENT: ControlClientMessage[] = [
  { type: 'hello', token: 't' },
  { type: 'hello', token: 't', sessionId: 's' },
  {
    type: 'publish',
    items: [
      { itemId: 'a', name: 'a.txt', size: 3, mime: 'text/plain', kind: 'file', lastModified: 5 },
    ],
  },
  { type: 'probe', results: [{ serverId: 'up-1', rttMs: 1.5 }] },
  { type: 'accept', taskId: 't1', itemId: 'a' },
  { type: 'progress', taskId: 't1', itemId: 'a', bytesStored: 10 },
  { type: 'complete', taskId: 't1', itemId: 'a', sha256: SHA, servers: ['up-1'] },
  { type: 'fail', taskId: 't1', itemId: 'a', code: 'socket-closed', message: 'lost' },
];

const SERVER: ControlServerMessage[] = [
  {
    type: 'welcome',
    sessionId: 's',
    clientId: 'c',
    servers: [
      {
        id: 'up-1',
        url: 'ws://127.0.0.1:1/dup',
        httpUrl: 'http://127.0.0.1:1',
        protocols: ['dup/2'],
        token: 'x',
        tokenExpiresAt: 1,
      },
    ],
    limits: { maxItemSize: 100 },
  },
  { type: 'servers', servers: [] },
  { type: 'published', itemIds: ['a'] },
  {
    type: 'transmit',
    taskId: 't1',
    itemId: 'a',
    ranges: [{ start: 0, end: 3, serverId: 'up-1' }],
    priority: 0,
  },
  { type: 'completed', itemId: 'a', sha256: SHA, servers: ['up-1'] },
  { type: 'error', code: 'bad-message', message: 'no', ref: 'a' },
];

describe('control codec', () => {
  for (const m of CLIENT) {
    it(`round-trips client message ${m.type}`, () => {
      expect(decodeControlClientMessage(encodeControlMessage(m))).to.deep.equal(m);
    });
  }
  for (const m of SERVER) {
    it(`round-trips server message ${m.type}`, () => {
      expect(decodeControlServerMessage(encodeControlMessage(m))).to.deep.equal(m);
    });
  }

  it('rejects text that is not JSON with message-invalid-json', () => {
    expect(codeOf(() => decodeControlClientMessage('{'))).to.equal('message-invalid-json');
    expect(codeOf(() => decodeControlClientMessage('[1]'))).to.equal('message-invalid-json');
    expect(codeOf(() => decodeControlClientMessage('null'))).to.equal('message-invalid-json');
  });

  it('rejects unknown types and wrong fields with message-invalid', () => {
    expect(codeOf(() => decodeControlClientMessage('{"type":"nope"}'))).to.equal('message-invalid');
    expect(codeOf(() => decodeControlClientMessage('{"type":"hello"}'))).to.equal(
      'message-invalid',
    );
    expect(codeOf(() => decodeControlClientMessage('{"type":"hello","token":""}'))).to.equal(
      'message-invalid',
    );
    const item = { itemId: '../x', name: 'a', size: 1, mime: '', kind: 'file' };
    expect(
      codeOf(() => decodeControlClientMessage(JSON.stringify({ type: 'publish', items: [item] }))),
    ).to.equal('message-invalid');
    expect(
      codeOf(() =>
        decodeControlClientMessage(
          JSON.stringify({ type: 'publish', items: [{ ...item, itemId: 'a', size: -1 }] }),
        ),
      ),
    ).to.equal('message-invalid');
    expect(
      codeOf(() =>
        decodeControlClientMessage(
          JSON.stringify({
            type: 'complete',
            taskId: 't',
            itemId: 'a',
            sha256: 'xyz',
            servers: [],
          }),
        ),
      ),
    ).to.equal('message-invalid');
  });

  it('rejects a transmit with an empty or inverted range', () => {
    const t = { type: 'transmit', taskId: 't', itemId: 'a', priority: 0 };
    expect(codeOf(() => decodeControlServerMessage(JSON.stringify({ ...t, ranges: [] })))).to.equal(
      'message-invalid',
    );
    expect(
      codeOf(() =>
        decodeControlServerMessage(
          JSON.stringify({ ...t, ranges: [{ start: 5, end: 5, serverId: 's' }] }),
        ),
      ),
    ).to.equal('message-invalid');
  });

  it('rejects a server URL that is not ws: or wss:', () => {
    const welcome = structuredClone(SERVER[0]) as unknown as { servers: { url: string }[] };
    welcome.servers[0]!.url = 'javascript:alert(1)';
    expect(codeOf(() => decodeControlServerMessage(JSON.stringify(welcome)))).to.equal(
      'message-invalid',
    );
  });

  it('ignores unknown fields', () => {
    expect(decodeControlClientMessage('{"type":"hello","token":"t","extra":1}')).to.deep.equal({
      type: 'hello',
      token: 't',
    });
  });
});
