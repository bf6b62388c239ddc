/**
 * Many headless engines in a worker thread, driven from a Node test: the browser engine runs in
 * Node with the `ws` package's WebSocket as its socket factory. The worker keeps the engines' timers
 * and sockets off the event loop of the servers under test, so when the servers see connections
 * arrive is not bunched by the clients' own work.
 */
import { Worker } from 'node:worker_threads';

/** A socket of one engine opened or closed: which engine, the URL, when (ms since the epoch). */
export interface SocketEvent {
  readonly engine: number;
  readonly url: string;
  readonly at: number;
}

/** What the engines are doing. */
export interface HerdStatus {
  /** Engines whose control channel is open. */
  readonly controlOpen: number;
  /** Engines whose every upload server connection is open. */
  readonly uploadOpen: number;
  /** Every socket an engine opened. */
  readonly attempts: readonly SocketEvent[];
  /** Every socket close an engine saw. */
  readonly closes: readonly SocketEvent[];
}

/**
 * A herd of engines.
 * @example
 * const herd = await EngineHerd.start({ controlUrl, token, clients: 200 });
 * const { uploadOpen } = await herd.status();
 */
export class EngineHerd {
  readonly #worker: Worker;
  #next = 1;
  readonly #pending = new Map<number, { resolve(body: unknown): void; reject(e: Error): void }>();

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on('message', (m: { id: number }) => {
      this.#pending.get(m.id)?.resolve(m);
      this.#pending.delete(m.id);
    });
    worker.on('error', (e) => {
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    });
  }

  /**
   * Starts `clients` engines on a control server and waits until they are started.
   * @param options.retryDelays the engines' `retryDelays` @default the engine's
   */
  static async start(options: {
    controlUrl: string;
    token: string;
    clients: number;
    retryDelays?: number[];
  }): Promise<EngineHerd> {
    const worker = new Worker(new URL('./engine-herd-worker.mjs', import.meta.url), {
      workerData: options,
    });
    const herd = new EngineHerd(worker);
    await herd.#request('start');
    return herd;
  }

  /** What the engines are doing now. */
  status(): Promise<HerdStatus> {
    return this.#request('status') as Promise<HerdStatus>;
  }

  /** Turns the engines' jitter off (every random delay is its whole cap) or on again. */
  async jitter(on: boolean): Promise<void> {
    await this.#request('jitter', { jitter: on });
  }

  /** Stops every engine and the worker. */
  async stop(): Promise<void> {
    await this.#request('stop');
    await this.#worker.terminate();
  }

  #request(type: string, body: object = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, type, ...body });
    });
  }
}
