/**
 * Server benchmark: throughput, memory and acknowledgement latency of the reference upload server
 * (dup/2, durability `fsync` and `write`) against a bare WebSocket-to-file sink measured in the same
 * run, on loopback, with the bytes written to a temporary folder. See bench/README.md.
 *
 * Three roles, all in this file: the benchmark process runs the cases and prints the table; each run
 * starts a fresh server process (`--server`) that hosts the target in-process and samples its own
 * RSS; one client process (`--client`) runs the load, so its buffers are not counted.
 *
 * Environment: BENCH_SCALE (default 1) divides the sizes, BENCH_RUNS (default 3) sets the runs per
 * case and target (the table shows medians).
 */
import { fork, type ChildProcess, type Serializable } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { secretKey, signToken, uploadAudience } from '../server/tokens.js';
import {
  crc32c,
  DATA_HEADER_BYTES,
  decodeDup2ServerFrame,
  DEFAULT_MAX_CHUNK,
  DEFAULT_MAX_ITEM_SIZE,
  DEFAULT_WINDOW,
  encodeDup2Frame,
  FRAME,
  SUBPROTOCOL_DUP_2,
  type Dup2ServerFrame,
} from '../src/protocol/index.js';

const MiB = 1024 * 1024;
/** DATA payload the clients send (the reference server's default `maxChunk`). */
const CHUNK = DEFAULT_MAX_CHUNK;
/** Bytes in flight per connection for the sink client: the reference server's default window. */
const SINK_WINDOW = DEFAULT_WINDOW;
/** A client that hears nothing for this long fails. */
const STALL_MS = 60_000;
/** Targets of the issue. */
const MIN_RATIO = 0.8;
const MAX_RSS_MIB = 150;

const SECRET = 'bench-secret-of-at-least-32-bytes-0123456789';
const SERVER_ID = 'bench-1';
/** Upload id the dup/2 client binds its item to. */
const UPLOAD_ID = 1;

// ---------------------------------------------------------------------------------------------
// Messages between the benchmark process and the client process
// ---------------------------------------------------------------------------------------------

/** What the client process runs: `clients` connections, each sending one item of `size` bytes. */
interface Job {
  readonly kind: 'sink' | 'dup2';
  readonly url: string;
  /** dup/2: one upload token per client. */
  readonly tokens: readonly string[];
  readonly clients: number;
  readonly size: number;
}

/** What one job measured, as seen by the clients. */
interface Outcome {
  /** Bytes acknowledged, over all clients. */
  readonly bytes: number;
  /** From the first connection attempt to the last client done (last ACK, or COMPLETE for dup/2). */
  readonly seconds: number;
  /** Acknowledgement latency percentiles, in ms (time from sending a DATA to receiving its ACK). */
  readonly ackP50?: number | undefined;
  readonly ackP99?: number | undefined;
  /** Median time from FINISH to COMPLETE over the clients, in ms (dup/2 only). */
  readonly finishP50?: number | undefined;
  readonly errorFrames: number;
  /** Clients that failed for another reason than an ERROR frame (refused, closed, stalled). */
  readonly failedClients: number;
  /** The first few failure reasons. */
  readonly failures: readonly string[];
  /** A protocol error: the server sent something a dup/2 server must not send. */
  readonly fatal?: string | undefined;
}

// ---------------------------------------------------------------------------------------------
// Client process
// ---------------------------------------------------------------------------------------------

/** Distinct payload starts in the random pool; their CRC-32Cs are computed once. */
const VARIANTS = 16;
const VARIANT_STEP = 64 * 1024;

/** Payloads cut from one random buffer, so that generating data costs (almost) nothing. */
class Source {
  readonly #pool = new Uint8Array(randomBytes(CHUNK + (VARIANTS - 1) * VARIANT_STEP));
  readonly #crcs = new Map<number, number>();
  readonly #digests = new Map<string, Uint8Array>();

