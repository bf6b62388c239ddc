/**
 * Where a control server keeps the state that outlives one connection: published items, pending
 * transmit tasks, sessions browsers may resume, and the digests linked upload servers verified.
 * Connections themselves (sockets, rooms, timers) stay in the process that holds them.
 *
 * Every method is asynchronous, so that a store shared by several control-server instances (a
 * database, a key-value service) can implement the same interface; {@link MemoryControlStore} is
 * the default, for one instance.
 */
import type { ItemMeta, TargetRange, TransmitReason } from '../../src/protocol/index.js';

/** Where an item is in its life. */
export type ItemState = 'published' | 'uploading' | 'stored' | 'failed';

/** What the control server knows about a published item. */
export interface ItemInfo {
  readonly meta: ItemMeta;
  readonly userId: string;
  /** The browser that published it (the one asked to upload it). */
  readonly clientId: string;
  readonly state: ItemState;
  /** Servers that hold it, once stored. */
  readonly servers: readonly string[];
  /** Hex SHA-256, once stored. */
  readonly sha256?: string;
  /** Bytes stored so far, as the browser last reported while uploading. */
  readonly bytesStored?: number;
  /** Whether the item came inline (its `meta.content` holds its bytes, base64). */
  readonly inline?: boolean;
  /**
   * Where its last `publish` or `replan` task sent its ranges. An item published again before it
   * is stored (a reloaded page, another browser) goes back there while those servers are all live:
   * they hold some of its bytes, and the browser sends only the rest.
   */
  readonly plan?: readonly TargetRange[];
}

/** A transmit task the control server sent and that has not ended. */
export interface TaskRecord {
  readonly taskId: string;
  readonly itemId: string;
  /** The browser that runs it. */
  readonly clientId: string;
  readonly ranges: readonly TargetRange[];
  /** Why it was sent; `demand`: a reader waits for these ranges. */
  readonly reason: TransmitReason;
  /** The data protocol the browser was asked to use (`http/1`: one multipart POST), if any. */
  readonly protocol?: string;
}

/** A session a browser may resume with its session id. */
export interface SessionRecord {
  readonly sessionId: string;
  readonly clientId: string;
  readonly userId: string;
  /** Until when it may be resumed, ms since the epoch (`Infinity` while connected). */
  readonly expiresAt: number;
}

/** The state store of a control server. */
export interface ControlStore {
  getItem(itemId: string): Promise<ItemInfo | undefined>;
  /** Creates or replaces an item. */
  putItem(item: ItemInfo): Promise<void>;
  deleteItem(itemId: string): Promise<void>;
  /** Every item. */
  items(): Promise<ItemInfo[]>;

  getTask(taskId: string): Promise<TaskRecord | undefined>;
  putTask(task: TaskRecord): Promise<void>;
  deleteTask(taskId: string): Promise<void>;
  /** The pending tasks, all or those of one item. */
  tasks(itemId?: string): Promise<TaskRecord[]>;

  getSession(sessionId: string): Promise<SessionRecord | undefined>;
  putSession(session: SessionRecord): Promise<void>;
  /** Forgets the sessions that expired by `now` and returns them. */
  expireSessions(now: number): Promise<SessionRecord[]>;

  /** Records that an upload server verified an item whole with this SHA-256. */
  putVerified(itemId: string, serverId: string, sha256: string): Promise<void>;
  /** The SHA-256 an upload server verified for an item, if it did. */
  getVerified(itemId: string, serverId: string): Promise<string | undefined>;
}

/** {@link ControlStore} in this process's memory: the default, for a single control server. */
export class MemoryControlStore implements ControlStore {
  readonly #items = new Map<string, ItemInfo>();
  readonly #tasks = new Map<string, TaskRecord>();
  /** Task ids by item id. */
  readonly #tasksByItem = new Map<string, Set<string>>();
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #verified = new Map<string, Map<string, string>>();

  async getItem(itemId: string): Promise<ItemInfo | undefined> {
    return this.#items.get(itemId);
  }

  async putItem(item: ItemInfo): Promise<void> {
    this.#items.set(item.meta.itemId, item);
  }

  async deleteItem(itemId: string): Promise<void> {
    this.#items.delete(itemId);
    this.#verified.delete(itemId);
  }

  async items(): Promise<ItemInfo[]> {
    return [...this.#items.values()];
  }

  async getTask(taskId: string): Promise<TaskRecord | undefined> {
    return this.#tasks.get(taskId);
  }

  async putTask(task: TaskRecord): Promise<void> {
    this.#tasks.set(task.taskId, task);
    let ids = this.#tasksByItem.get(task.itemId);
    if (!ids) this.#tasksByItem.set(task.itemId, (ids = new Set()));
    ids.add(task.taskId);
  }

  async deleteTask(taskId: string): Promise<void> {
    const task = this.#tasks.get(taskId);
    if (!task) return;
    this.#tasks.delete(taskId);
    const ids = this.#tasksByItem.get(task.itemId);
    ids?.delete(taskId);
    if (ids?.size === 0) this.#tasksByItem.delete(task.itemId);
  }

  async tasks(itemId?: string): Promise<TaskRecord[]> {
    if (itemId === undefined) return [...this.#tasks.values()];
    return [...(this.#tasksByItem.get(itemId) ?? [])].map((id) => this.#tasks.get(id)!);
  }

  async getSession(sessionId: string): Promise<SessionRecord | undefined> {
    return this.#sessions.get(sessionId);
  }

  async putSession(session: SessionRecord): Promise<void> {
    this.#sessions.set(session.sessionId, session);
  }

  async expireSessions(now: number): Promise<SessionRecord[]> {
    const gone: SessionRecord[] = [];
    for (const [id, s] of this.#sessions) {
      if (s.expiresAt > now) continue;
      this.#sessions.delete(id);
      gone.push(s);
    }
    return gone;
  }

  async putVerified(itemId: string, serverId: string, sha256: string): Promise<void> {
    let byServer = this.#verified.get(itemId);
    if (!byServer) this.#verified.set(itemId, (byServer = new Map()));
    byServer.set(serverId, sha256);
  }

  async getVerified(itemId: string, serverId: string): Promise<string | undefined> {
    return this.#verified.get(itemId)?.get(serverId);
  }
}
