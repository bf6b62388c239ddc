/**
 * The SHA-256 of items split across upload servers, computed by those servers while the item
 * uploads, in one of two ways:
 * - `read`: the holder of the first range reads the item in order, its own ranges from its store
 *   and the others from their servers with read tokens made here (Node's SHA-256, several times
 *   faster than one that can stop part way, but most of the item crosses between servers);
 * - `steps`: when every server of the task registered with `digestSteps`, they hash it in turn,
 *   each asked (`digest` on its registry link) to hash its next run of ranges from the state the
 *   one before reached and to answer that state; the holder of the last answers the SHA-256. No
 *   bytes cross between servers, and relayed servers (which others cannot read) take part.
 * Each is used where the other (the one preferred) cannot be. The browser then sends no
 * digest of its own in `transport` integrity, and the item's `sha256` is the servers'.
 * @internal
 */
import {
  addRange,
  covers,
  type ByteRange,
  type DigestedMessage,
  type DigestMessage,
  type DigestSource,
  type DigestState,
  type TargetRange,
} from '../../src/protocol/index.js';
import { signToken, uploadAudience } from '../tokens.js';

/** What {@link SplitDigests} needs of the registry. */
export interface DigestRegistry {
  /** Linked, with an address other servers can reach. */
  reachable(id: string): boolean;
  /** Linked, and computes a digest's steps over its own ranges. */
  digestSteps(id: string): boolean;
  get(id: string): { readonly httpUrl: string; readonly peerUrl?: string } | undefined;
  digest(id: string, request: DigestMessage): boolean;
}

/** The outcome of a digest: the item's SHA-256, or why there is none. */
export type DigestOutcome =
  { readonly sha256: string } | { readonly code: string; readonly message: string };

/** One request of a digest: the whole of it, or a step over one server's ranges. */
interface Step {
  readonly serverId: string;
  /** Without `from`, which is the state the step before reached. */
  readonly request: DigestMessage;
}

interface Job {
  readonly itemId: string;
  /** One request, or the steps taken in turn. */
  readonly steps: readonly Step[];
  /** The step under way (or that failed). */
  index: number;
  /** The state the steps before `index` reached. */
  from?: DigestState;
  outcome?: DigestOutcome;
  readonly waiters: ((outcome: DigestOutcome) => void)[];
}

/** @internal */
export class SplitDigests {
  readonly #registry: DigestRegistry;
  readonly #key: Uint8Array;
  readonly #tokenTtl: number;
  readonly #prefer: 'read' | 'steps';
  /** By task id. */
  readonly #jobs = new Map<string, Job>();
  /** The task whose digest an item's servers compute now (a later task's replaces it). */
  readonly #byItem = new Map<string, string>();

  /**
   * @param registry the upload servers
   * @param key the secret read tokens are signed with
   * @param tokenTtl how long the read tokens given to the digesting server last, in seconds
   * @param prefer the way used where both can be: `read` (one server reads the others) or
   *   `steps` (in turn)
   */
  constructor(
    registry: DigestRegistry,
    key: Uint8Array,
    tokenTtl: number,
    prefer: 'read' | 'steps' = 'read',
  ) {
    this.#registry = registry;
    this.#key = key;
    this.#tokenTtl = tokenTtl;
    this.#prefer = prefer;
  }

