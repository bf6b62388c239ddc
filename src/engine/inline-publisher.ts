/**
 * Inline items: small items published with their bytes (base64, in `publish`), kept by the control
 * server instead of uploaded; the items `send()` carries; and what follows when the control server
 * will not keep one inline.
 */
import type { ControlClientMessage, ItemKind, ItemMeta } from '../protocol/control.js';
import { ConfigError, ServerError, TransportError, type WsUploaderError } from '../errors.js';
import { failureOf, isBlob, metaOf, type Held } from './held-item.js';
import { toBase64 } from './message-content.js';
import { ItemState, type ItemStatus } from './types.js';

/** What the inline publisher needs of the engine. */
export interface InlineHost {
  /** The items held. */
  items(): Iterable<Held>;
  /** The item held under an id. */
  held(itemId: string): Held | undefined;
  /** Holds a new item. */
  hold(blob: Blob, kind: ItemKind, forInline: boolean): Held;
  /** Forgets an item at once (one made by `send()`). */
  forget(itemId: string): void;
  /** Publishes items (again). */
  publish(itemIds: readonly string[]): void;
  /** Whether the control channel is open. */
  isOpen(): boolean;
  /** Sends to the control server. */
  send(message: ControlClientMessage): void;
  /** Tells the page items were published. */
  published(items: readonly ItemMeta[]): void;
  /** Changes an item's status (and tells the page). */
  update(itemId: string, fn: (s: ItemStatus) => ItemStatus): void;
  /** An item failed. */
  fail(itemId: string, error: WsUploaderError): void;
  /** Refuses the messages waiting that carry an item; how many. */
  refuseMessages(itemId: string, error: unknown): number;
  /** The `inlineMax` option. */
  inlineMax(): number;
}

/**
 * The engine's inline items.
 * @internal
 */
export class InlinePublisher {
  readonly #host: InlineHost;
  /** The control server's `inlineMax`, from the last `welcome`. */
  serverMax = 0;
  /** Items whose message will come back `unknown-item` after their inline publish was refused. */
  readonly #refused = new Map<string, number>();

  /** @param host the engine */
  constructor(host: InlineHost) {
    this.#host = host;
  }

  /** Whether an item is published inline (the option, capped by the control server's limit). */
  goesInline(held: Held): boolean {
    if (held.noInline) return false;
    if (held.forInline || held.inline) return true;
    const limit = Math.min(this.#host.inlineMax(), this.serverMax);
    // 0 turns inline items off, even empty ones.
    return limit > 0 && held.status.size <= limit;
  }

  /** Publishes an item inline (its bytes read and sent); a failure fails the item. */
  start(held: Held): Promise<void> {
    held.inline = true;
    held.publishing = this.#publish(held);
    held.publishing.catch(() => undefined);
    return held.publishing;
  }

  /**
   * The id of an inline item holding `item`, published inline now when it is not yet.
   * @throws {ConfigError} when `item` is neither a Blob nor a string
   * @throws {ServerError} `too-large` over the control server's limit
   */
  async itemFor(item: Blob | string): Promise<string> {
    const blob =
      typeof item === 'string' ? new Blob([item], { type: 'text/plain;charset=utf-8' }) : item;
    if (!isBlob(blob)) throw new ConfigError('a message item is a Blob, a File or a string');
    for (const held of this.#host.items()) {
      if (held.blob !== blob || !held.inline || held.status.state === ItemState.FAILED) continue;
      await held.publishing;
      return held.status.itemId;
    }
    if (this.serverMax === 0 || blob.size > this.serverMax)
      throw new ServerError(
        'too-large',
        `inline items are limited to ${this.serverMax} bytes by the control server`,
        { serverId: 'control' },
      );
    const held = this.#host.hold(blob, typeof item === 'string' ? 'text' : 'file', true);
    await this.start(held);
    return held.status.itemId;
  }

  /**
   * The control server would not keep an item inline: messages waiting for it reject; an item
   * added with `addFiles` is uploaded instead, one made by `send()` is dropped.
   */
  refused(held: Held, error: ServerError): void {
    const { itemId } = held.status;
    const rejected = this.#host.refuseMessages(itemId, error);
    // Those messages were sent after the publish: each will be refused with unknown-item.
    if (rejected > 0) this.#refused.set(itemId, rejected);
    held.inline = false;
    if (held.forInline) {
      this.#host.forget(itemId);
      return;
    }
    held.noInline = true;
    this.#host.update(itemId, (s) => ({ ...s, state: ItemState.PUBLISHING, inline: false }));
    this.#host.publish([itemId]);
  }

  /**
   * Whether an `unknown-item` for an item answers a message sent after its inline publish was
   * refused (already rejected).
   */
  answersRefusal(itemId: string): boolean {
    const refused = this.#refused.get(itemId);
    if (refused === undefined) return false;
    if (refused > 1) this.#refused.set(itemId, refused - 1);
    else this.#refused.delete(itemId);
    return true;
  }

  /** Reads an item and publishes it with its bytes. */
  async #publish(held: Held): Promise<void> {
    const host = this.#host;
    const meta = metaOf(held);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await held.blob.arrayBuffer());
    } catch (e) {
      const error = failureOf(e, meta.itemId);
      host.fail(meta.itemId, error);
      throw error;
    }
    if (!host.isOpen() || host.held(meta.itemId) !== held)
      throw new TransportError('socket-closed', 'the control connection closed', {
        serverId: 'control',
      });
    host.update(meta.itemId, (s) => ({ ...s, inline: true }));
    host.send({ type: 'publish', items: [{ ...meta, content: toBase64(bytes) }] });
    host.published([meta]);
  }
}
