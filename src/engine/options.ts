/**
 * Options of the headless engine, their defaults and the adapters tests can replace.
 */
import { ConfigError, type WsUploaderError } from '../errors.js';
import { hashWorkerFactory, type HashWorkerFactory } from './item-hasher.js';
import { resolveResume, type ResumeOptions } from './resume-store.js';
import { DATA_PROTOCOLS, type DataProtocol } from './transport.js';

/** The part of the WebSocket API the engine uses; tests may pass their own. */
export interface SocketLike {
  binaryType: BinaryType;
  readonly readyState: number;
  readonly bufferedAmount: number;
  readonly protocol: string;
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void;
  close(code?: number, reason?: string): void;
  addEventListener(
    type: 'open' | 'close' | 'error' | 'message',
    listener: (event: Event) => void,
  ): void;
}

/** Makes a socket. @default `(url, protocols) => new WebSocket(url, protocols)` */
export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

/** Time source and timers; tests may pass a fake clock. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Options of {@link WsUploaderEngine}. */
export interface EngineOptions {
  /** WebSocket URL of the control server (`ws:` or `wss:`). */
  controlUrl: string;
  /** Credential for the control server, sent in `hello`. Either this or `auth`. */
  authToken?: string;
  /** Returns a fresh credential for each (re)connection; wins over `authToken`. */
  auth?: () => string | Promise<string>;
  /** Largest DATA payload the engine sends, capped by each server's limit, in bytes. @default 524288 */
  chunkSize?: number;
  /**
   * Data protocols the engine may speak to an upload server, best first: it uses the first one the
   * server offers (its `/.well-known/ws-uploader` document, else the control server's list).
   * `http/1` sends the bytes as HTTP `PUT` parts streamed from the file, fastest where the browser's
   * WebSocket is the limit; when the server also speaks `dup/2` or `dup/1`, that connection stays
   * open for pings and liveness. @default ['dup/2', 'dup/1', 'http/1']
   */
  protocols?: readonly DataProtocol[];
  /**
   * Most bytes per HTTP `PUT` when the bytes go over `http/1`: a part is about a second of the
   * measured rate, up to this. On a short link (a round trip of 10 ms or less) parts are sent one
   * after another, each started as the one before is about to have been sent, so the upload server
   * hashes them as they arrive; on a longer one several go side by side, and the server holds the
   * bytes that arrive ahead of the part its running SHA-256 is in (32 MiB by default; what does
   * not fit is read back from its disk). @default 67108864
   */
  partSize?: number;
  /** Transmit tasks that run at the same time. @default 3 */
  maxParallel?: number;
  /** Pings sent to each upload server right after it connects, for the first RTT. @default 3 */
  probeCount?: number;
  /** Time between heartbeat pings to each upload server, in ms. @default 15000 */
  probeIntervalMs?: number;
  /**
   * Time without any acknowledgement from an upload server, while bytes to it are in flight, after
   * which its connection counts as stalled: it is closed and the upload resumes on a new one.
   * Stalls are found by progress, not by `navigator.onLine`. @default 30000
   */
  stallTimeoutMs?: number;
  /**
   * Delays before sending to an upload server again after a failed try (full jitter is applied:
   * a random wait up to the delay), in ms; the tries stop when they are used up (unless
   * `onShouldRetry` asks for more). @default [500, 1000, 2000, 5000, 10000]
   */
  retryDelays?: number[];
  /**
   * Delays between reconnects of the control channel and of each upload server's connection
   * (full jitter is applied), in ms; past the last, the last again, without end.
   * @default the `retryDelays`
   */
  reconnectDelays?: number[];
  /**
   * Decides whether a failed attempt to send to an upload server is tried again (after the next
   * of `retryDelays`); `retryable` is the engine's own answer (connection errors and retryable
   * server errors, while delays remain). @default the engine's answer
   */
  onShouldRetry?: (error: WsUploaderError, attempt: number, retryable: boolean) => boolean;
  /** Socket factory. */
  createSocket?: SocketFactory;
  /** Clock. @default performance.now and the global timers */
  clock?: Clock;
  /** Random numbers in [0, 1). @default Math.random */
  random?: () => number;
  /**
   * Largest item published inline (its bytes, base64, in `publish`, kept by the control server
   * instead of uploaded), in bytes; `0` turns inline publishing off. The control server's
   * `inlineMax` (from `welcome`) caps it. @default the control server's `inlineMax`
   */
  inlineMax?: number;
  /**
   * Remembers unfinished uploads across page loads (in IndexedDB), so a reloaded page or a
   * restarted browser carries on with them under the same item ids: items added from file handles
   * whose read permission holds are taken up again on `start()` (`restore` event), others are
   * listed by `unfinished()` until the user picks the file again (`resumeFile()`). A storage
   * failure never stops an upload (an `error` event with code `resume-storage-failed` follows).
   * `false` turns it off; `{ dbName }` names the database, `{ store }` replaces it.
   * @default on (database `ws-uploader`) where IndexedDB exists
   */
  resume?: boolean | ResumeOptions;
  /**
   * Where the SHA-256 of a large item (8 MiB and more) is computed: `true` in a Worker started
   * from `hash-worker.js` next to the engine's module (the package ships it next to its modules
   * and next to `dist/bundle/ws-uploader.min.js`), a URL string or `URL` for a Worker script of
   * the page's own (a copy of that file served elsewhere), `false` on the page's thread. Where
   * the Worker cannot start (no script at the URL, a Content-Security-Policy without
   * `worker-src`), the page's thread hashes, so uploads never depend on it.
   * @default true
   */
  hashWorker?: boolean | string | URL;
  /**
   * What guards the bytes of an item, besides TLS:
   * - `'transport'`: the page computes no digest of the whole item. Each `dup/2` chunk carries a
   *   CRC-32C; HTTP parts go as `Blob` bodies the browser streams from the file. The upload server
   *   computes the item's SHA-256 from the bytes it stored and reports it, and `complete` carries it.
   *   An item split over several servers is hashed by one of them, reading the others' ranges,
   *   where they are all linked to the control server; by the page where they are not.
   * - `'sha256'`: the page also computes the item's SHA-256 from the file and the server verifies it
   *   before the item counts as stored: proof, end to end, that the server holds what the page read.
   * @default 'transport'
   */
  integrity?: Integrity;
  /**
   * Where the sockets to the upload servers, the file reads, checksums, hashing and framing run:
   * `true` in a dedicated Worker started from `data-worker.js` next to the engine's module (and
   * next to `dist/bundle/ws-uploader.min.js`), a URL string or `URL` for a copy served elsewhere,
   * `false` on the page's thread. Where the Worker cannot start (a Content-Security-Policy without
   * `worker-src`, say), the page's thread does the work and a `degraded` event says so. Options
   * that are functions of the page's (`createSocket`, `clock`, `random`) keep the work on the
   * page's thread. @default true
   */
  dataWorker?: boolean | string | URL;
}

