/**
 * Browser benchmark: the engine uploading one large file from Chromium, against what the browser
 * can do at all (raw WebSocket senders, raw `fetch` PUTs, each to a bare sink), against
 * tus-js-client, and the downloader against raw `fetch` GETs, measured in the same run, on
 * loopback, with the bytes written to disk; then a WAN table, each server behind a proxy that caps
 * its bandwidth and adds latency, where splitting an item across servers earns its keep. See
 * bench/README.md and docs/benchmarks.md.
 *
 * This process serves the benchmark page (bench/browser/) on 127.0.0.1, starts Chromium on it
 * directly (no DevTools protocol: a page driven through it sends WebSocket data several times
 * slower) and hands the page one step at a time over HTTP; the page reports each result back the
 * same way. Every case starts fresh server processes (`browser-role.mjs`, hosting the bare sinks,
 * the reference servers as built in `dist/`, or the WAN's proxies) that sample their own RSS; this
 * process samples Chromium's memory and CPU from /proc.
 *
 * Environment: BENCH_SCALE (default 1) divides the 500 MiB and 100 MiB (WAN) sizes, BENCH_RUNS
 * (default 3) sets the runs per case (the tables show medians), BENCH_CASES picks the rows; more
 * knobs in bench/README.md. BENCH_NODE_FLAGS: Node flags for the server processes (say
 * `--trace-gc`).
 */
import { fork, spawn, type ChildProcess, type Serializable } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeResolve } from '@rollup/plugin-node-resolve';
import { rollup } from 'rollup';
import { CHROMIUM_ARGS, findChromium } from '../scripts/chromium.mjs';

const MiB = 1024 * 1024;
const SECRET = 'bench-secret-of-at-least-32-bytes-0123456789';
/** The size of the item, divided by BENCH_SCALE. */
const FULL_SIZE = 500 * MiB;
/** The size of the WAN rows' item, divided by BENCH_SCALE. */
const WAN_FULL_SIZE = 100 * MiB;
/** The WAN: each server's bandwidth, each way (MiB/s), and the latency added each way (ms). */
const WAN_MIBPS = Number(process.env.BENCH_WAN_MIBPS || 20);
const WAN_LATENCY_MS = Number(process.env.BENCH_WAN_LATENCY_MS ?? 25);
/**
 * The raw WebSocket senders' messages (reads, for the framed one), the bytes the acknowledged ones
 * keep unacknowledged, and the `bufferedAmount` under which the others go on sending.
 */
const WS_MESSAGE = Number(process.env.BENCH_WS_MESSAGE || 4 * MiB);
const WS_WINDOW = Number(process.env.BENCH_WS_WINDOW || 16 * MiB);
const WS_BUFFERED = Number(process.env.BENCH_WS_BUFFERED || 16 * MiB);
/** tus-js-client's chunked mode. */
const TUS_CHUNK = 8 * MiB;
/** The engine's default `chunkSize`: the slices it reads and sends. */
const ENGINE_CHUNK = 512 * 1024;
/** Bytes of the source file the page's measure of the engine's per-byte costs goes over. */
const COSTS_BYTES = 128 * MiB;
/** Size of the warm-up item, sent once through every case before the measured runs. */
const WARM_SIZE = 16 * MiB;
/**
 * Chromium's processes' memory (PSS) is sampled this often, in ms. Reading a large process's
 * `smaps_rollup` walks its page tables: sampled every 200 ms, the benchmark itself took 6 % of
 * the machine's CPU during a WAN split.
 */
const SAMPLE_MS = 1000;
/** A step the page does not answer within this time fails the benchmark. */
const STEP_TIMEOUT_MS = 600_000;
/** A measured run the page does not finish within this time fails (the page gives it up). */
const RUN_TIMEOUT_MS = Number(process.env.BENCH_RUN_TIMEOUT_MS || 240_000);

/** Targets of the issue. */
const TARGET = {
  /** The engine's fastest transport (`transport` integrity) ÷ raw fetch. */
  engineVsFetch: 0.85,
  /** The engine's fastest transport (`sha256` integrity) ÷ fetch with a Worker hashing. */
  sha256VsCeiling: 0.9,
  /** Engine dup/2 ÷ the raw WebSocket sender doing the same per-byte work. */
  dup2VsWs: 0.9,
  /** The downloader ÷ the raw GET into OPFS through a sync access handle. */
  downloadVsGet: 0.8,
  /** WAN: the engine split across 3 servers ÷ the engine to one. */
  wanSplit3: 2.5,
  /** Page and memory, for every engine row. */
  longTaskMs: 50,
  mainThreadShare: 0.1,
  heapMiB: 64,
  serverRssMiB: 150,
} as const;
/** A split slower than one server by less than this share counts as not slower: run noise. */
const SPLIT_NOISE = 0.05;

const root = fileURLToPath(new URL('..', import.meta.url));
const here = (path: string): string => join(root, path);

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/** A transport of the engine, as the page names it in the engine's options. */
type Transport = 'dup/2' | 'dup/1' | 'http';
/** The engine's `integrity` option. */
type Integrity = 'sha256' | 'transport';
/** The table a case is in: uploads and downloads on loopback, or uploads over the WAN. */
type Section = 'upload' | 'download' | 'wan';

interface Case {
  readonly key: string;
  readonly name: string;
  readonly section: Section;
  readonly kind: 'ws-raw' | 'ws-dup2' | 'fetch-raw' | 'tus' | 'engine' | 'download';
  /** The row this one is compared with in the `÷ baseline` column. */
  readonly baseline?: string;
  /** The share of the baseline this row should reach (a target line). */
  readonly target?: number;
  /** raw WebSocket: how the Worker hands the slices to `send`. */
  readonly mode?: 'buffer' | 'blob';
  /** raw WebSocket: whether the sink acknowledges each message (else `bufferedAmount` paces). */
  readonly acks?: boolean;
  /** raw WebSocket: each read cut into DATA frames of this many payload bytes, with a CRC-32C. */
  readonly frame?: number;
  /** raw fetch: a Worker hashes the file (SHA-256) meanwhile. */
  readonly hash?: boolean;
  /**
   * download: the downloader, or one raw `fetch` GET of the whole item piped into an OPFS
   * writable (`fetch`), written through a sync access handle in the Worker (`sync`, the
   * baseline), or read and dropped (`discard`).
   */
  readonly reader?: 'downloader' | 'fetch' | 'sync' | 'sync-hash' | 'discard';
  /** download: the downloader's `transport` option (its default reads over HTTP `Range`). */
  readonly downloadTransport?: 'dup2' | 'http';
  /** download: the downloader's `integrity` option (its default hashes every byte). */
  readonly downloadIntegrity?: 'transport';
  /** Upload servers (tus, engine, download). */
  readonly servers?: number;
  readonly chunkSize?: number;
  readonly transport?: Transport;
  readonly integrity?: Integrity;
  /** Every server (and sink) behind a proxy shaped as the WAN. */
  readonly wan?: boolean;
  /** Why the case cannot run: printed in its row instead of numbers. */
  readonly unavailable?: string;
}

/**
 * Transports the engine speaks, and the engine options that pick one.
 */
const ENGINE_TRANSPORTS: Partial<Record<Transport, Record<string, unknown>>> = {
  'dup/2': { protocols: ['dup/2'] },
  'dup/1': { protocols: ['dup/1'] },
  http: { protocols: ['http/1'] },
};

/** BENCH_ENGINE_OPTIONS: more engine options, as JSON (`{"chunkSize":1048576}`, say). */
const ENGINE_OPTIONS = JSON.parse(process.env.BENCH_ENGINE_OPTIONS || '{}') as Record<
  string,
  unknown
>;
/** BENCH_WAN_ENGINE_OPTIONS: engine options of the WAN rows only (default: the engine's own). */
const WAN_ENGINE_OPTIONS = JSON.parse(process.env.BENCH_WAN_ENGINE_OPTIONS || '{}') as Record<
  string,
  unknown
>;
/** BENCH_DOWNLOAD_OPTIONS: more downloader options, as JSON (`{"partSize":16777216}`, say). */
const DOWNLOAD_OPTIONS = JSON.parse(process.env.BENCH_DOWNLOAD_OPTIONS || '{}') as Record<
  string,
  unknown
>;
/** BENCH_DATA_WORKER=0: the engine's `dataWorker` option off (its sockets, reads and hashing on the page). */
const DATA_WORKER = process.env.BENCH_DATA_WORKER !== '0';

/** The engine's options for a case: the transport and integrity of its row over the knobs. */
function engineOptions(kase: Case): Record<string, unknown> {
  return {
    dataWorker: DATA_WORKER,
    ...ENGINE_OPTIONS,
    ...(kase.wan ? WAN_ENGINE_OPTIONS : {}),
    ...(kase.transport ? ENGINE_TRANSPORTS[kase.transport] : {}),
    ...(kase.integrity ? { integrity: kase.integrity } : {}),
  };
}

const transportKey = (t: Transport): string => t.replace('/', '');
const transportName = (t: Transport): string => (t === 'http' ? 'HTTP parts' : t);
const serversName = (n: number): string => `${n} server${n > 1 ? 's' : ''}`;

/** The engine's rows on loopback: each transport in each integrity mode, then the splits. */
const ENGINE_CASES: readonly Case[] = [
  ...(['dup/2', 'dup/1', 'http'] as const).flatMap((transport) =>
    (['sha256', 'transport'] as const).map((integrity): Case => {
      // What each row is held to: the ceiling of the same work done by raw senders.
      const baseline =
        integrity === 'sha256'
          ? 'fetch-hash'
          : transport === 'dup/2'
            ? 'ws-crc'
            : transport === 'dup/1'
              ? 'ws-buffered'
              : 'fetch';
      return {
        key: `engine-${transportKey(transport)}-${integrity}`,
        name: `engine, ${transportName(transport)}, ${integrity} integrity, 1 server`,
        section: 'upload',
        kind: 'engine',
        servers: 1,
        transport,
        integrity,
        baseline,
        ...(baseline === 'ws-crc' ? { target: TARGET.dup2VsWs } : {}),
      };
    }),
  ),
  ...(['dup/2', 'http'] as const).flatMap((transport) =>
    [2, 3].map((servers): Case => ({
      key: `engine-${transportKey(transport)}-transport-x${servers}`,
      name: `engine, ${transportName(transport)}, transport integrity, split over ${serversName(servers)}`,
      section: 'upload',
      kind: 'engine',
      servers,
      transport,
      integrity: 'transport',
      baseline: `engine-${transportKey(transport)}-transport`,
      target: 1 - SPLIT_NOISE,
    })),
  ),
];

