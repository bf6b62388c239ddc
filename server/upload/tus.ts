/**
 * tus 1.0.0 (https://tus.io/protocols/resumable-upload) at `/tus/`: core, creation,
 * creation-with-upload, termination, checksum and expiration, so tus clients (tus-js-client, Uppy)
 * upload to this server. Uploads are items like any other: same storage, tokens and limits. The
 * token travels in `Authorization: Bearer …`.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import {
  ITEM_ID_PATTERN,
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
  truncateUtf8,
} from '../../src/protocol/index.js';
import { bearerToken } from '../internal/http-server.js';
import { StoreError, type ItemRecord } from './file-store.js';
import type { Grant } from './grant.js';
import {
  completeItem,
  HTTP_STATUS,
  HttpError,
  writeStream,
  type HttpUploadOptions,
} from './http-uploads.js';

/** Path prefix of the tus endpoint. */
export const TUS_PATH = '/tus/';

const TUS_VERSION = '1.0.0';
const EXTENSIONS = 'creation,creation-with-upload,termination,checksum,expiration,concatenation';
const CHECKSUMS: Record<string, string> = { sha1: 'sha1', sha256: 'sha256', md5: 'md5' };

/** What tus needs beyond plain HTTP uploads. */
export interface TusOptions extends HttpUploadOptions {
  /** Partial uploads expire after this long without bytes, in ms (`Upload-Expires`). */
  readonly partialTtlMs: number;
}

/**
 * Handles a request under `/tus/`; returns false for other paths.
 */
export async function handleTus(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  options: TusOptions,
): Promise<boolean> {
  if (path !== TUS_PATH.slice(0, -1) && !path.startsWith(TUS_PATH)) return false;
  res.setHeader('Tus-Resumable', TUS_VERSION);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader(
    'Access-Control-Expose-Headers',
    'Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires',
  );
  if (req.method === 'OPTIONS') {
    res.writeHead(204, {
      'Tus-Version': TUS_VERSION,
      'Tus-Extension': EXTENSIONS,
      'Tus-Max-Size': String(options.maxItemSize),
      'Tus-Checksum-Algorithm': Object.keys(CHECKSUMS).join(','),
      'Access-Control-Allow-Methods': 'POST, HEAD, PATCH, DELETE, OPTIONS',
      'Access-Control-Allow-Headers':
        'Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Defer-Length',
    });
    res.end();
    return true;
  }
  if (req.headers['tus-resumable'] !== TUS_VERSION) {
    reply(res, req, 412, 'Tus-Resumable must be 1.0.0', { 'Tus-Version': TUS_VERSION });
    return true;
  }
  const token = bearerToken(req);
  const grant = token === undefined ? undefined : await options.verify(token);
  if (!grant) {
    reply(res, req, 401, 'send a valid upload token in Authorization: Bearer', {
      'WWW-Authenticate': 'Bearer',
    });
    return true;
  }
  try {
    const id = path.slice(TUS_PATH.length);
    if (id === '' || path === TUS_PATH.slice(0, -1)) {
      if (req.method !== 'POST')
        reply(res, req, 405, 'POST to create an upload', { Allow: 'POST, OPTIONS' });
      else await create(req, res, grant, options);
      return true;
    }
    const record = ITEM_ID_PATTERN.test(id) ? await options.store.get(id) : undefined;
    if (!record || (record.owner !== undefined && record.owner !== grant.owner)) {
      reply(res, req, 404, 'no such upload');
      return true;
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, describe(record, options)).end();
    } else if (req.method === 'PATCH') {
      await patch(req, res, record, grant, options);
    } else if (req.method === 'DELETE') {
      // Whoever still writes the upload is stopped first.
      const unlock = await options.locks.acquire(
        id,
        { start: 0, end: Number.MAX_SAFE_INTEGER },
        { supersede() {} },
      );
      try {
        if (await options.store.remove(id)) res.writeHead(204).end();
        else reply(res, req, 403, 'a complete upload cannot be terminated');
      } finally {
        unlock();
      }
    } else {
      reply(res, req, 405, 'use HEAD, PATCH or DELETE', { Allow: 'HEAD, PATCH, DELETE, OPTIONS' });
    }
  } catch (e) {
    if (e instanceof HttpError) {
      reply(res, req, HTTP_STATUS[e.code] ?? 500, e.message);
    } else if (e instanceof StoreError) {
      const status =
        {
          'quota-exceeded': 413,
          'storage-full': 507,
          unauthorized: 403,
          conflict: 409,
          locked: 423,
          fragmented: 400,
        }[e.code as string] ?? 500;
      reply(res, req, status, e.message);
    } else {
      options.log('tus-error', { error: String(e) });
      reply(res, req, 500, 'internal error');
    }
  }
  return true;
}

