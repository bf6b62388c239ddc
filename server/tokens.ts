/**
 * Tokens signed with a shared secret (HS256 JWTs, made with `jose`).
 *
 * - A **user token** is what an app gives the browser for the control server:
 *   `sub` = user id, `aud` = `ws-uploader:control`.
 * - An **upload token** is what the control server gives a browser for one upload server:
 *   `sub` = client id, `aud` = `ws-uploader:upload:<serverId>`, `scope` = `upload`.
 */
import { SignJWT, jwtVerify, errors } from 'jose';

/** Audience of user tokens. */
export const CONTROL_AUDIENCE = 'ws-uploader:control';
/** Audience of upload tokens for one upload server. */
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
    .sign(key);
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
    const { payload } = await jwtVerify(token, key, {
      audience,
      algorithms: ['HS256'],
      clockTolerance: leewaySeconds,
    });
    if (typeof payload.sub !== 'string' || typeof payload.exp !== 'number') return undefined;
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