const CASES: readonly Case[] = [
  // Uploads on loopback: the raw senders (baselines), tus-js-client, the engine.
  {
    key: 'ws-buffer',
    name: 'raw WebSocket, Worker, 4 MiB ArrayBuffer reads, each acknowledged',
    section: 'upload',
    kind: 'ws-raw',
    mode: 'buffer',
    acks: true,
    baseline: 'ws-buffered',
  },
  {
    key: 'ws-blob',
    name: 'raw WebSocket, Worker, 4 MiB Blobs, each acknowledged',
    section: 'upload',
    kind: 'ws-raw',
    mode: 'blob',
    acks: true,
    baseline: 'ws-buffered',
  },
  {
    key: 'ws-buffered',
    name: 'raw WebSocket, Worker, 4 MiB Blobs, paced by bufferedAmount',
    section: 'upload',
    kind: 'ws-raw',
    mode: 'blob',
    acks: false,
  },
  {
    key: 'ws-crc',
    name: 'raw WebSocket, Worker, 4 MiB reads, CRC-32C and DATA frame per 512 KiB',
    section: 'upload',
    kind: 'ws-raw',
    mode: 'buffer',
    acks: false,
    frame: ENGINE_CHUNK,
    baseline: 'ws-buffered',
  },
  {
    // The same per-byte work as real dup/2 to the upload server: what the machine allows dup/2
    // when the server's work shares the CPUs with the browser's.
    key: 'ws-dup2',
    name: 'raw dup/2 to the upload server, Worker, as ws-crc (window, no engine)',
    section: 'upload',
    kind: 'ws-dup2',
    servers: 1,
    frame: ENGINE_CHUNK,
    baseline: 'ws-crc',
  },
  { key: 'fetch', name: 'raw fetch PUT of the file', section: 'upload', kind: 'fetch-raw' },
  {
    key: 'fetch-hash',
    name: 'raw fetch PUT, and SHA-256 of the file in a Worker',
    section: 'upload',
    kind: 'fetch-raw',
    hash: true,
    baseline: 'fetch',
  },
  {
    // What the machine allows a split: three sink processes on the same cores, no digest.
    key: 'fetch-x3',
    name: 'raw fetch PUTs, a third of the file to each of 3 sinks',
    section: 'upload',
    kind: 'fetch-raw',
    servers: 3,
    baseline: 'fetch',
  },
  {
    key: 'tus',
    name: 'tus-js-client, default (one PATCH)',
    section: 'upload',
    kind: 'tus',
    servers: 1,
    baseline: 'fetch',
  },
  {
    key: 'tus-8',
    name: 'tus-js-client, 8 MiB chunks',
    section: 'upload',
    kind: 'tus',
    servers: 1,
    chunkSize: TUS_CHUNK,
    baseline: 'fetch',
  },
  ...ENGINE_CASES.map((c) =>
    c.transport && !ENGINE_TRANSPORTS[c.transport]
      ? { ...c, unavailable: `the engine does not speak ${c.transport} yet` }
      : c,
  ),
  // Downloads: the item is uploaded first (not timed), then read back.
  {
    key: 'get-discard',
    name: 'raw fetch GET of the item, read and dropped',
    section: 'download',
    kind: 'download',
    servers: 1,
    reader: 'discard',
    baseline: 'get-sync',
  },
  {
    key: 'get-sync',
    name: 'raw fetch GET into OPFS, sync access handle, Worker',
    section: 'download',
    kind: 'download',
    servers: 1,
    reader: 'sync',
  },
  {
    // The ceiling of a verified download: the downloader checks every item's SHA-256.
    key: 'get-sync-hash',
    name: 'raw fetch GET into OPFS, sync access handle, Worker; SHA-256 in a second Worker',
    section: 'download',
    kind: 'download',
    servers: 1,
    reader: 'sync-hash',
    baseline: 'get-sync',
  },
  {
    key: 'get',
    name: 'raw fetch GET piped into an OPFS writable, page',
    section: 'download',
    kind: 'download',
    servers: 1,
    reader: 'fetch',
    baseline: 'get-sync',
  },
  {
    // Like with like: both hash every byte they write.
    key: 'download',
    name: 'downloader, sha256 integrity (its default), HTTP Range, 1 server, into OPFS',
    section: 'download',
    kind: 'download',
    servers: 1,
    reader: 'downloader',
    baseline: 'get-sync-hash',
    target: TARGET.downloadVsGet,
  },
  {
    // Like with like: neither hashes.
    key: 'download-transport',
    name: 'downloader, transport integrity, HTTP Range, 1 server, into OPFS',
    section: 'download',
    kind: 'download',
    servers: 1,
    reader: 'downloader',
    downloadIntegrity: 'transport',
    baseline: 'get-sync',
    target: TARGET.downloadVsGet,
  },
  {
    key: 'download-dup2',
    name: 'downloader, sha256 integrity, dup/2 READ, 1 server, into OPFS',
    section: 'download',
    kind: 'download',
    servers: 1,
    reader: 'downloader',
    downloadTransport: 'dup2',
    baseline: 'get-sync-hash',
  },
  {
    key: 'download-x2',
    name: 'downloader, sha256 integrity, HTTP Range, 2 servers, into OPFS',
    section: 'download',
    kind: 'download',
    servers: 2,
    reader: 'downloader',
    baseline: 'download',
    target: 1 - SPLIT_NOISE,
  },
  // The WAN: every server and sink behind its own shaped proxy.
  { key: 'wan-fetch', name: 'WAN raw fetch PUT', section: 'wan', kind: 'fetch-raw', wan: true },
  {
    // What three of the proxies carry together: the ceiling of a split over three servers.
    key: 'wan-fetch-x3',
    name: 'WAN raw fetch PUTs, a third of the file to each of 3 sinks',
    section: 'wan',
    kind: 'fetch-raw',
    wan: true,
    servers: 3,
    baseline: 'wan-fetch',
  },
  {
    // The WebSocket's ceiling on these links: what dup/2 is held to.
    key: 'wan-ws',
    name: 'WAN raw WebSocket, Worker, 4 MiB Blobs, paced by bufferedAmount',
    section: 'wan',
    kind: 'ws-raw',
    mode: 'blob',
    acks: false,
    wan: true,
    baseline: 'wan-fetch',
  },
  {
    key: 'wan-ws-x3',
    name: 'WAN raw WebSockets, a third of the file to each of 3 sinks',
    section: 'wan',
    kind: 'ws-raw',
    mode: 'blob',
    acks: false,
    wan: true,
    servers: 3,
    baseline: 'wan-ws',
  },
  {
    key: 'wan-tus',
    name: 'WAN tus-js-client, default (one PATCH)',
    section: 'wan',
    kind: 'tus',
    servers: 1,
    wan: true,
    baseline: 'wan-fetch',
  },
  {
    key: 'wan-tus-8',
    name: 'WAN tus-js-client, 8 MiB chunks',
    section: 'wan',
    kind: 'tus',
    servers: 1,
    chunkSize: TUS_CHUNK,
    wan: true,
    baseline: 'wan-fetch',
  },
  {
    key: 'wan-engine',
    name: 'WAN engine, 1 server',
    section: 'wan',
    kind: 'engine',
    servers: 1,
    wan: true,
    baseline: 'wan-tus-8',
  },
  {
    key: 'wan-engine-x2',
    name: 'WAN engine, split 2 servers',
    section: 'wan',
    kind: 'engine',
    servers: 2,
    wan: true,
    baseline: 'wan-engine',
    target: 1 - SPLIT_NOISE,
  },
  {
    key: 'wan-engine-x3',
    name: 'WAN engine, split 3 servers',
    section: 'wan',
    kind: 'engine',
    servers: 3,
    wan: true,
    baseline: 'wan-engine',
    target: TARGET.wanSplit3,
  },
  // The engine over HTTP parts, its fastest transport: the default's rows above speak dup/2.
  {
    key: 'wan-engine-http',
    name: 'WAN engine, HTTP parts, 1 server',
    section: 'wan',
    kind: 'engine',
    transport: 'http',
    servers: 1,
    wan: true,
    baseline: 'wan-tus-8',
  },
  {
    key: 'wan-engine-http-x3',
    name: 'WAN engine, HTTP parts, split 3 servers',
    section: 'wan',
    kind: 'engine',
    transport: 'http',
    servers: 3,
    wan: true,
    baseline: 'wan-engine-http',
    target: TARGET.wanSplit3,
  },
];

/** Groups BENCH_CASES knows besides the keys. */
const GROUPS: Record<string, (c: Case) => boolean> = {
  uploads: (c) => c.section === 'upload',
  downloads: (c) => c.section === 'download',
  wan: (c) => c.section === 'wan',
  engine: (c) => c.kind === 'engine',
  baselines: (c) => c.kind !== 'engine' && c.kind !== 'tus' && c.reader !== 'downloader',
};

/**
 * The cases BENCH_CASES picks, in the table's order: comma-separated keys, groups (`uploads`,
 * `downloads`, `wan`, `engine`, `baselines`) or patterns with `*` (`engine-*-transport`); a term
 * starting with `!` takes cases out (alone, out of every case).
 */