async function create(
  req: IncomingMessage,
  res: ServerResponse,
  grant: Grant,
  options: TusOptions,
): Promise<void> {
  if (req.headers['upload-defer-length'] !== undefined) {
    reply(res, req, 400, 'Upload-Defer-Length is not supported: send Upload-Length');
    return;
  }
  const concat = String(req.headers['upload-concat'] ?? '');
  if (concat.startsWith('final;')) {
    await concatenate(req, res, concat.slice('final;'.length), grant, options);
    return;
  }
  const length = Number(req.headers['upload-length']);
  if (!Number.isSafeInteger(length) || length < 0) {
    reply(res, req, 400, 'Upload-Length must be a non-negative integer');
    return;
  }
  if (length > options.maxItemSize) {
    reply(res, req, 413, `uploads are at most ${options.maxItemSize} bytes`);
    return;
  }
  const metadata = parseMetadata(String(req.headers['upload-metadata'] ?? ''));
  if (!metadata) {
    reply(res, req, 400, 'Upload-Metadata is malformed');
    return;
  }
  // The item id: random, as the reference client makes them (128 bits, base64url).
  const itemId = randomBytes(16).toString('base64url');
  if (grant.items && !grant.items.has(itemId)) {
    reply(res, req, 403, 'the token allows only named items; tus chooses its own ids');
    return;
  }
  let record = await options.store.open(itemId, length, {
    owner: grant.owner,
    mime: truncateUtf8(metadata.get('filetype') ?? metadata.get('type') ?? '', MAX_MIME_BYTES),
    name: truncateUtf8(metadata.get('filename') ?? metadata.get('name') ?? '', MAX_NAME_BYTES),
  });
  const location = `${TUS_PATH}${itemId}`;
  if (req.headers['content-type'] === 'application/offset+octet-stream') {
    record = (await receive(req, record, 0, grant, options, undefined)) ?? record;
  } else {
    req.resume();
  }
  if (length === 0) record = await completeItem(itemId, undefined, options);
  res.writeHead(201, { Location: location, ...describe(record, options) }).end();
}

/**
 * `Upload-Concat: final;<url> <url> …`: a new upload made of complete partial uploads of the same
 * user, in order (the concatenation extension, which tus clients use for parallel uploads).
 */
async function concatenate(
  req: IncomingMessage,
  res: ServerResponse,
  list: string,
  grant: Grant,
  options: TusOptions,
): Promise<void> {
  req.resume();
  const ids = list
    .trim()
    .split(/\s+/)
    .map((url) => url.slice(url.lastIndexOf('/') + 1));
  const parts: ItemRecord[] = [];
  for (const id of ids) {
    const part = ITEM_ID_PATTERN.test(id) ? await options.store.get(id) : undefined;
    if (!part || (part.owner !== undefined && part.owner !== grant.owner) || !part.complete) {
      reply(res, req, 400, `Upload-Concat names ${id}, which is not a complete upload of yours`);
      return;
    }
    parts.push(part);
  }
  const length = parts.reduce((n, p) => n + p.size, 0);
  if (parts.length === 0 || length > options.maxItemSize) {
    reply(
      res,
      req,
      parts.length === 0 ? 400 : 413,
      'Upload-Concat lists no parts, or too many bytes',
    );
    return;
  }
  const metadata =
    parseMetadata(String(req.headers['upload-metadata'] ?? '')) ?? new Map<string, string>();
  const itemId = randomBytes(16).toString('base64url');
  await options.store.open(itemId, length, {
    owner: grant.owner,
    mime: truncateUtf8(
      metadata.get('filetype') ?? metadata.get('type') ?? parts[0]!.mime ?? '',
      MAX_MIME_BYTES,
    ),
    name: truncateUtf8(metadata.get('filename') ?? metadata.get('name') ?? '', MAX_NAME_BYTES),
  });
  let offset = 0;
  for (const part of parts) {
    if (part.size === 0) continue;
    offset += await writeStream(
      options.store.read(part.itemId, 0, part.size),
      itemId,
      offset,
      length,
      grant,
      options,
      undefined,
    );
  }
  const record = await completeItem(itemId, undefined, options);
  res.writeHead(201, { Location: `${TUS_PATH}${itemId}`, ...describe(record, options) }).end();
}

