/**
 * The default planner: where each published item goes.
 */
import type { ItemMeta, TargetRange } from '../../src/protocol/index.js';

/** What the planner knows about one upload server, as seen from one client. */
export interface PlannerServer {
  readonly id: string;
  /** Smoothed round-trip time the client measured, when it did. */
  readonly rttMs?: number;
}

/**
 * A planner turns an item into ranges and targets. It returns no ranges when no server fits.
 */
export type Planner = (item: ItemMeta, servers: readonly PlannerServer[]) => TargetRange[];

/**
 * Sends the whole item to the server with the lowest measured round-trip time; servers
 * without a measurement come after those with one, in list order.
 * @param item the item
 * @param servers candidate servers
 */
export const lowestRttPlanner: Planner = (item, servers) => {
  if (servers.length === 0 || item.size === 0) return [];
  const best = [...servers].sort((a, b) => (a.rttMs ?? Infinity) - (b.rttMs ?? Infinity))[0]!;
  return [{ start: 0, end: item.size, serverId: best.id }];
};

/**
 * Checks a plan: ranges sorted, non-empty, without gaps or overlaps, covering the item, each
 * naming a known server.
 * @param item the item
 * @param ranges the plan
 * @param serverIds servers that may be named
 * @param whole whether the ranges must cover the whole item (a plan) or may be some of it (a request)
 * @returns a reason when the plan is not valid
 */
export function validatePlan(
  item: ItemMeta,
  ranges: readonly TargetRange[],
  serverIds: ReadonlySet<string>,
  whole = true,
): string | undefined {
  if (ranges.length === 0) return 'no ranges';
  let cursor = 0;
  for (const r of ranges) {
    if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end) || !(r.end > r.start)) {
      return `empty range ${r.start}..${r.end}`;
    }
    if (r.start < cursor) return `overlap at ${r.start}`;
    if (whole && r.start > cursor) return `gap at ${cursor}`;
    if (!serverIds.has(r.serverId)) return `unknown server ${r.serverId}`;
    cursor = r.end;
  }
  if (cursor > item.size) return `plan ends at ${cursor}, item has ${item.size} bytes`;
  if (whole && cursor !== item.size) return `plan ends at ${cursor}, item has ${item.size} bytes`;
  return undefined;
}