function selectCases(spec: string | undefined): readonly Case[] {
  const terms = (spec ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (terms.length === 0) return CASES;
  const matcher = (term: string): ((c: Case) => boolean) => {
    const group = GROUPS[term];
    if (group) return group;
    const re = new RegExp(
      `^${term
        .split('*')
        .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*')}$`,
    );
    return (c) => re.test(c.key);
  };
  const include = terms.filter((t) => !t.startsWith('!'));
  const exclude = terms.filter((t) => t.startsWith('!')).map((t) => t.slice(1));
  for (const term of [...include, ...exclude]) {
    if (!CASES.some(matcher(term))) {
      throw new Error(
        `BENCH_CASES: ${term} names no case; cases: ${CASES.map((c) => c.key).join(', ')}; ` +
          `groups: ${Object.keys(GROUPS).join(', ')}`,
      );
    }
  }
  return CASES.filter(
    (c) =>
      (include.length === 0 || include.some((t) => matcher(t)(c))) &&
      !exclude.some((t) => matcher(t)(c)),
  );
}

/** Roughly the MiB/s a case reaches on a 2-core machine, for the time the run will take. */
function expectedMiBps(kase: Case): number {
  if (kase.wan) {
    const cap = WAN_MIBPS * (kase.servers ?? 1);
    return kase.chunkSize !== undefined ? cap * 0.85 : cap * 0.95;
  }
  switch (kase.kind) {
    case 'ws-raw':
      return 65;
    case 'fetch-raw':
      return 160;
    case 'tus':
      return 100;
    case 'engine':
      return 60;
    case 'download':
      return kase.reader === 'discard' ? 120 : 35;
  }
}

/** Roughly the seconds one run of a case takes, with its server processes and waits. */
function expectedSeconds(kase: Case, size: number, wanSize: number): number {
  const bytes = kase.wan ? wanSize : size;
  const processes =
    (kase.servers ?? 1) + (kase.kind === 'engine' || kase.kind === 'download' ? 1 : 0);
  // Starting and stopping the processes, the wait for a quiet machine, the engine's connections.
  const overhead = 2 + 0.6 * processes + (kase.wan ? 1 : 0);
  // A download uploads its item first.
  const upload = kase.kind === 'download' ? bytes / MiB / 60 : 0;
  return overhead + upload + bytes / MiB / expectedMiBps(kase);
}

// ---------------------------------------------------------------------------------------------
// The page link: the page asks for a step, runs it and reports back
// ---------------------------------------------------------------------------------------------

/** What the page reports for a step. */
interface PageReport {
  readonly info?: Record<string, unknown>;
  readonly result?: {
    readonly bytes?: number;
    readonly seconds: number;
    readonly heapPeak?: number;
    /** The longest task of 50 ms or more on the page's main thread, and how many (longtask). */
    readonly longestTask?: number;
    readonly longTasks?: number;
    /** The most a 10 ms timer of the page fired late, in ms. */
    readonly maxLagMs?: number;
    /** fetch-hash: the Worker's time to hash the file, and the reads of its stream. */
    readonly hashSeconds?: number;
    readonly hashReads?: number;
    /** Said of the run beside its rate (the downloader: its time after the last part). */
    readonly note?: string;
    readonly sha256?: string;
    readonly servers?: readonly string[];
    readonly profile?: JsProfile;
  };
  readonly error?: string;
}

/** The page's main thread sampled (BENCH_JS_PROFILE=1): self-time share per function. */
interface JsProfile {
  readonly samples?: number;
  readonly top?: readonly [string, number][];
  readonly error?: string;
}

class PageLink {
  #response: ServerResponse | undefined;
  #waiter: { resolve: (r: PageReport) => void; reject: (e: Error) => void } | undefined;
  #early: PageReport | undefined;
  #failure: Error | undefined;
  readonly logs: string[] = [];
  /** Called when the page marks the start or the end of a step's timed part (`POST /mark`). */
  onMark: ((phase: string) => void) | undefined;

  /** A `POST /next` from the page: the report of the last step; answered with the next step. */
  next(report: PageReport, response: ServerResponse): void {
    this.#response = response;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter.resolve(report);
    else this.#early = report;
  }

  /** The page's first report (its `info`), once it has loaded. */
  first(): Promise<PageReport> {
    return this.#wait();
  }

  /** Sends a step to the page and waits for its report. */
  run(step: Record<string, unknown>): Promise<PageReport> {
    const response = this.#response;
    if (!response) throw new Error('the page is not waiting for a step');
    this.#response = undefined;
    response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(step));
    return this.#wait();
  }

  /** Sends `done`: the page stops asking. */
  done(): void {
    this.#response?.writeHead(200, { 'Content-Type': 'application/json' }).end('{"type":"done"}');
    this.#response = undefined;
  }

  /** Fails the step under way (Chromium ended, say). */
  fail(error: Error): void {
    this.#failure ??= error;
    this.#waiter?.reject(error);
    this.#waiter = undefined;
  }

  #wait(): Promise<PageReport> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#early) {
      const r = this.#early;
      this.#early = undefined;
      return Promise.resolve(r);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the page did not answer in ${STEP_TIMEOUT_MS / 1000} s`)),
        STEP_TIMEOUT_MS,
      );
      this.#waiter = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }
}

/** The scripts the page loads that are bundled from `dist/`. */
interface Bundles {
  /** The engine and the downloader, with the codec's and hash-wasm's pieces for `costs`. */
  readonly engine: string;
  /** The codec's CRC-32C and frame encoder and hash-wasm, for the page's Worker. */
  readonly workerLib: string;
  /** Every Worker script of the engine and the downloader, by file name. */
  readonly workers: Record<string, string>;
}

/**
 * The engine (`dist/src/engine/index.js`, as built) in one ES module for the page, with the pieces
 * of its per-byte work (`crc32c` and `encodeDup2Frame` of the codec, hash-wasm's SHA-256) for the
 * page's measure of their costs; the same pieces for the Worker; and each Worker script the engine
 * or the downloader starts (`*worker.js` in `dist/src/`), served next to `/engine.js`, where they
 * start them from (`new URL('./hash-worker.js', import.meta.url)`).
 */
async function bundleAll(): Promise<Bundles> {
  const protocol = JSON.stringify(here('dist/src/protocol/index.js'));
  // The engine's block reader, for the raw senders that read as the engine does.
  const readPieces = JSON.stringify(here('dist/src/engine/read-pieces.js'));
  const engine = await bundle(
    here('bench/browser/engine-entry.js'),
    [
      `export { WsUploaderEngine } from ${JSON.stringify(here('dist/src/engine/index.js'))};`,
      `export { WsDownloader, OpfsItemStore } from ${JSON.stringify(here('dist/src/download/index.js'))};`,
      `export { crc32c, encodeDup2Frame } from ${protocol};`,
      `export { readBlocks } from ${readPieces};`,
      `export { createSHA256 } from 'hash-wasm';`,
    ].join('\n'),
  );
  const workerLib = await bundle(
    here('bench/browser/worker-lib.js'),
    [
      `export { crc32c, encodeDup2Frame, decodeDup2ServerFrame, DATA_HEADER_BYTES, SUBPROTOCOL_DUP_2 } from ${protocol};`,
      `export { readBlocks } from ${readPieces};`,
      `export { createSHA256 } from 'hash-wasm';`,
    ].join('\n'),
  );
  const workers: Record<string, string> = {};
  const scripts = readdirSync(here('dist/src'), { recursive: true, encoding: 'utf8' })
    .filter((path) => path.endsWith('worker.js'))
    .sort();
  for (const path of scripts) {
    const name = basename(path);
    if (workers[name] !== undefined) {
      process.stderr.write(`  two Worker scripts named ${name}: serving the first\n`);
      continue;
    }
    try {
      workers[name] = await bundle(here(join('dist/src', path)));
    } catch (e) {
      process.stderr.write(`  cannot bundle ${path}: ${String(e)}\n`);
    }
  }
  return { engine, workerLib, workers };
}

/** One ES module from an entry file, or from `code` given for an entry that exists only here. */
async function bundle(entry: string, code?: string): Promise<string> {
  const bundle = await rollup({
    input: entry,
    plugins: [
      {
        name: 'bench-entry',
        resolveId: (id) => (code !== undefined && id === entry ? entry : null),
        load: (id) => (code !== undefined && id === entry ? code : null),
      },
      nodeResolve({ browser: true, exportConditions: ['production'] }),
    ],
    onwarn(warning, warn) {
      if (warning.code !== 'THIS_IS_UNDEFINED') warn(warning);
    },
  });
  try {
    const { output } = await bundle.generate({ format: 'es', inlineDynamicImports: true });
    return output[0].code;
  } finally {
    await bundle.close();
  }
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Serves the page, its scripts, and the step exchange, on 127.0.0.1. */
async function servePage(
  link: PageLink,
  { engine, workerLib, workers }: Bundles,
): Promise<{ url: string; close(): void }> {
  const files: Record<string, { type: string; text: () => string }> = {
    '/': { type: 'text/html', text: () => readFileSync(here('bench/browser/index.html'), 'utf8') },
    '/bench.js': {
      type: 'text/javascript',
      text: () => readFileSync(here('bench/browser/bench.js'), 'utf8'),
    },
    '/worker.js': {
      type: 'text/javascript',
      text: () => readFileSync(here('bench/browser/worker.js'), 'utf8'),
    },
    '/engine.js': { type: 'text/javascript', text: () => engine },
    '/worker-lib.js': { type: 'text/javascript', text: () => workerLib },
    ...Object.fromEntries(
      Object.entries(workers).map(([name, code]) => [
        `/${name}`,
        { type: 'text/javascript', text: () => code },
      ]),
    ),
    '/tus.js': {
      type: 'text/javascript',
      text: () => readFileSync(here('node_modules/tus-js-client/dist/tus.min.js'), 'utf8'),
    },
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method === 'POST' && path === '/next') {
      body(req).then(
        (text) => link.next(JSON.parse(text) as PageReport, res),
        () => res.destroy(),
      );
      return;
    }
    if (req.method === 'POST' && path === '/mark') {
      void body(req).then((phase) => {
        link.onMark?.(phase);
        res.writeHead(204).end();
      });
      return;
    }
    if (req.method === 'POST' && path === '/log') {
      void body(req).then((text) => {
        link.logs.push(text);
        process.stderr.write(`  page: ${text}\n`);
        res.writeHead(204).end();
      });
      return;
    }
    const file = files[path];
    if (req.method !== 'GET' || !file) {
      res.writeHead(404).end();
      return;
    }
    res
      .writeHead(200, {
        'Content-Type': file.type,
        'Cache-Control': 'no-store',
        // Lets the page sample itself with the JS Self-Profiling API (BENCH_JS_PROFILE).
        ...(path === '/' ? { 'Document-Policy': 'js-profiling' } : {}),
      })
      .end(file.text());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Chromium: started directly, sampled from /proc
// ---------------------------------------------------------------------------------------------

const CLOCK_TICKS = 100;
/** The machine's CPUs. */
const CPUS = cpus().length;

interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  /** CPU time (user + system), in seconds. */
  readonly cpu: number;
}

function readStat(path: string): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 2).split(' ');
  return {
    pid: Number(text.slice(0, open)),
    comm: text.slice(open + 1, close),
    ppid: Number(fields[1]),
    cpu: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS,
  };
}

/** `root` and every process below it. */
async function processTree(rootPid: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(`/proc/${name}/stat`);
    if (!stat) continue;
    children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat.pid]);
  }
  const tree: number[] = [];
  const visit = (pid: number): void => {
    tree.push(pid);
    for (const c of children.get(pid) ?? []) visit(c);
  };
  visit(rootPid);
  return tree;
}

/** Proportional set size of a process, in bytes (shared pages split between their users). */
function pss(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Chromium's process type (`browser`, `renderer`, `gpu-process`, `utility`, …). */
function processType(pid: number): string {
  try {
    // Chromium rewrites its command line as one string: split on spaces as well.
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]/);
    const type = cmd.find((a) => a.startsWith('--type='))?.slice(7) ?? 'browser';
    const sub = cmd.find((a) => a.startsWith('--utility-sub-type='))?.slice(19);
    return sub ? `${type}:${sub.split('.').slice(-1)[0]}` : type;
  } catch {
    return '?';
  }
}

/** CPU time of every thread of the processes, by `process type / thread name`. */
function threadCpu(pids: readonly number[]): Map<string, number> {
  const cpu = new Map<string, number>();
  for (const pid of pids) {
    const type = processType(pid);
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      const stat = readStat(`/proc/${pid}/task/${tid}/stat`);
      if (!stat) continue;
      const key = `${type}/${stat.comm}`;
      cpu.set(key, (cpu.get(key) ?? 0) + stat.cpu);
    }
  }
  return cpu;
}

/**
 * CPU time of each process, by pid: a process's own count keeps the time of its threads that
 * ended (a Worker terminated at the end of a run), which a sum over its live threads loses.
 */
function processCpu(pids: readonly number[]): Map<number, number> {
  const cpu = new Map<number, number>();
  for (const pid of pids) {
    const stat = readStat(`/proc/${pid}/stat`);
    if (stat) cpu.set(pid, stat.cpu);
  }
  return cpu;
}

/** What Chromium used during a case. */
interface BrowserUse {
  /** Peak of the summed PSS of Chromium's processes, in bytes. */
  readonly pssPeak: number;
  /**
   * Summed PSS of the renderer processes (the page, its Workers and their buffers) at the start of
   * the case and at its peak, in bytes.
   */
  readonly rendererStart: number;
  readonly rendererPeak: number;
  /** CPU time of Chromium's processes, in seconds. */
  readonly cpu: number;
  /** The busiest threads: name and CPU seconds. */
  readonly threads: readonly [string, number][];
}

/** A reading of the renderers' main threads (where the page's JavaScript runs). */
interface MainThreadMark {
  /** `performance.now()` of this process, in ms. */
  readonly at: number;
  /** CPU time of the renderer processes' main threads, in seconds. */
  readonly cpu: number;
  /** CPU time of every thread of Chromium, by `process type / thread name`, in seconds. */
  readonly threads: Map<string, number>;
}

interface BrowserSampler {
  /** Reads the CPU time of the renderers' main threads now. */
  mark(): MainThreadMark;
  /** Stops sampling: what Chromium used since the start. */
  stop(): Promise<BrowserUse>;
}

/** Samples Chromium's processes until `stop` is called. */
async function sampleBrowser(rootPid: number): Promise<BrowserSampler> {
  let pids = await processTree(rootPid);
  const types = new Map<number, string>();
  const typeOf = (pid: number): string => {
    let type = types.get(pid);
    if (type === undefined) types.set(pid, (type = processType(pid)));
    return type;
  };
  const renderers = (): number[] => pids.filter((pid) => typeOf(pid) === 'renderer');
  const before = threadCpu(pids);
  const processesBefore = processCpu(pids);
  let pssPeak = 0;
  let rendererPeak = 0;
  let rendererStart: number | undefined;
  let busy = false;
  let ticks = 0;
  const tick = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      // The process list changes rarely: walking /proc every few seconds is enough.
      if (++ticks % 3 === 0) pids = await processTree(rootPid);
      const renderer = renderers().reduce((sum, pid) => sum + pss(pid), 0);
      rendererStart ??= renderer;
      rendererPeak = Math.max(rendererPeak, renderer);
      pssPeak = Math.max(
        pssPeak,
        pids.reduce((sum, pid) => sum + pss(pid), 0),
      );
    } finally {
      busy = false;
    }
  };
  await tick();
  const timer = setInterval(() => void tick(), SAMPLE_MS);
  return {
    mark: () => ({
      at: performance.now(),
      threads: threadCpu(pids),
      // A process's first thread (its tid is its pid) is its main thread.
      cpu: renderers().reduce(
        (sum, pid) => sum + (readStat(`/proc/${pid}/task/${pid}/stat`)?.cpu ?? 0),
        0,
      ),
    }),
    async stop() {
      clearInterval(timer);
      await tick();
      const used = busiest(before, threadCpu(pids));
      let cpu = 0;
      for (const [pid, c] of processCpu(pids)) cpu += c - (processesBefore.get(pid) ?? 0);
      return {
        pssPeak,
        rendererStart: rendererStart ?? 0,
        rendererPeak,
        cpu,
        threads: used.slice(0, 4),
      };
    },
  };
}

/** CPU time each thread used between two readings of `threadCpu`, the busiest first. */
function busiest(before: Map<string, number>, after: Map<string, number>): [string, number][] {
  const used: [string, number][] = [];
  for (const [key, cpu] of after) used.push([key, cpu - (before.get(key) ?? 0)]);
  return used.sort((a, b) => b[1] - a[1]);
}

interface Browser {
  readonly pid: number;
  close(): Promise<void>;
}

/** Starts Chromium on the page, with a fresh profile in `profile`. */
function startChromium(url: string, profile: string, link: PageLink, logFile: string): Browser {
  const executable = findChromium();
  if (!executable) throw new Error('no Chromium found: set CHROME_PATH');
  const args = [
    ...CHROMIUM_ARGS,
    `--user-data-dir=${profile}`,
    '--no-default-browser-check',
    // performance.memory with exact values instead of coarse buckets.
    '--enable-precise-memory-info',
    // gc() for the page, to start each case's heap measure from a collected heap.
    // BENCH_V8_PROF=<folder>: V8's sampling profiler, one log per isolate (the page, each Worker),
    // for `node --prof-process`.
    process.env.BENCH_V8_PROF
      ? `--js-flags=--expose-gc --prof --logfile=${process.env.BENCH_V8_PROF}/v8-%p.log`
      : '--js-flags=--expose-gc',
    '--disable-renderer-backgrounding',
    '--disable-background-timer-throttling',
    '--disable-backgrounding-occluded-windows',
    ...(process.env.BENCH_CHROMIUM_LOG ? ['--enable-logging=stderr', '--v=0'] : []),
    // BENCH_NETLOG=<file>: Chromium's net log (every request's timeline), for chrome://net-export's viewer.
    ...(process.env.BENCH_NETLOG ? [`--log-net-log=${process.env.BENCH_NETLOG}`] : []),
    url,
  ];
  const child = spawn(executable, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const log: Buffer[] = [];
  child.stderr!.on('data', (chunk: Buffer) => log.push(chunk));
  const exited = once(child, 'exit');
  let closing = false;
  void exited.then(() => {
    void writeFile(logFile, Buffer.concat(log)).catch(() => undefined);
    if (!closing) link.fail(new Error(`Chromium ended (see ${logFile})`));
  });
  return {
    pid: child.pid!,
    async close() {
      closing = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const tree = await processTree(child.pid!);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      // Helpers Chromium left behind (started by it, so ours to end).
      for (const pid of tree.slice(1)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

interface Role {
  readonly child: ChildProcess;
  /** What the process hosts (`upload`, `control`, `sinks`, `proxy`). */
  readonly kind: string;
  readonly urls: Record<string, string>;
  readonly token?: string;
}

interface RoleReport {
  readonly rssStart: number;
  readonly rssPeak: number;
  readonly cpuSeconds: number;
  readonly bytesStored: number;
}

/** Sends a message to a child process and waits for its answer. */
function request<T>(child: ChildProcess, message: Serializable): Promise<T> {
  return new Promise((resolve, reject) => {
    if (!child.connected) {
      reject(new Error('a server process ended'));
      return;
    }
    const onMessage = (answer: T): void => {
      child.off('exit', onExit);
      resolve(answer);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      child.off('message', onMessage);
      reject(new Error(`a server process ended (${signal ?? `exit code ${code}`})`));
    };
    child.once('message', onMessage);
    child.once('exit', onExit);
    child.send(message);
  });
}

let profiled = 0;

/** Starts a server process (`browser-role.mjs` on plain Node) hosting one target. */
async function startRole(start: Record<string, unknown>): Promise<Role> {
  const profile = process.env.BENCH_PROFILE;
  const child = fork(here('bench/browser-role.mjs'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // BENCH_PROFILE=<folder>: a CPU profile of each server process, for Chrome DevTools.
    execArgv: profile
      ? [
          '--cpu-prof',
          `--cpu-prof-dir=${profile}`,
          `--cpu-prof-name=${++profiled}-${start.kind}.cpuprofile`,
        ]
      : [
          // The proxies stand in for a network, which takes no CPU from the machine: a heap
          // made larger at the start saves them most of their full garbage collections (the
          // bytes they hold for the latency count towards the old generation), a third of their
          // CPU during a WAN split.
          ...(start.kind === 'proxy' ? ['--initial-old-space-size=128'] : []),
          ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean),
        ],
    // BENCH_NO_BUFFERUTIL=1: `ws` unmasks in JavaScript, as without the native module.
    env: process.env.BENCH_NO_BUFFERUTIL ? { ...process.env, WS_NO_BUFFER_UTIL: '1' } : process.env,
  });
  try {
    const started = await request<{ urls: Record<string, string>; token?: string }>(child, start);
    return { child, kind: String(start.kind), ...started };
  } catch (e) {
    child.kill();
    throw e;
  }
}

async function stopRole(role: Role): Promise<RoleReport> {
  const exited = once(role.child, 'exit');
  try {
    return await request<RoleReport>(role.child, 'stop');
  } finally {
    const timer = setTimeout(() => role.child.kill('SIGKILL'), 10_000);
    if (role.child.exitCode === null && role.child.signalCode === null) await exited;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------

/** One run of one case. */
interface Run {
  readonly mibps: number;
  readonly seconds: number;
  readonly heapPeak: number | undefined;
  /** The page's main thread during the timed part: longest task (0: none of 50 ms or more). */
  readonly longestTask: number;
  readonly longTasks: number;
  /** The most a 10 ms timer of the page fired late, in ms. */
  readonly maxLagMs: number;
  /** CPU time of the renderers' main threads ÷ the time of the timed part. */
  readonly mainShare: number;
  /** CPU time during the timed part: the whole machine's, Chromium's and the servers'. */
  readonly timedCpu: TimedCpu | undefined;
  /** The busiest threads of Chromium during the timed part: name and CPU seconds. */
  readonly timedThreads: readonly [string, number][] | undefined;
  readonly browser: BrowserUse;
  /** Peak RSS of the busiest server process (the sinks, or the upload servers). */
  readonly serverRssPeak: number;
  readonly serverRssStart: number;
  /** CPU time of the server processes (sinks or upload servers, control server, proxies). */
  readonly serverCpu: number;
  /**
   * CPU time the rest of the machine used meanwhile (all CPUs busy, from /proc/stat, minus
   * Chromium, the servers and this process): other work that competed with the run.
   */
  readonly otherCpu: number;
  readonly hashSeconds?: number | undefined;
  readonly hashReads?: number | undefined;
  readonly profile?: JsProfile | undefined;
  readonly error?: string | undefined;
}

/** A TCP port free on 127.0.0.1 now (for a server whose address must be known before it starts). */
async function freePort(): Promise<number> {
  // Below Linux's ephemeral range (32768 and up): a port the kernel hands to a socket bound to
  // port 0 in the meantime (a proxy's, say) cannot be this one.
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const probe = createNetServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!free) continue;
    await new Promise((resolve) => probe.close(resolve));
    return port;
  }
}

/** Below this many CPUs busy (over a second), the machine counts as quiet. */
const QUIET_CPUS = 0.25;

/**
 * Waits until the machine is quiet (other work done), at most `maxSeconds`.
 * @returns the seconds waited, and whether it was quiet in the end
 */
async function waitForQuiet(maxSeconds: number): Promise<{ waited: number; quiet: boolean }> {
  const start = Date.now();
  for (;;) {
    const before = machineBusy();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const quiet = machineBusy() - before < QUIET_CPUS;
    const waited = (Date.now() - start) / 1000;
    if (quiet || waited >= maxSeconds) return { waited, quiet };
  }
}

/** CPU time spent during a timed part, in seconds. */
interface TimedCpu {
  /** Length of the timed part. */
  readonly seconds: number;
  /** Every CPU of the machine (/proc/stat): Chromium, the servers, this process, the rest. */
  readonly machine: number;
  /** Every thread of Chromium. */
  readonly browser: number;
  /** The server processes (upload servers or sinks, control server, proxies). */
  readonly servers: number;
  /** The same by kind of process (`upload`, `control`, `sinks`, `proxy`). */
  readonly byKind: ReadonlyMap<string, number>;
}

/** The machine's and the server processes' CPU time so far, at a mark of the page. */
interface MachineMark {
  readonly busy: number;
  /** CPU seconds of each server process, by pid. */
  readonly servers: ReadonlyMap<number, number>;
}

function machineMark(serverPids: readonly number[]): MachineMark {
  return { busy: machineBusy(), servers: processCpu(serverPids) };
}

function sumOf(threads: ReadonlyMap<unknown, number>): number {
  let sum = 0;
  for (const cpu of threads.values()) sum += cpu;
  return sum;
}

/** CPU time all CPUs have been busy since boot, in seconds (/proc/stat). */
function machineBusy(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1);
  // user nice system idle iowait irq softirq steal: all but idle and iowait.
  const [user, nice, system, , , irq, softirq, steal] = fields.map(Number);
  return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / CLOCK_TICKS;
}

interface Context {
  readonly link: PageLink;
  readonly browser: Browser;
  readonly dir: string;
  /** The OPFS source files and their sizes: on loopback, and for the WAN rows. */
  readonly source: string;
  readonly size: number;
  readonly wanSource: string;
  readonly wanSize: number;
  /**
   * An item the engine uploads through the run's servers before the timed upload, not timed: the
   * servers start afresh for each run, and a deployment's servers are warm (their code compiled,
   * their memory mapped). Without it, a split over three WAN servers spent a third more of the
   * servers' CPU, most of it touching fresh memory for the first time (page faults, the ws
   * receiver's copies) and compiling. Not in the warm-up round itself.
   */
  readonly warm?: { readonly source: string; readonly size: number };
}

/** The shaping of the WAN's proxies: each proxy is one server's link. */
const WAN_SHAPE = {
  bytesPerSecond: WAN_MIBPS * MiB,
  shareBandwidth: true,
  latencyMs: WAN_LATENCY_MS,
};

/** Puts more servers behind a running proxy role. */
function proxied(proxy: Role, urls: Record<string, string>): Promise<Record<string, string>> {
  return request<{ urls: Record<string, string> }>(proxy.child, { kind: 'proxy', urls }).then(
    (r) => r.urls,
  );
}

async function measure(ctx: Context, kase: Case, label: string): Promise<Run> {
  const dir = join(ctx.dir, label);
  await mkdir(dir, { recursive: true });
  const roles: Role[] = [];
  const uploads: Role[] = [];
  const name = kase.wan ? ctx.wanSource : ctx.source;
  const size = kase.wan ? ctx.wanSize : ctx.size;
  /** The URLs of the servers as the page reaches them: through proxies for the WAN. */
  let reach = async (urls: Record<string, string>): Promise<Record<string, string>> => urls;
  if (kase.wan) {
    let proxy: Role | undefined;
    reach = async (urls) => {
      if (proxy) return proxied(proxy, urls);
      proxy = await startRole({ kind: 'proxy', urls, shape: WAN_SHAPE });
      roles.push(proxy);
      return proxy.urls;
    };
  }
  let step: Record<string, unknown>;
  let sampler: BrowserSampler | undefined;
  try {
    const common = { label, name };
    const rawStep = (urls: Record<string, string>[]): Record<string, unknown> =>
      kase.kind === 'ws-raw'
        ? {
            type: 'ws-raw',
            ...common,
            url: urls[0]!.ws,
            ...(urls.length > 1 ? { urls: urls.map((u) => u.ws) } : {}),
            message: WS_MESSAGE,
            window: kase.acks ? WS_WINDOW : WS_BUFFERED,
            mode: kase.mode,
            acks: kase.acks,
            frame: kase.frame ?? 0,
          }
        : {
            type: 'fetch-raw',
            ...common,
            url: urls[0]!.put,
            ...(urls.length > 1 ? { urls: urls.map((u) => u.put) } : {}),
            hash: kase.hash === true,
          };
    if ((kase.kind === 'fetch-raw' || kase.kind === 'ws-raw') && (kase.servers ?? 1) > 1) {
      // One sink, and one proxy, per part: as many links as the split it is held against.
      const urls: Record<string, string>[] = [];
      for (let i = 0; i < kase.servers!; i++) {
        const sinkDir = join(dir, `sink-${i + 1}`);
        await mkdir(sinkDir, { recursive: true });
        const sinks = await startRole({ kind: 'sinks', dir: sinkDir });
        roles.push(sinks);
        uploads.push(sinks);
        urls.push(await reach(sinks.urls));
      }
      step = rawStep(urls);
    } else if (kase.kind === 'ws-raw' || kase.kind === 'fetch-raw') {
      const sinks = await startRole({ kind: 'sinks', dir });
      roles.push(sinks);
      uploads.push(sinks);
      step = rawStep([await reach(sinks.urls)]);
    } else {
      // The servers of a split link to the control server (as a deployment's do), so one of them
      // computes a split item's digest. Behind the WAN's proxies each advertises its proxy's
      // address to browsers (`publicUrl`) and its own to the other servers (`peerUrl`): the
      // digest's reads go between the servers, not over the browser's links.
      const linked = kase.kind !== 'tus' && (kase.servers ?? 1) > 1;
      const linkedControl = linked
        ? await startRole({
            kind: 'control',
            secret: SECRET,
            maxItemSize: Math.max(size, FULL_SIZE),
            uploadServers: [],
            maxServers: kase.servers,
          })
        : undefined;
      if (linkedControl) roles.push(linkedControl);
      for (let i = 1; i <= (kase.servers ?? 1); i++) {
        // Behind a proxy and linked: the server's port is chosen first, for its proxy's address.
        const port = linkedControl && kase.wan ? await freePort() : undefined;
        const own = `http://127.0.0.1:${port}`;
        const publicUrl =
          port === undefined
            ? undefined
            : (await reach({ http: own, ws: `ws://127.0.0.1:${port}` })).http;
        const role = await startRole({
          kind: 'upload',
          dir: join(dir, `up-${i}`),
          id: `up-${i}`,
          secret: SECRET,
          maxItemSize: Math.max(size, FULL_SIZE),
          ...(port === undefined ? {} : { port, publicUrl, peerUrl: own }),
          ...(linkedControl
            ? {
                controlUrl: linkedControl.urls.control!.replace(
                  /^(wss?:\/\/[^/]+).*$/,
                  '$1/registry',
                ),
              }
            : {}),
        });
        roles.push(role);
        uploads.push(role);
      }
      const servers: { id: string; url: string; httpUrl: string }[] = [];
      for (const [i, u] of linkedControl ? [] : uploads.entries()) {
        const urls = await reach({ ws: u.urls.ws!, http: u.urls.http! });
        servers.push({ id: `up-${i + 1}`, url: urls.ws!, httpUrl: urls.http! });
      }
      if (kase.kind === 'ws-dup2') {
        step = {
          type: 'ws-dup2',
          ...common,
          url: servers[0]!.url,
          token: uploads[0]!.token,
          itemId: `bench-${Date.now()}`,
          message: WS_MESSAGE,
          window: WS_BUFFERED,
          frame: kase.frame,
        };
      } else if (kase.kind === 'tus') {
        step = {
          type: 'tus',
          ...common,
          endpoint: `${servers[0]!.httpUrl}/tus/`,
          token: uploads[0]!.token,
          ...(kase.chunkSize === undefined ? {} : { chunkSize: kase.chunkSize }),
        };
      } else {
        // The control server's planner splits every item into equal shares, one per server.
        const control =
          linkedControl ??
          (await startRole({
            kind: 'control',
            secret: SECRET,
            maxItemSize: Math.max(size, FULL_SIZE),
            uploadServers: servers,
          }));
        if (!linkedControl) roles.push(control);
        const controlUrl = (await reach({ control: control.urls.control! })).control;
        step = {
          type: kase.kind === 'download' ? 'download' : 'engine',
          ...(kase.reader ? { reader: kase.reader } : {}),
          ...(kase.downloadTransport ? { transport: kase.downloadTransport } : {}),
          ...(kase.kind === 'download'
            ? {
                downloadOptions: {
                  ...(kase.downloadIntegrity ? { integrity: kase.downloadIntegrity } : {}),
                  ...DOWNLOAD_OPTIONS,
                },
              }
            : {}),
          ...common,
          ...(kase.kind === 'engine' && ctx.warm ? { warm: ctx.warm.source } : {}),
          controlUrl,
          token: control.token,
          servers: uploads.length,
          options:
            kase.kind === 'download'
              ? { dataWorker: DATA_WORKER, ...ENGINE_OPTIONS }
              : engineOptions(kase),
          profile: process.env.BENCH_JS_PROFILE === '1',
        };
      }
    }
    sampler = await sampleBrowser(ctx.browser.pid);
    const marks = new Map<string, MainThreadMark>();
    const machineMarks = new Map<string, MachineMark>();
    const markWith = sampler;
    const rolePids = roles.flatMap((r) => (r.child.pid === undefined ? [] : [r.child.pid]));
    const roleKinds = new Map(roles.map((r) => [r.child.pid, r.kind]));
    ctx.link.onMark = (phase) => {
      marks.set(phase, markWith.mark());
      machineMarks.set(phase, machineMark(rolePids));
    };
    const busyBefore = machineBusy();
    const ownBefore = process.cpuUsage();
    // A run that hangs (a read of the file that never ends was seen once in 90 runs) fails
    // alone: the page gives it up after this long, and the benchmark goes on.
    const report = await ctx.link.run({ ...step, timeoutMs: RUN_TIMEOUT_MS });
    const busy = machineBusy() - busyBefore;
    const own = process.cpuUsage(ownBefore);
    ctx.link.onMark = undefined;
    const browser = await sampler.stop();
    sampler = undefined;
    const stopped = roles.splice(0);
    const reports = await Promise.all(stopped.map(stopRole));
    // The servers' own reports (a WAN's proxies may have started between them).
    const uploadReports = uploads.map((u) => reports[stopped.indexOf(u)]!);
    const stored = uploadReports.reduce((sum, r) => sum + r.bytesStored, 0);
    const result = report.result;
    const seconds = result?.seconds ?? NaN;
    if (result?.note) process.stderr.write(`(${result.note}) `);
    const serverCpu = reports.reduce((sum, r) => sum + r.cpuSeconds, 0);
    let error = report.error;
    const expected = size + (kase.kind === 'engine' && ctx.warm ? ctx.warm.size : 0);
    if (error === undefined && stored !== expected) {
      error = `the servers stored ${stored} bytes of ${expected}`;
    }
    const start = marks.get('start');
    const end = marks.get('end');
    const machineStart = machineMarks.get('start');
    const machineEnd = machineMarks.get('end');
    return {
      mibps: error === undefined ? size / MiB / seconds : NaN,
      seconds,
      heapPeak: result?.heapPeak,
      longestTask: result?.longestTask ?? NaN,
      longTasks: result?.longTasks ?? NaN,
      maxLagMs: result?.maxLagMs ?? NaN,
      mainShare:
        start && end && end.at > start.at
          ? (end.cpu - start.cpu) / ((end.at - start.at) / 1000)
          : NaN,
      timedThreads: start && end ? busiest(start.threads, end.threads).slice(0, 4) : undefined,
      timedCpu:
        start && end && machineStart && machineEnd && end.at > start.at
          ? {
              seconds: (end.at - start.at) / 1000,
              machine: machineEnd.busy - machineStart.busy,
              browser: sumOf(end.threads) - sumOf(start.threads),
              servers: sumOf(machineEnd.servers) - sumOf(machineStart.servers),
              byKind: [...machineEnd.servers].reduce((byKind, [pid, cpu]) => {
                const kind = roleKinds.get(pid) ?? 'other';
                const used = cpu - (machineStart.servers.get(pid) ?? cpu);
                return byKind.set(kind, (byKind.get(kind) ?? 0) + used);
              }, new Map<string, number>()),
            }
          : undefined,
      browser,
      serverRssPeak: Math.max(...uploadReports.map((r) => r.rssPeak)),
      serverRssStart: Math.max(...uploadReports.map((r) => r.rssStart)),
      serverCpu,
      otherCpu: Math.max(0, busy - browser.cpu - serverCpu - (own.user + own.system) / 1e6),
      hashSeconds: result?.hashSeconds,
      hashReads: result?.hashReads,
      profile: result?.profile,
      error,
    };
  } finally {
    ctx.link.onMark = undefined;
    await sampler?.stop();
    for (const role of roles) role.child.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Table and report
// ---------------------------------------------------------------------------------------------

function median(values: readonly number[]): number {
  const s = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function envNumber(name: string, fallback: number, integer: boolean): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be a positive ${integer ? 'integer' : 'number'}, not ${raw}`);
  }
  return value;
}

function sizeName(bytes: number): string {
  const mib = bytes / MiB;
  return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`;
}

const mib = (bytes: number | undefined): string =>
  bytes === undefined || Number.isNaN(bytes) ? '-' : `${(bytes / MiB).toFixed(0)} MiB`;
const fixed = (v: number, digits: number): string => (Number.isNaN(v) ? '-' : v.toFixed(digits));

/** A Markdown table (also readable as plain text), numbers aligned right. */
function markdownTable(rows: readonly (readonly string[])[], left = 1): string {
  const widths = rows[0]!.map((_, c) => Math.max(3, ...rows.map((r) => r[c]!.length)));
  const line = (r: readonly string[]): string =>
    `| ${r.map((cell, c) => (c < left ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ')} |`;
  const rule = `| ${widths.map((w, c) => (c < left ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

interface Summary {
  readonly kase: Case;
  readonly runs: readonly Run[];
  readonly mibps: number;
  readonly errors: number;
  readonly heapPeak: number;
  readonly serverRssPeak: number;
  readonly longestTask: number;
  readonly longTasks: number;
  readonly maxLagMs: number;
  readonly mainShare: number;
  readonly rendererPeak: number;
  readonly rendererGrowth: number;
  readonly browserPeak: number;
  /** The machine's CPUs busy during the timed part, a share of all of them. */
  readonly machineShare: number;
  /** CPU seconds per 100 MiB during the timed part: Chromium's, and the servers'. */
  readonly browserPer100: number;
  readonly serversPer100: number;
}

/** CPU seconds per 100 MiB a run's timed part used, from one of its {@link TimedCpu} figures. */
function per100(r: Run, cpu: (t: TimedCpu) => number): number {
  const mibs = r.mibps * r.seconds;
  return r.timedCpu && mibs > 0 ? (100 * cpu(r.timedCpu)) / mibs : NaN;
}

function summarize(kase: Case, runs: readonly Run[]): Summary {
  const of = (f: (r: Run) => number | undefined): number => median(runs.map((r) => f(r) ?? NaN));
  return {
    kase,
    runs,
    mibps: of((r) => r.mibps),
    errors: runs.filter((r) => r.error !== undefined).length,
    heapPeak: of((r) => r.heapPeak),
    serverRssPeak: of((r) => r.serverRssPeak),
    longestTask: of((r) => r.longestTask),
    longTasks: of((r) => r.longTasks),
    maxLagMs: of((r) => r.maxLagMs),
    mainShare: of((r) => r.mainShare),
    rendererPeak: of((r) => r.browser.rendererPeak),
    rendererGrowth: of((r) => r.browser.rendererPeak - r.browser.rendererStart),
    browserPeak: of((r) => r.browser.pssPeak),
    machineShare: of((r) =>
      r.timedCpu ? r.timedCpu.machine / (CPUS * r.timedCpu.seconds) : undefined,
    ),
    browserPer100: of((r) => per100(r, (t) => t.browser)),
    serversPer100: of((r) => per100(r, (t) => t.servers)),
  };
}

/** A split's share of the machine at which it is taken to be bound by the machine's CPUs. */
const SATURATED = 0.9;
/**
 * The least share of a split's extra CPU per byte (over the same row to one server) that must be
 * the servers' for the split to be bound by the machine: the rest is the browser's.
 */
const SERVERS_EXTRA_SHARE = 0.8;

/**
 * Why a split that missed its target is bound by this machine, when it is: every CPU was busy, and
 * the CPU it used per byte beyond what one server's row used was mostly (at least
 * {@link SERVERS_EXTRA_SHARE}) the servers', which share the browser's CPUs here (on separate
 * machines they would not). It also gives the rate the CPUs allow at each row's CPU per byte
 * (every CPU busy, browser and servers together), the baseline each row is compared with.
 * @returns the reason, or undefined when the split is not shown to be bound by the machine
 */
function machineLimit(split: Summary, one: Summary): string | undefined {
  if ((split.kase.servers ?? 1) <= 1 || (one.kase.servers ?? 1) !== 1) return undefined;
  const values = [
    split.machineShare,
    split.browserPer100,
    split.serversPer100,
    one.browserPer100,
    one.serversPer100,
  ];
  if (values.some(Number.isNaN)) return undefined;
  if (split.machineShare < SATURATED) return undefined;
  const splitCpu = split.browserPer100 + split.serversPer100;
  const oneCpu = one.browserPer100 + one.serversPer100;
  const extra = splitCpu - oneCpu;
  const serversExtra = split.serversPer100 - one.serversPer100;
  if (!(extra > 0) || serversExtra < SERVERS_EXTRA_SHARE * extra) return undefined;
  // MiB/s the CPUs allow when every one is busy with this much CPU per 100 MiB.
  const bound = (cpuPer100: number): number => (CPUS * 100) / cpuPer100;
  return (
    `the machine's ${CPUS} CPUs were ${fixed(100 * split.machineShare, 0)} % busy; per 100 MiB ` +
    `the browser used ${fixed(split.browserPer100, 2)} s of CPU (one server: ` +
    `${fixed(one.browserPer100, 2)} s) and the servers ${fixed(split.serversPer100, 2)} s ` +
    `(one server: ${fixed(one.serversPer100, 2)} s), so ` +
    (serversExtra >= extra
      ? "all of the extra CPU was the servers'"
      : `${fixed((100 * serversExtra) / extra, 0)} % of the extra CPU was the servers'`) +
    `; at that CPU per byte the ${CPUS} CPUs allow at most ` +
    `${fixed(bound(splitCpu), 0)} MiB/s (one server: ${fixed(bound(oneCpu), 0)} MiB/s), and the ` +
    `split made ${fixed((100 * split.mibps) / bound(splitCpu), 0)} % of it (one server ` +
    `${fixed((100 * one.mibps) / bound(oneCpu), 0)} %): the servers' extra work takes the CPUs ` +
    `the browser needs, as it would not with each server on a machine of its own`
  );
}

