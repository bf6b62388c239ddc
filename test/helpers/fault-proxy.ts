/**
 * A TCP proxy that plays a bad network between a client and a server, for fault tests in Node and
 * (through servers-plugin.mjs) in the browser. It does what the toxiproxy toxics of the
 * reliability matrix do, scaled down to run in seconds:
 *
 * - a **black hole** (`timeout` 0): nothing passes any more in either direction, and neither side
 *   is told (no FIN, no RST), now or after some more bytes from the client;
 * - a **bandwidth** limit in bytes per second, each way, per connection or shared by every
 *   connection of the proxy (one link);
 * - **latency**: every byte is held for some time on its way, each way (toxiproxy `latency`);
 * - a **slicer**: bytes are passed on in tiny writes, some time apart;
 * - an **idle cut**, as a NAT or a proxy with an idle timeout does: a connection with no bytes
 *   either way for `idleCutMs` is closed (`'close'`, nginx `proxy_read_timeout`) or silently
 *   forgotten (`'silent'`, a NAT that dropped its mapping: a black hole);
 * - **down**: new connections are refused (reset at once).
 *
 * Filters can also rewrite the bytes of either side (see `corruptingFilter` in servers-plugin.mjs).
 * Shaping options can be changed while connections are open ({@link FaultProxy.shape}).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** How bytes are shaped on their way (both directions). */
export interface FaultShape {
  /** Bytes per second, each way (toxiproxy `bandwidth`). @default unlimited */
  readonly bytesPerSecond?: number;
  /**
   * Whether `bytesPerSecond` is shared by every connection of the proxy, each way, as one link in
   * front of the server is, instead of applying to each connection alone.
   * @default false
   */
  readonly shareBandwidth?: boolean;
  /**
   * Time every byte is held on its way, in ms, each way (toxiproxy `latency`): a round trip takes
   * twice this long more. Bytes are delayed after the bandwidth limit, as on a link, and their
   * order is kept. The proxy still reads each sender at once (its kernel sees a fast receiver),
   * so bytes in flight are bounded by the bandwidth limit times the latency, or by
   * `LATENCY_MAX_BYTES` per direction without a limit. A change applies to bytes that arrive
   * afterwards.
   * @default 0
   */
  readonly latencyMs?: number;
  /** Largest write, in bytes (toxiproxy `slicer`). @default unlimited */
  readonly sliceBytes?: number;
  /** Time between two slices, in ms (0: the next turn of the event loop). @default 0 */
  readonly sliceDelayMs?: number;
  /** A connection with no bytes either way for this long is cut, in ms. @default never */
  readonly idleCutMs?: number;
  /**
   * How an idle connection is cut: `'close'` closes both sides, `'silent'` black-holes it.
   * @default 'close'
   */
  readonly idleCut?: 'close' | 'silent';
}

/** Options of {@link FaultProxy.start}. */
export interface FaultProxyOptions extends FaultShape {
  /** Port of the server the proxy forwards to. */
  readonly targetPort: number;
  /** @default '127.0.0.1' */
  readonly targetHost?: string;
  /** Makes, for each new connection, a function that rewrites the client's bytes. */
  readonly filterUp?: () => (chunk: Buffer) => Buffer;
  /** Makes, for each new connection, a function that rewrites the server's bytes. */
  readonly filterDown?: () => (chunk: Buffer) => Buffer;
}

/** What a proxy did so far. */
export interface FaultProxyStats {
  /** Connections accepted (refused ones not counted). */
  readonly connections: number;
  /** Connections still forwarding (not closed, not black-holed). */
  readonly open: number;
  /** Connections closed for being idle. */
  readonly idleClosed: number;
  /** Connections black-holed (by command, or silently for being idle). */
  readonly blackholed: number;
  /** Connections refused while down. */
  readonly refused: number;
  /** Bytes passed client → server and server → client. */
  readonly bytesUp: number;
  readonly bytesDown: number;
}

/** Something the proxy did to a connection, and when (ms since the epoch). */
export interface FaultProxyEvent {
  readonly at: number;
  readonly what: 'connection' | 'refused' | 'blackhole' | 'idle-close';
}

/** Bytes queued in one direction past which the proxy stops reading the sender. */
const HIGH_WATER = 64 * 1024;

