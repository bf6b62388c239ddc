/**
 * An item the engine holds, and the small rules about items that the engine's parts share.
 * @internal
 * @module
 */
import type { ItemMeta, TargetRange } from '../protocol/control.js';
import { ITEM_ID_PATTERN } from '../protocol/constants.js';
import { ConfigError, ResumeError, WsUploaderError } from '../errors.js';
import type { ItemStatus, RunningTask, UploadResult } from './types.js';

/** An item the engine holds: its bytes, its status and what the engine's parts keep of it. */
export interface Held {
  readonly blob: Blob;
  status: ItemStatus;
  /** Published (or being published) inline. */
  inline?: boolean;
  /** Made by `send()`: inline whatever the `inlineMax` option says, and only inline. */
  forInline?: boolean;
  /** The control server refused it inline: it is uploaded instead. */
  noInline?: boolean;
  /** The inline `publish` being read and sent. */
  publishing?: Promise<void>;
  /** Set by `pause()`: the item's tasks wait here for `resume()`. */
  paused?: PausedTask[];
  /** The file handle it was added from: remembered with it, to read it again after a reload. */
  handle?: FileSystemFileHandle;
  /** Whether its resume record was written (`true`) or must not be (`false`); unset: not yet. */
  remembered?: boolean;
  /**
   * Its id was made here and no task of it has run yet: no upload server holds any of it, so its
   * first uploads need not ask what a server holds.
   */
  fresh?: boolean;
}

/** A task waiting for `resume()`, and how to settle the promise of whoever is waiting for it. */
export interface PausedTask {
  readonly task: RunningTask;
  readonly fromControl: boolean;
  readonly resolve: (result: UploadResult) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Ranges given to `retarget()`, checked: each within the item, with a server id.
 * @throws {ConfigError} when one is not
 */
export function checkRanges(ranges: readonly TargetRange[], size: number): readonly TargetRange[] {
  if (!Array.isArray(ranges) || ranges.length === 0)
    throw new ConfigError('retarget() takes a non-empty array of ranges');
  for (const r of ranges as unknown[]) {
    const { start, end, serverId } = (r ?? {}) as Partial<TargetRange>;
    if (
      !Number.isSafeInteger(start) ||
      !Number.isSafeInteger(end) ||
      start! < 0 ||
      end! <= start! ||
      end! > size ||
      typeof serverId !== 'string' ||
      serverId === ''
    )
      throw new ConfigError(
        `retarget(): bad range ${JSON.stringify(r)} for an item of ${size} bytes`,
      );
  }
  return ranges.map(({ start, end, serverId }) => ({ start, end, serverId }));
}

/** A random item id: 16 random bytes in base64url (22 characters). */
export function newItemId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The metadata of a held item, as published. */
export function metaOf(held: Held): ItemMeta {
  const { itemId, name, size, mime, kind } = held.status;
  const lastModified = (held.blob as Partial<File>).lastModified;
  return typeof lastModified === 'number'
    ? { itemId, name, size, mime, kind, lastModified }
    : { itemId, name, size, mime, kind };
}

/** A Blob, from this realm or another (a frame's). */
export function isBlob(v: unknown): v is Blob {
  const b = v as Partial<Blob> | null;
  return (
    typeof b === 'object' &&
    b !== null &&
    typeof b.size === 'number' &&
    typeof b.arrayBuffer === 'function' &&
    typeof b.slice === 'function'
  );
}

/** Checks an item id. @throws {ConfigError} when it is not one */
export function checkItemId(id: string): void {
  if (typeof id !== 'string' || !ITEM_ID_PATTERN.test(id))
    throw new ConfigError(`${JSON.stringify(id)} is not an item id`);
}

/** Per-server byte counts, each the larger of the two. */
export function maxByServer(
  a: Readonly<Record<string, number>> | undefined,
  b: Readonly<Record<string, number>>,
): Record<string, number> {
  const out: Record<string, number> = { ...a };
  for (const [id, bytes] of Object.entries(b)) out[id] = Math.max(out[id] ?? 0, bytes);
  return out;
}

/**
 * What a failure is, as the engine reports it: its own errors as they are; a file that cannot be
 * read (gone, changed, no permission) `file-unreadable`; anything else `internal`, never a
 * connection's code.
 */
export function failureOf(e: unknown, itemId: string): WsUploaderError {
  if (e instanceof WsUploaderError) return e;
  const name = e instanceof DOMException || e instanceof Error ? e.name : '';
  if (name === 'NotReadableError' || name === 'NotFoundError' || name === 'NotAllowedError')
    return new ResumeError('file-unreadable', `cannot read the file of item ${itemId}`, {
      itemId,
      cause: e,
    });
  return new WsUploaderError('internal', `item ${itemId}: ${String(e)}`, { cause: e });
}