  /** Which variant chunk `index` of client `client` starts at. */
  static #variant(client: number, index: number): number {
    return (index * 7 + client * 3) % VARIANTS;
  }

  /** The payload of chunk `index` of client `client`, `length` bytes, and its CRC-32C. */
  slice(client: number, index: number, length: number): { payload: Uint8Array; crc: number } {
    const variant = Source.#variant(client, index);
    const start = variant * VARIANT_STEP;
    const payload = this.#pool.subarray(start, start + length);
    if (length !== CHUNK) return { payload, crc: crc32c(payload) };
    let crc = this.#crcs.get(variant);
    if (crc === undefined) {
      crc = crc32c(payload);
      this.#crcs.set(variant, crc);
    }
    return { payload, crc };
  }

  /**
   * The SHA-256 of the item client `client` sends: `size` bytes in chunks of `chunk`. Items that
   * start at the same variant are the same, so each is hashed once; the benchmark asks for every
   * client's digest before it starts the clock, so hashing is not part of what it measures.
   */
  digest(client: number, size: number, chunk: number): Uint8Array {
    const key = `${Source.#variant(client, 0)}/${size}/${chunk}`;
    let digest = this.#digests.get(key);
    if (!digest) {
      const hash = createHash('sha256');
      for (let offset = 0; offset < size; offset += chunk) {
        hash.update(this.slice(client, offset / chunk, Math.min(chunk, size - offset)).payload);
      }
      digest = new Uint8Array(hash.digest());
      this.#digests.set(key, digest);
    }
    return digest;
  }
}

/** Counters of one job, shared by its clients. */
class JobStats {
  readonly latencies: number[] = [];
  readonly finishes: number[] = [];
  readonly failures: string[] = [];
  readonly aborts = new Set<() => void>();
  readonly sockets: WebSocket[] = [];
  bytes = 0;
  errorFrames = 0;
  failedClients = 0;
  fatal: string | undefined;

  fail(reason: string, fromErrorFrame: boolean): void {
    if (fromErrorFrame) this.errorFrames++;
    else this.failedClients++;
    if (this.failures.length < 5) this.failures.push(reason);
  }

  protocolError(reason: string): void {
    this.fatal ??= reason;
    for (const abort of [...this.aborts]) abort();
  }
}

/** An all-zero WebSocket mask: the client sends its buffers as they are, without a masked copy. */
const zeroMask = (mask: Buffer): void => void mask.fill(0);

/** The bytes one client sends, chunk by chunk, within its window. */
class Stream {
  next = 0;
  inFlight = 0;
  acked = 0;
  chunk = CHUNK;
  window: number;

  constructor(
    readonly client: number,
    readonly size: number,
    readonly source: Source,
    window: number,
  ) {
    this.window = window;
  }

  /** The item's SHA-256 (computed once per distinct item, see {@link Source.digest}). */
  get digest(): Uint8Array {
    return this.source.digest(this.client, this.size, this.chunk);
  }

  /**
   * The next DATA frame when it fits in the window.
   * `frame` lives in a pooled buffer: hand it back with `release` once the socket has written it.
   */
  take(): { offset: number; length: number; frame: Buffer; release: () => void } | undefined {
    if (this.next >= this.size) return undefined;
    const length = Math.min(this.chunk, this.size - this.next);
    if (this.inFlight > 0 && this.inFlight + length > this.window) return undefined;
    const offset = this.next;
    const { payload, crc } = this.source.slice(this.client, offset / this.chunk, length);
    const buffer = framePool.pop() ?? Buffer.allocUnsafeSlow(DATA_HEADER_BYTES + CHUNK);
    const frame = dataFrame(buffer, offset, crc, payload);
    this.next += length;
    this.inFlight += length;
    return { offset, length, frame, release: () => void framePool.push(buffer) };
  }
}

/**
 * Buffers of DATA frames, reused once written: a fresh 1 MiB allocation per frame costs more than
 * the copy into a buffer whose pages are already mapped.
 */
const framePool: Buffer[] = [];

