import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ByteRange } from '../../src/protocol/index.js';
import { createReadToken, createUploadServer, type UploadServer } from '../../server/index.js';
import { secretKey, signToken, uploadAudience } from '../../server/tokens.js';
import { Dup2Peer, sha256 } from '../helpers/node-peers.js';

const SECRET = 'd'.repeat(32);

async function connect(wsUrl: string, uid = 'alice'): Promise<Dup2Peer> {
  const peer = new Dup2Peer(wsUrl);
  const { token } = await signToken(secretKey(SECRET), 'c1', uploadAudience('up-1'), 60, { uid });
  await peer.send({ type: 'hello', token });
  expect((await peer.next()).type).to.equal('welcome');
  return peer;
}

describe('upload server storage', () => {
  let dir: string;
  let server: UploadServer | undefined;
  const peers: Dup2Peer[] = [];

  async function start(options: Partial<Parameters<typeof createUploadServer>[0]> = {}) {
    server = createUploadServer({ id: 'up-1', secret: SECRET, dataDir: dir, ...options });
    return server.listen(0);
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-uploader-storage-'));
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('F15: deletes partial items that stored nothing for partialTtlMs, except those being written, and keeps complete ones', async () => {
    const { ws } = await start({ partialTtlMs: 200 });
    const peer = await connect(ws);
    peers.push(peer);
    const bytes = new Uint8Array(randomBytes(100));
    await peer.open(1, 'done', bytes.length);
    await peer.next();
    await peer.data(1, 0, bytes);
    await peer.next();
    await peer.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await peer.next()).type).to.equal('complete');
    await peer.open(2, 'abandoned', 100);
    await peer.next();
    await peer.data(2, 0, bytes.subarray(0, 10));
    await peer.next();
    // F15: an item someone is writing is not abandoned, however long they pause.
    await new Promise((r) => setTimeout(r, 400));
    expect(await readdir(dir)).to.have.members(['done', 'abandoned']);
    // Given up: the sweep takes it.
    await peer.send({ type: 'cancel', uploadId: 2 });
    const deadline = Date.now() + 3000;
    while (existsSync(join(dir, 'abandoned')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(await readdir(dir)).to.deep.equal(['done']);
    expect(await server!.store.get('abandoned')).to.equal(undefined);
  });

  it('refuses items over the per-user and the global quota with quota-exceeded', async () => {
    const { ws } = await start({ maxBytesPerOwner: 100, maxBytes: 150 });
    const alice = await connect(ws, 'alice');
    peers.push(alice);
    await alice.open(1, 'a1', 60);
    expect((await alice.next()).type).to.equal('opened');
    await alice.open(2, 'a2', 60);
    expect(await alice.next()).to.deep.include({
      type: 'error',
      uploadId: 2,
      code: 'quota-exceeded',
    });
    const bob = await connect(ws, 'bob');
    peers.push(bob);
    await bob.open(1, 'b1', 60);
    expect((await bob.next()).type).to.equal('opened');
    await bob.open(2, 'b2', 60);
    expect(await bob.next()).to.deep.include({
      type: 'error',
      uploadId: 2,
      code: 'quota-exceeded',
    });
    expect((await readdir(dir)).sort()).to.deep.equal(['a1', 'b1']);
  });

  it('F9: answers a full disk with storage-full, loses nothing stored, and takes the bytes again later', async () => {
    const { ws } = await start();
    const peer = await connect(ws);
    peers.push(peer);
    const bytes = new Uint8Array(randomBytes(2000));
    await peer.open(1, 'full', bytes.length);
    await peer.next();
    await peer.data(1, 0, bytes.subarray(0, 1000));
    expect((await peer.next()).type).to.equal('ack');
    peer.close();
    await server!.close();

    // The kernel's /dev/full answers every write with ENOSPC: the item's data file becomes it.
    const file = join(dir, 'full', 'data');
    const kept = await readFile(file);
    await unlink(file);
    await symlink('/dev/full', file);
    const again = await start();
    const p2 = await connect(again.ws);
    peers.push(p2);
    await p2.open(1, 'full', bytes.length);
    expect(await p2.next()).to.deep.include({ ranges: [{ start: 0, end: 1000 }] });
    await p2.data(1, 1000, bytes.subarray(1000));
    expect(await p2.next()).to.deep.include({ type: 'error', uploadId: 1, code: 'storage-full' });
    expect((await server!.store.get('full'))!.ranges).to.deep.equal([{ start: 0, end: 1000 }]);
    p2.close();
    await server!.close();

    // Room again: the stored part is intact, the rest goes in and the item verifies.
    await unlink(file);
    await writeFile(file, kept);
    const third = await start();
    const p3 = await connect(third.ws);
    peers.push(p3);
    await p3.open(1, 'full', bytes.length);
    await p3.next();
    await p3.data(1, 1000, bytes.subarray(1000));
    expect((await p3.next()).type).to.equal('ack');
    await p3.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
    expect((await p3.next()).type).to.equal('complete');
  });

  describe('a crash of the server process (kill -9) mid-upload', () => {
    let child: ChildProcess | undefined;

    afterEach(() => {
      child?.kill('SIGKILL');
      child = undefined;
    });

    function runServer(): Promise<{ ws: string; http: string }> {
      return new Promise((resolve, reject) => {
        child = spawn(
          process.execPath,
          [
            '--import',
            'tsx',
            '-e',
            `import('./server/cli.ts').then((m) => m.main(${JSON.stringify([
              'upload-server',
              '--id',
              'up-1',
              '--data-dir',
              dir,
              '--port',
              '0',
              '--secret',
              SECRET,
            ])}))`,
          ],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        );
        let out = '';
        child.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /at (ws:\S+) \(HTTP (http:\S+)\)/.exec(out);
          if (m) resolve({ ws: m[1]!, http: m[2]! });
        });
        child.on('exit', (code) => reject(new Error(`upload server exited with ${code}`)));
      });
    }

    it('F8: keeps every acknowledged byte, and the item completes after a restart', async function () {
      this.timeout(60_000);
      const size = 8 * 1024 * 1024;
      const chunk = 64 * 1024;
      const bytes = new Uint8Array(randomBytes(size));
      const first = await runServer();
      const peer = await connect(first.ws);
      peers.push(peer);
      await peer.open(1, 'crash', size);
      expect((await peer.next()).type).to.equal('opened');

      // Keep a window of chunks in flight; kill the server as soon as 40 were acknowledged.
      const acked: ByteRange[] = [];
      let sent = 0;
      const inFlight = 16;
      for (; sent < inFlight; sent++)
        await peer.data(1, sent * chunk, bytes.subarray(sent * chunk, (sent + 1) * chunk));
      while (acked.length < 40) {
        const frame = await peer.next();
        if (frame.type !== 'ack') throw new Error(`unexpected ${frame.type}`);
        acked.push({ start: frame.start, end: frame.end });
        await peer.data(1, sent * chunk, bytes.subarray(sent * chunk, (sent + 1) * chunk));
        sent++;
      }
      child!.kill('SIGKILL');
      await peer.closed;

      const second = await runServer();
      const p2 = await connect(second.ws);
      peers.push(p2);
      await p2.open(1, 'crash', size);
      const opened = await p2.next();
      if (opened.type !== 'opened') throw new Error(`expected OPENED, got ${opened.type}`);
      for (const a of acked) {
        const holder = opened.ranges.find((r) => r.start <= a.start && a.end <= r.end);
        expect(holder, `acknowledged ${a.start}..${a.end}`).to.not.equal(undefined);
      }
      // Every byte the server says it holds is the byte that was sent.
      const read = await createReadToken(SECRET, 'up-1', { subject: 'reader' });
      for (const r of opened.ranges) {
        const res = await fetch(`${second.http}/files/crash`, {
          headers: { Range: `bytes=${r.start}-${r.end - 1}`, Authorization: `Bearer ${read}` },
        });
        expect(res.status).to.equal(206);
        expect(sha256(new Uint8Array(await res.arrayBuffer())).hex).to.equal(
          sha256(bytes.subarray(r.start, r.end)).hex,
        );
      }
      // The rest goes in and the whole item verifies.
      for (let o = 0; o < size; o += chunk) {
        if (opened.ranges.some((r) => r.start <= o && o + chunk <= r.end)) continue;
        await p2.data(1, o, bytes.subarray(o, o + chunk));
        expect((await p2.next()).type).to.equal('ack');
      }
      await p2.send({ type: 'finish', uploadId: 1, sha256: sha256(bytes).bytes });
      expect((await p2.next()).type).to.equal('complete');
    });
  });
});
