/**
 * Planners: where each published item goes. The default sends a small or medium item whole to the
 * best-reached upload server, and splits a large one by byte ranges across the servers that take
 * bytes fastest from this browser, in proportion to the throughput it measured.
 */
import type { ItemMeta, TargetRange } from '../../src/protocol/index.js';

/** Most rounds of stripes in a plan: with `maxServers` 3, at most 768 ranges. */
const MAX_ROUNDS = 256;

/** What the planner knows about one upload server, as seen from one client. */
export interface PlannerServer {
  readonly id: string;
  /** Smoothed round-trip time the client measured, when it did. */
  readonly rttMs?: number;
  /** Bytes per second the client stored on it lately, when it sent any. */
  readonly throughput?: number;
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

/** Options of {@link createPlanner}. */
export interface PlannerOptions {
  /**
   * Items at least this large are split across several servers; `Infinity` never splits, 0
   * always does (when there are several servers). @default 67108864 (64 MiB)
   */
  readonly splitMin?: number;
  /** Most servers one item is split across. @default 3 */
  readonly maxServers?: number;
  /** Range boundaries fall on multiples of this many bytes (but the last). @default 1048576 */
  readonly align?: number;
  /**
   * A split item's ranges interleave in stripes of about this many bytes (a faster server's
   * stripes are longer), so the servers together hold the item's first bytes early and an upload
   * server can compute the item's SHA-256 right behind the upload; `Infinity` gives each server
   * one contiguous range. @default 16777216 (16 MiB)
   */
  readonly stripe?: number;
}

/**
 * Makes the default planner. An item under `splitMin` goes whole to the server with the lowest
 * measured round-trip time (as {@link lowestRttPlanner}). A larger one is split across the
 * `maxServers` servers with the highest measured throughput (then the lowest RTT), each server's
 * share in proportion to its throughput, in interleaved stripes (`stripe`); servers without a
 * throughput measurement count as the slowest measured one (or all alike when none was measured).
 * @param options see {@link PlannerOptions}
 */
export function createPlanner(options: PlannerOptions = {}): Planner {
  const splitMin = options.splitMin ?? 64 * 1024 * 1024;
  const maxServers = options.maxServers ?? 3;
  const align = options.align ?? 1024 * 1024;
  if (!(splitMin >= 0)) throw new TypeError('ws-uploader: `splitMin` must be at least 0');
  if (!Number.isSafeInteger(maxServers) || maxServers < 1)
    throw new TypeError('ws-uploader: `maxServers` must be a positive integer');
  if (!Number.isSafeInteger(align) || align < 1)
    throw new TypeError('ws-uploader: `align` must be a positive integer');
  const stripe = options.stripe ?? 16 * 1024 * 1024;
  if (!(stripe >= 1)) throw new TypeError('ws-uploader: `stripe` must be at least 1');
  // Whole blocks; one block per server at least, and never more blocks than a safe integer.
  const stripeBlocks = Math.max(1, Math.min(Number.MAX_SAFE_INTEGER, Math.round(stripe / align)));
  return (item, servers) => {
    if (servers.length === 0 || item.size === 0) return [];
    if (item.size < splitMin || servers.length === 1 || maxServers === 1)
      return lowestRttPlanner(item, servers);
    const measured = servers.map((s) => s.throughput ?? 0).filter((t) => t > 0);
    const floor = measured.length > 0 ? Math.min(...measured) : 1;
    const ranked = [...servers]
      .map((s) => ({ id: s.id, rate: s.throughput ?? floor, rtt: s.rttMs ?? Infinity }))
      .sort((a, b) => b.rate - a.rate || a.rtt - b.rtt)
      .slice(0, maxServers);
    // Each server's share, in aligned blocks; the last server takes the rest.
    const blocks = Math.ceil(item.size / align);
    const total = ranked.reduce((sum, s) => sum + s.rate, 0);
    const left = new Map<string, number>();
    let given = 0;
    ranked.forEach((s, i) => {
      const share =
        i === ranked.length - 1
          ? blocks - given
          : Math.min(blocks - given, Math.max(1, Math.round((blocks * s.rate) / total)));
      left.set(s.id, share);
      given += share;
    });
    // Stripes, round after round, each server's as long as its rate allows; at most
    // MAX_ROUNDS rounds (longer stripes for a huge item), so a plan stays a short message.
    const fastest = ranked[0]!.rate;
    const longest = Math.max(stripeBlocks, Math.ceil(left.get(ranked[0]!.id)! / MAX_ROUNDS));
    const per = new Map(
      ranked.map((s) => [s.id, Math.max(1, Math.round((longest * s.rate) / fastest))]),
    );
    const ranges: TargetRange[] = [];
    let start = 0;
    for (let moved = true; start < item.size && moved;) {
      moved = false;
      for (const s of ranked) {
        const n = Math.min(left.get(s.id)!, per.get(s.id)!);
        if (n <= 0 || start >= item.size) continue;
        left.set(s.id, left.get(s.id)! - n);
        const end = Math.min(item.size, start + n * align);
        const last = ranges.at(-1);
        if (last?.serverId === s.id) ranges[ranges.length - 1] = { ...last, end };
        else ranges.push({ start, end, serverId: s.id });
        start = end;
        moved = true;
      }
    }
    return ranges;
  };
}

/** The planner a control server uses unless given another: {@link createPlanner} with defaults. */
export const defaultPlanner: Planner = createPlanner();

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
