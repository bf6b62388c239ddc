/**
 * One connection per upload server: connects, authenticates, probes the RTT, keeps a heartbeat
 * and reconnects with backoff when a connection is lost.
 */
import type { ServerInfo } from '../protocol/control.js';
import { TransportError } from '../errors.js';
import { Dup1Transport } from './dup1-transport.js';
import { Dup2Transport } from './dup2-transport.js';
import { HttpTransport } from './http-transport.js';
import { chooseProtocol, httpEndpoint, type ProtocolChoice } from './server-description.js';
import type { DataProtocol, Transport, TransportCloseHandler } from './transport.js';
import { LatencyProbe } from './latency-probe.js';
import { ThroughputMeter } from './throughput-meter.js';
import { Backoff } from './retry.js';
import type { ResolvedEngineOptions } from './options.js';
import { ConnectionState, type ServerStatus } from './types.js';

/** Time {@link SocketPool.get} waits for a server to come up, in ms. */
const GET_TIMEOUT_MS = 10_000;

interface Entry {
  info: ServerInfo;
  state: ConnectionState;
  transport: Transport | undefined;
  /** Its `http/1` endpoint, once asked for. */
  httpEndpoint?: Promise<string>;
  /** The protocol chosen for the server (again when its entry in the list changes). */
  choice: Promise<ProtocolChoice> | undefined;
  protocol: DataProtocol | undefined;
  readonly probe: LatencyProbe;
  readonly meter: ThroughputMeter;
  readonly backoff: Backoff;
  timer: unknown;
  waiters: (() => void)[];
}

/** Callbacks of a {@link SocketPool}. */
export interface SocketPoolHandlers {
  /** A server's state or RTT changed. */
  change(servers: ServerStatus[]): void;
  /** New RTT (and throughput) measurements, to report to the control server. */
  probe(results: { serverId: string; rttMs: number; throughput?: number }[]): void;
}

/**
 * The engine's connections to upload servers.
 * @internal
 */
export class SocketPool {
  readonly #options: ResolvedEngineOptions;
  readonly #handlers: SocketPoolHandlers;
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  constructor(options: ResolvedEngineOptions, handlers: SocketPoolHandlers) {
    this.#options = options;
    this.#handlers = handlers;
  }

