/**
 * Control server benchmark: how many concurrent browser control connections the reference control
 * server holds, what they cost in memory, and the latency from `requestTransmit` to the browser's
 * `accept` at that load. Node `ws` clients stand in for browsers. See bench/README.md.
 *
 * Three roles: this process runs the runs and prints the table; each run starts a fresh server
 * process (`control-role.mjs` on plain Node, hosting the control server built in `dist/`) that
 * samples its own RSS and times each request in its own clock; one client process (this file with
 * `--client`) holds the browser connections, so their memory is not counted.
 *
 * Environment: BENCH_CONNECTIONS (default 10000), BENCH_RUNS (default 3; the table shows medians),
 * BENCH_CONCURRENCY, BENCH_RATE, BENCH_REQUESTS, BENCH_BURST, BENCH_UPLOAD_SERVERS, BENCH_PROFILE.
 */
import { fork, type ChildProcess, type Serializable } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { createUserToken } from '../server/tokens.js';
import {
  decodeControlServerMessage,
  encodeControlMessage,
  SUBPROTOCOL_CONTROL_1,
  type ControlClientMessage,
  type ControlServerMessage,
  type ItemMeta,
} from '../src/protocol/index.js';

/** Targets of the issue. */
const TARGET_CONNECTIONS = 10_000;
const TARGET_P99_MS = 50;

const SECRET = 'bench-secret-of-at-least-32-bytes-0123456789';
/** A connection that is not ready (welcomed, its first `transmit` accepted) this long after it started fails. */
const READY_TIMEOUT_MS = 30_000;
/** Connections still open this long after the client closed them are terminated. */
const CLOSE_TIMEOUT_MS = 10_000;
/** Connections of the unreported warm-up run. */
const WARM_UP_CONNECTIONS = 200;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Messages between the processes
// ---------------------------------------------------------------------------------------------

/** What the benchmark process asks the client process. */
type ClientRequest =
  | {
      readonly type: 'ramp';
      readonly url: string;
      readonly connections: number;
      readonly concurrency: number;
    }
  | { readonly type: 'status' }
  | { readonly type: 'close' };

/** What a ramp measured, as seen by the clients. */
interface RampOutcome {
  /** Connections welcomed whose first `transmit` was accepted. */
  readonly ready: number;
  readonly failed: number;
  /** From the first connection attempt to the last connection ready or failed. */
  readonly seconds: number;
  /** CPU time of the client process during the ramp, in ms. */
  readonly cpuMs: number;
  /** Time from a connection's attempt to its `welcome`, percentiles in ms. */
  readonly welcomeP50?: number | undefined;
  readonly welcomeP99?: number | undefined;
  /** The first few failure reasons. */
  readonly failures: readonly string[];
  /** A protocol violation of the server. */
  readonly fatal?: string | undefined;
}

/** The state of the client process's connections. */
interface ClientStatus {
  readonly open: number;
  /** Connections that were ready and closed before the client closed them. */
  readonly dropped: number;
  /** `transmit` messages received and accepted since the ramp. */
  readonly transmits: number;
  /** `error` messages received since the ramp. */
  readonly errors: number;
  /** Event-loop delay of the client process since the last status, p99 in ms. */
  readonly loopDelayP99: number;
  readonly failures: readonly string[];
  readonly fatal?: string | undefined;
}

/** What the benchmark process asks the server process (see `control-role.mjs`). */
type RoleRequest =
  | { readonly type: 'start'; readonly secret: string; readonly uploadServers: number }
  | { readonly type: 'held' }
  /** `count` calls of `requestTransmit`, `rate` a second (0: all in one go). */
  | { readonly type: 'latency'; readonly count: number; readonly rate: number }
  | { readonly type: 'disconnecting' }
  | { readonly type: 'drained' }
  | { readonly type: 'stop' };

/** What the server process measured for one series of `requestTransmit` calls. */
interface LatencyReport {
  /** Time from each call to its `accepted` task event, in ms, in the order they came. */
  readonly latencies: readonly number[];
  /** Requests not accepted 10 s after the last call. */
  readonly lost: number;
  /** Calls that threw (item unknown, browser not connected). */
  readonly refused: number;
  readonly firstError?: string;
  /** Event-loop delay of the server process during the series, p99 in ms. */
  readonly loopDelayP99: number;
  readonly seconds: number;
}

