/**
 * The items an engine holds, and their resume records: adding and dropping an item, changing its
 * status, remembering it across page loads and taking it up again after a reload.
 */
import type { ItemKind } from '../protocol/control.js';
import type { WsUploaderError } from '../errors.js';
import { newItemId, type Held } from './held-item.js';
import { itemMime, itemName, type ResumeKeeper } from './resume-keeper.js';
import { ItemState, type ItemStatus } from './types.js';

/** What the held items tell the engine. */
export interface HeldItemsHost {
  /** An item's status changed. */
  changed(item: ItemStatus): void;
  /** An item failed. */
  failed(itemId: string, error: WsUploaderError): void;
  /** An item is dropped or stored: what the data plane kept for it can go. */
  forget(itemId: string): void;
  /** An item is dropped: its tasks stop without a word. */
  stopTasks(itemId: string): void;
}

/**
 * The engine's items, by id.
 * @internal
 */
export class HeldItems {
  readonly #items = new Map<string, Held>();
  readonly #resume: ResumeKeeper | undefined;
  readonly #host: HeldItemsHost;

  /**
   * @param resume the resume records, when the `resume` option is on
   * @param host the engine
   */
  constructor(resume: ResumeKeeper | undefined, host: HeldItemsHost) {
    this.#resume = resume;
    this.#host = host;
  }

  /** The item held under an id. */
  get(itemId: string): Held | undefined {
    return this.#items.get(itemId);
  }

  /** Whether an item is held under an id. */
  has(itemId: string): boolean {
    return this.#items.has(itemId);
  }

  /** Every item held, in the order they were added. */
  values(): IterableIterator<Held> {
    return this.#items.values();
  }

  /** The held items named, or all of them. */
  select(itemIds: readonly string[] | undefined): Held[] {
    if (itemIds === undefined) return [...this.#items.values()];
    return itemIds.flatMap((id) => {
      const held = this.#items.get(id);
      return held ? [held] : [];
    });
  }

  /** Adds an item (under a new id, or the one it had before a reload). */
  hold(blob: Blob, kind: ItemKind, forInline = false, itemId?: string): Held {
    const fresh = itemId === undefined;
    itemId ??= newItemId();
    const file = blob as Partial<File>;
    const status: ItemStatus = {
      itemId,
      // Within the control protocol's limits (docs/protocol.md, publish).
      name: itemName(typeof file.name === 'string' ? file.name : kind === 'text' ? 'text' : 'blob'),
      size: blob.size,
      mime: itemMime(blob.type),
      kind,
      state: ItemState.PUBLISHING,
      bytesSent: 0,
      bytesStored: 0,
      bytesTotal: blob.size,
      sha256: undefined,
      servers: [],
      errorCode: undefined,
    };
    const held: Held = forInline ? { blob, status, forInline } : { blob, status };
    if (fresh) held.fresh = true;
    this.#items.set(status.itemId, held);
    return held;
  }

  /** Forgets an item at once, nothing else (one `send()` made, never published). */
  delete(itemId: string): void {
    this.#items.delete(itemId);
  }

  /** Forgets an item; its tasks stop without a word. */
  drop(itemId: string): void {
    const held = this.#items.get(itemId);
    if (!held || !this.#items.delete(itemId)) return;
    this.#host.forget(itemId);
    this.#resume?.unlock(itemId);
    for (const waiting of held.paused?.splice(0) ?? [])
      waiting.reject(new DOMException('the item was dropped', 'AbortError'));
    this.#host.stopTasks(itemId);
  }

  /** Changes an item's status, and says so. */
  update(itemId: string, fn: (s: ItemStatus) => ItemStatus): void {
    const held = this.#items.get(itemId);
    if (!held) return;
    held.status = fn(held.status);
    this.#host.changed(held.status);
  }

  /** An item failed: its state says so, and the engine tells the page. */
  fail(itemId: string, error: WsUploaderError): void {
    this.update(itemId, (s) => ({ ...s, state: ItemState.FAILED, errorCode: error.code }));
    this.#host.failed(itemId, error);
  }

  /**
   * Writes the resume record of an item published to be uploaded, once, and takes its lock. Only
   * files are remembered (a user can pick them again); an empty item is stored as published.
   */
  remember(held: Held): void {
    if (!this.#resume || held.remembered !== undefined) return;
    const file = held.blob as Partial<File>;
    const { itemId, name, size, mime, kind } = held.status;
    const { lastModified } = file;
    if (
      held.forInline ||
      size === 0 ||
      typeof lastModified !== 'number' ||
      typeof file.name !== 'string'
    ) {
      held.remembered = false;
      return;
    }
    held.remembered = true;
    const { handle } = held;
    this.#resume.remember(
      {
        itemId,
        name,
        size,
        mime,
        lastModified,
        kind,
        createdAt: Date.now(),
        ...(handle ? { handle } : {}),
      },
      held.blob,
    );
  }

  /** An item is stored: its record goes, and its lock. */
  finished(held: Held): void {
    const { itemId } = held.status;
    this.#host.forget(itemId);
    if (held.remembered) this.#resume?.drop(itemId);
    held.remembered = false;
    this.#resume?.unlock(itemId);
  }

  /**
   * Takes up the remembered items whose handles can be read without asking (and that no other
   * page holds, and whose file is the one remembered), under their ids.
   * @returns the items taken up, for the engine to publish
   */
  async restore(): Promise<ItemStatus[]> {
    if (!this.#resume) return [];
    const found = await this.#resume.restorable((id) => this.#items.has(id));
    const restored: ItemStatus[] = [];
    for (const { record, file, release } of found) {
      if (this.#items.has(record.itemId)) {
        release();
        continue;
      }
      const held = this.hold(file, record.kind, false, record.itemId);
      held.handle = record.handle!;
      held.remembered = true;
      this.#resume.adopt(record.itemId, release);
      restored.push(held.status);
    }
    return restored;
  }
}