/** The `integrity` option: see {@link EngineOptions.integrity}. */
export type Integrity = 'sha256' | 'transport';

/** Options with every default filled in. */
export type ResolvedEngineOptions = Required<
  Omit<EngineOptions, 'authToken' | 'auth' | 'hashWorker' | 'dataWorker' | 'onShouldRetry'>
> & {
  /** The `onShouldRetry` hook, or the engine's answer; it may answer later (from another thread). */
  onShouldRetry: (
    error: WsUploaderError,
    attempt: number,
    retryable: boolean,
  ) => boolean | Promise<boolean>;
  auth: () => string | Promise<string>;
  /** Starts a hash Worker; none to hash on the page's thread. */
  hashWorker: HashWorkerFactory | undefined;
  /** The data Worker's script; none to do the data work on the page's thread. */
  dataWorker: URL | string | undefined;
};

/** Default engine options. */
export const ENGINE_DEFAULTS = {
  chunkSize: 512 * 1024,
  partSize: 64 * 1024 * 1024,
  maxParallel: 3,
  probeCount: 3,
  probeIntervalMs: 15_000,
  stallTimeoutMs: 30_000,
  retryDelays: [500, 1000, 2000, 5000, 10_000],
} as const;

const defaultClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as number),
};

/** A non-negative integer option; `Infinity` (no limit of the page's own) when absent. */
function nonNegative(name: string, value: number | undefined): number {
  if (value === undefined) return Infinity;
  if (!Number.isSafeInteger(value) || value < 0)
    throw new ConfigError(`\`${name}\` must be a non-negative integer`);
  return value;
}

/** The `protocols` option, checked. */
function resolveProtocols(value: readonly DataProtocol[] | undefined): readonly DataProtocol[] {
  if (value === undefined) return DATA_PROTOCOLS;
  if (!Array.isArray(value) || value.length === 0 || value.some((p) => !DATA_PROTOCOLS.includes(p)))
    throw new ConfigError(`\`protocols\` must be a non-empty list of ${DATA_PROTOCOLS.join(', ')}`);
  return [...value];
}

