/**
 * The SHA-256 of items split across upload servers, computed by one of those servers while the
 * item uploads: for each task that sends a whole item to several servers, the holder of its first
 * range is asked (`digest` on its registry link) to read the item in order, its own ranges from its
 * store and the others from their servers with read tokens made here, and to answer `digested`.
 * The browser then sends no digest of its own in `transport` integrity, and the item's `sha256`
 * is the server's.
 * @internal
 */
import {
  addRange,
  covers,
  type ByteRange,
  type DigestedMessage,
  type DigestMessage,
  type DigestSource,
  type TargetRange,
} from '../../src/protocol/index.js';
import { signToken, uploadAudience } from '../tokens.js';

/** What {@link SplitDigests} needs of the registry. */
export interface DigestRegistry {
  /** Linked, with an address other servers can reach. */
  reachable(id: string): boolean;
  get(id: string): { readonly httpUrl: string; readonly peerUrl?: string } | undefined;
  digest(id: string, request: DigestMessage): boolean;
}

/** The outcome of a digest: the item's SHA-256, or why there is none. */
export type DigestOutcome =
  { readonly sha256: string } | { readonly code: string; readonly message: string };

interface Job {
  readonly itemId: string;
  readonly serverId: string;
  readonly request: DigestMessage;
  outcome?: DigestOutcome;
  readonly waiters: ((outcome: DigestOutcome) => void)[];
}

/** @internal */
export class SplitDigests {
  readonly #registry: DigestRegistry;
  readonly #key: Uint8Array;
  readonly #tokenTtl: number;
  /** By task id. */
  readonly #jobs = new Map<string, Job>();
  /** The task whose digest an item's server computes now (a later task's replaces it). */
  readonly #byItem = new Map<string, string>();

  /**
   * @param registry the upload servers
   * @param key the secret read tokens are signed with
   * @param tokenTtl how long the read tokens given to the digesting server last, in seconds
   */
  constructor(registry: DigestRegistry, key: Uint8Array, tokenTtl: number) {
    this.#registry = registry;
    this.#key = key;
    this.#tokenTtl = tokenTtl;
  }

  /**
   * Asks a server to compute the digest of a task's item, when the task sends all of it to several
   * servers that are linked and reachable from each other.
   * @param userId the owner, whose read tokens the digesting server uses
   * @returns whether a digest was asked for
   */
  async start(
    task: {
      readonly taskId: string;
      readonly itemId: string;
      readonly ranges: readonly TargetRange[];
    },
    size: number,
    userId: string,
  ): Promise<boolean> {
    const servers = [...new Set(task.ranges.map((r) => r.serverId))];
    const whole = covers(task.ranges.reduce<ByteRange[]>(addRange, []), { start: 0, end: size });
    if (servers.length < 2 || !whole || !servers.every((id) => this.#registry.reachable(id)))
      return false;
    const sorted = [...task.ranges].sort((a, b) => a.start - b.start);
    const digester = sorted[0]!.serverId;
    const peerIndex = new Map<string, number>();
    const peers: { url: string; token: string }[] = [];
    for (const id of servers) {
      if (id === digester) continue;
      const { token } = await signToken(this.#key, userId, uploadAudience(id), this.#tokenTtl, {
        scope: 'read',
        items: [task.itemId],
      });
      peerIndex.set(id, peers.length);
      const peer = this.#registry.get(id)!;
      peers.push({ url: `${peer.peerUrl ?? peer.httpUrl}/files/${task.itemId}`, token });
    }
    const sources: DigestSource[] = [];
    for (const r of sorted) {
      const peer = peerIndex.get(r.serverId);
      const last = sources.at(-1);
      // Neighbours on one server are one source.
      if (last && last.end === r.start && last.peer === peer)
        sources[sources.length - 1] = { ...last, end: r.end };
      else sources.push({ start: r.start, end: r.end, ...(peer === undefined ? {} : { peer }) });
    }
    const request: DigestMessage = { type: 'digest', itemId: task.itemId, size, peers, sources };
    return this.#send(task.taskId, {
      itemId: task.itemId,
      serverId: digester,
      request,
      waiters: [],
    });
  }

  /** Whether a digest was asked for this task. */
  has(taskId: string): boolean {
    return this.#jobs.has(taskId);
  }

  /**
   * Asks for a task's digest again (the last try failed; the bytes are all stored by now).
   * @returns whether it was asked
   */
  retry(taskId: string): boolean {
    const job = this.#jobs.get(taskId);
    if (!job) return false;
    const { itemId, serverId, request } = job;
    return this.#send(taskId, { itemId, serverId, request, waiters: [] });
  }

  /**
   * The digest of a task's item, once its server answers, or `undefined` after `ms`.
   */
  outcome(taskId: string, ms: number): Promise<DigestOutcome | undefined> {
    const job = this.#jobs.get(taskId);
    if (!job) return Promise.resolve(undefined);
    if (job.outcome) return Promise.resolve(job.outcome);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = job.waiters.indexOf(done);
        if (i >= 0) job.waiters.splice(i, 1);
        resolve(undefined);
      }, ms);
      timer.unref();
      const done = (outcome: DigestOutcome): void => {
        clearTimeout(timer);
        resolve(outcome);
      };
      job.waiters.push(done);
    });
  }

  /** A server answered a `digest` request. */
  digested(serverId: string, message: DigestedMessage): void {
    const taskId = this.#byItem.get(message.itemId);
    const job = taskId === undefined ? undefined : this.#jobs.get(taskId);
    // An answer to a request that a later one replaced, or from another server: not this job's.
    if (!job || job.serverId !== serverId || job.outcome) return;
    job.outcome =
      message.sha256 !== undefined
        ? { sha256: message.sha256 }
        : { code: message.code ?? 'unavailable', message: message.message ?? '' };
    for (const waiter of job.waiters.splice(0)) waiter(job.outcome);
  }

  /** Forgets a task's digest (the task ended). */
  drop(taskId: string): void {
    const job = this.#jobs.get(taskId);
    if (!job) return;
    this.#jobs.delete(taskId);
    if (this.#byItem.get(job.itemId) === taskId) this.#byItem.delete(job.itemId);
    const gone = { code: 'unavailable', message: 'the task ended' };
    for (const waiter of job.waiters.splice(0)) waiter(gone);
  }

  #send(taskId: string, job: Job): boolean {
    if (!this.#registry.digest(job.serverId, job.request)) return false;
    const before = this.#jobs.get(taskId);
    for (const waiter of before?.waiters.splice(0) ?? []) job.waiters.push(waiter);
    this.#jobs.set(taskId, job);
    this.#byItem.set(job.itemId, taskId);
    return true;
  }
}