// ---------------------------------------------------------------------------------------------
// Client process
// ---------------------------------------------------------------------------------------------

/** An all-zero WebSocket mask: the client sends its messages as they are. */
const zeroMask = (mask: Buffer): void => void mask.fill(0);

/** One browser: its connection and what it holds. */
interface Browser {
  readonly ws: WebSocket;
  readonly itemId: string;
  ready: boolean;
  closing: boolean;
}

/** The client process's connections and counters. */
class Clients {
  readonly browsers: Browser[] = [];
  readonly failures: string[] = [];
  readonly #tokens: string[] = [];
  dropped = 0;
  transmits = 0;
  errors = 0;
  fatal: string | undefined;
  #delay = monitorEventLoopDelay({ resolution: 1 });

  constructor() {
    this.#delay.enable();
  }

  /** Records a failure reason (the first few are kept). */
  note(reason: string): void {
    if (this.failures.length < 5) this.failures.push(reason);
  }

  /** Records a protocol violation of the server: the benchmark ends with an error. */
  violation(reason: string): void {
    this.fatal ??= reason;
  }

  /** User tokens for `count` users, made once, before any clock starts. */
  async tokens(count: number): Promise<readonly string[]> {
    for (let i = this.#tokens.length; i < count; i++) {
      this.#tokens.push(await createUserToken(SECRET, `user-${i}`));
    }
    return this.#tokens;
  }

  /** The state of the connections, and the event-loop delay since the last call. */
  status(): ClientStatus {
    const loopDelayP99 = this.#delay.percentile(99) / 1e6;
    this.#delay.reset();
    return {
      open: this.browsers.filter((b) => b.ws.readyState === WebSocket.OPEN).length,
      dropped: this.dropped,
      transmits: this.transmits,
      errors: this.errors,
      loopDelayP99,
      failures: this.failures,
      fatal: this.fatal,
    };
  }

  /**
   * Opens browser `index`: hello, welcome, a probe of every upload server, a publish of one item,
   * then `accept` for every `transmit` of that item.
   * @returns the time from the attempt to `welcome` in ms once the first `transmit` was accepted,
   *   or a failure reason
   */
  open(url: string, index: number, token: string): Promise<number | string> {
    const t0 = performance.now();
    const itemId = `item-${index}`;
    const item: ItemMeta = {
      itemId,
      name: `file-${index}.bin`,
      size: MiB,
      mime: 'application/octet-stream',
      kind: 'file',
      lastModified: 1_767_225_600_000,
    };
    const ws = new WebSocket(url, SUBPROTOCOL_CONTROL_1, {
      perMessageDeflate: false,
      generateMask: zeroMask,
      handshakeTimeout: READY_TIMEOUT_MS,
    });
    const browser: Browser = { ws, itemId, ready: false, closing: false };
    this.browsers.push(browser);
    const send = (message: ControlClientMessage): void => ws.send(encodeControlMessage(message));
    return new Promise((resolve) => {
      let welcomedAt: number | undefined;
      const timer = setTimeout(() => settle('not ready in time'), READY_TIMEOUT_MS);
      const settle = (outcome: number | string): void => {
        clearTimeout(timer);
        if (browser.ready || typeof outcome === 'string') {
          if (typeof outcome === 'string' && ws.readyState !== WebSocket.CLOSED) ws.terminate();
          resolve(outcome);
        }
      };
      const onMessage = (message: ControlServerMessage): void => {
        switch (message.type) {
          case 'welcome':
            if (welcomedAt !== undefined)
              return this.violation(`browser ${index}: a second welcome`);
            welcomedAt = performance.now();
            send({
              type: 'probe',
              results: message.servers.map((s, k) => ({ serverId: s.id, rttMs: 10 + k })),
            });
            send({ type: 'publish', items: [item] });
            return;
          case 'published':
            if (!message.itemIds.includes(itemId)) {
              return this.violation(`browser ${index}: published without its item`);
            }
            return;
          case 'transmit':
            if (welcomedAt === undefined || message.itemId !== itemId) {
              return this.violation(`browser ${index}: transmit of ${message.itemId}`);
            }
            send({ type: 'accept', taskId: message.taskId, itemId });
            if (browser.ready) {
              this.transmits++;
            } else {
              browser.ready = true;
              settle(welcomedAt - t0);
            }
            return;
          case 'error':
            this.errors++;
            this.note(`browser ${index}: error ${message.code}: ${message.message}`);
            if (!browser.ready) settle(`error ${message.code}`);
            return;
          case 'servers':
          case 'completed':
            return;
        }
      };
      ws.on('message', (data, isBinary) => {
        if (isBinary) return this.violation(`browser ${index}: a binary message`);
        let message: ControlServerMessage;
        try {
          message = decodeControlServerMessage(String(data));
        } catch (e) {
          return this.violation(`browser ${index}: undecodable message: ${(e as Error).message}`);
        }
        onMessage(message);
      });
      ws.on('open', () => send({ type: 'hello', token }));
      ws.on('error', (e) => {
        if (!browser.ready) settle(`connection error: ${e.message}`);
      });
      ws.on('close', (code, reason) => {
        if (!browser.ready) {
          settle(`closed ${code} ${String(reason)} before ready`);
        } else if (!browser.closing) {
          this.dropped++;
          this.note(`browser ${index}: closed ${code} ${String(reason)} while held`);
        }
      });
    });
  }