/** The `hashWorker` option, checked. */
function resolveHashWorker(
  value: boolean | string | URL | undefined,
): HashWorkerFactory | undefined {
  if (
    value !== undefined &&
    typeof value !== 'boolean' &&
    typeof value !== 'string' &&
    !(value instanceof URL)
  )
    throw new ConfigError('`hashWorker` must be a boolean, a URL string or a URL');
  return hashWorkerFactory(value ?? true);
}

/** The `integrity` option, checked. */
function resolveIntegrity(value: Integrity | undefined): Integrity {
  if (value === undefined) return 'transport';
  if (value !== 'sha256' && value !== 'transport')
    throw new ConfigError("`integrity` must be 'sha256' or 'transport'");
  return value;
}

/** The `dataWorker` option, checked: the Worker's script, or none. */
function resolveDataWorker(options: EngineOptions): URL | string | undefined {
  const value = options.dataWorker;
  if (
    value !== undefined &&
    typeof value !== 'boolean' &&
    typeof value !== 'string' &&
    !(value instanceof URL)
  )
    throw new ConfigError('`dataWorker` must be a boolean, a URL string or a URL');
  if (value === false || typeof Worker === 'undefined') return undefined;
  // The page's own functions cannot cross into a Worker: the work stays with them.
  if (options.createSocket || options.clock || options.random) return undefined;
  return value === undefined || value === true
    ? new URL('./data-worker.js', import.meta.url)
    : value;
}

/**
 * Checks options and fills in defaults.
 * @throws {ConfigError} on a missing or invalid option
 */
export function resolveOptions(options: EngineOptions): ResolvedEngineOptions {
  if (typeof options !== 'object' || options === null)
    throw new ConfigError('options must be an object');
  if (typeof options.controlUrl !== 'string' || !/^wss?:\/\//.test(options.controlUrl)) {
    throw new ConfigError('`controlUrl` must be a ws: or wss: URL');
  }
  const { auth, authToken } = options;
  if (auth !== undefined && typeof auth !== 'function')
    throw new ConfigError('`auth` must be a function');
  if (auth === undefined && (typeof authToken !== 'string' || authToken === '')) {
    throw new ConfigError('give `authToken` or `auth`');
  }
  const positive = (name: keyof typeof ENGINE_DEFAULTS, value: number | undefined): number => {
    if (value === undefined) return ENGINE_DEFAULTS[name] as number;
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new ConfigError(`\`${name}\` must be a positive integer`);
    return value;
  };
  const retryDelays = options.retryDelays ?? [...ENGINE_DEFAULTS.retryDelays];
  if (
    !Array.isArray(retryDelays) ||
    retryDelays.length === 0 ||
    retryDelays.some((d) => !(d >= 0))
  ) {
    throw new ConfigError('`retryDelays` must be a non-empty array of non-negative numbers');
  }
  const reconnectDelays = options.reconnectDelays ?? retryDelays;
  if (
    !Array.isArray(reconnectDelays) ||
    reconnectDelays.length === 0 ||
    reconnectDelays.some((d) => !(d >= 0))
  ) {
    throw new ConfigError('`reconnectDelays` must be a non-empty array of non-negative numbers');
  }
  return {
    controlUrl: options.controlUrl,
    auth: auth ?? (() => authToken!),
    chunkSize: positive('chunkSize', options.chunkSize),
    partSize: positive('partSize', options.partSize),
    protocols: resolveProtocols(options.protocols),
    maxParallel: positive('maxParallel', options.maxParallel),
    probeCount: positive('probeCount', options.probeCount),
    probeIntervalMs: positive('probeIntervalMs', options.probeIntervalMs),
    stallTimeoutMs: positive('stallTimeoutMs', options.stallTimeoutMs),
    retryDelays,
    reconnectDelays,
    onShouldRetry: options.onShouldRetry ?? ((_error, _attempt, retryable) => retryable),
    createSocket: options.createSocket ?? ((url, protocols) => new WebSocket(url, protocols)),
    clock: options.clock ?? defaultClock,
    random: options.random ?? Math.random,
    inlineMax: nonNegative('inlineMax', options.inlineMax),
    resume: resolveResume(options.resume),
    hashWorker: resolveHashWorker(options.hashWorker),
    integrity: resolveIntegrity(options.integrity),
    dataWorker: resolveDataWorker(options),
  };
}
