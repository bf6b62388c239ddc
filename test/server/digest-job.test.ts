// A digest of an item split across two real upload servers: one reads its own stripes from its
// store and the other's over HTTP, each once stored, without raising a demand.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  crc32c,
  decodeRegistryClientMessage,
  decodeRegistryServerMessage,
  ProtocolError,
  type DigestMessage,
  type DigestState,
} from '../../src/protocol/index.js';
import {
  createReadToken,
  createUploadServer,
  type Demand,
  type UploadServer,
} from '../../server/index.js';
import { DigestJobs } from '../../server/upload/digest-job.js';
import { SplitDigests } from '../../server/control/split-digests.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256 } from '../helpers/node-peers.js';

const SECRET = 'd'.repeat(32);
const MiB = 1024 * 1024;

describe('digest of an item split across upload servers', () => {
  const dirs: string[] = [];
  const servers: UploadServer[] = [];
  const peers: Dup2Peer[] = [];
  const demands: Demand[] = [];

  async function start(id: string): Promise<{ server: UploadServer; http: string; ws: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-digest-'));
    dirs.push(dir);
    const server = createUploadServer({
      id,
      secret: SECRET,
      dataDir: dir,
      holdMs: 300,
      onDemand: (d) => demands.push(d),
    });
    servers.push(server);
    const urls = await server.listen(0);
    return { server, http: urls.http, ws: urls.ws };
  }

  /** Stores `parts` of `bytes` on a server over dup/2. */
  async function store(
    ws: string,
    serverId: string,
    itemId: string,
    bytes: Uint8Array,
    parts: [number, number][],
  ): Promise<void> {
    const p = new Dup2Peer(ws);
    peers.push(p);
    const { token } = await signToken(secretKey(SECRET), 'c1', uploadAudience(serverId), 60, {
      uid: 'u',
    });
    await p.send({ type: 'hello', token });
    expect((await p.next()).type).to.equal('welcome');
    await p.send({ type: 'open', uploadId: 1, itemId, size: bytes.length, mime: '', name: '' });
    expect((await p.next()).type).to.equal('opened');
    for (const [s, e] of parts) {
      const payload = bytes.subarray(s, e);
      await p.send({ type: 'data', uploadId: 1, offset: s, crc32c: crc32c(payload), payload });
      expect((await p.next()).type).to.equal('ack');
    }
  }

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    for (const s of servers.splice(0)) await s.close();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
    demands.length = 0;
  });

  const request = (itemId: string, url: string, token: string): DigestMessage => ({
    type: 'digest',
    itemId,
    size: 3 * MiB,
    peers: [{ url: `${url}/files/${itemId}`, token }],
    sources: [
      { start: 0, end: MiB },
      { start: MiB, end: 2 * MiB, peer: 0 },
      { start: 2 * MiB, end: 3 * MiB },
    ],
  });

  it("follows the upload: the peer's stripe is read once stored there, and no demand is raised", async () => {
    const a = await start('up-a');
    const b = await start('up-b');
    const bytes = new Uint8Array(randomBytes(3 * MiB));
    await store(a.ws, 'up-a', 'split-1', bytes, [
      [0, MiB],
      [2 * MiB, 3 * MiB],
    ]);
    const token = await createReadToken(SECRET, 'up-b', { subject: 'up-a' });
    const jobs = new DigestJobs({ store: a.server.store, waitMs: 5000, log: () => undefined });
    const answer = jobs.run(request('split-1', b.http, token));
    // The peer's stripe arrives after the digest started (its GET waits, asking again on 503).
    await new Promise((resolve) => setTimeout(resolve, 500));
    await store(b.ws, 'up-b', 'split-1', bytes, [[MiB, 2 * MiB]]);
    expect(await answer).to.deep.equal({
      type: 'digested',
      itemId: 'split-1',
      sha256: sha256(bytes).hex,
    });
    expect(demands).to.deep.equal([]);
  });

  it('reads pieces ahead while an earlier one is not stored yet, and hashes them in order', async () => {
    const a = await start('up-a');
    const b = await start('up-b');
    const size = 12 * MiB;
    const bytes = new Uint8Array(randomBytes(size));
    const token = await createReadToken(SECRET, 'up-b', { subject: 'up-a' });
    const jobs = new DigestJobs({ store: a.server.store, waitMs: 5000, log: () => undefined });
    const answer = jobs.run({
      type: 'digest',
      itemId: 'split-8',
      size,
      peers: [{ url: `${b.http}/files/split-8`, token }],
      sources: [
        { start: 0, end: 4 * MiB },
        { start: 4 * MiB, end: size, peer: 0 },
      ],
    });
    // The peer's stripe back to front, then this server's: every piece but the last stored
    // comes after a later one.
    const backwards: [number, number][] = [];
    for (let end = size; end > 4 * MiB; end -= MiB) backwards.push([end - MiB, end]);
    await store(b.ws, 'up-b', 'split-8', bytes, backwards);
    await store(a.ws, 'up-a', 'split-8', bytes, [
      [3 * MiB, 4 * MiB],
      [2 * MiB, 3 * MiB],
      [MiB, 2 * MiB],
      [0, MiB],
    ]);
    expect(await answer).to.deep.equal({
      type: 'digested',
      itemId: 'split-8',
      sha256: sha256(bytes).hex,
    });
    expect(demands).to.deep.equal([]);
  });

  it('waits for an item the browser has not opened here yet (the request came first), then follows the upload', async () => {
    const a = await start('up-a');
    const b = await start('up-b');
    const bytes = new Uint8Array(randomBytes(3 * MiB));
    const token = await createReadToken(SECRET, 'up-b', { subject: 'up-a' });
    const jobs = new DigestJobs({ store: a.server.store, waitMs: 5000, log: () => undefined });
    const answer = jobs.run(request('split-6', b.http, token));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await store(a.ws, 'up-a', 'split-6', bytes, [[0, MiB]]);
    await store(b.ws, 'up-b', 'split-6', bytes, [[MiB, 2 * MiB]]);
    await store(a.ws, 'up-a', 'split-6', bytes, [[2 * MiB, 3 * MiB]]);
    expect(await answer).to.deep.equal({
      type: 'digested',
      itemId: 'split-6',
      sha256: sha256(bytes).hex,
    });
    // An item that never comes: timeout, once the wait is over.
    const short = new DigestJobs({ store: a.server.store, waitMs: 300, log: () => undefined });
    expect(await short.run(request('split-7', b.http, token))).to.include({ code: 'timeout' });
  });

  it('answers unavailable when a peer refuses the token, and timeout when its own bytes never come', async () => {
    const a = await start('up-a');
    const b = await start('up-b');
    const bytes = new Uint8Array(randomBytes(3 * MiB));
    await store(a.ws, 'up-a', 'split-2', bytes, [[0, MiB]]);
    await store(b.ws, 'up-b', 'split-2', bytes, [[MiB, 2 * MiB]]);
    const wrong = await createReadToken(SECRET, 'up-a', { subject: 'up-a' }); // not for up-b
    const jobs = new DigestJobs({ store: a.server.store, waitMs: 300, log: () => undefined });
    expect(await jobs.run(request('split-2', b.http, wrong))).to.include({
      type: 'digested',
      code: 'unavailable',
    });
    const token = await createReadToken(SECRET, 'up-b', { subject: 'up-a' });
    // [2 MiB, 3 MiB) is never stored on up-a.
    expect(await jobs.run(request('split-2', b.http, token))).to.include({ code: 'timeout' });
  });

  it('answers nothing for a digest that a later request for the item replaced', async () => {
    const a = await start('up-a');
    const b = await start('up-b');
    const bytes = new Uint8Array(randomBytes(3 * MiB));
    await store(a.ws, 'up-a', 'split-4', bytes, [[0, MiB]]);
    const token = await createReadToken(SECRET, 'up-b', { subject: 'up-a' });
    const jobs = new DigestJobs({ store: a.server.store, waitMs: 5000, log: () => undefined });
    // Waits for up-b's stripe, which comes only after the second request.
    const first = jobs.run(request('split-4', b.http, token));
    const second = jobs.run(request('split-4', b.http, token));
    expect(await first).to.equal(undefined);
    await store(a.ws, 'up-a', 'split-4', bytes, [[2 * MiB, 3 * MiB]]);
    await store(b.ws, 'up-b', 'split-4', bytes, [[MiB, 2 * MiB]]);
    expect(await second).to.include({ sha256: sha256(bytes).hex });
  });

  it('the codec takes digest and digested, and refuses sources that leave a gap', () => {
    const good = request('split-3', 'http://127.0.0.1:1', 't');
    expect(decodeRegistryServerMessage(JSON.stringify(good))).to.deep.equal(good);
    const gap = { ...good, sources: [good.sources[0], good.sources[2]] };
    expect(() => decodeRegistryServerMessage(JSON.stringify(gap))).to.throw(ProtocolError);
    const noPeer = { ...good, peers: [] };
    expect(() => decodeRegistryServerMessage(JSON.stringify(noPeer))).to.throw(ProtocolError);
    const digested = { type: 'digested', itemId: 'split-3', sha256: 'ab'.repeat(32) };
    expect(decodeRegistryClientMessage(JSON.stringify(digested))).to.deep.equal(digested);
    expect(() =>
      decodeRegistryClientMessage(JSON.stringify({ type: 'digested', itemId: 'split-3' })),
    ).to.throw(ProtocolError);
  });
  it("asks the digesting server to read each peer at the peer's peerUrl, where it registered one", async () => {
    const sent: DigestMessage[] = [];
    const endpoints: Record<string, { httpUrl: string; peerUrl?: string }> = {
      'up-a': { httpUrl: 'https://a.example' },
      'up-b': { httpUrl: 'https://b.example', peerUrl: 'http://10.0.0.2:8081' },
      'up-c': { httpUrl: 'https://c.example' },
    };
    const digests = new SplitDigests(
      {
        reachable: () => true,
        digestSteps: () => false,
        get: (id) => endpoints[id],
        digest: (_id, request) => (sent.push(request), true),
      },
      secretKey(SECRET),
      60,
    );
    const asked = await digests.start(
      {
        taskId: 't1',
        itemId: 'split-5',
        ranges: [
          { start: 0, end: 10, serverId: 'up-a' },
          { start: 10, end: 20, serverId: 'up-b' },
          { start: 20, end: 30, serverId: 'up-c' },
        ],
      },
      30,
      'alice',
    );
    expect(asked).to.equal(true);
    expect(sent[0]!.peers.map((p) => p.url)).to.deep.equal([
      'http://10.0.0.2:8081/files/split-5',
      'https://c.example/files/split-5',
    ]);
  });

  it('the codec takes a register with peerUrl, and refuses one that is not an http(s) URL', () => {
    const register = {
      type: 'register',
      token: 't',
      id: 'up-1',
      protocols: ['dup/2'],
      port: 8081,
      peerUrl: 'http://10.0.0.5:8081',
    };
    expect(decodeRegistryClientMessage(JSON.stringify(register))).to.deep.equal(register);
    for (const peerUrl of ['ftp://10.0.0.5', '10.0.0.5:8081', '', 7])
      expect(() => decodeRegistryClientMessage(JSON.stringify({ ...register, peerUrl }))).to.throw(
        ProtocolError,
      );
  });

  // Digest steps: each server hashes its own stripes from the state the one before reached.
  const step = (itemId: string, start: number, end: number, from?: DigestState): DigestMessage => ({
    type: 'digest',
    itemId,
    size: 3 * MiB,
    peers: [],
    sources: [{ start, end }],
    ...(from ? { from } : {}),
  });

  it('each hashes its own stripe from the state before, waiting for bytes not stored yet', async () => {
    const a = await start('up-a');
    const b = await start('up-b');
    const bytes = new Uint8Array(randomBytes(3 * MiB));
    const jobsA = new DigestJobs({ store: a.server.store, waitMs: 5000, log: () => undefined });
    const jobsB = new DigestJobs({ store: b.server.store, waitMs: 5000, log: () => undefined });
    // The first step comes before its bytes.
    const first = jobsA.run(step('steps-1', 0, MiB));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await store(a.ws, 'up-a', 'steps-1', bytes, [
      [0, MiB],
      [2 * MiB, 3 * MiB],
    ]);
    const one = await first;
    expect(one?.state?.offset).to.equal(MiB);
    await store(b.ws, 'up-b', 'steps-1', bytes, [[MiB, 2 * MiB]]);
    const two = await jobsB.run(step('steps-1', MiB, 2 * MiB, one!.state));
    expect(two?.state?.offset).to.equal(2 * MiB);
    expect(await jobsA.run(step('steps-1', 2 * MiB, 3 * MiB, two!.state))).to.deep.equal({
      type: 'digested',
      itemId: 'steps-1',
      sha256: sha256(bytes).hex,
    });
  });

  it('a wrong state gives a wrong digest (the state is what the hash goes on from)', async () => {
    const a = await start('up-a');
    const bytes = new Uint8Array(randomBytes(3 * MiB));
    await store(a.ws, 'up-a', 'steps-2', bytes, [[2 * MiB, 3 * MiB]]);
    const jobs = new DigestJobs({ store: a.server.store, waitMs: 300, log: () => undefined });
    const answer = await jobs.run(
      step('steps-2', 2 * MiB, 3 * MiB, { offset: 2 * MiB, hash: '0'.repeat(64) }),
    );
    expect(answer?.sha256).to.match(/^[0-9a-f]{64}$/);
    expect(answer?.sha256).to.not.equal(sha256(bytes).hex);
    // Its own bytes never come: timeout.
    expect(await jobs.run(step('steps-2', 0, MiB))).to.include({ code: 'timeout' });
  });
});
