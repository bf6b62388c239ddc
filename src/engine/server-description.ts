/**
 * Which data protocol to speak to an upload server, and where: from the server's own
 * `/.well-known/ws-uploader` document when the engine would speak something other than what the
 * control server lists first, else from the control server's list.
 */
import type { ServerInfo } from '../protocol/control.js';
import type { DataProtocol } from './transport.js';

/** Time to wait for `/.well-known/ws-uploader`, in ms. */
const DESCRIBE_TIMEOUT_MS = 3000;

/** The protocol to speak to a server and the URL of its endpoint. */
export interface ProtocolChoice {
  /** The protocol the bytes go over. */
  readonly protocol: DataProtocol;
  /** WebSocket URL (`dup/*`) or HTTP endpoint URL (`http/1`). */
  readonly url: string;
  /** For `http/1`: a WebSocket protocol the server speaks too, for pings and liveness. */
  readonly live?: DataProtocol;
}

interface WellKnown {
  readonly protocols: readonly string[];
  readonly endpoints: Readonly<Record<string, string>>;
}

/**
 * Picks the first protocol of `preferred` the server speaks. The document is fetched only when the
 * control server's list does not already offer the first preferred protocol; a server whose
 * document cannot be read gets what the control server lists, and `dup/2` when that names nothing
 * the engine speaks (as earlier versions did).
 * @param info the server as the control server lists it
 * @param preferred the engine's `protocols` option
 * @internal
 */
export async function chooseProtocol(
  info: ServerInfo,
  preferred: readonly DataProtocol[],
): Promise<ProtocolChoice> {
  const listed = info.protocols ?? [];
  let offered: readonly string[] = listed;
  let endpoints: Readonly<Record<string, string>> = {};
  if (!listed.includes(preferred[0]!) && info.httpUrl) {
    const known = await wellKnown(info.httpUrl);
    if (known) {
      offered = known.protocols;
      endpoints = known.endpoints;
    }
  }
  const protocol =
    preferred.find((p) => offered.includes(p)) ??
    (preferred.includes('dup/2') ? 'dup/2' : preferred[0]!);
  if (protocol !== 'http/1') return { protocol, url: info.url };
  const path = endpoints['http/1'] ?? '/uploads';
  const live = (['dup/2', 'dup/1'] as const).find((p) => offered.includes(p));
  return {
    protocol,
    url: new URL(path, info.httpUrl).href,
    ...(live ? { live } : {}),
  };
}

/**
 * The URL of a server's `http/1` endpoint: from its `/.well-known/ws-uploader` document, else
 * `/uploads` on its `httpUrl`.
 * @param info the server as the control server lists it
 * @internal
 */
export async function httpEndpoint(info: ServerInfo): Promise<string> {
  const known = info.httpUrl ? await wellKnown(info.httpUrl) : undefined;
  return new URL(known?.endpoints['http/1'] ?? '/uploads', info.httpUrl).href;
}

async function wellKnown(httpUrl: string): Promise<WellKnown | undefined> {
  try {
    const response = await fetch(new URL('/.well-known/ws-uploader', httpUrl), {
      cache: 'no-store',
      credentials: 'omit',
      signal: AbortSignal.timeout(DESCRIBE_TIMEOUT_MS),
    });
    if (!response.ok) return undefined;
    const body = (await response.json()) as Partial<WellKnown>;
    if (!Array.isArray(body.protocols)) return undefined;
    return {
      protocols: body.protocols.filter((p): p is string => typeof p === 'string'),
      endpoints:
        typeof body.endpoints === 'object' && body.endpoints !== null ? body.endpoints : {},
    };
  } catch {
    return undefined;
  }
}
