// @ts-check
/**
 * The server process of `control-bench.ts`: hosts the reference control server as built in
 * `dist/`, samples its own RSS, and measures in its own clock the time from `requestTransmit` to
 * the `accepted` task event of the browser's answer. Plain JavaScript on plain Node, so the RSS is
 * that of the server as operators run it, without a TypeScript loader.
 *
 * Requests from the parent, each answered with one message (see `RoleRequest` in
 * `control-bench.ts`): `start`, `held`, `latency`, `disconnecting`, `drained`, `stop`.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createControlServer } from '../dist/server/index.js';

/**
 * @typedef {{ type: 'start', secret: string, uploadServers: number }} Start
 * @typedef {{ type: 'held' }} Held
 * @typedef {{ type: 'latency', count: number, rate: number }} Latency
 * @typedef {{ type: 'disconnecting' } | { type: 'drained' } | { type: 'stop' }} Step
 * @typedef {Start | Held | Latency | Step} RoleRequest
 * @typedef {{ latencies: number[], lost: number, refused: number, firstError?: string,
 *   loopDelayP99: number, seconds: number }} LatencyReport
 */

/** A request not accepted this long after the last one was sent is counted as lost. */
const LOST_AFTER_MS = 10_000;
/** How often the steady load checks which requests are due, in ms. */
const TICK_MS = 5;

// A full garbage collection before the memory readings, so garbage does not count.
setFlagsFromString('--expose-gc');
const collectGarbage = /** @type {() => void} */ (runInNewContext('gc'));

/** @type {ReturnType<typeof createControlServer> | undefined} */
let control;
/** Ids of the published items, in the order they were published. */
const items = /** @type {string[]} */ ([]);
const published = new Set();
/** Tasks this process asked for and waits to see accepted: task id → time of the call. */
const pending = new Map();
/** @type {((ms: number) => void) | undefined} */
let onAccepted;
/** Acceptances that arrived before their task id was known: task id → time. */
const early = new Map();
/** `requestTransmit` calls that have not given their task id yet. */
let inFlight = 0;
/** Open TCP connections of the HTTP server. */
let sockets = 0;
/** @type {(() => void) | undefined} */
let onDrained;
/** @type {{ at: number, cpu: NodeJS.CpuUsage } | undefined} */
let disconnectStart;

/** CPU time of this process when the server started listening. */
let cpuStart = process.cpuUsage();
let rssStart = 0;
let rssPeak = 0;
const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage.rss())), 50);

/**
 * Starts the control server on 127.0.0.1 with `uploadServers` endpoints nobody listens on: the
 * benchmark's browsers never upload, but the control server signs an upload token for each one at
 * every `hello`.
 * @param {Start} start
 * @returns {Promise<string>} the control WebSocket URL
 */
async function startServer(start) {
  control = createControlServer({
    secret: start.secret,
    uploadServers: Array.from({ length: start.uploadServers }, (_, i) => ({
      id: `upload-${i + 1}`,
      url: `ws://127.0.0.1:${i + 1}/dup`,
      httpUrl: `http://127.0.0.1:${i + 1}`,
    })),
    onPublish: (item) => {
      if (published.has(item.meta.itemId)) return;
      published.add(item.meta.itemId);
      items.push(item.meta.itemId);
    },
    onTask: (event) => {
      if (event.type !== 'accepted') return;
      const at = pending.get(event.taskId);
      if (at === undefined) {
        // Accepted before requestTransmit's promise gave the task id: matched when it does.
        early.set(event.taskId, performance.now());
        return;
      }
      pending.delete(event.taskId);
      onAccepted?.(performance.now() - at);
    },
  });
  const url = await control.listen(0, '127.0.0.1');
  control.httpServer.on('connection', (socket) => {
    sockets++;
    socket.once('close', () => {
      sockets--;
      if (sockets === 0) onDrained?.();
    });
  });
  collectGarbage();
  rssStart = process.memoryUsage.rss();
  cpuStart = process.cpuUsage();
  rssPeak = Math.max(rssPeak, rssStart);
  return url;
}

/**
 * Calls `requestTransmit` `count` times for random published items, at `rate` calls a second
 * (0: all in one go), and waits for each task to be accepted.
 * @param {Latency} request
 * @returns {Promise<LatencyReport>}
 */
