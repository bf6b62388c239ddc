/**
 * Plain HTTP uploads on the upload server, for clients without WebSockets and for small items:
 * - `POST /uploads`: `multipart/form-data` with fields `itemId` and `size` (and optionally `sha256`)
 *   before one file part; the item is stored and, with `sha256`, verified.
 * - `PUT /uploads/{itemId}`: one part per request, placed by `Content-Range: bytes a-b/size`; a
 *   `Repr-Digest: sha-256=:<base64>:` header completes the item once every byte is stored, and so
 *   does `Upload-Complete: ?1` without one, the server computing the SHA-256 (in the answer).
 * - `HEAD /uploads/{itemId}`: which ranges are stored (`Upload-Ranges`).
 * Every request carries an upload token in `Authorization: Bearer …` (never in the URL).
 */
import busboy from 'busboy';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import {
  covers,
  ITEM_ID_PATTERN,
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
  truncateUtf8,
  type ByteRange,
} from '../../src/protocol/index.js';
import { bearerToken } from '../internal/http-server.js';
import { StoreError, type ItemRecord, type ItemStore } from './file-store.js';
import { allowsWrite, type Grant } from './grant.js';
import type { ItemLocks } from './item-locks.js';

/** What HTTP uploads need from the upload server. */
export interface HttpUploadOptions {
  readonly store: ItemStore;
  readonly maxItemSize: number;
  /** Bytes written to the store at a time. */
  readonly chunk: number;
  readonly verify: (token: string) => Promise<Grant | undefined>;
  readonly log: (event: string, fields?: Record<string, unknown>) => void;
  /** Write locks on items, shared by every protocol of the server. */
  readonly locks: ItemLocks;
  /** Called when an item becomes complete and verified (its SHA-256 in hex). */
  readonly onComplete?: (itemId: string, sha256: string, size: number) => void;
}

/** HTTP status of each error code. */
export const HTTP_STATUS: Record<string, number> = {
  'bad-request': 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  conflict: 409,
  incomplete: 409,
  'too-large': 413,
  'out-of-range': 400,
  'digest-mismatch': 422,
  'quota-exceeded': 507,
  'storage-full': 507,
  'storage-failed': 500,
  locked: 423,
  fragmented: 400,
  superseded: 409,
  internal: 500,
};

/** A failure of an HTTP upload, by code (see {@link HTTP_STATUS}). */
export class HttpError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Handles `/uploads` and `/uploads/{itemId}`; returns false for other paths.
 */
export async function handleUploads(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  options: HttpUploadOptions,
): Promise<boolean> {
  const match = /^\/uploads(?:\/([^/]+))?$/.exec(path);
  if (!match) return false;
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Access-Control-Expose-Headers', 'Upload-Ranges, Upload-Length, Upload-Complete');
  try {
    const grant = await authenticate(req, options);
    if (match[1] === undefined) {
      if (req.method !== 'POST') return methodNotAllowed(res, 'POST');
      await postMultipart(req, res, grant, options);
      return true;
    }
    const itemId = decodeId(match[1]);
    if (req.method === 'PUT') await putPart(req, res, itemId, grant, options);
    else if (req.method === 'HEAD') await headItem(res, itemId, grant, options);
    else return methodNotAllowed(res, 'PUT, HEAD');
  } catch (e) {
    const error =
      e instanceof HttpError
        ? e
        : e instanceof StoreError
          ? new HttpError(e.code, e.message)
          : new HttpError('internal', 'internal error');
    if (!(e instanceof HttpError || e instanceof StoreError))
      options.log('http-upload-error', { error: String(e) });
    fail(res, error, req);
  }
  return true;
}

async function authenticate(req: IncomingMessage, options: HttpUploadOptions): Promise<Grant> {
  const token = bearerToken(req);
  const grant = token === undefined ? undefined : await options.verify(token);
  if (!grant)
    throw new HttpError('unauthorized', 'send a valid upload token in Authorization: Bearer');
  return grant;
}

