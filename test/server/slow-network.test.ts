// F4 (server part): a DATA frame that takes longer to arrive than the idle timeout and the heartbeat,
// through a proxy that limits the bandwidth and slices the bytes into tiny writes. Bytes arriving
// are activity and a sign of life, whole messages or not; silence is still cut.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLOSE } from '../../src/protocol/index.js';
import { createUploadServer, type UploadServer } from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { Dup2Peer } from '../helpers/node-peers.js';

const SECRET = 's'.repeat(32);
const IDLE_MS = 600;
const HEARTBEAT_MS = 400;

describe('upload server behind a slow network (F4)', () => {
  let dir: string;
  let server: UploadServer;
  let url: string;
  let proxy: FaultProxy | undefined;
  const peers: Dup2Peer[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wsu-slow-'));
    server = createUploadServer({
      id: 'up-1',
      secret: SECRET,
      dataDir: dir,
      idleTimeoutMs: IDLE_MS,
      heartbeatMs: HEARTBEAT_MS,
    });
    url = (await server.listen(0)).ws;
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.ws.terminate();
    await proxy?.close();
    proxy = undefined;
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function welcomed(via: FaultProxy): Promise<Dup2Peer> {
    const peer = new Dup2Peer(via.rewrite(url));
    peers.push(peer);
    const { token } = await signToken(secretKey(SECRET), 'client-1', uploadAudience('up-1'), 600);
    await peer.send({ type: 'hello', token });
    expect((await peer.next()).type).to.equal('welcome');
    return peer;
  }

  it('F4: takes a DATA frame that trickles in for longer than idleTimeoutMs and heartbeatMs, sliced into tiny writes', async () => {
    // 300 KB at 100 KB/s in writes of at most 512 bytes: about 3 s, five idle timeouts.
    proxy = await FaultProxy.start({
      targetPort: Number(new URL(url).port),
      bytesPerSecond: 100_000,
      sliceBytes: 512,
    });
    const peer = await welcomed(proxy);
    const payload = randomBytes(300_000);
    await peer.open(1, 'slow-item', payload.length);
    expect((await peer.next()).type).to.equal('opened');
    const started = performance.now();
    await peer.data(1, 0, payload);
    const ack = await peer.next(10_000);
    const took = performance.now() - started;
    expect(ack).to.deep.include({ type: 'ack', uploadId: 1, start: 0, end: payload.length });
    expect(took).to.be.greaterThan(4 * IDLE_MS);
    // Silence is still cut, by the idle timer: 4008.
    const quiet = performance.now();
    const closed = await peer.closed;
    expect(closed.code).to.equal(CLOSE.IDLE_TIMEOUT);
    expect(performance.now() - quiet).to.be.within(IDLE_MS - 300, IDLE_MS + 500);
    const stored = await server.store.get('slow-item');
    expect(stored?.ranges).to.deep.equal([{ start: 0, end: payload.length }]);
  });
});