  /**
   * Asks the servers to compute the digest of a task's item, when the task sends all of it to
   * several servers that are linked and either all take steps or all reach each other.
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
    if (servers.length < 2 || !whole) return false;
    const sorted = [...task.ranges].sort((a, b) => a.start - b.start);
    const runs: { serverId: string; start: number; end: number }[] = [];
    for (const r of sorted) {
      const last = runs.at(-1);
      // Neighbours on one server are one run.
      if (last && last.end === r.start && last.serverId === r.serverId) last.end = r.end;
      else runs.push({ serverId: r.serverId, start: r.start, end: r.end });
    }
    const { itemId } = task;
    const read = servers.every((id) => this.#registry.reachable(id));
    // In turn: every server can, and every hand-over falls on a whole SHA-256 block.
    const steps =
      servers.every((id) => this.#registry.digestSteps(id)) &&
      runs.every((r) => r.start % 64 === 0);
    if (steps && (this.#prefer === 'steps' || !read))
      return this.#start(task.taskId, {
        itemId,
        index: 0,
        waiters: [],
        steps: runs.map(({ serverId, start, end }) => ({
          serverId,
          request: { type: 'digest', itemId, size, peers: [], sources: [{ start, end }] },
        })),
      });
    if (!read) return false;
    const digester = runs[0]!.serverId;
    const peerIndex = new Map<string, number>();
    const peers: { url: string; token: string }[] = [];
    for (const id of servers) {
      if (id === digester) continue;
      const { token } = await signToken(this.#key, userId, uploadAudience(id), this.#tokenTtl, {
        scope: 'read',
        items: [itemId],
      });
      peerIndex.set(id, peers.length);
      const peer = this.#registry.get(id)!;
      peers.push({ url: `${peer.peerUrl ?? peer.httpUrl}/files/${itemId}`, token });
    }
    const sources: DigestSource[] = runs.map(({ serverId, start, end }) => {
      const peer = peerIndex.get(serverId);
      return { start, end, ...(peer === undefined ? {} : { peer }) };
    });
    const request: DigestMessage = { type: 'digest', itemId, size, peers, sources };
    return this.#start(task.taskId, {
      itemId,
      index: 0,
      waiters: [],
      steps: [{ serverId: digester, request }],
    });
  }

  /** Whether a digest was asked for this task. */
  has(taskId: string): boolean {
    return this.#jobs.has(taskId);
  }

  /**
   * Asks for a task's digest again (the last try failed; the bytes are all stored by now): its
   * step that failed, from the state the steps before reached.
   * @returns whether it was asked
   */
  retry(taskId: string): boolean {
    const job = this.#jobs.get(taskId);
    if (!job) return false;
    delete job.outcome;
    if (!this.#step(job)) return false;
    this.#byItem.set(job.itemId, taskId);
    return true;
  }

  /**
   * The digest of a task's item, once its servers answer, or `undefined` after `ms`.
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
    const step = job?.steps[job.index];
    // An answer to a request that a later one replaced, or from another server: not this job's.
    if (!job || !step || step.serverId !== serverId || job.outcome) return;
    const last = job.index === job.steps.length - 1;
    if (message.state !== undefined) {
      // Not this step's state: the answer to an earlier request.
      if (last || message.state.offset !== step.request.sources.at(-1)!.end) return;
      job.index++;
      job.from = message.state;
      if (!this.#step(job))
        this.#end(job, {
          code: 'unavailable',
          message: `upload server ${job.steps[job.index]!.serverId} is not linked`,
        });
      return;
    }
    if (message.sha256 !== undefined && !last) return;
    this.#end(
      job,
      message.sha256 !== undefined
        ? { sha256: message.sha256 }
        : { code: message.code ?? 'unavailable', message: message.message ?? '' },
    );
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

  /** Sends a job's first request; it replaces the item's digest under way, and takes its waiters. */
  #start(taskId: string, job: Job): boolean {
    if (!this.#step(job)) return false;
    const before = this.#jobs.get(taskId);
    for (const waiter of before?.waiters.splice(0) ?? []) job.waiters.push(waiter);
    this.#jobs.set(taskId, job);
    this.#byItem.set(job.itemId, taskId);
    return true;
  }

  /** Sends the job's step under way, from the state reached before it. */
  #step(job: Job): boolean {
    const { serverId, request } = job.steps[job.index]!;
    return this.#registry.digest(serverId, job.from ? { ...request, from: job.from } : request);
  }

  #end(job: Job, outcome: DigestOutcome): void {
    job.outcome = outcome;
    for (const waiter of job.waiters.splice(0)) waiter(outcome);
  }
}