async function measureLatency({ count, rate }) {
  const server = /** @type {NonNullable<typeof control>} */ (control);
  if (items.length === 0) throw new Error('no item was published');
  /** @type {number[]} */
  const latencies = [];
  let refused = 0;
  /** @type {string | undefined} */
  let firstError;
  let sent = 0;
  const ask = () => {
    const itemId = items[Math.floor(Math.random() * items.length)];
    const at = performance.now();
    inFlight++;
    server.requestTransmit(itemId).then(
      (taskId) => {
        inFlight--;
        const acceptedAt = early.get(taskId);
        if (acceptedAt === undefined) pending.set(taskId, at);
        else {
          early.delete(taskId);
          onAccepted?.(acceptedAt - at);
        }
      },
      (/** @type {unknown} */ e) => {
        inFlight--;
        refused++;
        firstError ??= e instanceof Error ? e.message : String(e);
        if (sent === count && inFlight === 0 && pending.size === 0) allAccepted();
      },
    );
    sent++;
  };
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const t0 = performance.now();
  /** @type {() => void} */
  let allAccepted = () => undefined;
  const accepted = new Promise((resolve) => (allAccepted = () => resolve(undefined)));
  onAccepted = (ms) => {
    latencies.push(ms);
    if (sent === count && inFlight === 0 && pending.size === 0) allAccepted();
  };
  if (rate === 0) {
    while (sent < count) ask();
  } else {
    await new Promise((resolve) => {
      const tick = () => {
        const due = Math.min(count, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
        while (sent < due) ask();
        if (sent === count) {
          clearInterval(timer);
          resolve(undefined);
        }
      };
      const timer = setInterval(tick, TICK_MS);
      tick();
    });
  }
  // Every call has given its task id (or failed) before the wait for the last acceptances.
  while (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 1));
  if (pending.size === 0) allAccepted();
  /** @type {NodeJS.Timeout | undefined} */
  let timeout;
  await Promise.race([
    accepted,
    new Promise((resolve) => (timeout = setTimeout(resolve, LOST_AFTER_MS))),
  ]);
  clearTimeout(timeout);
  const seconds = (performance.now() - t0) / 1000;
  delay.disable();
  const lost = pending.size;
  pending.clear();
  early.clear();
  onAccepted = undefined;
  return {
    latencies,
    lost,
    refused,
    ...(firstError === undefined ? {} : { firstError }),
    loopDelayP99: delay.percentile(99) / 1e6,
    seconds,
  };
}

/**
 * Answers one request of the parent.
 * @param {RoleRequest} message
 * @returns {Promise<unknown>}
 */
async function handle(message) {
  switch (message.type) {
    case 'start':
      return { url: await startServer(message) };
    case 'held': {
      const cpu = process.cpuUsage(cpuStart);
      collectGarbage();
      return {
        items: items.length,
        rss: process.memoryUsage.rss(),
        cpuMs: (cpu.user + cpu.system) / 1000,
      };
    }
    case 'latency':
      return measureLatency(message);
    case 'disconnecting':
      disconnectStart = { at: performance.now(), cpu: process.cpuUsage() };
      return { sockets };
    case 'drained': {
      if (sockets > 0) await new Promise((resolve) => (onDrained = () => resolve(undefined)));
      onDrained = undefined;
      const start = /** @type {NonNullable<typeof disconnectStart>} */ (disconnectStart);
      const cpu = process.cpuUsage(start.cpu);
      return {
        ms: performance.now() - start.at,
        cpuMs: (cpu.user + cpu.system) / 1000,
      };
    }
    case 'stop': {
      clearInterval(rssTimer);
      rssPeak = Math.max(rssPeak, process.memoryUsage.rss());
      await control?.close();
      return { rssStart, rssPeak };
    }
  }
}

process.on('message', (/** @type {RoleRequest} */ message) => {
  handle(message).then(
    (answer) => {
      if (message.type === 'stop') process.send?.(answer, undefined, {}, () => process.exit(0));
      else process.send?.(answer);
    },
    (/** @type {unknown} */ e) => {
      console.error(e);
      process.exit(1);
    },
  );
});
process.on('disconnect', () => process.exit(0));