/** Writes a DATA frame (layout of docs/protocol.md) into `target`; checked against the codec. */
function dataFrame(target: Buffer, offset: number, crc: number, payload: Uint8Array): Buffer {
  target[0] = FRAME.DATA;
  target.writeUInt32BE(UPLOAD_ID, 1);
  target.writeUInt32BE(Math.floor(offset / 0x1_0000_0000), 5);
  target.writeUInt32BE(offset >>> 0, 9);
  target.writeUInt32BE(crc, 13);
  target.set(payload, DATA_HEADER_BYTES);
  return target.subarray(0, DATA_HEADER_BYTES + payload.length);
}

/** Fails when {@link dataFrame} and the codec disagree. */
function checkDataFrame(): void {
  const payload = new Uint8Array([1, 2, 3]);
  const frame = {
    type: 'data',
    uploadId: UPLOAD_ID,
    offset: 2 ** 32 + 5,
    crc32c: crc32c(payload),
    payload,
  } as const;
  const mine = dataFrame(Buffer.alloc(DATA_HEADER_BYTES + 3), frame.offset, frame.crc32c, payload);
  if (Buffer.compare(mine, encodeDup2Frame(frame)) !== 0) {
    throw new Error('the benchmark encodes DATA frames unlike the codec');
  }
}

/**
 * Runs one client until it is done or has failed. `setup` gives the handlers of the connection;
 * they call `end()` when the client is done, `end(reason)` when it failed.
 */
function runClient(
  stats: JobStats,
  url: string,
  protocol: string | undefined,
  setup: (
    ws: WebSocket,
    end: (failure?: string, fromErrorFrame?: boolean) => void,
  ) => {
    onOpen: () => void;
    onMessage: (data: Buffer, isBinary: boolean) => void;
  },
): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocol === undefined ? [] : [protocol], {
      perMessageDeflate: false,
      generateMask: zeroMask,
    });
    stats.sockets.push(ws);
    let ended = false;
    const stall = setTimeout(() => end(`no reply for ${STALL_MS / 1000} s`), STALL_MS);
    const end = (failure?: string, fromErrorFrame = false): void => {
      if (ended) return;
      ended = true;
      clearTimeout(stall);
      stats.aborts.delete(abort);
      if (failure !== undefined) {
        stats.fail(failure, fromErrorFrame);
        ws.terminate();
      } else {
        ws.close(1000);
      }
      resolve();
    };
    const abort = (): void => {
      if (ended) return;
      ended = true;
      clearTimeout(stall);
      ws.terminate();
      resolve();
    };
    stats.aborts.add(abort);
    const handlers = setup(ws, end);
    ws.on('open', handlers.onOpen);
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      if (ended) return;
      stall.refresh();
      handlers.onMessage(data as Buffer, isBinary);
    });
    ws.on('error', (e) => end(`connection error: ${e.message}`));
    ws.on('close', (code, reason) => end(`connection closed: ${code} ${reason.toString()}`));
  });
}

/** A client of the bare sink: DATA frames within the window, one tiny reply per message. */
function sinkClient(job: Job, client: number, source: Source, stats: JobStats): Promise<void> {
  const stream = new Stream(client, job.size, source, SINK_WINDOW);
  const sent: { at: number; length: number }[] = [];
  return runClient(stats, job.url, undefined, (ws, end) => {
    const pump = (): void => {
      for (let data = stream.take(); data; data = stream.take()) {
        sent.push({ at: performance.now(), length: data.length });
        ws.send(data.frame, data.release);
      }
    };
    return {
      onOpen: pump,
      onMessage: () => {
        const first = sent.shift();
        if (!first) {
          stats.protocolError('the sink acknowledged more messages than were sent');
          return;
        }
        stats.latencies.push(performance.now() - first.at);
        stream.inFlight -= first.length;
        stream.acked += first.length;
        stats.bytes += first.length;
        if (stream.acked === stream.size) end();
        else pump();
      },
    };
  });
}