async function patch(
  req: IncomingMessage,
  res: ServerResponse,
  record: ItemRecord,
  grant: Grant,
  options: TusOptions,
): Promise<void> {
  if (req.headers['content-type'] !== 'application/offset+octet-stream') {
    reply(res, req, 415, 'PATCH takes Content-Type: application/offset+octet-stream');
    return;
  }
  const offset = Number(req.headers['upload-offset']);
  const current = offsetOf(record);
  if (!Number.isSafeInteger(offset) || offset !== current) {
    reply(res, req, 409, `Upload-Offset must be ${current}`, { 'Upload-Offset': String(current) });
    return;
  }
  let checksum: { algorithm: string; expected: string } | undefined;
  const header = req.headers['upload-checksum'];
  if (header !== undefined) {
    const [name, value] = String(header).split(' ');
    const algorithm = CHECKSUMS[name ?? ''];
    if (!algorithm || !value) {
      reply(res, req, 400, 'Upload-Checksum algorithm is not supported');
      return;
    }
    checksum = { algorithm, expected: value };
  }
  const next = await receive(req, record, offset, grant, options, checksum);
  if (next === undefined) {
    reply(res, req, 460, 'Upload-Checksum does not match; nothing was stored');
    return;
  }
  res.writeHead(204, describe(next, options)).end();
}

/**
 * Stores a request body at `offset`. With a checksum, the body is held (it is one PATCH, at most
 * the item's size) and stored only if it matches; returns `undefined` when it does not. The item is
 * completed once its last byte is stored.
 */
async function receive(
  req: IncomingMessage,
  record: ItemRecord,
  offset: number,
  grant: Grant,
  options: TusOptions,
  checksum: { algorithm: string; expected: string } | undefined,
): Promise<ItemRecord | undefined> {
  const { itemId, size } = record;
  let body: Readable = req;
  if (checksum) {
    const held: Buffer[] = [];
    let length = 0;
    for await (const chunk of req) {
      length += (chunk as Buffer).length;
      if (offset + length > size)
        throw new HttpError('bad-request', 'the body runs past Upload-Length');
      held.push(chunk as Buffer);
    }
    const bytes = Buffer.concat(held, length);
    if (createHash(checksum.algorithm).update(bytes).digest('base64') !== checksum.expected)
      return undefined;
    body = Readable.from([bytes]);
  }
  await writeStream(body, itemId, offset, size, grant, options, undefined);
  const latest = (await options.store.get(itemId))!;
  if (latest.size > 0 && offsetOf(latest) === latest.size && !latest.complete)
    return completeItem(itemId, undefined, options);
  return latest;
}

/** The tus offset: the length of the stored prefix. */
function offsetOf(record: ItemRecord): number {
  if (record.complete) return record.size;
  const first = record.ranges[0];
  return first && first.start === 0 ? first.end : 0;
}

function describe(record: ItemRecord, options: TusOptions): Record<string, string> {
  const headers: Record<string, string> = {
    'Upload-Offset': String(offsetOf(record)),
    'Upload-Length': String(record.size),
  };
  const meta: string[] = [];
  if (record.name) meta.push(`filename ${Buffer.from(record.name).toString('base64')}`);
  if (record.mime) meta.push(`filetype ${Buffer.from(record.mime).toString('base64')}`);
  if (meta.length > 0) headers['Upload-Metadata'] = meta.join(',');
  if (!record.complete) {
    headers['Upload-Expires'] = new Date(
      (record.updatedAt ?? record.createdAt) + options.partialTtlMs,
    ).toUTCString();
  }
  return headers;
}

/** `key base64,key2 base64` → map; `undefined` when malformed. */
function parseMetadata(header: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  if (header.trim() === '') return out;
  for (const pair of header.split(',')) {
    const [key, value, extra] = pair.trim().split(' ');
    if (!key || extra !== undefined || !/^[!-~]+$/.test(key)) return undefined;
    if (value !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return undefined;
    out.set(key, value === undefined ? '' : Buffer.from(value, 'base64').toString('utf8'));
  }
  return out;
}

function reply(
  res: ServerResponse,
  req: IncomingMessage,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'Content-Type': 'text/plain', ...headers });
  res.end(`${message}\n`);
  req.resume();
}
