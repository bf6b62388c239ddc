/**
 * Browser-side handle on real servers started by the test runner (test/helpers/servers-plugin.mjs).
 */
import { executeServerCommand } from '@web/test-runner-commands';

/** A deployment started for a test: one control server and upload servers, on loopback. */
export interface TestDeployment {
  readonly handle: number;
  readonly controlUrl: string;
  /** A valid user token for the control server. */
  readonly token: string;
  readonly servers: readonly { id: string; url: string; httpUrl: string }[];
}

/** Options of every upload server of a deployment (a subset of `UploadServerOptions`). */
export interface TestUploadOptions {
  readonly readAccess?: 'token' | 'public';
  readonly crossOriginResourcePolicy?: 'same-site' | 'same-origin' | 'cross-origin';
}

/**
 * Starts a deployment.
 * @param uploadServers how many upload servers
 * @param uploadOptions options of every upload server
 */
export async function startServers(
  uploadServers = 2,
  uploadOptions: TestUploadOptions = {},
): Promise<TestDeployment> {
  const d = await executeServerCommand<
    TestDeployment,
    { uploadServers: number; uploadOptions: TestUploadOptions }
  >('ws-servers:start', { uploadServers, uploadOptions });
  if (!d)
    throw new Error('the test runner did not start the servers (is servers-plugin.mjs loaded?)');
  return d;
}

/** Stops a deployment and removes its files. */
export async function stopServers(d: TestDeployment | undefined): Promise<void> {
  if (d) await executeServerCommand('ws-servers:stop', { handle: d.handle });
}

/** SHA-256 of an item's bytes as stored on one upload server's disk. */
export async function storedSha256(
  d: TestDeployment,
  serverId: string,
  itemId: string,
): Promise<{ complete: boolean; size: number; sha256: string } | null> {
  return (
    (await executeServerCommand('ws-servers:stored-sha256', {
      handle: d.handle,
      serverId,
      itemId,
    })) ?? null
  );
}

/**
 * A read token for `GET /files` on one upload server of the deployment (made by the test runner,
 * which holds the secret).
 * @param items the items it may read (default: any item)
 */
export async function readToken(
  d: TestDeployment,
  serverId: string,
  items?: readonly string[],
): Promise<string> {
  const token = await executeServerCommand<
    string,
    { handle: number; serverId: string; items?: readonly string[] }
  >('ws-servers:read-token', { handle: d.handle, serverId, ...(items ? { items } : {}) });
  if (!token) throw new Error('the test runner made no read token');
  return token;
}

/** Hex SHA-256 of bytes, computed by the browser. */
export async function sha256Hex(data: BufferSource): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A file of random bytes, made in the browser. */
export function randomFile(
  size: number,
  name = 'random.bin',
  type = 'application/octet-stream',
): File {
  const bytes = new Uint8Array(size);
  for (let o = 0; o < size; o += 65536)
    crypto.getRandomValues(bytes.subarray(o, Math.min(size, o + 65536)));
  return new File([bytes], name, { type });
}

/** One request an upload server answered. */
export interface HttpLogEntry {
  readonly method: string;
  /** The request's path, without the query. */
  readonly url: string;
  readonly range: string | null;
  readonly status: number;
}

/** The requests an upload server answered so far. */
export async function httpLog(d: TestDeployment, serverId: string): Promise<HttpLogEntry[]> {
  return (
    (await executeServerCommand<HttpLogEntry[], object>('ws-servers:http-log', {
      handle: d.handle,
      serverId,
    })) ?? []
  );
}