/** A dup/2 client: HELLO, OPEN, DATA within the WELCOME window, FINISH, CANCEL. */
function dup2Client(job: Job, client: number, source: Source, stats: JobStats): Promise<void> {
  const stream = new Stream(client, job.size, source, SINK_WINDOW);
  const sentAt = new Map<number, { at: number; length: number }>();
  let state: 'hello' | 'open' | 'data' | 'finish' = 'hello';
  let finishedAt = 0;
  return runClient(stats, job.url, SUBPROTOCOL_DUP_2, (ws, end) => {
    const send = (frame: Parameters<typeof encodeDup2Frame>[0]): void =>
      ws.send(encodeDup2Frame(frame));
    const pump = (): void => {
      for (let data = stream.take(); data; data = stream.take()) {
        sentAt.set(data.offset, { at: performance.now(), length: data.length });
        ws.send(data.frame, data.release);
      }
    };
    const unexpected = (frame: Dup2ServerFrame): void =>
      stats.protocolError(`client ${client}: unexpected ${frame.type.toUpperCase()} in ${state}`);
    const onFrame = (frame: Dup2ServerFrame): void => {
      switch (frame.type) {
        case 'welcome':
          if (state !== 'hello') return unexpected(frame);
          if (frame.maxChunk < 1 || frame.window < frame.maxChunk) {
            return stats.protocolError(`client ${client}: WELCOME with window < maxChunk`);
          }
          if (job.size > frame.maxItemSize) {
            return end(`the server takes items up to ${frame.maxItemSize} bytes`);
          }
          stream.window = frame.window;
          stream.chunk = Math.min(CHUNK, frame.maxChunk);
          state = 'open';
          send({
            type: 'open',
            uploadId: UPLOAD_ID,
            itemId: `bench-${client}`,
            size: job.size,
            mime: 'application/octet-stream',
            name: `bench-${client}.bin`,
          });
          return;
        case 'opened':
          if (state !== 'open' || frame.uploadId !== UPLOAD_ID) return unexpected(frame);
          if (frame.complete || frame.ranges.length > 0) {
            return end(`item bench-${client} already holds bytes`);
          }
          state = 'data';
          pump();
          return;
        case 'ack': {
          const sent = sentAt.get(frame.start);
          if (state !== 'data' || frame.uploadId !== UPLOAD_ID || !sent) return unexpected(frame);
          if (frame.end - frame.start !== sent.length) {
            return stats.protocolError(
              `client ${client}: ACK [${frame.start}, ${frame.end}) for a DATA of ${sent.length} bytes`,
            );
          }
          sentAt.delete(frame.start);
          stats.latencies.push(performance.now() - sent.at);
          stream.inFlight -= sent.length;
          stream.acked += sent.length;
          stats.bytes += sent.length;
          if (stream.acked === stream.size) {
            state = 'finish';
            finishedAt = performance.now();
            send({ type: 'finish', uploadId: UPLOAD_ID, sha256: stream.digest });
          } else {
            pump();
          }
          return;
        }
        case 'complete':
          if (state !== 'finish' || frame.uploadId !== UPLOAD_ID) return unexpected(frame);
          if (Buffer.compare(frame.sha256, stream.digest) !== 0) {
            return stats.protocolError(`client ${client}: COMPLETE with another digest`);
          }
          stats.finishes.push(performance.now() - finishedAt);
          send({ type: 'cancel', uploadId: UPLOAD_ID });
          end();
          return;
        case 'error':
          end(`ERROR ${frame.code} (upload id ${frame.uploadId}): ${frame.message}`, true);
          return;
        case 'pong':
          return;
      }
    };
    return {
      onOpen: () => {
        send({ type: 'hello', token: job.tokens[client]! });
      },
      onMessage: (data, isBinary) => {
        if (!isBinary) {
          stats.protocolError(`client ${client}: a text message on dup/2`);
          return;
        }
        let frame: Dup2ServerFrame;
        try {
          frame = decodeDup2ServerFrame(
            new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
          );
        } catch (e) {
          stats.protocolError(`client ${client}: undecodable frame: ${(e as Error).message}`);
          return;
        }
        onFrame(frame);
      },
    };
  });
}

