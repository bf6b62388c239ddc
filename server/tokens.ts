/**
 * Tokens signed with a shared secret (HS256 JWTs, made with `jose`).
 *
 * - A **user token** is what an app gives the browser for the control server:
 *   `sub` = user id, `aud` = `ws-uploader:control`.
 * - An **upload token** is what the control server gives a browser for one upload server:
 *   `sub` = client id, `aud` = `ws-uploader:upload:<serverId>`, `scope` = `upload`.
 * - A **read token** is what an app gives a reader of `GET /files/{itemId}` on one upload server:
 *   `sub` = client id, `aud` = `ws-uploader:upload:<serverId>`, `scope` = `read`, optional `items`.
 * - A **registry token** is what an upload server shows the control server on its registry link:
 *   `sub` = server id, `aud` = `ws-uploader:registry`.
 */
import { SignJWT, jwtVerify, errors } from 'jose';
import { ITEM_ID_PATTERN } from '../src/protocol/index.js';

/** Audience of user tokens. */
export const CONTROL_AUDIENCE = 'ws-uploader:control';
/** Audience of registry tokens (an upload server registering with the control server). */
export const REGISTRY_AUDIENCE = 'ws-uploader:registry';
/** Audience of upload tokens and read tokens for one upload server. */
export const uploadAudience = (serverId: string): string => `ws-uploader:upload:${serverId}`;

/** Clock difference tolerated between the servers when checking `exp`, `nbf` and `iat`, in seconds. */
export const CLOCK_LEEWAY_SECONDS = 30;

/** What a verified token says. */
export interface TokenClaims {
  /** Subject: a user id (user token) or a client id (upload token). */
  readonly sub: string;
  /** Expiry, seconds since the epoch. */
  readonly exp: number;
}

/** Minimum secret length, in bytes: HS256 with a short secret is guessable. */
export const MIN_SECRET_BYTES = 32;

/**
 * Checks a shared secret and turns it into key bytes.
 * @param secret the secret, at least 32 bytes of UTF-8
 * @throws {TypeError} when it is missing or too short
 */
export function secretKey(secret: string | Uint8Array): Uint8Array {
  const key = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
  if (!(key instanceof Uint8Array) || key.length < MIN_SECRET_BYTES) {
    throw new TypeError(
      `ws-uploader: the shared secret must be at least ${MIN_SECRET_BYTES} bytes`,
    );
  }
  return key;
}

/** WebCrypto HMAC keys made from secrets, so each secret is imported once, not per token. */
const hmacKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();

/** The HMAC-SHA-256 key of a secret (imported once per secret). */
function hmacKey(secret: Uint8Array): Promise<CryptoKey> {
  let key = hmacKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey(
      'raw',
      new Uint8Array(secret),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign', 'verify'],
    );
    hmacKeys.set(secret, key);
  }
  return key;
}

/**
 * Signs a token.
 * @param key the shared secret (from {@link secretKey})
 * @param sub subject
 * @param audience audience
 * @param ttlSeconds lifetime
 * @param extra extra claims
 */
export async function signToken(
  key: Uint8Array,
  sub: string,
  audience: string,
  ttlSeconds: number,
  extra: Record<string, unknown> = {},
): Promise<{ token: string; expiresAt: number }> {
  const now = Math.floor(Date.now() / 1000);
  const exp = now + Math.max(1, Math.floor(ttlSeconds));
  const token = await new SignJWT(extra)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(exp)
    .sign(await hmacKey(key));
  return { token, expiresAt: exp * 1000 };
}

/**
 * Verifies a token's signature, audience and expiry.
 * @param key the shared secret
 * @param token the JWT
 * @param audience the audience it must carry
 * @param leewaySeconds clock difference tolerated
 * @returns its claims, or `undefined` when it is not valid (for any reason)
 */
export async function verifyToken(
  key: Uint8Array,
  token: string,
  audience: string,
  leewaySeconds = CLOCK_LEEWAY_SECONDS,
): Promise<(TokenClaims & Record<string, unknown>) | undefined> {
  try {
    const { payload } = await jwtVerify(token, await hmacKey(key), {
      audience,
      algorithms: ['HS256'],
      clockTolerance: leewaySeconds,
    });
    if (typeof payload.sub !== 'string' || typeof payload.exp !== 'number') return undefined;
    // Issued in the future by more than the leeway: a clock is off, or the token is forged.
    if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + leewaySeconds)
      return undefined;
    return payload as TokenClaims & Record<string, unknown>;
  } catch (e) {
    if (e instanceof errors.JOSEError || e instanceof TypeError) return undefined;
    throw e;
  }
}