async function postMultipart(
  req: IncomingMessage,
  res: ServerResponse,
  grant: Grant,
  options: HttpUploadOptions,
): Promise<void> {
  if (!/^multipart\/form-data/i.test(req.headers['content-type'] ?? '')) {
    throw new HttpError('bad-request', 'POST /uploads takes multipart/form-data');
  }
  const fields = new Map<string, string>();
  const result = await new Promise<ItemRecord>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        limits: { files: 1, fields: 8, fieldSize: 1024, fileSize: options.maxItemSize + 1 },
      });
    } catch {
      reject(new HttpError('bad-request', 'malformed multipart/form-data'));
      return;
    }
    let done: Promise<ItemRecord> | undefined;
    parser.on('field', (name, value) => fields.set(name, value));
    parser.on('file', (_name, file, info) => {
      done = storeMultipartFile(file, fields, info, grant, options, () => req.destroy());
      // A refused file is answered at once; the rest of the body is drained unread.
      done.catch((e: unknown) => {
        req.unpipe(parser);
        reject(e);
      });
    });
    parser.on('error', () => reject(new HttpError('bad-request', 'malformed multipart/form-data')));
    parser.on('close', () => {
      if (!done) reject(new HttpError('bad-request', 'no file part'));
      else done.then(resolve, reject);
    });
    req.pipe(parser);
  });
  res.writeHead(201, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(describe(result)));
}

async function storeMultipartFile(
  file: Readable,
  fields: Map<string, string>,
  info: { filename?: string | undefined; mimeType: string },
  grant: Grant,
  options: HttpUploadOptions,
  cut: () => void,
): Promise<ItemRecord> {
  const itemId = fields.get('itemId') ?? '';
  const size = Number(fields.get('size'));
  const sha256 = fields.get('sha256');
  if (!ITEM_ID_PATTERN.test(itemId))
    throw new HttpError(
      'bad-request',
      'field itemId (before the file) must match [A-Za-z0-9_-]{1,128}',
    );
  if (!Number.isSafeInteger(size) || size < 0)
    throw new HttpError('bad-request', 'field size (before the file) must be the file size');
  if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256))
    throw new HttpError('bad-request', 'field sha256 must be 64 hex digits');
  await openItem(
    itemId,
    size,
    grant,
    info.mimeType,
    truncateUtf8(info.filename ?? '', MAX_NAME_BYTES),
    options,
  );
  const hash = createHash('sha256');
  const written = await writeStream(file, itemId, 0, size, grant, options, hash, cut);
  if (written !== size)
    throw new HttpError('bad-request', `the file has ${written} bytes, not ${size}`);
  const actual = hash.digest('hex');
  if (sha256 !== undefined && sha256 !== actual)
    throw new HttpError('digest-mismatch', 'the file does not match field sha256');
  return completeItem(itemId, actual, options);
}

