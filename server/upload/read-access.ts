/**
 * Who may read `GET`/`HEAD /files/{itemId}`. With `readAccess: 'token'` a reader presents a read
 * token (a JWT of the server's upload audience with `scope: "read"` and optionally `items`) in
 * `Authorization: Bearer <token>` (RFC 6750 §2.1) or in the `access_token` query parameter
 * (§2.3, for `<video src>` and `<img src>`, which cannot send headers). With `'public'` anyone who
 * knows an item's URL may read it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearerToken } from '../internal/http-server.js';
import { READ_SCOPE } from '../tokens.js';

/**
 * Who may read items: `token` (a read token is needed; the default) or `public` (anyone who knows the
 * URL; item ids from the reference client are 128 random bits, so they cannot be guessed, but a URL
 * that leaks is readable by whoever holds it, for as long as the item exists).
 */
export type ReadAccess = 'token' | 'public';

/**
 * The `Cross-Origin-Resource-Policy` of `/files` responses: which sites' pages may embed an item
 * (`<img>`, `<video>`, no-cors `fetch`). `same-site` (the default) lets pages of the upload server's
 * own site embed it; an app on another site needs `cross-origin`.
 */
export type CrossOriginResourcePolicy = 'same-site' | 'same-origin' | 'cross-origin';

/** The values {@link ReadAccess} takes. */
export const READ_ACCESS_MODES: readonly ReadAccess[] = ['token', 'public'];
/** The values {@link CrossOriginResourcePolicy} takes. */
export const CROSS_ORIGIN_RESOURCE_POLICIES: readonly CrossOriginResourcePolicy[] = [
  'same-site',
  'same-origin',
  'cross-origin',
];

/** What checking reads needs from the upload server. */
export interface ReadAccessOptions {
  readonly mode: ReadAccess;
  /** Verifies a token's signature, audience (the server's upload audience) and expiry. */
  readonly verify: (token: string) => Promise<Record<string, unknown> | undefined>;
  /** Sent with the refusals too. */
  readonly crossOriginResourcePolicy: CrossOriginResourcePolicy;
}

/** Why a read was refused: the JSON `code`, the HTTP status and the `WWW-Authenticate` challenge. */
interface Refusal {
  readonly status: 400 | 401 | 403;
  readonly code: 'bad-request' | 'unauthorized' | 'forbidden';
  readonly message: string;
  readonly challenge: string | undefined;
}

/**
 * Checks that a request may read `itemId`, and answers it when it may not (`400`, `401` or `403`,
 * JSON `{code, message}`). The check comes before anything about the item: a refused reader does
 * not learn whether it exists.
 * @param req the request (`GET` or `HEAD` of `/files/{segment}`)
 * @param res its response, written only on a refusal
 * @param itemId the decoded path segment (maybe not a valid item id)
 * @param options the mode and the token check
 * @returns whether the request may go on
 */
export async function authorizeRead(
  req: IncomingMessage,
  res: ServerResponse,
  itemId: string,
  options: ReadAccessOptions,
): Promise<boolean> {
  if (options.mode === 'public') return true;
  const refusal = await check(req, itemId, options);
  if (!refusal) return true;
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Cross-Origin-Resource-Policy': options.crossOriginResourcePolicy,
    'Referrer-Policy': 'no-referrer',
  };
  if (refusal.challenge !== undefined) headers['WWW-Authenticate'] = refusal.challenge;
  res.writeHead(refusal.status, headers);
  res.end(
    req.method === 'HEAD'
      ? undefined
      : JSON.stringify({ code: refusal.code, message: refusal.message }),
  );
  return false;
}

async function check(
  req: IncomingMessage,
  itemId: string,
  options: ReadAccessOptions,
): Promise<Refusal | undefined> {
  const carried = tokenOf(req);
  if (carried === 'ambiguous') {
    return {
      status: 400,
      code: 'bad-request',
      message: 'send the read token once: in Authorization: Bearer or in access_token, not both',
      challenge: 'Bearer error="invalid_request"',
    };
  }
  if (carried === undefined) {
    return {
      status: 401,
      code: 'unauthorized',
      message: 'send a read token in Authorization: Bearer or in the access_token query parameter',
      challenge: 'Bearer',
    };
  }
  const claims = await options.verify(carried);
  const items = claims?.['items'];
  if (
    !claims ||
    (items !== undefined &&
      (!Array.isArray(items) || !items.every((i): i is string => typeof i === 'string')))
  ) {
    return {
      status: 401,
      code: 'unauthorized',
      message: 'the token is not valid here (signature, audience, expiry or claims)',
      challenge: 'Bearer error="invalid_token"',
    };
  }
  if (claims['scope'] !== READ_SCOPE) {
    return {
      status: 403,
      code: 'forbidden',
      message: 'the token does not allow reading: send a read token (scope "read")',
      challenge: `Bearer error="insufficient_scope", scope="${READ_SCOPE}"`,
    };
  }
  if (Array.isArray(items) && !items.includes(itemId)) {
    return {
      status: 403,
      code: 'forbidden',
      message: 'the read token does not allow reading this item',
      challenge: `Bearer error="insufficient_scope", scope="${READ_SCOPE}"`,
    };
  }
  return undefined;
}

/**
 * The bearer token of a request: from `Authorization: Bearer` or from the `access_token` query
 * parameter; `'ambiguous'` when it comes more than once (RFC 6750 §2: one method per request).
 */
function tokenOf(req: IncomingMessage): string | undefined | 'ambiguous' {
  const header = bearerToken(req);
  const query = new URL(req.url ?? '/', 'http://localhost').searchParams
    .getAll('access_token')
    .filter((t) => t !== '');
  if (query.length > 1 || (header !== undefined && query.length > 0)) return 'ambiguous';
  return header ?? query[0];
}
