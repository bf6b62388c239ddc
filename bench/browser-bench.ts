/**
 * Browser benchmark: the engine uploading one large file from Chromium, against what the browser
 * can do at all (a raw WebSocket sender and a raw `fetch` PUT, each to a bare sink) and against
 * tus-js-client, measured in the same run, on loopback, with the bytes written to disk. See
 * bench/README.md and docs/benchmarks.md.
 *
 * This process serves the benchmark page (bench/browser/) on 127.0.0.1, starts Chromium on it
 * directly (no DevTools protocol: a page driven through it sends WebSocket data several times
 * slower) and hands the page one step at a time over HTTP; the page reports each result back the
 * same way. Every case starts fresh server processes (`browser-role.mjs`, hosting the bare sinks
 * or the reference servers as built in `dist/`) that sample their own RSS; this process samples
 * Chromium's memory and CPU from /proc.
 *
 * Environment: BENCH_SCALE (default 1) divides the 500 MiB size, BENCH_RUNS (default 3) sets the
 * runs per case (the table shows medians); more knobs in bench/README.md.
 */
import { fork, spawn, type ChildProcess, type Serializable } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeResolve } from '@rollup/plugin-node-resolve';
import { rollup } from 'rollup';
import { CHROMIUM_ARGS, findChromium } from '../scripts/chromium.mjs';

const MiB = 1024 * 1024;
const SECRET = 'bench-secret-of-at-least-32-bytes-0123456789';
/** The size of the item, divided by BENCH_SCALE. */
const FULL_SIZE = 500 * MiB;
/** The raw WebSocket sender's messages, and the bytes it keeps unacknowledged. */
const WS_MESSAGE = Number(process.env.BENCH_WS_MESSAGE || 4 * MiB);
const WS_WINDOW = Number(process.env.BENCH_WS_WINDOW || 16 * MiB);
/** tus-js-client's chunked mode. */
const TUS_CHUNK = 8 * MiB;
/** The engine's default `chunkSize`: the slices it reads and sends. */
const ENGINE_CHUNK = 512 * 1024;
/** Bytes of the source file the page's measure of the engine's per-byte costs goes over. */
const COSTS_BYTES = 128 * MiB;
/** Size of the warm-up item, sent once through every case before the measured runs. */
const WARM_SIZE = 16 * MiB;
/** Chromium's processes are sampled this often, in ms. */
const SAMPLE_MS = 200;
/** A step the page does not answer within this time fails the benchmark. */
const STEP_TIMEOUT_MS = 600_000;