/** The row every row of a section is divided by in its `÷` column. */
const SECTION_REFERENCE: Record<Section, string> = {
  upload: 'fetch',
  download: 'get-sync',
  wan: 'wan-fetch',
};

/** Whether a page-and-memory value of an engine row meets its target. */
const PAGE_TARGETS = {
  longestTask: (s: Summary): boolean | undefined =>
    Number.isNaN(s.longTasks) ? undefined : s.longTasks === 0 || s.longestTask < TARGET.longTaskMs,
  mainShare: (s: Summary): boolean | undefined =>
    Number.isNaN(s.mainShare) ? undefined : s.mainShare < TARGET.mainThreadShare,
  heapPeak: (s: Summary): boolean | undefined =>
    Number.isNaN(s.heapPeak) ? undefined : s.heapPeak < TARGET.heapMiB * MiB,
  serverRssPeak: (s: Summary): boolean | undefined =>
    Number.isNaN(s.serverRssPeak) ? undefined : s.serverRssPeak < TARGET.serverRssMiB * MiB,
};

/** The result tables (one per section, and the page and memory), target lines and details. */
function report(
  summaries: readonly Summary[],
  meta: { size: number; wanSize: number; runs: number },
): { tables: string; targets: string; details: string; verdicts: string[] } {
  const by = new Map(summaries.map((s) => [s.kase.key, s]));
  const rate = (key: string): number => by.get(key)?.mibps ?? NaN;
  const measured = (s: Summary): boolean => s.kase.unavailable === undefined && s.runs.length > 0;
  const ratio = (v: number): string => `${fixed(v, 2)}×`;

  // One table per section.
  const titles: Record<Section, string> = {
    upload: `Uploads on loopback: one item of ${sizeName(meta.size)}`,
    download:
      `Downloads on loopback: the item of ${sizeName(meta.size)} uploaded by the engine first ` +
      '(not timed), then read back',
    wan:
      `WAN: every server and sink behind its own proxy, ${WAN_MIBPS} MiB/s and ${WAN_LATENCY_MS} ms ` +
      `each way; one item of ${sizeName(meta.wanSize)}`,
  };
  const tables: string[] = [];
  for (const section of ['upload', 'download', 'wan'] as const) {
    const rows = summaries.filter((s) => s.kase.section === section);
    if (rows.length === 0) continue;
    const reference = SECTION_REFERENCE[section];
    const header = [
      'key',
      'case',
      'MiB/s',
      'runs (MiB/s)',
      'seconds',
      `÷ ${reference}`,
      ...(section === 'wan' ? ['÷ cap'] : []),
      '÷ baseline',
      'browser CPU',
      'server CPU',
      'others CPU',
      'errors',
    ];
    const table: string[][] = [header];
    for (const s of rows) {
      const k = s.kase;
      if (k.unavailable !== undefined) {
        table.push([k.key, k.name, 'n/a', 'not available', ...header.slice(4).map(() => '')]);
        continue;
      }
      const base = k.baseline === undefined ? undefined : by.get(k.baseline);
      table.push([
        k.key,
        k.name,
        fixed(s.mibps, 1),
        s.runs.map((r) => fixed(r.mibps, 0)).join(' / '),
        fixed(median(s.runs.map((r) => r.seconds)), 2),
        ratio(s.mibps / rate(reference)),
        ...(section === 'wan' ? [ratio(s.mibps / WAN_MIBPS)] : []),
        base ? `${ratio(s.mibps / base.mibps)} ${k.baseline}` : '',
        `${fixed(median(s.runs.map((r) => r.browser.cpu)), 1)} s`,
        `${fixed(median(s.runs.map((r) => r.serverCpu)), 1)} s`,
        `${fixed(median(s.runs.map((r) => r.otherCpu)), 1)} s`,
        String(s.errors),
      ]);
    }
    tables.push(`${titles[section]}:\n\n${markdownTable(table, 2)}`);
  }

  // The page and memory of every row; the engine rows' misses marked.
  const pageRows: string[][] = [
    [
      'key',
      'longest task',
      'timer lag',
      'main thread',
      'JS heap peak',
      'renderer mem peak',
      'browser mem peak',
      'server RSS peak',
    ],
  ];
  const missed = (s: Summary, ok: boolean | undefined, text: string): string =>
    s.kase.kind === 'engine' && ok === false ? `${text} MISS` : text;
  for (const s of summaries.filter(measured)) {
    const longest =
      Number.isNaN(s.longTasks) || s.longTasks === 0
        ? Number.isNaN(s.longTasks)
          ? '-'
          : 'none'
        : `${fixed(s.longestTask, 0)} ms (${fixed(s.longTasks, 0)})`;
    pageRows.push([
      s.kase.key,
      missed(s, PAGE_TARGETS.longestTask(s), longest),
      Number.isNaN(s.maxLagMs) ? '-' : `${fixed(s.maxLagMs, 0)} ms`,
      missed(s, PAGE_TARGETS.mainShare(s), `${fixed(100 * s.mainShare, 1)} %`),
      missed(s, PAGE_TARGETS.heapPeak(s), mib(s.heapPeak)),
      `${mib(s.rendererPeak)} (+${mib(s.rendererGrowth)})`,
      mib(s.browserPeak),
      missed(
        s,
        PAGE_TARGETS.serverRssPeak(s),
        `${mib(s.serverRssPeak)}${(s.kase.servers ?? 1) > 1 ? ' (max)' : ''}`,
      ),
    ]);
  }
  if (pageRows.length > 1) {
    tables.push(
      'The page and memory (during the timed part; MISS: an engine row misses its target):\n\n' +
        markdownTable(pageRows),
    );
  }

  // Where the CPU went during the timed part: on two CPUs the servers take what the browser needs.
  const cpuRows: string[][] = [
    ['key', 'MiB/s', 'machine busy', 'browser CPU / 100 MiB', 'servers CPU / 100 MiB'],
  ];
  for (const s of summaries.filter(measured)) {
    if (Number.isNaN(s.machineShare)) continue;
    cpuRows.push([
      s.kase.key,
      fixed(s.mibps, 1),
      `${fixed(100 * s.machineShare, 0)} %`,
      `${fixed(s.browserPer100, 2)} s`,
      `${fixed(s.serversPer100, 2)} s`,
    ]);
  }
  if (cpuRows.length > 1) {
    tables.push(
      `CPU during the timed part (medians; machine busy: all ${CPUS} CPUs, 100 % when every one ` +
        'is busy; the servers: upload servers or sinks, control server and proxies):\n\n' +
        markdownTable(cpuRows),
    );
  }

  // Targets.
  const verdicts: string[] = [];
  const mark = (ok: boolean | undefined): string =>
    ok === undefined ? 'n/a ' : ok ? 'PASS' : 'MISS';
  const check = (text: string, ok: boolean | undefined): void => {
    verdicts.push(`${mark(ok)}  ${text}`);
  };
  const info = (text: string): void => {
    verdicts.push(`info  ${text}`);
  };
  const atLeast = (v: number, min: number): boolean | undefined =>
    Number.isNaN(v) ? undefined : v >= min;
  const fastestOf = (integrity: Integrity): Summary | undefined =>
    summaries
      .filter(
        (s) =>
          s.kase.kind === 'engine' &&
          s.kase.section === 'upload' &&
          s.kase.servers === 1 &&
          s.kase.integrity === integrity &&
          !Number.isNaN(s.mibps),
      )
      .reduce<Summary | undefined>(
        (best, s) => (!best || s.mibps > best.mibps ? s : best),
        undefined,
      );
  const fastest = fastestOf('transport');
  const fastestName = fastest ? fastest.kase.key : 'none';
  // A check is left out when none of its rows was picked (BENCH_CASES).
  const picked = (...keys: (string | undefined)[]): boolean => keys.some((k) => k && by.has(k));
  if (fastest || picked('fetch', 'tus', 'tus-8')) {
    check(
      `engine, transport integrity, fastest transport to one server (${fastestName}) ≥ ` +
        `${TARGET.engineVsFetch}× raw fetch: ${ratio((fastest?.mibps ?? NaN) / rate('fetch'))}`,
      atLeast((fastest?.mibps ?? NaN) / rate('fetch'), TARGET.engineVsFetch),
    );
    for (const key of ['tus', 'tus-8'].filter((k) => picked(k))) {
      check(
        `${fastestName} ahead of ${key} (${by.get(key)?.kase.name ?? key}): ` +
          `${fixed(fastest?.mibps ?? NaN, 1)} vs ${fixed(rate(key), 1)} MiB/s`,
        atLeast((fastest?.mibps ?? NaN) / rate(key), 1.0000001),
      );
    }
  }
  const fastestSha = fastestOf('sha256');
  if (fastestSha || picked('fetch-hash')) {
    check(
      `engine, sha256 integrity, fastest transport to one server ` +
        `(${fastestSha ? fastestSha.kase.key : 'none'}) ≥ ${TARGET.sha256VsCeiling}× raw fetch with ` +
        `a Worker hashing (fetch-hash): ${ratio((fastestSha?.mibps ?? NaN) / rate('fetch-hash'))}`,
      atLeast((fastestSha?.mibps ?? NaN) / rate('fetch-hash'), TARGET.sha256VsCeiling),
    );
  }
  for (const s of summaries) {
    const k = s.kase;
    if (k.target === undefined || k.baseline === undefined || k.unavailable !== undefined) continue;
    const r = s.mibps / rate(k.baseline);
    const what =
      k.target === 1 - SPLIT_NOISE
        ? `not slower than ${k.baseline} (within ${100 * SPLIT_NOISE} %, the spread between runs)`
        : `≥ ${k.target}× ${k.baseline}`;
    const ok = atLeast(r, k.target);
    const base = by.get(k.baseline);
    const limit = ok === false && base ? machineLimit(s, base) : undefined;
    if (limit) verdicts.push(`LIMIT ${k.key} ${what}: ${ratio(r)}; ${limit}`);
    else check(`${k.key} ${what}: ${ratio(r)}`, ok);
  }
  if (by.has('get-sync')) {
    const downloads = ['download', 'download-transport', 'download-dup2', 'download-x2']
      .filter((k) => by.has(k))
      .map((k) => `${k} ${ratio(rate(k) / rate('get-sync'))}`);
    if (downloads.length > 0)
      info(
        `downloads against the raw GET that writes without hashing (get-sync, ` +
          `${fixed(rate('get-sync'), 1)} MiB/s): ${downloads.join(', ')}` +
          (by.has('get-sync-hash')
            ? `; the same GET that also hashes (get-sync-hash) made ${ratio(rate('get-sync-hash') / rate('get-sync'))}`
            : ''),
      );
  }
  const dup2 = by.get('engine-dup2-transport');
  if (dup2 && by.has('ws-buffered')) {
    info(
      `engine-dup2-transport: ${ratio(dup2.mibps / rate('ws-buffered'))} the raw WebSocket ` +
        `sender without per-byte work (ws-buffered, ${fixed(rate('ws-buffered'), 1)} MiB/s)`,
    );
  }
  if (dup2 && by.has('ws-dup2')) {
    info(
      `engine-dup2-transport: ${ratio(dup2.mibps / rate('ws-dup2'))} the raw dup/2 client with ` +
        `the same per-byte work, to the same upload server (ws-dup2, ${fixed(rate('ws-dup2'), 1)} ` +
        `MiB/s), which made ${ratio(rate('ws-dup2') / rate('ws-crc'))} ws-crc`,
    );
  }
  if (picked('wan-ws-x3') && picked('wan-ws')) {
    info(
      `WAN, raw WebSocket senders split over 3 sinks: ${ratio(rate('wan-ws-x3') / rate('wan-ws'))} ` +
        `one (wan-ws-x3, the WebSocket's ceiling for a split; wan-engine-x3 speaks dup/2, which ` +
        `also reads and checksums every byte)`,
    );
  }
  const capped = [
    ['wan-engine', 'engine'],
    ['wan-engine-http', 'engine over HTTP parts'],
    ['wan-ws', 'raw WebSocket'],
    ['wan-fetch', 'raw fetch'],
    ['wan-tus', 'tus-js-client (one PATCH)'],
    ['wan-tus-8', 'tus-js-client (8 MiB chunks)'],
  ].filter(([key]) => picked(key));
  if (capped.length > 0) {
    info(
      `WAN, one server against the cap of ${WAN_MIBPS} MiB/s: ` +
        capped.map(([key, what]) => `${what} ${ratio(rate(key!) / WAN_MIBPS)}`).join(', '),
    );
  }
  const vsTus = [
    ['wan-engine', 'engine to one server'],
    ['wan-engine-x2', 'split over 2 servers'],
    ['wan-engine-x3', 'split over 3 servers'],
    ['wan-engine-http', 'over HTTP parts to one server'],
    ['wan-engine-http-x3', 'over HTTP parts split over 3 servers'],
  ].filter(([key]) => picked(key));
  if (picked('wan-tus-8') && vsTus.length > 0) {
    info(
      'WAN, ÷ tus-js-client with 8 MiB chunks: ' +
        vsTus.map(([key, what]) => `${what} ${ratio(rate(key!) / rate('wan-tus-8'))}`).join(', '),
    );
  }
  // The page and memory, over every engine row.
  const engines = summaries.filter((s) => s.kase.kind === 'engine' && measured(s));
  const worst = (
    value: (s: Summary) => number,
    ok: (s: Summary) => boolean | undefined,
    text: (s: Summary) => string,
    what: string,
  ): void => {
    const rows = engines.filter((s) => !Number.isNaN(value(s)));
    if (rows.length === 0) {
      if (engines.length > 0) check(`${what}: not measured`, undefined);
      return;
    }
    const w = rows.reduce((a, b) => (value(b) > value(a) ? b : a));
    const misses = rows.filter((s) => ok(s) === false).map((s) => s.kase.key);
    check(
      `${what}: worst ${text(w)} (${w.kase.key})` +
        (misses.length > 0 ? `; missed by ${misses.join(', ')}` : ''),
      misses.length === 0,
    );
  };
  worst(
    (s) => (s.longTasks > 0 ? s.longestTask : 0),
    PAGE_TARGETS.longestTask,
    (s) => (s.longTasks > 0 ? `${fixed(s.longestTask, 0)} ms` : 'none of 50 ms or more'),
    `longest main-thread task < ${TARGET.longTaskMs} ms in every engine row`,
  );
  worst(
    (s) => s.mainShare,
    PAGE_TARGETS.mainShare,
    (s) => `${fixed(100 * s.mainShare, 1)} %`,
    `page's main thread busy < ${100 * TARGET.mainThreadShare} % of the upload in every engine row`,
  );
  worst(
    (s) => s.heapPeak,
    PAGE_TARGETS.heapPeak,
    (s) => mib(s.heapPeak),
    `page's peak JS heap < ${TARGET.heapMiB} MiB in every engine row`,
  );
  worst(
    (s) => s.serverRssPeak,
    PAGE_TARGETS.serverRssPeak,
    (s) => mib(s.serverRssPeak),
    `each upload server < ${TARGET.serverRssMiB} MiB RSS in every engine row`,
  );
  const errors = summaries.reduce((n, s) => n + s.errors, 0);
  check(`no errors: ${errors}`, errors === 0);

  // Details: where the CPU went, and the failures.
  const details: string[] = [];
  for (const s of summaries) {
    if (!measured(s)) continue;
    const last = s.runs[s.runs.length - 1]!;
    const wall = last.seconds;
    const threads = (last.timedThreads ?? last.browser.threads)
      .map(([name, cpu]) => `${name} ${fixed(cpu, 1)} s (${fixed((100 * cpu) / wall, 0)} %)`)
      .join(', ');
    details.push(
      `- ${s.kase.key}: ${fixed(wall, 2)} s; busiest Chromium threads: ${threads}; ` +
        `servers ${fixed(last.serverCpu, 1)} s CPU (${fixed((100 * last.serverCpu) / wall, 0)} %)` +
        (last.timedCpu
          ? ` (timed part: ${[...last.timedCpu.byKind]
              .map(([kind, cpu]) => `${kind} ${fixed(cpu, 2)} s`)
              .join(', ')})`
          : '') +
        (last.hashSeconds !== undefined
          ? `; the Worker's SHA-256 took ${fixed(last.hashSeconds, 2)} s of it ` +
            `(${last.hashReads ?? '?'} reads of the file's stream)`
          : ''),
    );
  }
  for (const s of summaries) {
    const profile = s.runs[s.runs.length - 1]?.profile;
    if (!profile) continue;
    details.push(
      `- ${s.kase.key}, the page's main thread sampled every 10 ms (${profile.samples ?? 0} ` +
        `samples${profile.error ? `: ${profile.error}` : ''}), self time:`,
      ...(profile.top ?? []).map(([what, share]) => `  - ${fixed(100 * share, 1)} % ${what}`),
    );
  }
  for (const s of summaries) {
    if (s.kase.unavailable !== undefined)
      details.push(`- ${s.kase.key}: n/a, ${s.kase.unavailable}`);
  }
  const failures = summaries.flatMap((s) =>
    s.runs.filter((r) => r.error !== undefined).map((r) => `- ${s.kase.key}: ${r.error}`),
  );
  if (failures.length > 0) details.push('', 'Failures:', '', ...failures.slice(0, 10));
  return {
    tables: tables.join('\n\n'),
    targets: verdicts.map((v) => `    ${v}`).join('\n'),
    details: details.join('\n'),
    verdicts,
  };
}