/**
 * Bytes held for `latencyMs` in one direction past which the proxy takes no more from its queue
 * (a sender's TCP window bounds the bytes in flight on a real link likewise).
 */
export const LATENCY_MAX_BYTES = 8 * 1024 * 1024;

/** A token bucket for `bytesPerSecond`: one per direction of a connection, or of a proxy. */
class Bucket {
  #tokens = 0;
  #refilled = performance.now();

  /**
   * Takes the tokens for up to `n` bytes, in whole pieces of at most 20 ms worth.
   * @returns the bytes that may pass now (0: none), and else how long to wait, in ms
   */
  take(n: number, bytesPerSecond: number): { bytes: number; waitMs: number } {
    const now = performance.now();
    // At most 20 ms worth of bytes at once.
    const burst = Math.max(1, bytesPerSecond / 50);
    this.#tokens = Math.min(burst, this.#tokens + ((now - this.#refilled) * bytesPerSecond) / 1000);
    this.#refilled = now;
    // Whole pieces (a slice, or up to a burst), each once there are tokens for it.
    n = Math.min(n, Math.floor(burst));
    if (this.#tokens < n) {
      return {
        bytes: 0,
        waitMs: Math.max(1, Math.ceil(((n - this.#tokens) * 1000) / bytesPerSecond)),
      };
    }
    this.#tokens -= n;
    return { bytes: n, waitMs: 0 };
  }
}

/**
 * A running fault proxy on 127.0.0.1.
 * @example
 * const proxy = await FaultProxy.start({ targetPort: 8080, idleCutMs: 1500 });
 * const ws = new WebSocket(proxy.rewrite('ws://127.0.0.1:8080/dup'));
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #options: FaultProxyOptions;
  #shape: FaultShape;
  readonly #connections = new Set<Connection>();
  readonly #events: FaultProxyEvent[] = [];
  #down = false;
  /** The buckets of `shareBandwidth`: client → server, server → client. */
  readonly #buckets = { up: new Bucket(), down: new Bucket() };
  readonly #stats = {
    connections: 0,
    idleClosed: 0,
    blackholed: 0,
    refused: 0,
    bytesUp: 0,
    bytesDown: 0,
  };

  private constructor(server: Server, options: FaultProxyOptions) {
    this.#server = server;
    this.#options = options;
    this.#shape = { ...options };
  }

  /** Starts a proxy on a free port of 127.0.0.1. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const server = createServer({ noDelay: true });
    const proxy = new FaultProxy(server, options);
    server.on('connection', (client) => proxy.#accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  /** The port the proxy listens on. */
  get port(): number {
    const address = this.#server.address();
    if (address === null || typeof address !== 'object') throw new Error('the proxy is closed');
    return address.port;
  }

  /** `url` with its host and port replaced by the proxy's. */
  rewrite(url: string): string {
    const u = new URL(url);
    u.host = `127.0.0.1:${this.port}`;
    return u.href;
  }

  /** The current shaping. */
  get shaping(): FaultShape {
    return this.#shape;
  }

  /** Changes the shaping of open and new connections (fields given replace the old ones). */
  shape(shape: FaultShape): void {
    this.#shape = { ...this.#shape, ...shape };
    for (const c of this.#connections) c.wake();
  }

  /** Whether new connections are refused. */
  get down(): boolean {
    return this.#down;
  }

  set down(down: boolean) {
    this.#down = down;
  }

  /**
   * Black-holes the open connections: nothing more passes either way, no side is told. New
   * connections are forwarded as usual.
   * @param afterBytes first let this many more bytes of each connection's client through
   * @returns how many connections it applies to
   */
  blackhole(afterBytes = 0): number {
    const open = [...this.#connections].filter((c) => c.forwarding);
    for (const c of open) c.blackholeAfter(afterBytes);
    return open.length;
  }

  /** What the proxy did to connections so far, in order. */
  events(): readonly FaultProxyEvent[] {
    return this.#events;
  }

  /** What the proxy did so far. */
  stats(): FaultProxyStats {
    const open = [...this.#connections].filter((c) => c.forwarding).length;
    return { ...this.#stats, open };
  }

  /** Stops listening and destroys every connection, black-holed ones included. */
  async close(): Promise<void> {
    for (const c of this.#connections) c.destroy();
    this.#connections.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #event(what: FaultProxyEvent['what']): void {
    this.#events.push({ at: Date.now(), what });
  }

  #accept(client: Socket): void {
    if (this.#down) {
      this.#stats.refused++;
      this.#event('refused');
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    this.#stats.connections++;
    this.#event('connection');
    const upstream = connect({
      port: this.#options.targetPort,
      host: this.#options.targetHost ?? '127.0.0.1',
      noDelay: true,
    });
    const filters = { up: this.#options.filterUp?.(), down: this.#options.filterDown?.() };
    const connection = new Connection(client, upstream, filters, {
      shape: () => this.#shape,
      sharedBucket: (up) => (up ? this.#buckets.up : this.#buckets.down),
      counted: (up, n) => {
        if (up) this.#stats.bytesUp += n;
        else this.#stats.bytesDown += n;
      },
      blackholed: () => {
        this.#stats.blackholed++;
        this.#event('blackhole');
      },
      idleClosed: () => {
        this.#stats.idleClosed++;
        this.#event('idle-close');
      },
      gone: () => this.#connections.delete(connection),
    });
    this.#connections.add(connection);
  }
}

interface ConnectionHooks {
  shape(): FaultShape;
  sharedBucket(up: boolean): Bucket;
  counted(up: boolean, bytes: number): void;
  blackholed(): void;
  idleClosed(): void;
  gone(): void;
}

/** One proxied connection: two directions, an idle watch, and its fate. */
class Connection {
  /** Forwarding normally (not closed, not black-holed). */
  forwarding = true;
  readonly #client: Socket;
  readonly #upstream: Socket;
  readonly #hooks: ConnectionHooks;
  readonly #up: Direction;
  readonly #down: Direction;
  #lastActivity = performance.now();
  #idleTimer: NodeJS.Timeout | undefined;
  /** A side closed while bytes were held for `latencyMs`: close once they are out. */
  #closing = false;

  constructor(
    client: Socket,
    upstream: Socket,
    filters: {
      up: ((chunk: Buffer) => Buffer) | undefined;
      down: ((chunk: Buffer) => Buffer) | undefined;
    },
    hooks: ConnectionHooks,
  ) {
    this.#client = client;
    this.#upstream = upstream;
    this.#hooks = hooks;
    this.#up = new Direction(client, upstream, this, true, filters.up);
    this.#down = new Direction(upstream, client, this, false, filters.down);
    const lost = (): void => {
      // A black-holed connection tells neither side about the other's end.
      if (!this.forwarding) {
        if (client.destroyed && upstream.destroyed) this.#end();
        return;
      }
      // Bytes held for `latencyMs` still reach the side that is left, as on a link; then close.
      if (this.#up.holding || this.#down.holding) {
        this.#closing = true;
        return;
      }
      this.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', lost);
      socket.on('close', lost);
      // Half-closes are passed on once what came before was.
      socket.on('end', () => (socket === client ? this.#up : this.#down).end());
    }
    this.#watchIdle();
  }

  get shape(): FaultShape {
    return this.#hooks.shape();
  }

  /** The proxy's bucket for one direction (`shareBandwidth`). */
  sharedBucket(up: boolean): Bucket {
    return this.#hooks.sharedBucket(up);
  }

  /** Bytes passed one way. */
  passed(up: boolean, bytes: number): void {
    this.#lastActivity = performance.now();
    this.#hooks.counted(up, bytes);
  }

  /** A direction passed on the last bytes it held for `latencyMs`. */
  lineEmptied(): void {
    if (this.#closing && this.forwarding && !this.#up.holding && !this.#down.holding) {
      this.destroy();
    }
  }

  /** The shaping changed. */
  wake(): void {
    this.#up.pump();
    this.#down.pump();
    this.#watchIdle();
  }

  /** Black-holes after `bytes` more client bytes (at once for 0). */
  blackholeAfter(bytes: number): void {
    if (bytes <= 0) this.blackhole();
    else this.#up.limit(bytes);
  }

  /** Nothing more passes, and neither side is told. */
  blackhole(): void {
    if (!this.forwarding) return;
    this.forwarding = false;
    clearTimeout(this.#idleTimer);
    this.#up.drop();
    this.#down.drop();
    this.#hooks.blackholed();
  }

  /** Closes both sides. */
  destroy(): void {
    this.forwarding = false;
    clearTimeout(this.#idleTimer);
    this.#client.destroy();
    this.#upstream.destroy();
    this.#end();
  }

  #end(): void {
    clearTimeout(this.#idleTimer);
    this.#hooks.gone();
  }

  #watchIdle(): void {
    clearTimeout(this.#idleTimer);
    const ms = this.shape.idleCutMs;
    if (ms === undefined || !this.forwarding) return;
    const quiet = performance.now() - this.#lastActivity;
    this.#idleTimer = setTimeout(
      () => {
        if (!this.forwarding) return;
        if (performance.now() - this.#lastActivity < ms) {
          this.#watchIdle();
          return;
        }
        if (this.shape.idleCut === 'silent') {
          this.blackhole();
          return;
        }
        this.#hooks.idleClosed();
        this.destroy();
      },
      Math.max(0, ms - quiet),
    );
  }
}

/** One direction of a connection: a queue, shaped on its way out. */
class Direction {
  readonly #from: Socket;
  readonly #to: Socket;
  readonly #connection: Connection;
  readonly #up: boolean;
  readonly #filter: ((chunk: Buffer) => Buffer) | undefined;
  readonly #queue: Buffer[] = [];
  #queued = 0;
  #dropped = false;
  #ended = false;
  /** Bytes that may still pass before the connection is black-holed; Infinity: no such limit. */
  #left = Infinity;
  /** Waiting for a timer or `drain`. */
  #waiting = false;
  /** The bucket of `bytesPerSecond` when it is not shared. */
  readonly #bucket = new Bucket();
  /** Bytes held for `latencyMs`, oldest first, with the time each may pass. */
  readonly #line: { at: number; bytes: Buffer }[] = [];
  #lineBytes = 0;
  #lineTimer: NodeJS.Timeout | undefined;
  /** The pump waits for the line to shrink. */
  #lineFull = false;

  constructor(
    from: Socket,
    to: Socket,
    connection: Connection,
    up: boolean,
    filter: ((chunk: Buffer) => Buffer) | undefined,
  ) {
    this.#from = from;
    this.#to = to;
    this.#connection = connection;
    this.#up = up;
    this.#filter = filter;
    from.on('data', (chunk: Buffer) => {
      if (this.#dropped) return;
      const bytes = this.#filter ? this.#filter(chunk) : chunk;
      if (bytes.length === 0) return;
      this.#queue.push(bytes);
      this.#queued += bytes.length;
      if (this.#queued > HIGH_WATER) from.pause();
      this.pump();
    });
  }

  /** Whether bytes held for `latencyMs` are still to pass to a socket that is open. */
  get holding(): boolean {
    return this.#line.length > 0 && !this.#to.destroyed;
  }

  /** Lets `bytes` more pass, then black-holes the connection. */
  limit(bytes: number): void {
    this.#left = bytes;
  }

  /**
   * Forgets what is queued and passes nothing any more. The sender is not read either, as a
   * network that lost the route acknowledges nothing: its kernel buffers fill up and then its own
   * send buffer (a browser's `bufferedAmount` stops going down).
   */
  drop(): void {
    this.#dropped = true;
    this.#queue.length = 0;
    this.#queued = 0;
    this.#line.length = 0;
    this.#lineBytes = 0;
    clearTimeout(this.#lineTimer);
    this.#from.pause();
  }

  /** The sender half-closed: end the other side once the queue is out. */
  end(): void {
    this.#ended = true;
    this.pump();
  }

  /** Passes on what the shaping allows now, and arranges to go on later. */
  pump(): void {
    while (!this.#waiting && !this.#dropped) {
      if (this.#queued === 0) {
        if (this.#ended && this.#connection.forwarding && this.#line.length === 0) this.#to.end();
        return;
      }
      // Every byte allowed has passed: the connection is black-holed once the line is out.
      if (this.#left <= 0) return;
      const shape = this.#connection.shape;
      const { bytesPerSecond, sliceBytes, sliceDelayMs = 0, latencyMs = 0 } = shape;
      // Bytes still in the line go first, even when the latency was set back to 0.
      const delayed = latencyMs > 0 || this.#line.length > 0;
      if (delayed && this.#lineBytes >= LATENCY_MAX_BYTES) {
        this.#lineFull = true;
        return;
      }
      if (delayed && this.#to.writableNeedDrain) {
        this.#drain();
        return;
      }
      let n = Math.min(this.#queued, this.#left);
      if (sliceBytes !== undefined) n = Math.min(n, Math.max(1, sliceBytes));
      if (bytesPerSecond !== undefined) {
        const bucket = shape.shareBandwidth
          ? this.#connection.sharedBucket(this.#up)
          : this.#bucket;
        const { bytes, waitMs } = bucket.take(n, bytesPerSecond);
        if (bytes === 0) {
          this.#later(waitMs);
          return;
        }
        n = bytes;
      }
      let ok = true;
      if (delayed) this.#delay(this.#take(n), latencyMs);
      else {
        ok = this.#to.write(this.#take(n));
        this.#connection.passed(this.#up, n);
      }
      if (this.#queued <= HIGH_WATER / 2 && !this.#dropped) this.#from.resume();
      if (this.#left !== Infinity) {
        this.#left -= n;
        if (this.#left <= 0) {
          if (this.#line.length === 0) this.#connection.blackhole();
          return;
        }
      }
      if (!ok) {
        this.#drain();
        return;
      }
      if (sliceBytes !== undefined) {
        this.#later(sliceDelayMs);
        return;
      }
    }
  }

  #later(ms: number): void {
    this.#waiting = true;
    const go = (): void => {
      this.#waiting = false;
      this.pump();
    };
    if (ms <= 0) setImmediate(go);
    else setTimeout(go, ms);
  }

  /** Waits for the receiving socket's `drain`. */
  #drain(): void {
    this.#waiting = true;
    this.#to.once('drain', () => {
      this.#waiting = false;
      this.pump();
    });
  }

  /** Holds `bytes` in the line for `ms`, after what is there already. */
  #delay(bytes: Buffer, ms: number): void {
    const last = this.#line[this.#line.length - 1];
    this.#line.push({ at: Math.max(performance.now() + ms, last?.at ?? 0), bytes });
    this.#lineBytes += bytes.length;
    if (this.#line.length === 1) this.#armLine();
  }

  #armLine(): void {
    const head = this.#line[0];
    if (!head) return;
    this.#lineTimer = setTimeout(
      () => this.#flushLine(),
      Math.max(0, Math.ceil(head.at - performance.now())),
    );
  }

  /** Passes on the bytes of the line whose time has come. */
  #flushLine(): void {
    if (this.#dropped) return;
    if (this.#to.destroyed) {
      this.#line.length = 0;
      this.#lineBytes = 0;
      this.#connection.lineEmptied();
      return;
    }
    const now = performance.now();
    while (this.#line.length > 0 && this.#line[0]!.at <= now) {
      const { bytes } = this.#line.shift()!;
      this.#lineBytes -= bytes.length;
      this.#to.write(bytes);
      this.#connection.passed(this.#up, bytes.length);
    }
    if (this.#line.length > 0) this.#armLine();
    else if (this.#left <= 0) {
      this.#connection.blackhole();
      return;
    } else this.#connection.lineEmptied();
    if (this.#lineFull && this.#lineBytes < LATENCY_MAX_BYTES) {
      this.#lineFull = false;
      this.pump();
    } else if (this.#line.length === 0 && this.#queued === 0 && this.#ended) this.pump();
  }

  /** Takes `n` bytes off the front of the queue. */
  #take(n: number): Buffer {
    this.#queued -= n;
    const head = this.#queue[0]!;
    if (head.length === n) return this.#queue.shift()!;
    if (head.length > n) {
      this.#queue[0] = head.subarray(n);
      return head.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const b = this.#queue[0]!;
      const k = Math.min(b.length, n - at);
      b.copy(out, at, 0, k);
      at += k;
      if (k === b.length) this.#queue.shift();
      else this.#queue[0] = b.subarray(k);
    }
    return out;
  }
}
