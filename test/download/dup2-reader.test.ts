// Dup2Reader against a real upload server: parts read with READ within the server's window, an
// abort that cancels a read, the server's errors, and connections that fail.
import { expect } from '@open-wc/testing';
import type { WsUploaderEngine } from '../../src/index.js';
import { ServerError, TransportError } from '../../src/errors.js';
import { Dup2Reader } from '../../src/download/dup2-reader.js';
import type { ItemHolder } from '../../src/protocol/control.js';
import { startedEngine, uploadFile } from '../helpers/engines.js';
import {
  randomFile,
  startDeployment,
  stopServers,
  userToken,
  type TestDeployment,
} from '../helpers/servers.js';

const KiB = 1024;

describe('Dup2Reader', () => {
  let d: TestDeployment | undefined;
  const engines: WsUploaderEngine[] = [];
  const readers: Dup2Reader[] = [];
  let itemId = '';
  let source: Uint8Array;
  let holder: ItemHolder;

  const reader = (h: ItemHolder = holder, token = h.token): Dup2Reader => {
    const r = new Dup2Reader(h.serverId, h.wsUrl!, token, h.tokenExpiresAt);
    readers.push(r);
    return r;
  };

  before(async () => {
    // A small window and chunk, so that parts take several READs and several BYTES.
    d = await startDeployment({
      uploadServers: 1,
      uploadOptions: { window: 256 * KiB, maxChunk: 64 * KiB },
      controlOptions: { inlineMax: 0 },
    });
    const alice = await startedEngine(d, d.token, engines);
    const file = randomFile(700 * KiB + 3, 'reader.bin');
    source = new Uint8Array(await file.arrayBuffer());
    ({ itemId } = await uploadFile(alice, file));
    const bob = await startedEngine(d, await userToken(d, 'bob'), engines);
    holder = (await bob.locate(itemId)).holders[0]!;
    expect(holder.wsUrl).to.be.a('string');
  });

  afterEach(() => {
    for (const r of readers.splice(0)) r.close();
  });

  after(async () => {
    for (const e of engines.splice(0)) e.stop();
    await stopServers(d);
  });

  it('reads a part larger than the window in several READs, and parts side by side, byte for byte', async () => {
    const r = reader();
    const whole = await r.read(itemId, { start: 0, end: source.length });
    expect(whole).to.deep.equal(source);
    const parts = await Promise.all(
      [0, 1, 2, 3].map((i) => r.read(itemId, { start: i * 100 * KiB, end: (i + 1) * 100 * KiB })),
    );
    parts.forEach((p, i) =>
      expect(p).to.deep.equal(source.subarray(i * 100 * KiB, (i + 1) * 100 * KiB)),
    );
  });

  it('an abort cancels the read, and the connection reads on', async () => {
    const r = reader();
    const stop = new AbortController();
    const reason = new Error('stopped by the page');
    const running = r.read(itemId, { start: 0, end: 200 * KiB }, stop.signal);
    stop.abort(reason);
    let error: unknown;
    await running.catch((e: unknown) => (error = e));
    expect(error).to.equal(reason);
    expect(await r.read(itemId, { start: 5, end: 70 * KiB })).to.deep.equal(
      source.subarray(5, 70 * KiB),
    );
    // An aborted signal stops a read before it starts.
    let early: unknown;
    await r.read(itemId, { start: 0, end: 10 }, stop.signal).catch((e: unknown) => (early = e));
    expect(early).to.equal(reason);
  });

  it("rejects with the server's error: out-of-range past the item, not-found for another item", async () => {
    const r = reader();
    let past: unknown;
    await r.read(itemId, { start: 0, end: source.length + 1 }).catch((e: unknown) => (past = e));
    expect(past).to.be.instanceOf(ServerError);
    expect((past as ServerError).code).to.equal('out-of-range');
    // The read token names this item only: another one is refused before the server looks.
    let other: unknown;
    await r.read('A'.repeat(22), { start: 0, end: 10 }).catch((e: unknown) => (other = e));
    expect(other).to.be.instanceOf(ServerError);
    expect((other as ServerError).code).to.equal('unauthorized');
    expect(r.closed).to.equal(false);
  });

  it('fails its reads when the token is refused, or the server cannot be reached', async () => {
    const refused = reader(holder, 'x.y.z');
    let error: unknown;
    await refused.read(itemId, { start: 0, end: 10 }).catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(ServerError);
    expect((error as ServerError).code).to.equal('unauthorized');
    expect(refused.closed).to.equal(true);

    const nowhere = reader({ ...holder, wsUrl: 'ws://127.0.0.1:9/dup' });
    let failed: unknown;
    await nowhere.read(itemId, { start: 0, end: 10 }).catch((e: unknown) => (failed = e));
    expect(failed).to.be.instanceOf(TransportError);
    expect((failed as TransportError).code).to.equal('socket-failed');
  });

  it('fails the reads still running when it is closed', async () => {
    const r = reader();
    const running = r.read(itemId, { start: 0, end: source.length });
    r.close();
    let error: unknown;
    await running.catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(TransportError);
    expect((error as TransportError).code).to.equal('socket-closed');
  });
});