const START = '<!-- browser-bench:results:start -->';
const END = '<!-- browser-bench:results:end -->';

/** Replaces the generated part of docs/benchmarks.md (between the markers), or creates it. */
async function writeDoc(section: string): Promise<string> {
  const path = here('docs/benchmarks.md');
  let doc = existsSync(path) ? await readFile(path, 'utf8') : '';
  const block = `${START}\n\n${section.trim()}\n\n${END}`;
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a >= 0 && b > a) doc = doc.slice(0, a) + block + doc.slice(b + END.length);
  else doc = `# Benchmarks\n\n${block}\n${doc}`;
  await writeFile(path, doc);
  return path;
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const scale = envNumber('BENCH_SCALE', 1, false);
  const runs = envNumber('BENCH_RUNS', 3, true);
  const size = Math.floor(FULL_SIZE / scale);
  const wanSize = Math.floor(WAN_FULL_SIZE / scale);
  const only = (process.env.BENCH_CASES ?? '').trim() !== '';
  const cases = selectCases(process.env.BENCH_CASES);
  const idleWait = Number(process.env.BENCH_IDLE_WAIT ?? 15);
  const doc = process.env.BENCH_DOC ?? (scale === 1 && !only ? '1' : '0');

  if (!existsSync(here('dist/src/engine/index.js')) || !existsSync(here('dist/server/index.js'))) {
    throw new Error('the engine and servers are measured as built: run `npm run build:tsc` first');
  }
  const runnable = cases.filter((c) => c.unavailable === undefined);
  const onLoopback = runnable.some((c) => !c.wan);
  const overWan = runnable.some((c) => c.wan);
  const warmSize = Math.min(WARM_SIZE, onLoopback ? size : wanSize, overWan ? wanSize : size);
  const withCosts =
    process.env.BENCH_COSTS !== '0' &&
    runnable.some((c) => c.kind === 'engine' && c.section === 'upload');
  // What the run will take, roughly: the warm-up, the source files, the costs, the runs.
  const expected =
    runnable.reduce((sum, c) => sum + expectedSeconds(c, warmSize, warmSize), 0) +
    (onLoopback ? size / MiB / 150 : 0) +
    (overWan ? wanSize / MiB / 150 : 0) +
    (withCosts ? (6 * Math.min(size, COSTS_BYTES)) / MiB / 60 : 0) +
    runs * runnable.reduce((sum, c) => sum + expectedSeconds(c, size, wanSize), 0) +
    // Each engine upload's untimed item first, through the same servers.
    runs *
      runnable
        .filter((c) => c.kind === 'engine')
        .reduce((sum, c) => sum + expectedSeconds(c, wanSize, wanSize), 0);

  if (process.env.BENCH_LIST === '1') {
    // The cases picked and the time they would take, without running them.
    for (const c of cases) {
      console.log(
        `${c.key.padEnd(26)} ${c.name}` +
          (c.unavailable === undefined
            ? ` (about ${Math.round(expectedSeconds(c, size, wanSize))} s a run)`
            : `: n/a, ${c.unavailable}`),
      );
    }
    console.log(
      `\n${runnable.length} cases, BENCH_RUNS=${runs}, BENCH_SCALE=${scale}: ` +
        `about ${Math.ceil(expected / 60)} minutes on a quiet 2-core machine`,
    );
    return;
  }
  const bundles = await bundleAll();
  const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-browser-bench-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const link = new PageLink();
  const page = await servePage(link, bundles);
  const logFile = join(tmpdir(), 'ws-uploader-browser-bench-chromium.log');
  const browser = startChromium(page.url, join(dir, 'profile'), link, logFile);
  const onSignal = (signal: NodeJS.Signals): void => {
    void browser.close().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const cpu = cpus();
  const machine =
    `${cpu.length} CPU (${cpu[0]?.model.trim() ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ` +
    `Linux ${release()}, Node ${process.version}`;
  const options = [
    process.env.BENCH_ENGINE_OPTIONS ? `engine options ${process.env.BENCH_ENGINE_OPTIONS}` : '',
    process.env.BENCH_WAN_ENGINE_OPTIONS
      ? `WAN engine options ${process.env.BENCH_WAN_ENGINE_OPTIONS}`
      : '',
    process.env.BENCH_DOWNLOAD_OPTIONS
      ? `downloader options ${process.env.BENCH_DOWNLOAD_OPTIONS}`
      : '',
    DATA_WORKER ? '' : 'engine dataWorker off',
  ].filter((o) => o !== '');
  const results = new Map<string, Run[]>();
  let chromium = '?';
  let costs: Record<string, number> = {};
  const loadBefore = loadavg()[0]!;
  const started = performance.now();
  try {
    const hello = await link.first();
    chromium = /Chrome\/[\d.]+/.exec(String(hello.info?.userAgent))?.[0] ?? '?';
    console.log(`ws-uploader browser benchmark: ${machine}, ${chromium}`);
    console.log(
      `${runnable.length} case${runnable.length === 1 ? '' : 's'} (${runnable.map((c) => c.key).join(', ')}); ` +
        `${onLoopback ? `one item of ${sizeName(size)} on loopback` : ''}` +
        `${onLoopback && overWan ? ', ' : ''}` +
        `${overWan ? `one of ${sizeName(wanSize)} over the WAN (${WAN_MIBPS} MiB/s, ${WAN_LATENCY_MS} ms each way)` : ''}` +
        ` (BENCH_SCALE=${scale}), BENCH_RUNS=${runs}; ${options.map((o) => `${o}; `).join('')}` +
        `files in ${dir} (removed afterwards)`,
    );
    console.log(
      `expected time: about ${Math.ceil(expected / 60)} minutes on a quiet 2-core machine\n`,
    );
    const source = async (name: string, bytes: number): Promise<void> => {
      process.stderr.write(`  writing the ${sizeName(bytes)} source file into OPFS … `);
      const r = await link.run({ type: 'source', name, size: bytes });
      if (r.error !== undefined) throw new Error(`cannot write the source file: ${r.error}`);
      process.stderr.write(`${r.result!.seconds.toFixed(1)} s\n`);
    };
    // Warm-up: every case once with a small item, not reported.
    await source('warm.bin', warmSize);
    const warm: Context = {
      link,
      browser,
      dir,
      source: 'warm.bin',
      size: warmSize,
      wanSource: 'warm.bin',
      wanSize: warmSize,
    };
    for (const kase of runnable) {
      process.stderr.write(`  warm-up: ${kase.key} … `);
      const r = await measure(warm, kase, `warm-${kase.key}`);
      process.stderr.write(r.error ?? `${r.mibps.toFixed(1)} MiB/s\n`);
      if (r.error !== undefined) process.stderr.write('\n');
    }
    if (onLoopback) await source('source.bin', size);
    if (overWan) await source('wan.bin', wanSize);
    const warmsServers =
      process.env.BENCH_WARM_SERVERS !== '0' && runnable.some((c) => c.kind === 'engine');
    if (warmsServers) await source('run-warm.bin', wanSize);
    if (withCosts) {
      const measured = await link.run({
        type: 'costs',
        name: 'source.bin',
        bytes: Math.min(size, COSTS_BYTES),
        slice: ENGINE_CHUNK,
      });
      if (measured.error !== undefined) throw new Error(`cannot measure costs: ${measured.error}`);
      costs = measured.result as unknown as Record<string, number>;
    }
    const ctx: Context = {
      link,
      browser,
      dir,
      source: 'source.bin',
      size,
      wanSource: 'wan.bin',
      wanSize,
      ...(warmsServers ? { warm: { source: 'run-warm.bin', size: wanSize } } : {}),
    };
    for (let run = 1; run <= runs; run++) {
      // Cases alternate within each round, so a drift of the machine touches them all alike.
      for (const kase of runnable) {
        if (idleWait > 0) {
          const { waited, quiet } = await waitForQuiet(idleWait);
          if (waited > 1.5) {
            process.stderr.write(
              `  waited ${waited.toFixed(0)} s for other work on the machine` +
                `${quiet ? '' : ', which goes on'}\n`,
            );
          }
        }
        process.stderr.write(`  ${kase.key}, run ${run}/${runs} … `);
        const r = await measure(ctx, kase, `${kase.key}-${run}`);
        process.stderr.write(
          r.error === undefined ? `${r.mibps.toFixed(1)} MiB/s\n` : `failed: ${r.error}\n`,
        );
        results.set(kase.key, [...(results.get(kase.key) ?? []), r]);
      }
    }
    link.done();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await browser.close();
    page.close();
    await rm(dir, { recursive: true, force: true });
  }

  const summaries = cases.map((c) => summarize(c, results.get(c.key) ?? []));
  const out = report(summaries, { size, wanSize, runs });
  const costLines = Object.entries(costs).map(
    ([what, ms]) => `- ${what}: ${ms.toFixed(2)} ms per MiB (${(1000 / ms).toFixed(0)} MiB/s)`,
  );
  // The engine's steps for a dup/2 chunk: those marked so by the page.
  const serial = Object.entries(costs)
    .filter(([what]) => what.includes('(the engine'))
    .reduce((sum, [, ms]) => sum + ms, 0);
  if (costLines.length > 0) {
    costLines.push(
      `- the engine's steps one after the other (sha256 integrity): ${serial.toFixed(2)} ms per MiB ` +
        `(at most ${(1000 / serial).toFixed(0)} MiB/s for one thread, before any sending)`,
    );
  }
  const measuredRuns = summaries.flatMap((x) => x.runs);
  const others =
    measuredRuns.reduce((sum, r) => sum + r.otherCpu, 0) /
    measuredRuns.reduce((sum, r) => sum + (Number.isNaN(r.seconds) ? 0 : r.seconds), 0);
  const minutes = (performance.now() - started) / 60_000;
  const load =
    `Other work on the machine used ${fixed(100 * others, 0)} % of a CPU during the measured ` +
    `runs (the \`others CPU\` column)` +
    (others > 0.1 ? ': it competed with them, the numbers are lower and noisier' : '') +
    `; 1-minute load average ${loadBefore.toFixed(2)} before the benchmark; ` +
    `the benchmark took ${minutes.toFixed(1)} minutes`;
  const legend =
    `medians of ${runs} run${runs > 1 ? 's' : ''}; ÷ baseline: the row's MiB/s ÷ the row it is ` +
    `held to; errors: failed runs`;
  console.log(out.tables);
  console.log(`\n${legend}\n`);
  console.log(`targets:\n${out.targets}\n`);
  console.log(`where the CPU went (last run of each case, during its timed part):\n${out.details}`);
  if (costLines.length > 0) {
    console.log(`\nthe engine's per-byte work on one thread, each alone:\n${costLines.join('\n')}`);
  }
  console.log(`\n${load}`);

  if (doc === '1') {
    const date = new Date().toISOString().slice(0, 10);
    const path = await writeDoc(
      [
        `Run of ${date} on ${machine}, ${chromium}: medians of ${runs} run${runs > 1 ? 's' : ''}` +
          `${scale === 1 ? '' : ` (BENCH_SCALE=${scale})`}` +
          `${process.env.BENCH_NO_BUFFERUTIL ? ', without bufferutil' : ''}` +
          `${options.map((o) => `, ${o}`).join('')}.`,
        '',
        out.tables,
        '',
        `${legend[0]!.toUpperCase()}${legend.slice(1)}.`,
        '',
        'Targets:',
        '',
        out.verdicts.map((v) => `- ${v.replace(/^(\S+)\s+/, '**$1** ')}`).join('\n'),
        '',
        'Where the CPU went (last run of each case, during its timed part; a thread at 100 % keeps ' +
          'one core busy):',
        '',
        out.details,
        ...(costLines.length > 0
          ? [
              '',
              "The engine's per-byte work on the page's main thread, each step alone:",
              '',
              ...costLines,
            ]
          : []),
        '',
        `${load}.`,
      ].join('\n'),
    );
    console.log(`\nwritten to ${path}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