  /** Status of every server. */
  statuses(): ServerStatus[] {
    const now = this.#options.clock.now();
    return [...this.#entries.values()].map((e) => ({
      id: e.info.id,
      url: e.info.url,
      httpUrl: e.info.httpUrl,
      state: e.state,
      rttMs: e.probe.rttMs,
      throughput: e.meter.rate(now),
      protocol: e.protocol,
    }));
  }

  /**
   * HTTP uploads to a server (its `http/1` endpoint), whatever protocol its connection speaks: for
   * a whole item in one multipart POST, to the endpoint the server's description names.
   * @param serverId the server
   * @throws {TransportError} (as a rejection) when the server is not in the list
   */
  async http(serverId: string): Promise<HttpTransport> {
    const entry = this.#entries.get(serverId);
    if (!entry)
      throw new TransportError('no-servers', `upload server ${serverId} is not in the list`, {
        serverId,
      });
    if (entry.transport instanceof HttpTransport) return entry.transport;
    // Read once per server from its description; a server that has none gets `/uploads`.
    entry.httpEndpoint ??= httpEndpoint(entry.info);
    return new HttpTransport(entry.info, this.#options, await entry.httpEndpoint, undefined);
  }

  /**
   * Bytes per second a server stored lately, when it stored any.
   * @param serverId the server
   */
  throughput(serverId: string): number | undefined {
    return this.#entries.get(serverId)?.meter.rate(this.#options.clock.now());
  }

  /**
   * Marks that bytes start to go to a server, for its throughput.
   * @param serverId the server
   */
  sending(serverId: string): void {
    this.#entries.get(serverId)?.meter.begin(this.#options.clock.now());
  }

  /**
   * Counts bytes a server acknowledged as stored, for its throughput.
   * @param serverId the server
   * @param bytes how many
   */
  stored(serverId: string, bytes: number): void {
    this.#entries.get(serverId)?.meter.add(bytes, this.#options.clock.now());
  }

  /**
   * Sets the server list: connects to new servers, drops removed ones, takes new tokens.
   * @param servers the list from the control server
   */
  update(servers: readonly ServerInfo[]): void {
    this.#closed = false;
    const ids = new Set(servers.map((s) => s.id));
    for (const [id, entry] of this.#entries) {
      if (ids.has(id)) continue;
      this.#options.clock.clearTimeout(entry.timer);
      entry.transport?.close();
      this.#entries.delete(id);
    }
    for (const info of servers) {
      const entry = this.#entries.get(info.id);
      if (entry) {
        if (entry.info.url !== info.url || entry.info.httpUrl !== info.httpUrl) {
          entry.choice = undefined;
          delete entry.httpEndpoint;
        }
        entry.info = info;
        // A renewed token: for the transport's next connections and requests.
        if (entry.transport) entry.transport.info = info;
        continue;
      }
      const fresh: Entry = {
        info,
        state: ConnectionState.CONNECTING,
        transport: undefined,
        choice: undefined,
        protocol: undefined,
        probe: new LatencyProbe(),
        meter: new ThroughputMeter(),
        backoff: new Backoff(() => this.#options.reconnectDelays, this.#options.random),
        timer: undefined,
        waiters: [],
      };
      this.#entries.set(info.id, fresh);
      void this.#connect(fresh);
    }
    this.#changed();
  }

  /**
   * The open connection to a server, waiting for it to (re)connect.
   * @throws {TransportError} when the server is unknown or does not come up in time
   */
  async get(serverId: string): Promise<Transport> {
    const deadline = this.#options.clock.now() + GET_TIMEOUT_MS;
    for (;;) {
      const entry = this.#entries.get(serverId);
      if (!entry || this.#closed) {
        throw new TransportError('no-servers', `upload server ${serverId} is not in the list`, {
          serverId,
        });
      }
      const usable =
        entry.state === ConnectionState.OPEN || entry.state === ConnectionState.DEGRADED;
      if (usable && entry.transport?.isOpen) return entry.transport;
      const left = deadline - this.#options.clock.now();
      if (left <= 0)
        throw new TransportError('connect-timeout', `upload server ${serverId} is down`, {
          serverId,
        });
      await new Promise<void>((resolve) => {
        entry.waiters.push(resolve);
        this.#options.clock.setTimeout(resolve, Math.min(left, 1000));
      });
    }
  }

  /** Closes every connection. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) {
      this.#options.clock.clearTimeout(entry.timer);
      entry.transport?.close();
      entry.state = ConnectionState.CLOSED;
      for (const w of entry.waiters.splice(0)) w();
    }
    this.#entries.clear();
  }

  async #connect(entry: Entry): Promise<void> {
    if (this.#closed || this.#entries.get(entry.info.id) !== entry) return;
    this.#setState(entry, ConnectionState.CONNECTING);
    const lost: TransportCloseHandler = () => {
      if (entry.transport !== transport) return;
      entry.transport = undefined;
      this.#lost(entry);
    };
    let transport: Transport | undefined;
    try {
      entry.choice ??= chooseProtocol(entry.info, this.#options.protocols);
      const choice = await entry.choice;
      if (this.#closed || this.#entries.get(entry.info.id) !== entry) return;
      entry.protocol = choice.protocol;
      transport = this.#transport(entry.info, choice, lost);
      entry.transport = transport;
      await transport.connect();
    } catch {
      if (transport && entry.transport === transport) entry.transport = undefined;
      // The server may describe itself differently once it is back.
      entry.choice = undefined;
      this.#lost(entry);
      return;
    }
    entry.backoff.reset();
    this.#setState(entry, ConnectionState.OPEN);
    await this.#probe(entry, transport, this.#options.probeCount);
  }

  /** A transport for the chosen protocol. */
  #transport(info: ServerInfo, choice: ProtocolChoice, lost: TransportCloseHandler): Transport {
    const ws = (protocol: DataProtocol): Transport =>
      protocol === 'dup/1'
        ? new Dup1Transport(info, this.#options, lost)
        : new Dup2Transport(info, this.#options, lost);
    if (choice.protocol !== 'http/1') return ws(choice.protocol);
    const entry = this.#entries.get(info.id);
    return new HttpTransport(
      info,
      this.#options,
      choice.url,
      choice.live && ws(choice.live),
      () => ({
        rttMs: entry?.probe.rttMs,
        throughput: entry?.meter.rate(this.#options.clock.now()),
      }),
    );
  }

  async #probe(entry: Entry, transport: Transport, count: number): Promise<void> {
    try {
      for (let i = 0; i < count; i++) entry.probe.sample(await transport.ping());
      // Answered: healthy again.
      if (entry.transport === transport) this.#setState(entry, ConnectionState.OPEN);
      const rttMs = entry.probe.rttMs;
      const throughput = entry.meter.rate(this.#options.clock.now());
      if (rttMs !== undefined)
        this.#handlers.probe([
          { serverId: entry.info.id, rttMs, ...(throughput === undefined ? {} : { throughput }) },
        ]);
      this.#changed();
    } catch {
      // A lost PONG fails one measurement, and the server counts as degraded until one comes;
      // a closed connection is the close handler's.
      if (entry.transport !== transport || !transport.isOpen) return;
      this.#setState(entry, ConnectionState.DEGRADED);
    }
    entry.timer = this.#options.clock.setTimeout(() => {
      if (entry.transport === transport && transport.isOpen) void this.#probe(entry, transport, 1);
    }, this.#options.probeIntervalMs);
  }

  #lost(entry: Entry): void {
    if (this.#closed || this.#entries.get(entry.info.id) !== entry) return;
    this.#setState(entry, ConnectionState.DOWN);
    this.#options.clock.clearTimeout(entry.timer);
    entry.timer = this.#options.clock.setTimeout(
      () => void this.#connect(entry),
      entry.backoff.next(),
    );
  }

  #setState(entry: Entry, state: ConnectionState): void {
    if (entry.state === state) return;
    entry.state = state;
    for (const w of entry.waiters.splice(0)) w();
    this.#changed();
  }

  #changed(): void {
    this.#handlers.change(this.statuses());
  }
}