async function runJob(job: Job, source: Source): Promise<Outcome> {
  const stats = new JobStats();
  const client = job.kind === 'sink' ? sinkClient : dup2Client;
  // Every item's digest before the clock starts (see Source.digest).
  for (let i = 0; i < job.clients; i++) source.digest(i, job.size, CHUNK);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: job.clients }, (_, i) => client(job, i, source, stats)));
  const seconds = (performance.now() - t0) / 1000;
  // Let the closing handshakes finish, so the server closes quickly; not timed.
  await Promise.all(
    stats.sockets.map(async (ws) => {
      if (ws.readyState === WebSocket.CLOSED) return;
      const timer = setTimeout(() => ws.terminate(), 2000);
      await new Promise((resolve) => ws.once('close', resolve));
      clearTimeout(timer);
    }),
  );
  const latencies = Float64Array.from(stats.latencies).sort();
  const finishes = Float64Array.from(stats.finishes).sort();
  return {
    bytes: stats.bytes,
    seconds,
    ackP50: percentile(latencies, 50),
    ackP99: percentile(latencies, 99),
    finishP50: percentile(finishes, 50),
    errorFrames: stats.errorFrames,
    failedClients: stats.failedClients,
    failures: stats.failures,
    fatal: stats.fatal,
  };
}

