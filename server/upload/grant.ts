/**
 * What an upload token allows on this upload server: its claims, checked once at HELLO and then
 * at every OPEN, DATA and FINISH; and what a read token allows on a dup/2 connection, checked at
 * HELLO and then at every READ.
 */
import type { ByteRange } from '../../src/protocol/index.js';
import { READ_SCOPE } from '../tokens.js';

/** The rights a verified upload token grants. */
export interface Grant {
  /** The client (the token's `sub`). */
  readonly clientId: string;
  /** The user the client uploads for (`uid`, else `sub`): the owner of the items it creates. */
  readonly owner: string;
  /** Expiry, milliseconds since the epoch (the token's `exp`). */
  readonly expiresAt: number;
  /** Items it may write; `undefined` for any item of its owner. */
  readonly items: ReadonlySet<string> | undefined;
  /** Byte ranges it may write, by item; an item not listed may be written anywhere. */
  readonly ranges: ReadonlyMap<string, readonly ByteRange[]> | undefined;
  /** Token id, when the token may be used once only. */
  readonly onceId: string | undefined;
}

/**
 * Reads a grant from verified claims; `undefined` when they do not allow uploading.
 *
 * Claims: `sub` (client id), `uid` (user, optional), `scope` (`upload` or `write`; `read` does not
 * allow uploading), `items` (optional array of item ids), `ranges` (optional object: item id →
 * array of `[start, end)` pairs), `once` with `jti` (the token is good for one connection).
 */
export function grantOf(
  claims: Record<string, unknown> & { sub: string; exp: number },
): Grant | undefined {
  const scope = claims['scope'];
  if (scope !== undefined && scope !== 'upload' && scope !== 'write') return undefined;
  const items = claims['items'];
  if (items !== undefined && (!Array.isArray(items) || !items.every((i) => typeof i === 'string')))
    return undefined;
  const rawRanges = claims['ranges'];
  let ranges: Map<string, ByteRange[]> | undefined;
  if (rawRanges !== undefined) {
    if (typeof rawRanges !== 'object' || rawRanges === null || Array.isArray(rawRanges))
      return undefined;
    ranges = new Map();
    for (const [itemId, list] of Object.entries(rawRanges)) {
      if (!Array.isArray(list)) return undefined;
      const parsed: ByteRange[] = [];
      for (const pair of list) {
        if (!Array.isArray(pair) || pair.length !== 2) return undefined;
        const [start, end] = pair as unknown[];
        if (
          !Number.isSafeInteger(start) ||
          !Number.isSafeInteger(end) ||
          (end as number) <= (start as number)
        ) {
          return undefined;
        }
        parsed.push({ start: start as number, end: end as number });
      }
      ranges.set(itemId, parsed);
    }
  }
  const jti = claims['jti'];
  return {
    clientId: claims.sub,
    owner: typeof claims['uid'] === 'string' ? claims['uid'] : claims.sub,
    expiresAt: claims.exp * 1000,
    items: items === undefined ? undefined : new Set(items as string[]),
    ranges,
    onceId: claims['once'] === true && typeof jti === 'string' ? jti : undefined,
  };
}

/** Whether the grant lets its holder write `[start, end)` of `itemId`. */
export function allowsWrite(grant: Grant, itemId: string, start: number, end: number): boolean {
  if (grant.items && !grant.items.has(itemId)) return false;
  const granted = grant.ranges?.get(itemId);
  return !granted || granted.some((r) => r.start <= start && end <= r.end);
}

/** The rights a verified read token grants (a connection that only reads). */
export interface ReadGrant {
  /** The reader (the token's `sub`). */
  readonly clientId: string;
  /** Expiry, milliseconds since the epoch (the token's `exp`). */
  readonly expiresAt: number;
  /** Items it may read; `undefined` for any item of the server. */
  readonly items: ReadonlySet<string> | undefined;
}

/**
 * Reads a read grant from verified claims; `undefined` unless `scope` is `read` and `items`, when
 * present, is an array of strings.
 */
export function readGrantOf(
  claims: Record<string, unknown> & { sub: string; exp: number },
): ReadGrant | undefined {
  if (claims['scope'] !== READ_SCOPE) return undefined;
  const items = claims['items'];
  if (items !== undefined && (!Array.isArray(items) || !items.every((i) => typeof i === 'string')))
    return undefined;
  return {
    clientId: claims.sub,
    expiresAt: claims.exp * 1000,
    items: items === undefined ? undefined : new Set(items as string[]),
  };
}
