/**
 * `GET` and `HEAD /files/{itemId}`: HTTP byte serving of stored items (RFC 9110 ranges, `If-Range`,
 * `ETag`, 206/416, multipart/byteranges), including ranges of an item still being uploaded, which
 * wait a bounded time for their bytes and raise a demand meanwhile.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ByteRange } from '../../src/protocol/index.js';
import { contentHeaders } from './content-policy.js';
import type { ItemRecord, ItemStore } from './file-store.js';
import { parseRange } from './range-header.js';
import type { CrossOriginResourcePolicy } from './read-access.js';
import { waitForBytes, type Demand } from './wait-for-bytes.js';

export type { Demand } from './wait-for-bytes.js';

/** What serving needs from the upload server. */
export interface FileRouteOptions {
  readonly store: ItemStore;
  /** A `Range` header with more ranges is ignored (the whole item is sent). */
  readonly maxRanges: number;
  /** How long a request for bytes not yet stored waits for them, in ms. */
  readonly holdMs: number;
  /** `Retry-After` of the 503 sent when they did not come in time, in seconds. */
  readonly retryAfterSeconds: number;
  /** Told about each wait, so the bytes can be asked for. */
  readonly onDemand?: ((demand: Demand) => void) | undefined;
  /** `Cross-Origin-Resource-Policy` of every response about an item. */
  readonly crossOriginResourcePolicy: CrossOriginResourcePolicy;
  /**
   * Whether bodies are served to holders of a read token only: then responses are
   * `Cache-Control: private` (no shared cache keeps them) and `Referrer-Policy: no-referrer`.
   */
  readonly tokenProtected: boolean;
}

/** Headers on every response about an item. */
function safeHeaders(options: FileRouteOptions): Record<string, string> {
  return {
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': "default-src 'none'; sandbox",
    'Cross-Origin-Resource-Policy': options.crossOriginResourcePolicy,
    'Accept-Ranges': 'bytes',
    'Access-Control-Expose-Headers': 'Content-Range, Content-Length, Accept-Ranges, ETag',
    ...(options.tokenProtected ? { 'Referrer-Policy': 'no-referrer' } : {}),
  };
}

/**
 * Answers a `GET` or `HEAD` for an item.
 * @param req the request
 * @param res the response
 * @param itemId a valid item id
 * @param options the store and limits
 */
