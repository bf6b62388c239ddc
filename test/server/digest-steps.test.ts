// A digest of an item split across upload servers computed in turn: each server hashes its own
// ranges from the SHA-256 state the one before reached, so no bytes cross between servers. (Steps
// on two real upload servers are in digest-job.test.ts.)
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import {
  decodeRegistryClientMessage,
  decodeRegistryServerMessage,
  ProtocolError,
  type DigestMessage,
  type DigestState,
} from '../../src/protocol/index.js';
import { resumeSha256, sha256State } from '../../server/upload/sha256-state.js';
import { SplitDigests } from '../../server/control/split-digests.js';
import { secretKey } from '../../server/tokens.js';

const SECRET = 'd'.repeat(32);
const MiB = 1024 * 1024;

describe('digest of a split item computed in turn (digest steps)', () => {
  it('a state is FIPS 180-4 H0..H7: after the padded block of "abc" it is the digest of "abc"', async () => {
    const block = new Uint8Array(64);
    block.set([0x61, 0x62, 0x63, 0x80]);
    block[63] = 24; // the message's length in bits
    const hasher = await resumeSha256();
    hasher.update(block);
    expect(sha256State(hasher, 64)).to.deep.equal({
      offset: 64,
      hash: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    });
    // The state of no bytes is the initial hash value.
    expect(sha256State(await resumeSha256(), 0).hash).to.equal(
      '6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19',
    );
  });

  it('goes on from a state to the same SHA-256 as hashing all of it at once', async () => {
    const bytes = randomBytes(5 * MiB + 123);
    let state: DigestState | undefined;
    for (const [start, end] of [
      [0, MiB],
      [MiB, 3 * MiB + 64],
      [3 * MiB + 64, 4 * MiB],
    ] as const) {
      const hasher = await resumeSha256(state);
      hasher.update(bytes.subarray(start, end));
      state = sha256State(hasher, end);
    }
    const last = await resumeSha256(state);
    last.update(bytes.subarray(4 * MiB));
    expect(last.digest('hex')).to.equal(createHash('sha256').update(bytes).digest('hex'));
    const odd = await resumeSha256();
    odd.update(bytes.subarray(0, 100));
    expect(() => sha256State(odd, 100)).to.throw(RangeError);
    expect(() => sha256State(odd, 64)).to.throw(RangeError);
  });

  describe('the control server', () => {
    /**
     * A registry whose servers all take steps, except `without`, and reach each other, except
     * `relayed`; requests are kept in `sent`.
     */
    function registry(without: string[] = [], relayed: string[] = []) {
      const sent: { id: string; request: DigestMessage }[] = [];
      return {
        sent,
        reachable: (id: string) => !relayed.includes(id),
        digestSteps: (id: string) => !without.includes(id),
        get: (id: string) => ({ httpUrl: `https://${id}.example` }),
        digest: (id: string, request: DigestMessage) => (sent.push({ id, request }), true),
      };
    }
    const ranges = [
      { start: 0, end: 64, serverId: 'up-a' },
      { start: 64, end: 128, serverId: 'up-a' },
      { start: 128, end: 192, serverId: 'up-b' },
      { start: 192, end: 200, serverId: 'up-c' },
    ];
    const state = (offset: number): DigestState => ({
      offset,
      hash: offset.toString(16).padStart(64, '0'),
    });

    it('asks each server in turn for its run of ranges, from the state the one before reached', async () => {
      const r = registry();
      const digests = new SplitDigests(r, secretKey(SECRET), 60, 'steps');
      expect(await digests.start({ taskId: 't1', itemId: 'i1', ranges }, 200, 'alice')).to.equal(
        true,
      );
      const outcome = digests.outcome('t1', 5000);
      // Neighbours on one server are one step; the first starts at the first byte.
      expect(r.sent).to.deep.equal([
        {
          id: 'up-a',
          request: {
            type: 'digest',
            itemId: 'i1',
            size: 200,
            peers: [],
            sources: [{ start: 0, end: 128 }],
          },
        },
      ]);
      // A state from another server, or for another offset, is not this step's answer.
      digests.digested('up-b', { type: 'digested', itemId: 'i1', state: state(128) });
      digests.digested('up-a', { type: 'digested', itemId: 'i1', state: state(64) });
      expect(r.sent).to.have.length(1);
      digests.digested('up-a', { type: 'digested', itemId: 'i1', state: state(128) });
      expect(r.sent[1]).to.deep.equal({
        id: 'up-b',
        request: {
          type: 'digest',
          itemId: 'i1',
          size: 200,
          peers: [],
          sources: [{ start: 128, end: 192 }],
          from: state(128),
        },
      });
      digests.digested('up-b', { type: 'digested', itemId: 'i1', state: state(192) });
      expect(r.sent[2]!.id).to.equal('up-c');
      expect(r.sent[2]!.request.from).to.deep.equal(state(192));
      // A failure of the last step is asked again from the same state.
      digests.digested('up-c', {
        type: 'digested',
        itemId: 'i1',
        code: 'timeout',
        message: 'late',
      });
      expect(await outcome).to.deep.equal({ code: 'timeout', message: 'late' });
      expect(digests.retry('t1')).to.equal(true);
      expect(r.sent[3]).to.deep.equal(r.sent[2]);
      const again = digests.outcome('t1', 5000);
      digests.digested('up-c', { type: 'digested', itemId: 'i1', sha256: 'ab'.repeat(32) });
      expect(await again).to.deep.equal({ sha256: 'ab'.repeat(32) });
    });

    it('reads where every server reaches the others, and takes steps where one is relayed', async () => {
      const r = registry();
      const digests = new SplitDigests(r, secretKey(SECRET), 60);
      expect(await digests.start({ taskId: 't2', itemId: 'i2', ranges }, 200, 'alice')).to.equal(
        true,
      );
      expect(r.sent).to.have.length(1);
      expect(r.sent[0]!.id).to.equal('up-a');
      expect(r.sent[0]!.request.peers.map((p) => p.url)).to.deep.equal([
        'https://up-b.example/files/i2',
        'https://up-c.example/files/i2',
      ]);
      expect(r.sent[0]!.request.sources.at(-1)).to.deep.equal({ start: 192, end: 200, peer: 1 });
      const relay = registry([], ['up-c']);
      const relayed = new SplitDigests(relay, secretKey(SECRET), 60);
      expect(await relayed.start({ taskId: 't5', itemId: 'i5', ranges }, 200, 'alice')).to.equal(
        true,
      );
      expect(relay.sent[0]!.request).to.deep.include({
        peers: [],
        sources: [{ start: 0, end: 128 }],
      });
      // A relayed server that takes no steps: neither way can (the browser hashes the item).
      const neither = new SplitDigests(registry(['up-c'], ['up-c']), secretKey(SECRET), 60);
      expect(await neither.start({ taskId: 't6', itemId: 'i6', ranges }, 200, 'alice')).to.equal(
        false,
      );
    });

    it('reads, though steps are preferred, when a server takes no steps or a hand-over is not at a multiple of 64', async () => {
      const r = registry(['up-c']);
      const digests = new SplitDigests(r, secretKey(SECRET), 60, 'steps');
      expect(await digests.start({ taskId: 't2', itemId: 'i2', ranges }, 200, 'alice')).to.equal(
        true,
      );
      expect(r.sent[0]!.request.peers).to.have.length(2);
      const odd = registry();
      const other = new SplitDigests(odd, secretKey(SECRET), 60, 'steps');
      const shifted = [
        { start: 0, end: 100, serverId: 'up-a' },
        { start: 100, end: 200, serverId: 'up-b' },
      ];
      expect(
        await other.start({ taskId: 't3', itemId: 'i3', ranges: shifted }, 200, 'alice'),
      ).to.equal(true);
      expect(odd.sent[0]!.request.peers).to.have.length(1);
    });

    it('ends with unavailable when the next server is no longer linked', async () => {
      const r = registry();
      const digests = new SplitDigests(
        { ...r, digest: (id, request) => id !== 'up-b' && r.digest(id, request) },
        secretKey(SECRET),
        60,
        'steps',
      );
      expect(await digests.start({ taskId: 't4', itemId: 'i4', ranges }, 200, 'alice')).to.equal(
        true,
      );
      digests.digested('up-a', { type: 'digested', itemId: 'i4', state: state(128) });
      expect(await digests.outcome('t4', 5000)).to.include({ code: 'unavailable' });
    });
  });

  it('the codec takes steps: from, sources ending at a multiple of 64, a state answer, digestSteps', () => {
    const request: DigestMessage = {
      type: 'digest',
      itemId: 'i1',
      size: 1000,
      peers: [],
      sources: [{ start: 128, end: 512 }],
      from: { offset: 128, hash: 'cd'.repeat(32) },
    };
    expect(decodeRegistryServerMessage(JSON.stringify(request))).to.deep.equal(request);
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    const { from, ...rest } = request;
    const first = { ...rest, sources: [{ start: 0, end: 512 }] };
    expect(decodeRegistryServerMessage(JSON.stringify(first))).to.deep.equal(first);
    for (const bad of [
      { ...request, sources: [{ start: 128, end: 500 }] }, // a state only at a multiple of 64
      { ...request, sources: [{ start: 0, end: 512 }] }, // not from the state's offset
      {
        ...request,
        from: { offset: 100, hash: 'cd'.repeat(32) },
        sources: [{ start: 100, end: 512 }],
      },
      { ...request, from: { offset: 128, hash: 'CD'.repeat(32) } },
      { ...request, from: { offset: 128 } },
      { ...request, sources: [{ start: 128, end: 1024 }] }, // past the item
      { ...request, sources: [] },
    ])
      expect(() => decodeRegistryServerMessage(JSON.stringify(bad))).to.throw(ProtocolError);
    const answer = {
      type: 'digested',
      itemId: 'i1',
      state: { offset: 512, hash: 'ef'.repeat(32) },
    };
    expect(decodeRegistryClientMessage(JSON.stringify(answer))).to.deep.equal(answer);
    expect(() =>
      decodeRegistryClientMessage(
        JSON.stringify({ ...answer, state: { offset: 1, hash: 'ef'.repeat(32) } }),
      ),
    ).to.throw(ProtocolError);
    const register = {
      type: 'register',
      token: 't',
      id: 'up-1',
      protocols: ['dup/2'],
      port: 8081,
      digestSteps: true,
    };
    expect(decodeRegistryClientMessage(JSON.stringify(register))).to.deep.equal(register);
    expect(() =>
      decodeRegistryClientMessage(JSON.stringify({ ...register, digestSteps: 1 })),
    ).to.throw(ProtocolError);
  });
});
