/**
 * What goes through the control server besides uploads: message targets and room names checked,
 * inline items' bytes in base64, and inline items as the page receives them.
 * @internal
 * @module
 */
import type { ItemMeta, MessageTarget } from '../protocol/control.js';
import { ITEM_ID_PATTERN } from '../protocol/constants.js';
import { ConfigError } from '../errors.js';
import type { ReceivedItem } from './types.js';

/** Media types whose received bytes get a `data:` URL: raster images (never SVG or HTML). */
const RASTER_IMAGE_TYPES = new Set([
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'image/avif',
]);

/** Checks a room name. @throws {ConfigError} when it is not one */
export function checkRoom(room: string): void {
  if (typeof room !== 'string' || !ITEM_ID_PATTERN.test(room))
    throw new ConfigError(`a room name matches ${String(ITEM_ID_PATTERN)}`);
}

/** A copy of a message target holding exactly one of clientId, userId or room. */
export function checkTarget(to: MessageTarget): MessageTarget {
  const t = (to ?? {}) as Partial<Record<'clientId' | 'userId' | 'room', unknown>>;
  const keys = (['clientId', 'userId', 'room'] as const).filter((k) => t[k] !== undefined);
  if (keys.length !== 1)
    throw new ConfigError('a message goes to exactly one of clientId, userId or room');
  const key = keys[0]!;
  const value = t[key];
  if (key === 'room') {
    checkRoom(value as string);
    return { room: value as string };
  }
  if (typeof value !== 'string' || value.length === 0 || value.length > 200)
    throw new ConfigError(`\`${key}\` is a string of 1 to 200 characters`);
  return key === 'clientId' ? { clientId: value } : { userId: value };
}

/** Base64 (with padding) of bytes. */
export function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000)
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** The bytes of base64 text. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const s = atob(text);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

/** An inline item as the page gets it: its bytes as a File and, for raster images, a data: URL. */
export function receivedItem(item: ItemMeta): ReceivedItem {
  const { content, ...meta } = item;
  if (content === undefined) return { meta };
  const base = item.mime.split(';')[0]!.trim().toLowerCase();
  const raster = RASTER_IMAGE_TYPES.has(base);
  // Only types that never run script when opened: a blob: URL has the page's origin.
  const type = raster
    ? base
    : /^text\/plain(\s*;\s*charset=[A-Za-z0-9_-]+)?$/i.test(item.mime.trim())
      ? item.mime.trim()
      : 'application/octet-stream';
  const blob = new File([fromBase64(content)], item.name, {
    type,
    ...(item.lastModified === undefined ? {} : { lastModified: item.lastModified }),
  });
  return raster ? { meta, blob, dataUrl: `data:${base};base64,${content}` } : { meta, blob };
}