function clientMain(): void {
  checkDataFrame();
  const source = new Source();
  process.on('message', (job: Job) => {
    runJob(job, source).then(
      (outcome) => process.send!(outcome),
      (e: unknown) => {
        console.error(e);
        process.exit(1);
      },
    );
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// Server and benchmark processes: targets, cases, table
// ---------------------------------------------------------------------------------------------

interface Target {
  readonly name: string;
  readonly kind: 'sink' | 'dup2';
  readonly durability?: 'fsync' | 'write';
}

interface Case {
  readonly name: string;
  readonly clients: number;
  readonly size: number;
}

interface Run extends Outcome {
  readonly mibps: number;
  readonly rssStart: number;
  readonly rssPeak: number;
}

const TARGETS: readonly Target[] = [
  { name: 'bare sink', kind: 'sink' },
  { name: 'reference (fsync)', kind: 'dup2', durability: 'fsync' },
  { name: 'reference (write)', kind: 'dup2', durability: 'write' },
];

async function tokensFor(clients: number): Promise<string[]> {
  const key = secretKey(SECRET);
  return Promise.all(
    Array.from(
      { length: clients },
      async (_, i) =>
        (
          await signToken(key, `bench-client-${i}`, uploadAudience(SERVER_ID), 3600, {
            uid: 'bench',
            scope: 'upload',
          })
        ).token,
    ),
  );
}

/** Sends a message to a child process and waits for its answer. */
function request<T>(child: ChildProcess, message: Serializable): Promise<T> {
  return new Promise((resolve, reject) => {
    if (!child.connected) {
      reject(new Error('a benchmark process ended'));
      return;
    }
    const onMessage = (answer: T): void => {
      child.off('exit', onExit);
      resolve(answer);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      child.off('message', onMessage);
      reject(new Error(`a benchmark process ended (${signal ?? `exit code ${code}`})`));
    };
    child.once('message', onMessage);
    child.once('exit', onExit);
    child.send(message);
  });
}

/**
 * Starts a child process: the clients (this file, with the TypeScript loader), or the server
 * (`server-role.mjs` on plain Node, hosting the server built in `dist/`).
 */
function spawnRole(role: '--client' | '--server'): ChildProcess {
  if (role === '--client') {
    return fork(fileURLToPath(import.meta.url), [role], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
  }
  const profile = process.env.BENCH_PROFILE;
  return fork(fileURLToPath(new URL('server-role.mjs', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // BENCH_PROFILE=<folder>: a CPU profile of each server process, for Chrome DevTools.
    execArgv: profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [],
  });
}

/** What a server process is asked to start. */
interface ServerStart {
  readonly target: Target;
  readonly dir: string;
  readonly size: number;
  /** The sink's `maxPayload`. */
  readonly maxPayload: number;
  readonly secret: string;
  readonly serverId: string;
  readonly maxItemSize: number;
}

/** What a server process measured. */
interface ServerReport {
  readonly rssStart: number;
  readonly rssPeak: number;
}

async function measure(
  client: ChildProcess,
  root: string,
  target: Target,
  kase: Case,
  label: string,
): Promise<Run> {
  const dir = join(root, label);
  await mkdir(dir, { recursive: true });
  const server = spawnRole('--server');
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  let stopped = false;
  try {
    const tokens = target.kind === 'dup2' ? await tokensFor(kase.clients) : [];
    const url = await request<string>(server, {
      target,
      dir,
      size: kase.size,
      maxPayload: 2 * CHUNK,
      secret: SECRET,
      serverId: SERVER_ID,
      maxItemSize: DEFAULT_MAX_ITEM_SIZE,
    } satisfies ServerStart);
    const outcome = await request<Outcome>(client, {
      kind: target.kind,
      url,
      tokens,
      clients: kase.clients,
      size: kase.size,
    } satisfies Job);
    const rss = await request<ServerReport>(server, 'stop');
    stopped = true;
    const mibps = outcome.bytes / MiB / outcome.seconds;
    return { ...outcome, mibps, ...rss };
  } finally {
    if (server.exitCode === null && server.signalCode === null) {
      if (!stopped) server.kill();
      const timer = setTimeout(() => server.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/** Nearest-rank percentile; `undefined` when there is no value. */
function percentile(sorted: Float64Array, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median of the values that were measured (an absent one crossed IPC as missing or null). */
function medianOf(values: readonly (number | null | undefined)[]): number | undefined {
  const known = values.filter((v): v is number => typeof v === 'number');
  return known.length > 0 ? median(known) : undefined;
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

const ms = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(1)} ms`);

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

async function main(): Promise<void> {
  const scale = envNumber('BENCH_SCALE', 1, false);
  const runs = envNumber('BENCH_RUNS', 3, true);
  const cases: Case[] = [
    { clients: 1, size: Math.floor((500 * MiB) / scale) },
    { clients: 100, size: Math.floor((20 * MiB) / scale) },
  ]
    // BENCH_CASES=1 or BENCH_CASES=100: only the case with that many clients.
    .filter((c) => !process.env.BENCH_CASES || String(c.clients) === process.env.BENCH_CASES)
    .map((c) => ({ ...c, name: `${c.clients} × ${sizeName(c.size)}` }));

  if (!existsSync(fileURLToPath(new URL('../dist/server/index.js', import.meta.url)))) {
    throw new Error('the server is measured as built: run `npm run build:tsc` first');
  }
  const root = await mkdtemp(join(tmpdir(), 'ws-uploader-bench-'));
  // Whatever happens, the folder goes.
  process.once('exit', () => rmSync(root, { recursive: true, force: true }));
  const client = spawnRole('--client');
  const onSignal = (signal: NodeJS.Signals): void => {
    client.kill();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const cpu = cpus();
  console.log(
    `ws-uploader server benchmark: Node ${process.version}, ${cpu.length} CPU (${cpu[0]?.model.trim() ?? '?'}), ` +
      `BENCH_SCALE=${scale}, BENCH_RUNS=${runs}`,
  );
  console.log(
    `loopback; DATA ${sizeName(CHUNK)}, ${sizeName(SINK_WINDOW)} in flight per connection; ` +
      `files in ${root} (removed afterwards)\n`,
  );

  const results = new Map<string, Run[]>();
  const key = (c: Case, t: Target): string => `${c.name}|${t.name}`;
  try {
    // Warm-up of the client process, not reported.
    for (const target of TARGETS) {
      await measure(client, root, target, { name: 'warm-up', clients: 1, size: 16 * MiB }, 'warm');
    }
    for (const kase of cases) {
      for (let run = 1; run <= runs; run++) {
        // Targets alternate within each round, so a drift of the machine touches them all alike.
        for (const [t, target] of TARGETS.entries()) {
          const label = `c${kase.clients}-t${t}-r${run}`;
          process.stderr.write(`  ${kase.name}, ${target.name}, run ${run}/${runs} … `);
          const result = await measure(client, root, target, kase, label);
          process.stderr.write(`${result.mibps.toFixed(1)} MiB/s\n`);
          if (result.fatal !== undefined) throw new Error(`protocol error: ${result.fatal}`);
          results.set(key(kase, target), [...(results.get(key(kase, target)) ?? []), result]);
        }
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (client.connected) client.disconnect();
    await rm(root, { recursive: true, force: true });
  }

  const rows: string[][] = [
    [
      'case',
      'target',
      'MiB/s',
      'runs (MiB/s)',
      'RSS start',
      'RSS peak',
      'ack p50',
      'ack p99',
      'FINISH p50',
      'errors',
    ],
  ];
  const summary = new Map<string, { mibps: number; rss: number; errors: number }>();
  const failures: string[] = [];
  for (const kase of cases) {
    for (const target of TARGETS) {
      const list = results.get(key(kase, target))!;
      const errors = list.reduce((n, r) => n + r.errorFrames + r.failedClients, 0);
      const row = {
        mibps: median(list.map((r) => r.mibps)),
        rss: median(list.map((r) => r.rssPeak)) / MiB,
        errors,
      };
      summary.set(key(kase, target), row);
      for (const r of list)
        for (const f of r.failures) failures.push(`${kase.name}, ${target.name}: ${f}`);
      rows.push([
        target === TARGETS[0] ? kase.name : '',
        target.name,
        row.mibps.toFixed(1),
        list.map((r) => r.mibps.toFixed(0)).join(' / '),
        `${(median(list.map((r) => r.rssStart)) / MiB).toFixed(0)} MiB`,
        `${row.rss.toFixed(0)} MiB`,
        ms(medianOf(list.map((r) => r.ackP50))),
        ms(medianOf(list.map((r) => r.ackP99))),
        ms(medianOf(list.map((r) => r.finishP50))),
        String(errors),
      ]);
    }
  }
  console.log(table(rows));
  console.log(
    `\nmedians of ${runs} run${runs > 1 ? 's' : ''}; errors: ERROR frames and failed clients, ` +
      `summed over the runs; RSS of the process that hosts the server`,
  );
  if (failures.length > 0) {
    console.log('\nfailures:');
    for (const f of failures.slice(0, 10)) console.log(`  ${f}`);
  }

  const mark = (ok: boolean): string => (ok ? 'PASS' : 'WARN');
  console.log(
    `\nreference ÷ bare sink (targets: MiB/s ≥ ${MIN_RATIO} of the bare sink, ` +
      `RSS peak < ${MAX_RSS_MIB} MiB, no errors)`,
  );
  const lines: string[][] = [];
  for (const kase of cases) {
    const sink = summary.get(key(kase, TARGETS[0]!))!;
    for (const target of TARGETS.slice(1)) {
      const s = summary.get(key(kase, target))!;
      const ratio = s.mibps / sink.mibps;
      lines.push([
        kase.name,
        target.name,
        `${ratio.toFixed(2)}×`,
        mark(ratio >= MIN_RATIO),
        `RSS ${s.rss.toFixed(0)} MiB`,
        mark(s.rss < MAX_RSS_MIB),
        `errors ${s.errors}`,
        mark(s.errors === 0),
      ]);
    }
  }
  console.log(table(lines));
}

if (process.argv.includes('--client')) {
  clientMain();
} else {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