/** Targets of the issue. */
const TARGET = {
  dup2VsWs: 0.9,
  engineVsFetch: 0.85,
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

interface Case {
  readonly key: string;
  readonly name: string;
  readonly kind: 'ws-raw' | 'fetch-raw' | 'tus' | 'engine' | 'download';
  /** download: the downloader, or one raw `fetch` GET of the whole item (the baseline). */
  readonly reader?: 'downloader' | 'fetch';
  /** download: the downloader's `transport` option (its default reads over dup/2). */
  readonly downloadTransport?: 'http';
  /** Upload servers (tus, engine). */
  readonly servers?: number;
  readonly chunkSize?: number;
  readonly transport?: Transport;
  /** Why the case cannot run: printed in its row instead of numbers. */
  readonly unavailable?: string;
  /** raw WebSocket: how the Worker hands the slices to `send`. */
  readonly mode?: 'buffer' | 'blob';
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

const CASES: readonly Case[] = [
  {
    key: 'ws-buffer',
    name: 'raw WebSocket, Worker, 4 MiB ArrayBuffers',
    kind: 'ws-raw',
    mode: 'buffer',
  },
  { key: 'ws-blob', name: 'raw WebSocket, Worker, 4 MiB Blobs', kind: 'ws-raw', mode: 'blob' },
  { key: 'fetch', name: 'raw fetch PUT of the file', kind: 'fetch-raw' },
  { key: 'tus', name: 'tus-js-client, default (one PATCH)', kind: 'tus', servers: 1 },
  {
    key: 'tus-8',
    name: 'tus-js-client, 8 MiB chunks',
    kind: 'tus',
    servers: 1,
    chunkSize: TUS_CHUNK,
  },
  ...(
    [
      ['dup2', 'dup/2', 1],
      ['dup1', 'dup/1', 1],
      ['http', 'http', 1],
      ['dup2-x2', 'dup/2', 2],
      ['dup2-x3', 'dup/2', 3],
    ] as const
  ).map(([key, transport, servers]): Case => ({
    key,
    name: `engine, ${transport === 'http' ? 'HTTP parts' : transport}, ${servers} server${servers > 1 ? 's' : ''}`,
    kind: 'engine',
    servers,
    transport,
    ...(ENGINE_TRANSPORTS[transport]
      ? {}
      : { unavailable: `the engine does not speak ${transport} yet` }),
  })),
  // Downloads: the item is uploaded first (not timed), then read back into OPFS.
  {
    key: 'get',
    name: 'raw fetch GET of the item into OPFS (download baseline)',
    kind: 'download',
    servers: 1,
    reader: 'fetch',
  },
  {
    key: 'download',
    name: 'downloader, dup/2 READ, 1 server, into OPFS',
    kind: 'download',
    servers: 1,
    reader: 'downloader',
  },
  {
    key: 'download-http',
    name: 'downloader, HTTP Range, 1 server, into OPFS',
    kind: 'download',
    servers: 1,
    reader: 'downloader',
    downloadTransport: 'http',
  },
  {
    key: 'download-x2',
    name: 'downloader, dup/2 READ, 2 servers, into OPFS',
    kind: 'download',
    servers: 2,
    reader: 'downloader',
  },
];

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

/**
 * The engine (`dist/src/engine/index.js`, as built) in one ES module for the page, with the pieces
 * of its per-byte work (`crc32c` and `encodeDup2Frame` of the codec, hash-wasm's SHA-256) for the
 * page's measure of their costs.
 */
async function bundleEngine(): Promise<{ engine: string; hashWorker: string; dataWorker: string }> {
  const entry = here('bench/browser/engine-entry.js');
  const code = [
    `export { WsUploaderEngine } from ${JSON.stringify(here('dist/src/engine/index.js'))};`,
    `export { WsDownloader, OpfsItemStore } from ${JSON.stringify(here('dist/src/download/index.js'))};`,
    `export { crc32c, encodeDup2Frame } from ${JSON.stringify(here('dist/src/protocol/index.js'))};`,
    `export { createSHA256 } from 'hash-wasm';`,
  ].join('\n');
  return {
    engine: await bundle(entry, code),
    // Served at /hash-worker.js, next to /engine.js, where the engine starts it from.
    hashWorker: await bundle(here('dist/src/engine/hash-worker.js')),
    // Served at /data-worker.js, next to /engine.js, where the engine starts it from.
    dataWorker: await bundle(here('dist/src/engine/data-worker.js')),
  };
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
    const { output } = await bundle.generate({ format: 'es' });
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
  { engine, hashWorker, dataWorker }: { engine: string; hashWorker: string; dataWorker: string },
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
    '/hash-worker.js': { type: 'text/javascript', text: () => hashWorker },
    '/data-worker.js': { type: 'text/javascript', text: () => dataWorker },
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

/** What Chromium used during a case. */
interface BrowserUse {
  /** Peak of the summed PSS of Chromium's processes, in bytes. */
  readonly pssPeak: number;
  /** CPU time of Chromium's processes, in seconds. */
  readonly cpu: number;
  /** The busiest threads: name and CPU seconds. */
  readonly threads: readonly [string, number][];
}

/** Samples Chromium's processes until the returned function is called. */
async function sampleBrowser(rootPid: number): Promise<() => Promise<BrowserUse>> {
  let pids = await processTree(rootPid);
  const before = threadCpu(pids);
  let pssPeak = 0;
  let busy = false;
  let ticks = 0;
  const tick = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      // The process list changes rarely: walking /proc once a second is enough.
      if (++ticks % 5 === 0) pids = await processTree(rootPid);
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
  return async () => {
    clearInterval(timer);
    await tick();
    const after = threadCpu(pids);
    const used: [string, number][] = [];
    for (const [key, cpu] of after) used.push([key, cpu - (before.get(key) ?? 0)]);
    used.sort((a, b) => b[1] - a[1]);
    return {
      pssPeak,
      cpu: used.reduce((sum, [, c]) => sum + c, 0),
      threads: used.slice(0, 4),
    };
  };
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
    '--js-flags=--expose-gc',
    '--disable-renderer-backgrounding',
    '--disable-background-timer-throttling',
    '--disable-backgrounding-occluded-windows',
    ...(process.env.BENCH_CHROMIUM_LOG ? ['--enable-logging=stderr', '--v=0'] : []),
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
      : [],
    // BENCH_NO_BUFFERUTIL=1: `ws` unmasks in JavaScript, as without the native module.
    env: process.env.BENCH_NO_BUFFERUTIL ? { ...process.env, WS_NO_BUFFER_UTIL: '1' } : process.env,
  });
  try {
    const started = await request<{ urls: Record<string, string>; token?: string }>(child, start);
    return { child, ...started };
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
  readonly browser: BrowserUse;
  /** Peak RSS of the busiest server process (the sinks, or the upload servers). */
  readonly serverRssPeak: number;
  readonly serverRssStart: number;
  /** CPU time of the server processes (sinks or upload servers and control server). */
  readonly serverCpu: number;
  /**
   * CPU time the rest of the machine used meanwhile (all CPUs busy, from /proc/stat, minus
   * Chromium, the servers and this process): other work that competed with the run.
   */
  readonly otherCpu: number;
  readonly profile?: JsProfile | undefined;
  readonly error?: string | undefined;
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
  readonly source: string;
  readonly size: number;
}

async function measure(ctx: Context, kase: Case, label: string): Promise<Run> {
  const dir = join(ctx.dir, label);
  await mkdir(dir, { recursive: true });
  const roles: Role[] = [];
  const uploads: Role[] = [];
  let step: Record<string, unknown>;
  try {
    const common = { label, name: ctx.source };
    if (kase.kind === 'ws-raw' || kase.kind === 'fetch-raw') {
      const sinks = await startRole({ kind: 'sinks', dir });
      roles.push(sinks);
      uploads.push(sinks);
      step =
        kase.kind === 'ws-raw'
          ? {
              type: 'ws-raw',
              ...common,
              url: sinks.urls.ws,
              message: WS_MESSAGE,
              window: WS_WINDOW,
              mode: kase.mode,
              acks: process.env.BENCH_WS_ACKS !== '0',
            }
          : { type: 'fetch-raw', ...common, url: sinks.urls.put };
    } else {
      for (let i = 1; i <= (kase.servers ?? 1); i++) {
        const role = await startRole({
          kind: 'upload',
          dir: join(dir, `up-${i}`),
          id: `up-${i}`,
          secret: SECRET,
          maxItemSize: Math.max(ctx.size, FULL_SIZE),
        });
        roles.push(role);
        uploads.push(role);
      }
      if (kase.kind === 'tus') {
        step = {
          type: 'tus',
          ...common,
          endpoint: `${uploads[0]!.urls.http}/tus/`,
          token: uploads[0]!.token,
          ...(kase.chunkSize === undefined ? {} : { chunkSize: kase.chunkSize }),
        };
      } else {
        const control = await startRole({
          kind: 'control',
          secret: SECRET,
          maxItemSize: Math.max(ctx.size, FULL_SIZE),
          uploadServers: uploads.map((u, i) => ({
            id: `up-${i + 1}`,
            url: u.urls.ws,
            httpUrl: u.urls.http,
          })),
        });
        roles.push(control);
        step = {
          type: kase.kind === 'download' ? 'download' : 'engine',
          ...(kase.reader ? { reader: kase.reader } : {}),
          ...(kase.downloadTransport ? { transport: kase.downloadTransport } : {}),
          ...common,
          controlUrl: control.urls.control,
          token: control.token,
          servers: uploads.length,
          options: { ...ENGINE_OPTIONS, ...ENGINE_TRANSPORTS[kase.transport!] },
          profile: process.env.BENCH_JS_PROFILE === '1',
        };
      }
    }
    const sampler = await sampleBrowser(ctx.browser.pid);
    const busyBefore = machineBusy();
    const ownBefore = process.cpuUsage();
    const report = await ctx.link.run(step);
    const busy = machineBusy() - busyBefore;
    const own = process.cpuUsage(ownBefore);
    const browser = await sampler();
    const reports = await Promise.all(roles.splice(0).map(stopRole));
    const uploadReports = reports.slice(0, uploads.length);
    const stored = uploadReports.reduce((sum, r) => sum + r.bytesStored, 0);
    const seconds = report.result?.seconds ?? NaN;
    const serverCpu = reports.reduce((sum, r) => sum + r.cpuSeconds, 0);
    let error = report.error;
    if (error === undefined && stored !== ctx.size) {
      error = `the servers stored ${stored} bytes of ${ctx.size}`;
    }
    return {
      mibps: error === undefined ? ctx.size / MiB / seconds : NaN,
      seconds,
      heapPeak: report.result?.heapPeak,
      browser,
      serverRssPeak: Math.max(...uploadReports.map((r) => r.rssPeak)),
      serverRssStart: Math.max(...uploadReports.map((r) => r.rssStart)),
      serverCpu,
      otherCpu: Math.max(0, busy - browser.cpu - serverCpu - (own.user + own.system) / 1e6),
      profile: report.result?.profile,
      error,
    };
  } finally {
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
}

function summarize(kase: Case, runs: readonly Run[]): Summary {
  return {
    kase,
    runs,
    mibps: median(runs.map((r) => r.mibps)),
    errors: runs.filter((r) => r.error !== undefined).length,
    heapPeak: median(runs.map((r) => r.heapPeak ?? NaN)),
    serverRssPeak: median(runs.map((r) => r.serverRssPeak)),
  };
}

/** The result table, the target lines and the details, as Markdown. */
function report(
  summaries: readonly Summary[],
  meta: { size: number; runs: number },
): { table: string; targets: string; details: string; verdicts: string[] } {
  const by = new Map(summaries.map((s) => [s.kase.key, s]));
  const wsBase = Math.max(by.get('ws-buffer')?.mibps ?? NaN, by.get('ws-blob')?.mibps ?? NaN);
  const wsBaseKey =
    (by.get('ws-blob')?.mibps ?? -1) > (by.get('ws-buffer')?.mibps ?? -1) ? 'ws-blob' : 'ws-buffer';
  const fetchBase = by.get('fetch')?.mibps ?? NaN;
  const rows: string[][] = [
    [
      'case',
      'MiB/s',
      'runs (MiB/s)',
      'seconds',
      '÷ raw WS',
      '÷ raw fetch',
      'JS heap peak',
      'browser mem peak',
      'server RSS peak',
      'browser CPU',
      'server CPU',
      'others CPU',
      'errors',
    ],
  ];
  for (const s of summaries) {
    const k = s.kase;
    if (k.unavailable !== undefined) {
      rows.push([k.name, 'n/a', 'not available', '', '', '', '', '', '', '', '', '', '']);
      continue;
    }
    const name =
      k.key === wsBaseKey
        ? `${k.name} (baseline)`
        : k.key === 'fetch'
          ? `${k.name} (baseline)`
          : k.name;
    rows.push([
      name,
      fixed(s.mibps, 1),
      s.runs.map((r) => fixed(r.mibps, 0)).join(' / '),
      fixed(median(s.runs.map((r) => r.seconds)), 2),
      `${fixed(s.mibps / wsBase, 2)}×`,
      `${fixed(s.mibps / fetchBase, 2)}×`,
      mib(s.heapPeak),
      mib(median(s.runs.map((r) => r.browser.pssPeak))),
      `${mib(s.serverRssPeak)}${(k.servers ?? 1) > 1 ? ' (max)' : ''}`,
      `${fixed(median(s.runs.map((r) => r.browser.cpu)), 1)} s`,
      `${fixed(median(s.runs.map((r) => r.serverCpu)), 1)} s`,
      `${fixed(median(s.runs.map((r) => r.otherCpu)), 1)} s`,
      String(s.errors),
    ]);
  }

  // Targets.
  const verdicts: string[] = [];
  const mark = (ok: boolean | undefined): string =>
    ok === undefined ? 'n/a ' : ok ? 'PASS' : 'WARN';
  const check = (text: string, ok: boolean | undefined): void => {
    verdicts.push(`${mark(ok)}  ${text}`);
  };
  const ok = (v: number, min: number): boolean | undefined =>
    Number.isNaN(v) ? undefined : v >= min;
  const dup2 = by.get('dup2');
  check(
    `engine dup/2 ≥ ${TARGET.dup2VsWs} × raw WebSocket: ${fixed((dup2?.mibps ?? NaN) / wsBase, 2)}×`,
    ok((dup2?.mibps ?? NaN) / wsBase, TARGET.dup2VsWs),
  );
  const oneServer = summaries.filter(
    (s) => s.kase.kind === 'engine' && s.kase.servers === 1 && s.kase.unavailable === undefined,
  );
  const fastest = oneServer.reduce<Summary | undefined>(
    (best, s) => (!best || s.mibps > best.mibps ? s : best),
    undefined,
  );
  const fastestName = fastest ? fastest.kase.transport! : 'none';
  check(
    `engine on its fastest transport (${fastestName}) ≥ ${TARGET.engineVsFetch} × raw fetch: ` +
      `${fixed((fastest?.mibps ?? NaN) / fetchBase, 2)}×`,
    ok((fastest?.mibps ?? NaN) / fetchBase, TARGET.engineVsFetch),
  );
  for (const key of ['tus', 'tus-8']) {
    const peer = by.get(key);
    check(
      `engine (${fastestName}) ahead of ${peer?.kase.name ?? key}: ` +
        `${fixed(fastest?.mibps ?? NaN, 1)} vs ${fixed(peer?.mibps ?? NaN, 1)} MiB/s`,
      ok((fastest?.mibps ?? NaN) / (peer?.mibps ?? NaN), 1.0000001),
    );
  }
  for (const key of ['dup2-x2', 'dup2-x3']) {
    const split = by.get(key);
    check(
      `${split?.kase.name ?? key} not slower than one server (within ${100 * SPLIT_NOISE} %, ` +
        `the spread between runs): ` +
        `${fixed((split?.mibps ?? NaN) / (dup2?.mibps ?? NaN), 2)}× of dup/2 to one server`,
      ok((split?.mibps ?? NaN) / (dup2?.mibps ?? NaN), 1 - SPLIT_NOISE),
    );
  }
  const get = by.get('get');
  for (const key of ['download', 'download-http', 'download-x2']) {
    const down = by.get(key);
    if (!down || !get) continue;
    verdicts.push(
      `info  ${down.kase.name}: ${fixed(down.mibps, 1)} MiB/s, ` +
        `${fixed(down.mibps / get.mibps, 2)}× the raw fetch GET (${fixed(get.mibps, 1)} MiB/s); ` +
        `JS heap peak ${mib(down.heapPeak)}`,
    );
  }
  const engines = summaries.filter((s) => s.kase.kind === 'engine' && !s.kase.unavailable);
  const heap = engines.length > 0 ? Math.max(...engines.map((s) => s.heapPeak)) : NaN;
  check(
    `engine peak JS heap < ${TARGET.heapMiB} MiB: ${mib(heap)} (largest over the engine cases)`,
    Number.isNaN(heap) ? undefined : heap < TARGET.heapMiB * MiB,
  );
  const rss = engines.length > 0 ? Math.max(...engines.map((s) => s.serverRssPeak)) : NaN;
  check(
    `each upload server < ${TARGET.serverRssMiB} MiB RSS for a ${sizeName(meta.size)} item: ` +
      `${mib(rss)} (largest over the engine cases)`,
    Number.isNaN(rss) ? undefined : rss < TARGET.serverRssMiB * MiB,
  );
  const errors = summaries.reduce((n, s) => n + s.errors, 0);
  check(`no errors: ${errors}`, errors === 0);

  // Details: where the CPU went, and the failures.
  const details: string[] = [];
  for (const s of summaries) {
    if (s.kase.unavailable !== undefined || s.runs.length === 0) continue;
    const last = s.runs[s.runs.length - 1]!;
    const wall = last.seconds;
    const threads = last.browser.threads
      .map(([name, cpu]) => `${name} ${fixed(cpu, 1)} s (${fixed((100 * cpu) / wall, 0)} %)`)
      .join(', ');
    details.push(
      `- ${s.kase.name}: ${fixed(wall, 2)} s; busiest Chromium threads: ${threads}; ` +
        `servers ${fixed(last.serverCpu, 1)} s CPU (${fixed((100 * last.serverCpu) / wall, 0)} %)`,
    );
  }
  for (const s of summaries) {
    const profile = s.runs[s.runs.length - 1]?.profile;
    if (!profile) continue;
    details.push(
      `- ${s.kase.name}, the page's main thread sampled every 10 ms (${profile.samples ?? 0} ` +
        `samples${profile.error ? `: ${profile.error}` : ''}), self time:`,
      ...(profile.top ?? []).map(([what, share]) => `  - ${fixed(100 * share, 1)} % ${what}`),
    );
  }
  for (const s of summaries) {
    if (s.kase.unavailable !== undefined)
      details.push(`- ${s.kase.name}: n/a, ${s.kase.unavailable}`);
  }
  const failures = summaries.flatMap((s) =>
    s.runs.filter((r) => r.error !== undefined).map((r) => `- ${s.kase.name}: ${r.error}`),
  );
  if (failures.length > 0) details.push('', 'Failures:', '', ...failures.slice(0, 10));
  return {
    table: markdownTable(rows),
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
  const only = process.env.BENCH_CASES?.split(',').map((s) => s.trim());
  const cases = CASES.filter((c) => !only || only.includes(c.key));
  const idleWait = Number(process.env.BENCH_IDLE_WAIT ?? 15);
  const doc = process.env.BENCH_DOC ?? (scale === 1 && !only ? '1' : '0');

  if (!existsSync(here('dist/src/engine/index.js')) || !existsSync(here('dist/server/index.js'))) {
    throw new Error('the engine and servers are measured as built: run `npm run build:tsc` first');
  }
  const engine = await bundleEngine();
  const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-browser-bench-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const link = new PageLink();
  const page = await servePage(link, engine);
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
      `one item of ${sizeName(size)} (BENCH_SCALE=${scale}), BENCH_RUNS=${runs}; loopback; ` +
        `${process.env.BENCH_ENGINE_OPTIONS ? `engine options ${process.env.BENCH_ENGINE_OPTIONS}; ` : ''}` +
        `files in ${dir} (removed afterwards)\n`,
    );
    const source = async (name: string, bytes: number): Promise<void> => {
      process.stderr.write(`  writing the ${sizeName(bytes)} source file into OPFS … `);
      const r = await link.run({ type: 'source', name, size: bytes });
      if (r.error !== undefined) throw new Error(`cannot write the source file: ${r.error}`);
      process.stderr.write(`${r.result!.seconds.toFixed(1)} s\n`);
    };
    const runnable = cases.filter((c) => c.unavailable === undefined);
    // Warm-up: every case once with a small item, not reported.
    await source('warm.bin', Math.min(WARM_SIZE, size));
    for (const kase of runnable) {
      process.stderr.write(`  warm-up: ${kase.name} … `);
      const ctx = { link, browser, dir, source: 'warm.bin', size: Math.min(WARM_SIZE, size) };
      const r = await measure(ctx, kase, `warm-${kase.key}`);
      process.stderr.write(r.error ?? `${r.mibps.toFixed(1)} MiB/s\n`);
      if (r.error !== undefined) process.stderr.write('\n');
    }
    await source('source.bin', size);
    const measured = await link.run({
      type: 'costs',
      name: 'source.bin',
      bytes: Math.min(size, COSTS_BYTES),
      slice: ENGINE_CHUNK,
    });
    if (measured.error !== undefined) throw new Error(`cannot measure costs: ${measured.error}`);
    costs = measured.result as unknown as Record<string, number>;
    const ctx = { link, browser, dir, source: 'source.bin', size };
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
        process.stderr.write(`  ${kase.name}, run ${run}/${runs} … `);
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
  const out = report(summaries, { size, runs });
  const costLines = Object.entries(costs).map(
    ([what, ms]) => `- ${what}: ${ms.toFixed(2)} ms per MiB (${(1000 / ms).toFixed(0)} MiB/s)`,
  );
  const serial = Object.entries(costs)
    .filter(([what]) => !what.startsWith('read 4 MiB') && !what.includes('comparison'))
    .reduce((sum, [, ms]) => sum + ms, 0);
  if (costLines.length > 0) {
    costLines.push(
      `- one after the other, as the engine does them per chunk: ${serial.toFixed(2)} ms per MiB ` +
        `(at most ${(1000 / serial).toFixed(0)} MiB/s for one main thread, before any sending)`,
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
  console.log(out.table);
  console.log(
    `\nmedians of ${runs} run${runs > 1 ? 's' : ''}; ratios to the faster raw WebSocket row and ` +
      `to the raw fetch row; errors: failed runs\n`,
  );
  console.log(`targets:\n${out.targets}\n`);
  console.log(out.details);
  console.log(
    `\nthe engine's per-byte work on the page's main thread, each alone:\n${costLines.join('\n')}`,
  );
  console.log(`\n${load}`);

  if (doc === '1') {
    const date = new Date().toISOString().slice(0, 10);
    const path = await writeDoc(
      [
        `Run of ${date} on ${machine}, ${chromium}: one item of ${sizeName(size)}` +
          `${scale === 1 ? '' : ` (BENCH_SCALE=${scale})`}, medians of ${runs} run${runs > 1 ? 's' : ''}` +
          `${process.env.BENCH_NO_BUFFERUTIL ? ', without bufferutil' : ''}` +
          `${process.env.BENCH_ENGINE_OPTIONS ? `, engine options ${process.env.BENCH_ENGINE_OPTIONS}` : ''}.`,
        '',
        out.table,
        '',
        'Targets:',
        '',
        out.verdicts.map((v) => `- ${v.replace(/^(\S+)\s+/, '**$1** ')}`).join('\n'),
        '',
        'Where the CPU went (last run of each case; a thread at 100 % keeps one core busy):',
        '',
        out.details,
        '',
        "The engine's per-byte work on the page's main thread, each step alone:",
        '',
        ...costLines,
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