/**
 * Makes a user token for the control server, as an app's login would.
 * @param secret the control server's secret
 * @param userId the user
 * @param ttlSeconds lifetime, default one day
 */
export async function createUserToken(
  secret: string | Uint8Array,
  userId: string,
  ttlSeconds = 86_400,
): Promise<string> {
  return (await signToken(secretKey(secret), userId, CONTROL_AUDIENCE, ttlSeconds)).token;
}

/**
 * Makes a registry token: what an upload server sends in `register` on its link to the control
 * server. Upload servers make their own from the shared secret.
 * @param secret the shared secret
 * @param serverId the upload server's id
 * @param ttlSeconds lifetime, default five minutes (a token is checked once, at registration)
 */
export async function createRegistryToken(
  secret: string | Uint8Array,
  serverId: string,
  ttlSeconds = 300,
): Promise<string> {
  return (await signToken(secretKey(secret), serverId, REGISTRY_AUDIENCE, ttlSeconds)).token;
}

/** The `scope` claim of read tokens. */
export const READ_SCOPE = 'read';

/** Options of {@link createReadToken}. */
export interface ReadTokenOptions {
  /** The token's subject (`sub`): who reads, such as a user or client id; any non-empty string. */
  readonly subject: string;
  /**
   * The items it may read (the `items` claim); omitted, it may read any item of the server.
   * Item ids, `[A-Za-z0-9_-]{1,128}`; at least one when given.
   */
  readonly items?: readonly string[];
  /** Lifetime in seconds: long enough for a `<video>` to finish reading by ranges. @default 3600 */
  readonly ttlSeconds?: number;
}

/**
 * Makes a read token: what a reader presents to one upload server for `GET`/`HEAD /files/{itemId}`,
 * as `Authorization: Bearer <token>` or in the `access_token` query parameter (for `<video src>`
 * and `<img src>`, which cannot send headers). An HS256 JWT with `aud` = the server's upload
 * audience, `scope: "read"`, `sub`, `iat`, `exp` and, when `items` is given, `items`. Upload tokens
 * do not allow reading, and read tokens do not allow uploading.
 * @param secret the upload server's shared secret, at least 32 bytes
 * @param serverId the upload server that will accept it
 * @param options subject, items and lifetime
 * @returns the token
 * @throws {TypeError} on a short secret, a malformed server id or item id, an empty `items`, an
 *   empty subject or a lifetime that is not a positive integer
 * @example
 * const token = await createReadToken(secret, 'eu-1', { subject: 'alice', items: [itemId] });
 * video.src = `https://eu-1.example/files/${itemId}?access_token=${token}`;
 */
export async function createReadToken(
  secret: string | Uint8Array,
  serverId: string,
  options: ReadTokenOptions,
): Promise<string> {
  const key = secretKey(secret);
  if (typeof serverId !== 'string' || !ITEM_ID_PATTERN.test(serverId))
    throw new TypeError(
      'ws-uploader: a read token needs a server id matching [A-Za-z0-9_-]{1,128}',
    );
  if (typeof options.subject !== 'string' || options.subject === '')
    throw new TypeError('ws-uploader: a read token needs a non-empty `subject`');
  const ttlSeconds = options.ttlSeconds ?? 3600;
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0)
    throw new TypeError('ws-uploader: `ttlSeconds` must be a positive integer');
  const claims: Record<string, unknown> = { scope: READ_SCOPE };
  if (options.items !== undefined) {
    if (options.items.length === 0)
      throw new TypeError(
        'ws-uploader: `items` must name at least one item (omit it for any item)',
      );
    for (const id of options.items) {
      if (typeof id !== 'string' || !ITEM_ID_PATTERN.test(id))
        throw new TypeError(`ws-uploader: ${JSON.stringify(id)} is not an item id`);
    }
    claims['items'] = [...options.items];
  }
  return (await signToken(key, options.subject, uploadAudience(serverId), ttlSeconds, claims))
    .token;
}
