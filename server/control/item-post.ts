/**
 * `POST {itemsPath}`: a small item sent to the control server as `multipart/form-data`, the short
 * road for a page that would rather not base64 it into a control message. The item becomes an
 * inline item of the user whose credential comes in `Authorization: Bearer`, exactly as if its
 * browser had published it with `content`.
 */
import busboy from 'busboy';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ITEM_ID_PATTERN, type ItemKind, type ItemMeta } from '../../src/protocol/index.js';
import { bearerToken } from '../internal/http-server.js';

/** What {@link handleItemPost} needs from the control server. */
export interface ItemPostContext {
  /** Largest inline item, in bytes. */
  readonly inlineMax: number;
  /** The user of a credential, or `undefined` when it is refused. */
  authenticate(token: string): Promise<{ userId: string } | undefined>;
  /**
   * The browser of that user that the item belongs to (a `clientId` field), when it names one of
   * its live sessions; otherwise `''` (no browser: it is never asked to upload it).
   */
  clientOf(userId: string, clientId: string | undefined): string;
  /** Records the item; an error code and message when it is refused. */
  accept(
    owner: { userId: string; clientId: string },
    meta: ItemMeta,
  ): Promise<{ sha256: string } | { code: string; message: string }>;
}

/** HTTP status of each refusal code. */
const STATUS: Record<string, number> = {
  'bad-request': 400,
  'auth-failed': 401,
  conflict: 409,
  'too-large': 413,
  'quota-exceeded': 507,
};

/**
 * Answers one `POST` of a multipart item: 201 with `{ itemId, size, sha256 }`, or an error status
 * with `{ code, message }` (400 bad form, 401 credential, 409 conflict, 413 too large, 415 not
 * multipart, 507 inline quota).
 */
export async function handleItemPost(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: ItemPostContext,
): Promise<void> {
  const answer = (status: number, body: Record<string, unknown>): void => {
    if (res.headersSent) return;
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const refuse = (code: string, message: string): void => {
    answer(STATUS[code] ?? 400, { code, message });
    // What is left of the body is not read.
    req.unpipe();
    req.resume();
  };
  const token = bearerToken(req);
  const user =
    token === undefined ? undefined : await ctx.authenticate(token).catch(() => undefined);
  if (!user) return refuse('auth-failed', 'send a user credential in Authorization: Bearer');
  if (!/^multipart\/form-data\b/i.test(req.headers['content-type'] ?? ''))
    return answer(415, { code: 'bad-request', message: 'send multipart/form-data' });
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: req.headers,
      limits: { files: 1, fields: 8, fieldSize: 1024, fileSize: ctx.inlineMax + 1 },
    });
  } catch {
    return refuse('bad-request', 'malformed multipart/form-data');
  }
  const fields = new Map<string, string>();
  const result = await new Promise<
    { bytes: Buffer; name: string; mime: string } | { code: string; message: string }
  >((resolve) => {
    let file: Promise<{ bytes: Buffer; name: string; mime: string } | undefined> | undefined;
    parser.on('field', (name, value) => fields.set(name, value));
    parser.on('file', (_name, stream, info) => {
      // Read whole: busboy cuts the file at inlineMax + 1 bytes (`truncated`) and drains the rest.
      file = (async () => {
        const parts: Buffer[] = [];
        for await (const part of stream) parts.push(part as Buffer);
        const bytes = Buffer.concat(parts);
        if (stream.truncated || bytes.length > ctx.inlineMax) return undefined;
        return { bytes, name: info.filename ?? '', mime: info.mimeType };
      })();
    });
    parser.on('error', () =>
      resolve({ code: 'bad-request', message: 'malformed multipart/form-data' }),
    );
    parser.on('close', () => {
      if (!file) {
        resolve({ code: 'bad-request', message: 'no file part' });
        return;
      }
      file.then(
        (f) =>
          resolve(
            f ?? {
              code: 'too-large',
              message: `items sent to the control server are limited to ${ctx.inlineMax} bytes`,
            },
          ),
        () => resolve({ code: 'bad-request', message: 'the file part broke off' }),
      );
    });
    req.pipe(parser);
  });
  if ('code' in result) return refuse(result.code, result.message);
  const itemId = fields.get('itemId') ?? '';
  if (!ITEM_ID_PATTERN.test(itemId))
    return refuse('bad-request', 'itemId must match [A-Za-z0-9_-]{1,128}');
  const kind = (fields.get('kind') ?? 'file') as ItemKind;
  if (kind !== 'file' && kind !== 'text' && kind !== 'clipboard')
    return refuse('bad-request', 'kind must be file, text or clipboard');
  const name = fields.get('name') ?? result.name;
  const mime = (fields.get('mime') ?? result.mime).slice(0, 255);
  const meta: ItemMeta = {
    itemId,
    name: name.slice(0, 1024),
    size: result.bytes.length,
    mime: mime === 'application/octet-stream' && fields.get('mime') === undefined ? '' : mime,
    kind,
    content: result.bytes.toString('base64'),
  };
  const owner = {
    userId: user.userId,
    clientId: ctx.clientOf(user.userId, fields.get('clientId')),
  };
  const accepted = await ctx.accept(owner, meta);
  if ('code' in accepted) return refuse(accepted.code, accepted.message);
  answer(201, { itemId, size: meta.size, sha256: accepted.sha256 });
}