export async function serveItem(
  req: IncomingMessage,
  res: ServerResponse,
  itemId: string,
  options: FileRouteOptions,
): Promise<void> {
  const safe = safeHeaders(options);
  // `private` keeps token-protected bytes out of shared caches (proxies, CDNs).
  const scope = options.tokenProtected ? 'private, ' : '';
  let record = await options.store.get(itemId);
  if (!record) {
    res
      .writeHead(404, {
        'Content-Type': 'text/plain',
        ...safe,
        // Behind a read token, whether an item exists is not for shared caches either.
        ...(options.tokenProtected ? { 'Cache-Control': 'private, no-store' } : {}),
      })
      .end('not found\n');
    return;
  }
  const etag = record.complete && record.sha256 ? `"sha256-${record.sha256}"` : undefined;
  const validators = etag
    ? { ETag: etag, 'Cache-Control': `${scope}no-cache` }
    : { 'Cache-Control': `${scope}no-store` };
  if (etag && matchesAny(req.headers['if-none-match'], etag)) {
    res.writeHead(304, { ...safe, ...validators }).end();
    return;
  }
  let request = parseRange(req.headers.range, record.size, options.maxRanges);
  const ifRange = req.headers['if-range'] as string | undefined;
  // A Range is honoured only while the representation is the one the client has (strong ETag).
  if (request.kind !== 'whole' && ifRange !== undefined && ifRange.trim() !== etag)
    request = { kind: 'whole' };
  if (request.kind === 'unsatisfiable') {
    res.writeHead(416, { ...safe, ...validators, 'Content-Range': `bytes */${record.size}` }).end();
    return;
  }

  let ranges: readonly ByteRange[] =
    request.kind === 'ranges' ? request.ranges : [{ start: 0, end: record.size }];
  if (!record.complete) {
    // An open-ended range (`bytes=N-`, as media players send) gets the stored bytes from N on.
    const first = ranges[0]!;
    const run = record.ranges.find((r) => r.start <= first.start && first.start < r.end);
    if (request.kind === 'ranges' && request.openEnded && run)
      ranges = [{ start: first.start, end: run.end }];
    const ready = await waitForRanges(req, itemId, ranges, record, options);
    if (!ready) {
      res
        .writeHead(503, {
          ...safe,
          'Cache-Control': `${scope}no-store`,
          'Retry-After': String(options.retryAfterSeconds),
          'Content-Type': 'text/plain',
        })
        .end('the requested bytes are not uploaded yet\n');
      return;
    }
    record = ready;
  }

  const content = contentHeaders(record.mime, record.name);
  const head = req.method === 'HEAD';
  if (request.kind === 'whole' && record.complete) {
    res.writeHead(200, {
      ...safe,
      ...validators,
      ...content,
      'Content-Length': String(record.size),
    });
    if (head) res.end();
    else await send(res, options.store, itemId, [{ start: 0, end: record.size }], undefined);
    return;
  }
  if (ranges.length === 1) {
    const r = ranges[0]!;
    res.writeHead(206, {
      ...safe,
      ...validators,
      ...content,
      'Content-Range': `bytes ${r.start}-${r.end - 1}/${record.size}`,
      'Content-Length': String(r.end - r.start),
    });
    if (head) res.end();
    else await send(res, options.store, itemId, ranges, undefined);
    return;
  }
  const boundary = randomBytes(16).toString('hex');
  const parts = ranges.map((r) => ({
    range: r,
    header: `\r\n--${boundary}\r\nContent-Type: ${content['Content-Type']}\r\nContent-Range: bytes ${r.start}-${r.end - 1}/${record.size}\r\n\r\n`,
  }));
  const trailer = `\r\n--${boundary}--\r\n`;
  const length =
    parts.reduce((n, p) => n + Buffer.byteLength(p.header) + p.range.end - p.range.start, 0) +
    trailer.length;
  res.writeHead(206, {
    ...safe,
    ...validators,
    'Content-Disposition': content['Content-Disposition'],
    'Content-Type': `multipart/byteranges; boundary=${boundary}`,
    'Content-Length': String(length),
  });
  if (head) res.end();
  else
    await send(res, options.store, itemId, ranges, {
      headers: parts.map((p) => p.header),
      trailer,
    });
}

/**
 * Waits until `ranges` of the item are stored, raising a demand; `undefined` after `holdMs`, or
 * once the request is gone.
 */
async function waitForRanges(
  req: IncomingMessage,
  itemId: string,
  ranges: readonly ByteRange[],
  record: ItemRecord,
  options: FileRouteOptions,
): Promise<ItemRecord | undefined> {
  const gone = new AbortController();
  const onClose = (): void => gone.abort();
  req.on('close', onClose);
  try {
    return await waitForBytes({
      store: options.store,
      itemId,
      ranges,
      record,
      holdMs: options.holdMs,
      // A reader that only waits (another server computing the item's digest) raises no demand.
      onDemand: prefersNoDemand(req) ? undefined : options.onDemand,
      signal: gone.signal,
    });
  } finally {
    req.off('close', onClose);
  }
}

/** Streams ranges of the item, each after its multipart header when there are several. */
async function send(
  res: ServerResponse,
  store: ItemStore,
  itemId: string,
  ranges: readonly ByteRange[],
  multipart: { headers: string[]; trailer: string } | undefined,
): Promise<void> {
  try {
    for (let i = 0; i < ranges.length; i++) {
      const r = ranges[i]!;
      if (multipart && !res.write(multipart.headers[i]!)) await drained(res);
      if (r.end === r.start) continue;
      for await (const chunk of store.read(itemId, r.start, r.end)) {
        if (res.destroyed) return;
        if (!res.write(chunk as Buffer)) await drained(res);
      }
    }
    res.end(multipart?.trailer);
  } catch {
    res.destroy();
  }
}

/** Resolves when the response can take more, or is gone. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Whether an `If-None-Match` value lists `etag` (or is `*`). Weak comparison, as RFC 9110 says. */
function matchesAny(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .some((t) => t === '*' || t === etag);
}

/** Whether the request says `Prefer: no-demand` (RFC 7240 preference; others are ignored). */
function prefersNoDemand(req: IncomingMessage): boolean {
  const prefer = req.headers['prefer'];
  return [prefer ?? []]
    .flat()
    .some((header) =>
      header.split(',').some((p) => p.split(';')[0]!.trim().toLowerCase() === 'no-demand'),
    );
}