  /** Opens `connections` browsers, `concurrency` at a time. */
  async ramp(url: string, connections: number, concurrency: number): Promise<RampOutcome> {
    const tokens = await this.tokens(connections);
    const welcomes: number[] = [];
    let failed = 0;
    let next = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const worker = async (): Promise<void> => {
      while (next < connections && this.fatal === undefined) {
        const index = next++;
        const outcome = await this.open(url, index, tokens[index]!);
        if (typeof outcome === 'number') {
          welcomes.push(outcome);
        } else {
          failed++;
          this.note(`browser ${index}: ${outcome}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, connections) }, worker));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const sorted = Float64Array.from(welcomes).sort();
    return {
      ready: welcomes.length,
      failed,
      seconds,
      cpuMs: (cpu.user + cpu.system) / 1000,
      welcomeP50: percentile(sorted, 50),
      welcomeP99: percentile(sorted, 99),
      failures: [...this.failures],
      fatal: this.fatal,
    };
  }

  /** Closes every connection (code 1000) and waits until they are closed. */
  async close(): Promise<{ ms: number }> {
    const t0 = performance.now();
    await Promise.all(
      this.browsers.map(async (b) => {
        b.closing = true;
        if (b.ws.readyState === WebSocket.CLOSED) return;
        const closed = new Promise((resolve) => b.ws.once('close', resolve));
        if (b.ws.readyState === WebSocket.CONNECTING) b.ws.terminate();
        else b.ws.close(1000, 'bench done');
        const timer = setTimeout(() => b.ws.terminate(), CLOSE_TIMEOUT_MS);
        await closed;
        clearTimeout(timer);
      }),
    );
    return { ms: performance.now() - t0 };
  }
}

/** The client process: one set of connections per ramp, kept until `close`. */
function clientMain(): void {
  let clients = new Clients();
  const handle = async (request: ClientRequest): Promise<unknown> => {
    switch (request.type) {
      case 'ramp':
        clients = new Clients();
        return clients.ramp(request.url, request.connections, request.concurrency);
      case 'status':
        return clients.status();
      case 'close':
        return clients.close();
    }
  };
  process.on('message', (request: ClientRequest) => {
    handle(request).then(
      (answer) => process.send!(answer as Serializable),
      (e: unknown) => {
        console.error(e);
        process.exit(1);
      },
    );
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// Benchmark process: runs, table
// ---------------------------------------------------------------------------------------------

/** What one run measured. */
interface Run {
  readonly ramp: RampOutcome;
  /** Connections open once the latency series are done. */
  readonly held: number;
  readonly dropped: number;
  readonly items: number;
  readonly rssStart: number;
  /** RSS after the ramp and a full garbage collection. */
  readonly rssHeld: number;
  readonly rssPeak: number;
  /** CPU time of the server process from listening to the end of the ramp, in ms. */
  readonly rampServerCpuMs: number;
  readonly steady: LatencyReport;
  readonly burst: LatencyReport;
  /** Client event-loop delay p99 during the steady series, ms. */
  readonly clientLoopP99: number;
  /** From the client closing every connection to the server's last socket closed, and its CPU. */
  readonly disconnectMs: number;
  readonly disconnectCpuMs: number;
  readonly failures: readonly string[];
}

/** Settings of the benchmark. */
interface Settings {
  readonly connections: number;
  readonly concurrency: number;
  readonly rate: number;
  readonly requests: number;
  readonly burst: number;
  readonly uploadServers: number;
}

/** Sends a message to a child process and waits for its answer. */
function request<T>(child: ChildProcess, message: ClientRequest | RoleRequest): Promise<T> {
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
 * (`control-role.mjs` on plain Node, hosting the control server built in `dist/`).
 */
function spawnRole(role: 'client' | 'server'): ChildProcess {
  if (role === 'client') {
    return fork(fileURLToPath(import.meta.url), ['--client'], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
  }
  const profile = process.env['BENCH_PROFILE'];
  return fork(fileURLToPath(new URL('control-role.mjs', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // BENCH_PROFILE=<folder>: a CPU profile of each server process, for Chrome DevTools.
    execArgv: profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [],
  });
}

/** Throws when the clients saw the server break the protocol. */
function checkProtocol(fatal: string | undefined): void {
  if (fatal !== undefined) throw new Error(`protocol violation: ${fatal}`);
}

/**
 * One run: a fresh server, the ramp, the steady and burst series of `requestTransmit`, then every
 * connection closed by the clients.
 */
async function measure(client: ChildProcess, settings: Settings, report: boolean): Promise<Run> {
  const progress = (text: string): void => {
    if (report) process.stderr.write(text);
  };
  const server = spawnRole('server');
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  let stopped = false;
  try {
    const { url } = await request<{ url: string }>(server, {
      type: 'start',
      secret: SECRET,
      uploadServers: settings.uploadServers,
    });
    progress(`ramp ${settings.connections} … `);
    const ramp = await request<RampOutcome>(client, {
      type: 'ramp',
      url,
      connections: settings.connections,
      concurrency: settings.concurrency,
    });
    checkProtocol(ramp.fatal);
    progress(`${ramp.ready} ready in ${ramp.seconds.toFixed(1)} s; `);
    const held = await request<{ items: number; rss: number; cpuMs: number }>(server, {
      type: 'held',
    });
    await request<ClientStatus>(client, { type: 'status' });
    progress(`steady ${settings.rate}/s … `);
    const steady = await request<LatencyReport>(server, {
      type: 'latency',
      count: settings.requests,
      rate: settings.rate,
    });
    const afterSteady = await request<ClientStatus>(client, { type: 'status' });
    progress(`p99 ${ms(percentile(sortedOf(steady.latencies), 99))}; burst … `);
    const burst = await request<LatencyReport>(server, {
      type: 'latency',
      count: settings.burst,
      rate: 0,
    });
    const status = await request<ClientStatus>(client, { type: 'status' });
    checkProtocol(status.fatal);
    progress(`p99 ${ms(percentile(sortedOf(burst.latencies), 99))}; disconnect … `);
    await request<unknown>(server, { type: 'disconnecting' });
    await request<{ ms: number }>(client, { type: 'close' });
    const drained = await request<{ ms: number; cpuMs: number }>(server, { type: 'drained' });
    progress(`${(drained.ms / 1000).toFixed(2)} s\n`);
    const rss = await request<{ rssStart: number; rssPeak: number }>(server, { type: 'stop' });
    stopped = true;
    const failures = [...status.failures];
    for (const r of [steady, burst])
      if (r.firstError) failures.push(`requestTransmit: ${r.firstError}`);
    return {
      ramp,
      held: status.open,
      dropped: status.dropped,
      items: held.items,
      rssStart: rss.rssStart,
      rssHeld: held.rss,
      rssPeak: rss.rssPeak,
      rampServerCpuMs: held.cpuMs,
      steady,
      burst,
      clientLoopP99: afterSteady.loopDelayP99,
      disconnectMs: drained.ms,
      disconnectCpuMs: drained.cpuMs,
      failures,
    };
  } finally {
    if (server.exitCode === null && server.signalCode === null) {
      if (!stopped) server.kill();
      const timer = setTimeout(() => server.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  }
}

/** Nearest-rank percentile; `undefined` when there is no value. */
function percentile(sorted: Float64Array, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The values, sorted, for {@link percentile}. */
function sortedOf(values: readonly number[]): Float64Array {
  return Float64Array.from(values).sort();
}

/** Median of some numbers. */
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

/** A positive number from the environment, or `fallback`. */
function envNumber(name: string, fallback: number, integer = true): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be a positive ${integer ? 'integer' : 'number'}, not ${raw}`);
  }
  return value;
}

/** Milliseconds for the table. */
const ms = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(1)} ms`);
/** Milliseconds with two decimals, for small CPU times. */
const ms2 = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(2)} ms`);
/** Mebibytes for the table. */
const mib = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;

/** Aligns rows: the first column to the left, the others to the right. */
function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A table row: a metric, its median over the runs and the value of each run. */
function row(
  name: string,
  runs: readonly Run[],
  value: (run: Run) => number | undefined,
  format: (v: number | undefined) => string,
): string[] {
  const values = runs.map(value);
  return [name, format(medianOf(values)), values.map((v) => format(v)).join(' / ')];
}

/** Latency percentiles of one series in one run. */
const pct =
  (series: 'steady' | 'burst', p: number) =>
  (run: Run): number | undefined =>
    p === 100
      ? run[series].latencies.reduce((a, b) => Math.max(a, b), -Infinity)
      : percentile(sortedOf(run[series].latencies), p);

async function main(): Promise<void> {
  const runCount = envNumber('BENCH_RUNS', 3);
  const settings: Settings = {
    connections: envNumber('BENCH_CONNECTIONS', TARGET_CONNECTIONS),
    concurrency: envNumber('BENCH_CONCURRENCY', 200),
    rate: envNumber('BENCH_RATE', 500, false),
    requests: envNumber('BENCH_REQUESTS', 2000),
    burst: envNumber('BENCH_BURST', 1000),
    uploadServers: envNumber('BENCH_UPLOAD_SERVERS', 2),
  };
  if (!existsSync(fileURLToPath(new URL('../dist/server/index.js', import.meta.url)))) {
    throw new Error('the server is measured as built: run `npm run build:tsc` first');
  }
  const client = spawnRole('client');
  const onSignal = (signal: NodeJS.Signals): void => {
    client.kill();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const cpu = cpus();
  console.log(
    `ws-uploader control server benchmark: Node ${process.version}, ${cpu.length} CPU ` +
      `(${cpu[0]?.model.trim() ?? '?'}), BENCH_RUNS=${runCount}`,
  );
  console.log(
    `loopback; ${settings.connections} browsers (${settings.concurrency} connecting at a time), ` +
      `each: hello, probe, publish of one item, accept; ${settings.uploadServers} upload servers; ` +
      `steady ${settings.requests} requestTransmit at ${settings.rate}/s, burst ${settings.burst}\n`,
  );

  const runs: Run[] = [];
  try {
    // Warm-up of both processes' code paths, not reported.
    process.stderr.write('  warm-up … ');
    await measure(
      client,
      { ...settings, connections: WARM_UP_CONNECTIONS, requests: 200, burst: 100 },
      false,
    );
    process.stderr.write('done\n');
    for (let i = 1; i <= runCount; i++) {
      process.stderr.write(`  run ${i}/${runCount}: `);
      runs.push(await measure(client, settings, true));
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (client.connected) client.disconnect();
  }

  const count = (v: number | undefined): string => (v === undefined ? '-' : String(Math.round(v)));
  const seconds = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(2)} s`);
  const memory = (v: number | undefined): string => (v === undefined ? '-' : mib(v));
  const kib = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(1)} KiB`);
  const steadyName = `${settings.requests} at ${settings.rate}/s`;
  const burstName = `burst of ${settings.burst}`;
  const rows: string[][] = [
    ['metric', 'median', 'runs'],
    row('connections ready', runs, (r) => r.ramp.ready, count),
    row('connections failed', runs, (r) => r.ramp.failed, count),
    row('ramp time (all ready)', runs, (r) => r.ramp.seconds, seconds),
    row('ramp rate (ready/s)', runs, (r) => r.ramp.ready / r.ramp.seconds, count),
    row('ramp: server CPU per browser', runs, (r) => r.rampServerCpuMs / r.ramp.ready, ms2),
    row('ramp: client CPU per browser', runs, (r) => r.ramp.cpuMs / r.ramp.ready, ms2),
    row('attempt → welcome p50', runs, (r) => r.ramp.welcomeP50, ms),
    row('attempt → welcome p99', runs, (r) => r.ramp.welcomeP99, ms),
    row('server RSS idle', runs, (r) => r.rssStart, memory),
    row('server RSS held (after GC)', runs, (r) => r.rssHeld, memory),
    row('  per connection', runs, (r) => (r.rssHeld - r.rssStart) / 1024 / r.ramp.ready, kib),
    row('server RSS peak', runs, (r) => r.rssPeak, memory),
    row(`transmit→accept p50 (${steadyName})`, runs, pct('steady', 50), ms),
    row(`transmit→accept p99 (${steadyName})`, runs, pct('steady', 99), ms),
    row(`transmit→accept max (${steadyName})`, runs, pct('steady', 100), ms),
    row('  server event-loop delay p99', runs, (r) => r.steady.loopDelayP99, ms),
    row('  client event-loop delay p99', runs, (r) => r.clientLoopP99, ms),
    row(`transmit→accept p50 (${burstName})`, runs, pct('burst', 50), ms),
    row(`transmit→accept p99 (${burstName})`, runs, pct('burst', 99), ms),
    row(`transmit→accept max (${burstName})`, runs, pct('burst', 100), ms),
    row(
      '  burst: accepted per second',
      runs,
      (r) => r.burst.latencies.length / (pct('burst', 100)(r)! / 1000),
      count,
    ),
    row('requests lost or refused', runs, (r) => lostOrRefused(r), count),
    row('connections held after the series', runs, (r) => r.held, count),
    row('connections dropped while held', runs, (r) => r.dropped, count),
    row('disconnect all: until last socket closed', runs, (r) => r.disconnectMs / 1000, seconds),
    row('disconnect all: server CPU', runs, (r) => r.disconnectCpuMs / 1000, seconds),
  ];
  console.log(table(rows));
  console.log(
    `\nmedians of ${runCount} run${runCount > 1 ? 's' : ''}; latencies timed by the server ` +
      `process from the requestTransmit call to the onTask 'accepted' event; RSS of the process ` +
      `that hosts the control server`,
  );
  const failures = runs.flatMap((r, i) => r.failures.map((f) => `run ${i + 1}: ${f}`));
  if (failures.length > 0) {
    console.log('\nfailures:');
    for (const f of failures.slice(0, 10)) console.log(`  ${f}`);
  }

  const mark = (ok: boolean): string => (ok ? 'PASS' : 'WARN');
  const allHeld = runs.every(
    (r) => r.held === settings.connections && r.ramp.failed === 0 && r.dropped === 0,
  );
  const heldMedian = median(runs.map((r) => r.held));
  const steadyP99 = medianOf(runs.map(pct('steady', 99)));
  const lost = runs.reduce((n, r) => n + lostOrRefused(r), 0);
  console.log(
    `\ntargets: ${TARGET_CONNECTIONS.toLocaleString('en')} connections held, ` +
      `p99 < ${TARGET_P99_MS} ms`,
  );
  console.log(
    table([
      [
        'connections held',
        `${heldMedian} of ${settings.connections}${allHeld ? '' : ' (failures in some run)'}`,
        mark(allHeld && settings.connections >= TARGET_CONNECTIONS),
      ],
      [`p99 (${steadyName})`, ms(steadyP99), mark((steadyP99 ?? Infinity) < TARGET_P99_MS)],
      ['requests lost or refused', String(lost), mark(lost === 0)],
    ]),
  );
  console.log(
    `(the ${burstName} is not a target: its calls are made in one go, so its latencies are ` +
      `mostly the wait behind the calls before them)`,
  );
}

/** Requests of a run that were not accepted, or that `requestTransmit` refused. */
function lostOrRefused(run: Run): number {
  return run.steady.lost + run.steady.refused + run.burst.lost + run.burst.refused;
}

if (process.argv.includes('--client')) {
  clientMain();
} else {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
