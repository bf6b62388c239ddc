// The item's SHA-256 is computed in a Worker for large items, and on the page's thread where no
// Worker can start. Real Worker, real servers: the upload server checks the digest the page sends.
import { expect } from '@open-wc/testing';
import { ConfigError, WsUploaderEngine } from '../../src/index.js';
import { HASH_WORKER_MIN, ItemHasher, hashWorkerFactory } from '../../src/engine/item-hasher.js';
import {
  randomFile,
  sha256Hex,
  startDeployment,
  stopServers,
  storedSha256,
  type TestDeployment,
} from '../helpers/servers.js';
import { until } from '../helpers/until.js';

const MiB = 1024 * 1024;
const hex = (d: Uint8Array): string =>
  Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');

/** A factory that counts the Workers it starts. */
function counting(factory: () => Worker): { factory: () => Worker; started: () => number } {
  let n = 0;
  return {
    factory: () => {
      n++;
      return factory();
    },
    started: () => n,
  };
}

describe('hash Worker', () => {
  const big = randomFile(HASH_WORKER_MIN + 1 * MiB + 7, 'big.bin');
  let bigSha256: string;
  before(async () => (bigSha256 = await sha256Hex(await big.arrayBuffer())));

  it('hashes a large item ahead in a Worker, to the same digest', async () => {
    const workers = counting(hashWorkerFactory(true)!);
    const hasher = new ItemHasher(big, workers.factory);
    // Bytes offered before are not needed: the Worker reads the file itself, from the start.
    await hasher.update(0, new Uint8Array(await big.slice(0, MiB).arrayBuffer()));
    hasher.ahead();
    expect(hasher.inWorker).to.equal(true);
    expect(hex(await hasher.digest())).to.equal(bigSha256);
    expect(workers.started()).to.equal(1);
    // Still the Worker's digest: no fallback to the page's thread happened.
    expect(hasher.inWorker).to.equal(true);
  });

  it('hashes on the page thread, from the bytes offered, when nothing asked for it ahead', async () => {
    const workers = counting(hashWorkerFactory(true)!);
    const hasher = new ItemHasher(big, workers.factory);
    await hasher.update(0, new Uint8Array(await big.slice(0, 5 * MiB).arrayBuffer()));
    expect(hex(await hasher.digest())).to.equal(bigSha256);
    expect(workers.started()).to.equal(0);
  });

  it('hashes on the page thread when the Worker script is missing or the Worker cannot start', async () => {
    const missing = counting(hashWorkerFactory('/no-such-dir/hash-worker.js')!);
    const a = new ItemHasher(big, missing.factory);
    a.ahead();
    expect(hex(await a.digest())).to.equal(bigSha256);
    expect(missing.started()).to.equal(1);
    expect(a.inWorker).to.equal(false);

    const refused = new ItemHasher(big, () => {
      throw new DOMException('refused by the page policy', 'SecurityError');
    });
    refused.ahead();
    expect(hex(await refused.digest())).to.equal(bigSha256);
    expect(refused.inWorker).to.equal(false);
  });

  it('hashes a small item on the page thread, even ahead', async () => {
    const small = randomFile(3 * MiB + 3, 'small.bin');
    const workers = counting(hashWorkerFactory(true)!);
    const hasher = new ItemHasher(small, workers.factory);
    await hasher.update(0, new Uint8Array(await small.slice(0, 2 * MiB).arrayBuffer()));
    hasher.ahead();
    expect(hasher.inWorker).to.equal(false);
    expect(hex(await hasher.digest())).to.equal(await sha256Hex(await small.arrayBuffer()));
    expect(workers.started()).to.equal(0);
  });

  it('stops hashing when closed: the pending digest fails and nothing falls back', async () => {
    const workers = counting(hashWorkerFactory(true)!);
    const hasher = new ItemHasher(big, workers.factory);
    hasher.ahead();
    const digest = hasher.digest();
    hasher.close();
    let error: unknown;
    await digest.catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(Error);
    expect(String(error)).to.contain('hashing stopped');
    expect(workers.started()).to.equal(1);
  });

  it('refuses a `hashWorker` option that is not a boolean or a URL', () => {
    expect(
      () =>
        new WsUploaderEngine({
          controlUrl: 'ws://127.0.0.1:1',
          authToken: 't',
          hashWorker: 5 as unknown as boolean,
        }),
    ).to.throw(ConfigError, /hashWorker/);
  });

  describe('uploads', () => {
    let d: TestDeployment | undefined;
    let engine: WsUploaderEngine | undefined;
    const RealWorker = globalThis.Worker;
    let started: string[] = [];

    beforeEach(() => {
      started = [];
      // The real Worker, noting each script the engine starts.
      globalThis.Worker = class extends RealWorker {
        constructor(url: string | URL, options?: WorkerOptions) {
          started.push(String(url));
          super(url, options);
        }
      };
    });

    afterEach(async () => {
      globalThis.Worker = RealWorker;
      engine?.stop();
      engine = undefined;
      await stopServers(d);
      d = undefined;
    });

    // With integrity sha256 and the data work on the page (dataWorker: false): dup/2 reads what
    // it sends, in order, and hashes it as it goes: no Worker. HTTP parts are streamed from the
    // file by the browser: the page's thread is free only if a Worker hashes. (In the data Worker
    // the same choice is made there.)
    const cases = [
      { name: 'dup/2', protocols: ['dup/2'], hashWorker: undefined, worker: false },
      { name: 'HTTP parts', protocols: ['http/1'], hashWorker: undefined, worker: true },
      {
        name: 'HTTP parts, a Worker URL with nothing behind it',
        protocols: ['http/1'],
        hashWorker: '/no-such-dir/hash-worker.js',
        worker: true,
      },
      {
        name: 'HTTP parts, `hashWorker: false`',
        protocols: ['http/1'],
        hashWorker: false,
        worker: false,
      },
    ] as const;
    for (const c of cases) {
      it(`sends the right digest: ${c.name}`, async () => {
        d = await startDeployment({ uploadServers: 1, linked: true });
        engine = new WsUploaderEngine({
          controlUrl: d.controlUrl,
          authToken: d.token,
          protocols: [...c.protocols],
          integrity: 'sha256',
          dataWorker: false,
          ...(c.hashWorker === undefined ? {} : { hashWorker: c.hashWorker }),
        });
        const errors: unknown[] = [];
        engine.on('error', (e) => errors.push(e.detail.error));
        await engine.start();
        await until(() => engine!.servers[0]?.state === 'open');
        const complete = new Promise<{ itemId: string; sha256?: string }>((resolve) =>
          engine!.on('complete', (e) => resolve(e.detail)),
        );
        engine.addFiles([big]);
        const result = await complete;
        expect(errors).to.deep.equal([]);
        expect(result.sha256).to.equal(bigSha256);
        expect(await storedSha256(d, 'up-1', result.itemId)).to.deep.equal({
          complete: true,
          size: big.size,
          sha256: bigSha256,
        });
        const hashWorkers = started.filter((u) => u.endsWith('hash-worker.js'));
        expect(hashWorkers.length).to.equal(c.worker ? 1 : 0);
      });
    }
  });
});