async function putPart(
  req: IncomingMessage,
  res: ServerResponse,
  itemId: string,
  grant: Grant,
  options: HttpUploadOptions,
): Promise<void> {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(req.headers['content-range'] ?? '');
  if (!m) throw new HttpError('bad-request', 'PUT needs Content-Range: bytes first-last/size');
  const [first, last, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (![first, last, size].every(Number.isSafeInteger) || first > last || last >= size) {
    throw new HttpError('bad-request', 'Content-Range is not a range of the item');
  }
  const length = req.headers['content-length'];
  if (length !== undefined && Number(length) !== last - first + 1) {
    throw new HttpError('bad-request', 'Content-Length differs from Content-Range');
  }
  // Checked before the body is stored: a malformed request stores nothing.
  const completion = completionOf(req);
  const mime = headerText(req.headers['item-type'], MAX_MIME_BYTES);
  const name = headerText(req.headers['item-name'], MAX_NAME_BYTES);
  await openItem(itemId, size, grant, mime, name, options);
  const written = await writeStream(req, itemId, first, last + 1, grant, options, undefined);
  if (written !== last - first + 1)
    throw new HttpError('bad-request', `the body has ${written} bytes, not ${last - first + 1}`);
  let record = (await options.store.get(itemId))!;
  const whole =
    record.ranges.length === 1 && record.ranges[0]!.start === 0 && record.ranges[0]!.end === size;
  // With `Repr-Digest`, the item is verified against it; with `Upload-Complete: ?1` alone, the
  // server computes its digest. Either way only once every byte is stored (`complete: false` else).
  if (completion.digest !== undefined || completion.complete) {
    if (whole) record = await completeItem(itemId, completion.digest, options);
  }
  res.writeHead(200, { 'Content-Type': 'application/json', ...rangeHeaders(record) });
  res.end(JSON.stringify(describe(record)));
}

/**
 * What a `PUT` asks about completion: `digest`, the hex SHA-256 of `Repr-Digest: sha-256=:…:`,
 * and `complete`, `Upload-Complete: ?1`. A `Repr-Digest` without a `sha-256` of 32 bytes is
 * ignored, unless `Upload-Complete: ?1` asks to complete the item (then it is `bad-request`, so a
 * digest meant to be checked is never dropped for one the server computes).
 */
function completionOf(req: IncomingMessage): { digest?: string; complete: boolean } {
  const header = req.headers['upload-complete'];
  const flag = header === undefined ? undefined : String(header).trim();
  if (flag !== undefined && flag !== '?1' && flag !== '?0')
    throw new HttpError('bad-request', 'Upload-Complete must be ?1 or ?0');
  const complete = flag === '?1';
  const digest = req.headers['repr-digest'];
  const m = /sha-256=:([A-Za-z0-9+/=]+):/.exec(String(digest ?? ''));
  const bytes = m ? Buffer.from(m[1]!, 'base64') : undefined;
  if (complete && digest !== undefined && bytes?.length !== 32)
    throw new HttpError('bad-request', 'Repr-Digest must carry sha-256=:<base64 of 32 bytes>:');
  if (bytes === undefined) return { complete };
  return { digest: bytes.toString('hex'), complete };
}

/**
 * Completes an item whose every byte is stored: verified against `sha256` (hex), or without it
 * with the digest the store computes; tells `onComplete` when it was not complete before.
 */
export async function completeItem(
  itemId: string,
  sha256: string | undefined,
  options: HttpUploadOptions,
): Promise<ItemRecord> {
  const before = await options.store.get(itemId);
  const record = await options.store.finish(itemId, sha256);
  if (before && !before.complete && record.complete && record.sha256 !== undefined) {
    options.log('item-complete', {
      itemId,
      size: record.size,
      owner: record.owner,
      ...(sha256 === undefined ? { digest: 'computed' } : {}),
    });
    options.onComplete?.(itemId, record.sha256, record.size);
  }
  return record;
}

async function headItem(
  res: ServerResponse,
  itemId: string,
  grant: Grant,
  options: HttpUploadOptions,
): Promise<void> {
  const record = await options.store.get(itemId);
  if (!record || (record.owner !== undefined && record.owner !== grant.owner)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, rangeHeaders(record)).end();
}

async function openItem(
  itemId: string,
  size: number,
  grant: Grant,
  mime: string,
  name: string,
  options: HttpUploadOptions,
): Promise<void> {
  if (size > options.maxItemSize)
    throw new HttpError(
      'too-large',
      `item of ${size} bytes is over the limit of ${options.maxItemSize}`,
    );
  if (Date.now() > grant.expiresAt + 30_000)
    throw new HttpError('unauthorized', 'the token expired');
  if (grant.items && !grant.items.has(itemId))
    throw new HttpError('forbidden', `the token does not allow writing item ${itemId}`);
  await options.store.open(itemId, size, { owner: grant.owner, mime, name });
}

/**
 * Writes a body to the item at `start`, in chunks of `options.chunk`, no further than `end`, within
 * what the token allows; returns the bytes read. It holds the write lock of `[start, end)`
 * meanwhile: a newer writer of those bytes cuts the body off (`superseded`) with `cut` (by default,
 * destroying `body`).
 */
export async function writeStream(
  body: Readable,
  itemId: string,
  start: number,
  end: number,
  grant: Grant,
  options: HttpUploadOptions,
  hash: ReturnType<typeof createHash> | undefined,
  cut: () => void = () => body.destroy(),
): Promise<number> {
  let superseded = false;
  const unlock = await options.locks.acquire(
    itemId,
    { start, end: Math.max(end, start + 1) },
    {
      supersede: () => {
        superseded = true;
        cut();
        body.destroy();
      },
    },
  );
  try {
    return await writeBody(body, itemId, start, end, grant, options, hash);
  } catch (e) {
    if (superseded) throw new HttpError('superseded', `another request took over item ${itemId}`);
    throw e;
  } finally {
    unlock();
  }
}

/**
 * Chunks of an HTTP body written and not yet flushed, at most, while a flush runs: past it the body
 * waits for the disk, and its end has little left to flush before the answer.
 */
const FLUSH_BEHIND = 4;

async function writeBody(
  body: Readable,
  itemId: string,
  start: number,
  end: number,
  grant: Grant,
  options: HttpUploadOptions,
  hash: ReturnType<typeof createHash> | undefined,
): Promise<number> {
  const { store, chunk } = options;
  let offset = start;
  /** What came of the body and is not written yet: less than `chunk` bytes between writes. */
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  /** Bytes written but not made durable yet (with a store that can defer it). */
  let uncommitted = 0;
  /** A flush running while the body goes on, and the first failure of one. */
  let flushing: Promise<unknown> | undefined;
  let failure: unknown;
  /** Written bytes wait for a flush that commits them. */
  let open = false;
  /** The item after the body's last write, which commits every byte of the body. */
  let stored: ItemRecord | undefined;
  const commit = (): Promise<ItemRecord> => store.writev!(itemId, offset, [], { commit: true });
  /** Writes `parts` (`length` bytes) at `offset`; durably when `last`. */
  const write = async (parts: Buffer[], length: number, last: boolean): Promise<void> => {
    if (offset + length > end)
      throw new HttpError('bad-request', 'the body is longer than its range');
    if (!allowsWrite(grant, itemId, offset, offset + length)) {
      throw new HttpError('forbidden', `the token does not allow writing bytes at ${offset}`);
    }
    if (hash) for (const part of parts) hash.update(part);
    if (!store.writev) {
      await store.write(
        itemId,
        offset,
        parts.length === 1 ? parts[0]! : Buffer.concat(parts, length),
      );
      offset += length;
      return;
    }
    const record = await store.writev(itemId, offset, parts, { commit: last });
    if (last) stored = record;
    offset += length;
    open = !last;
    uncommitted = last ? 0 : uncommitted + length;
    if (last) return;
    // Flushed while the body goes on, so that its end has little left to flush: the body waits
    // for the disk only when it falls behind by more than a few chunks (bounded write-behind).
    if (flushing && uncommitted >= FLUSH_BEHIND * chunk) await flushing;
    flush();
  };
  /** Starts a flush of what is written, unless one runs: each one starts the next if needed. */
  const flush = (): void => {
    if (flushing || uncommitted === 0 || !open) return;
    uncommitted = 0;
    flushing = commit()
      .catch((e: unknown) => (failure ??= e))
      .finally(() => {
        flushing = undefined;
        // Chunks written during this flush, while the body pauses, are not left waiting for it.
        flush();
      });
  };
  try {
    for await (const data of body) {
      let rest = data as Buffer;
      if (offset + pendingBytes + rest.length > end)
        throw new HttpError('bad-request', 'the body is longer than its range');
      // Chunks of exactly `chunk` bytes, from the body's buffers as they came (no copy).
      while (pendingBytes + rest.length >= chunk) {
        const take = chunk - pendingBytes;
        pending.push(rest.subarray(0, take));
        rest = rest.subarray(take);
        const parts = pending;
        pending = [];
        pendingBytes = 0;
        await write(parts, chunk, false);
      }
      if (rest.length > 0) {
        pending.push(rest);
        pendingBytes += rest.length;
      }
    }
    await flushing;
    if (failure) throw failure;
    if (pendingBytes > 0 || open) await write(pending, pendingBytes, true);
  } finally {
    // A body cut short keeps what was written of it, as a body read to the end does.
    if (open) {
      open = false;
      await commit().catch(() => undefined);
    }
  }
  // A failed flush of another writer of the item may have taken bytes of this body along (`write`
  // checks its own bytes; `writev` with `commit: false` leaves that to this check).
  if (stored && !stored.complete && !covers(stored.ranges, { start, end: offset }))
    throw new HttpError(
      'storage-failed',
      `bytes ${start}..${offset} of ${itemId} could not be stored; send them again`,
    );
  return offset - start;
}

function rangeHeaders(record: ItemRecord): Record<string, string> {
  return {
    'Upload-Length': String(record.size),
    'Upload-Ranges': record.ranges.map((r: ByteRange) => `${r.start}-${r.end - 1}`).join(','),
    'Upload-Complete': record.complete ? '?1' : '?0',
  };
}

function describe(record: ItemRecord): Record<string, unknown> {
  return {
    itemId: record.itemId,
    size: record.size,
    ranges: record.ranges,
    complete: record.complete,
    ...(record.sha256 ? { sha256: record.sha256 } : {}),
  };
}

function decodeId(segment: string): string {
  let id = '';
  try {
    id = decodeURIComponent(segment);
  } catch {
    // falls through to the check
  }
  if (!ITEM_ID_PATTERN.test(id)) throw new HttpError('not-found', 'no such item');
  return id;
}

function headerText(value: string | string[] | undefined, maxBytes: number): string {
  if (typeof value !== 'string') return '';
  try {
    return truncateUtf8(decodeURIComponent(value), maxBytes);
  } catch {
    return '';
  }
}

function methodNotAllowed(res: ServerResponse, allow: string): true {
  res.writeHead(405, { Allow: allow }).end();
  return true;
}

function fail(res: ServerResponse, error: HttpError, req: IncomingMessage): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = HTTP_STATUS[error.code] ?? 500;
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    Connection: 'close',
  };
  if (error.code === 'storage-full') headers['Retry-After'] = '60';
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer';
  res.writeHead(status, headers);
  res.end(JSON.stringify({ code: error.code, message: error.message }));
  // Whatever of the body is still coming is not wanted.
  req.resume();
}
