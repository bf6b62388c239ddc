/**
 * Browser-side handle on real servers started by the test runner (test/helpers/servers-plugin.mjs).
 */
import { executeServerCommand } from '@web/test-runner-commands';
import type { FaultProxyEvent, FaultProxyStats, FaultShape } from './fault-proxy.js';

export type { FaultProxyEvent, FaultProxyStats, FaultShape };

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
  /** How long a reader waits for bytes not stored yet before a 503, in ms. */
  readonly holdMs?: number;
  /** Data protocols the servers speak (`dup/2`, `dup/1`, `tus/1`, `http/1`). @default all */
  readonly protocols?: readonly string[];
  /** A connection that sends no bytes for this long is closed with 4008, in ms. */
  readonly idleTimeoutMs?: number;
  /** Interval of WebSocket pings to browsers; one that misses one is dropped, in ms. */
  readonly heartbeatMs?: number;
  /** Largest DATA payload accepted, in bytes. */
  readonly maxChunk?: number;
  /** Unacknowledged bytes a client may have in flight per connection (at least `maxChunk`). */
  readonly window?: number;
  /** Largest item, in bytes (a larger one fails with `too-large`). */
  readonly maxItemSize?: number;
}

/** Options of the control server of a deployment (a subset of `ControlServerOptions`). */
export interface TestControlOptions {
  /** Largest inline item, in bytes; 0 turns inline items off. */
  readonly inlineMax?: number;
  /** Largest sum of the inline items held, in bytes. */
  readonly inlineTotalMax?: number;
  readonly probeWaitMs?: number;
  readonly verifyWaitMs?: number;
  /** How long a disconnected browser may resume its session, in ms. */
  readonly sessionResumeMs?: number;
  /** Interval of WebSocket pings to browsers (and of linked upload servers' heartbeats), in ms. */
  readonly heartbeatMs?: number;
  /** Items up to this size start as one multipart POST (`transmit.protocol` `http/1`). */
  readonly multipartMax?: number;
  /** How linked upload servers compute the digest of a split item: `read` or `steps`. */
  readonly splitDigest?: 'read' | 'steps';
}

/** What {@link startDeployment} starts. */
export interface TestDeploymentOptions {
  /** How many upload servers. @default 2 */
  readonly uploadServers?: number;
  readonly uploadOptions?: TestUploadOptions;
  /** Options of one upload server (by id: `up-1`, `up-2`…), over `uploadOptions`. */
  readonly uploadOptionsById?: Readonly<Record<string, TestUploadOptions>>;
  readonly controlOptions?: TestControlOptions;
  /** Options of the control server's planner (`createPlanner`), such as `{ splitMin }`. */
  readonly plannerOptions?: {
    readonly splitMin?: number;
    readonly align?: number;
    readonly stripe?: number;
  };
  /**
   * Upload servers connect out to the control server (`controlUrl`, its `/registry`) instead of
   * being listed by hand, so they report demand.
   */
  readonly linked?: boolean;
  /** Browsers may join, and send messages to, only these rooms (the control server's `allow`). */
  readonly allow?: { readonly rooms: readonly string[] };
}

/**
 * Starts a deployment whose control server takes no inline items, so every item is uploaded (as
 * the tests written before inline items expect).
 * @param uploadServers how many upload servers
 * @param uploadOptions options of every upload server
 */
export async function startServers(
  uploadServers = 2,
  uploadOptions: TestUploadOptions = {},
): Promise<TestDeployment> {
  return startDeployment({ uploadServers, uploadOptions, controlOptions: { inlineMax: 0 } });
}

/**
 * Starts a deployment; its control server has the reference defaults (inline items up to 64 KiB)
 * unless `controlOptions` says otherwise.
 */
export async function startDeployment(
  options: TestDeploymentOptions = {},
): Promise<TestDeployment> {
  const d = await executeServerCommand<TestDeployment, TestDeploymentOptions>(
    'ws-servers:start',
    options,
  );
  if (!d)
    throw new Error('the test runner did not start the servers (is servers-plugin.mjs loaded?)');
  return d;
}

/**
 * A control credential for a user of the deployment.
 * @param expiresIn seconds until it expires (negative: already expired, within the control
 *   server's 30 s leeway) @default a day
 */
export async function userToken(
  d: TestDeployment,
  userId: string,
  expiresIn?: number,
): Promise<string> {
  const token = await executeServerCommand<string, object>('ws-servers:user-token', {
    handle: d.handle,
    userId,
    ...(expiresIn === undefined ? {} : { expiresIn }),
  });
  if (!token) throw new Error('the test runner made no user token');
  return token;
}

/** Cuts every connection of the control server at once (a network blip); how many. */
export async function dropControl(d: TestDeployment): Promise<number> {
  return (
    (await executeServerCommand<number, object>('ws-servers:drop-control', { handle: d.handle })) ??
    -1
  );
}

/** One upload server's log entries so far. */
export async function uploadLogs(
  d: TestDeployment,
  serverId: string,
): Promise<{ event: string; [field: string]: unknown }[]> {
  return (
    (await executeServerCommand<{ event: string }[], object>('ws-servers:upload-logs', {
      handle: d.handle,
      serverId,
    })) ?? []
  );
}

/**
 * Starts a TCP proxy in front of an upload server that flips one byte in the payload of the
 * `frame`-th large binary message from the browser (or from the server, with `down`). Returns its
 * `/dup` URL and a function telling how many bytes it flipped.
 */
export async function corruptingProxy(
  d: TestDeployment,
  serverId: string,
  frame = 3,
  down = false,
): Promise<{ url: string; corrupted: () => Promise<number> }> {
  const made = await executeServerCommand<{ url: string; proxyId: number }, object>(
    'ws-servers:corrupting-proxy',
    { handle: d.handle, serverId, frame, down },
  );
  if (!made) throw new Error('the test runner made no proxy');
  return {
    url: made.url,
    corrupted: async () =>
      (await executeServerCommand<number, object>('ws-servers:proxy-corrupted', {
        handle: d.handle,
        proxyId: made.proxyId,
      })) ?? -1,
  };
}

/** Stops one upload server as if it died; whether it was running. */
export async function killUpload(
  d: TestDeployment,
  serverId: string,
  options: { crash?: boolean } = {},
): Promise<boolean> {
  return (
    (await executeServerCommand<boolean, object>('ws-servers:kill-upload', {
      handle: d.handle,
      serverId,
      crash: options.crash === true,
    })) ?? false
  );
}

/**
 * Crashes the control server and starts a new one (same options and port, no state) after
 * `downMs`.
 */
export async function restartControl(d: TestDeployment, downMs = 0): Promise<boolean> {
  return (
    (await executeServerCommand<boolean, object>('ws-servers:restart-control', {
      handle: d.handle,
      downMs,
    })) ?? false
  );
}

/** Starts a killed upload server again on its port and folder; false when it was not killed. */
export async function restartUpload(d: TestDeployment, serverId: string): Promise<boolean> {
  return (
    (await executeServerCommand<boolean, object>('ws-servers:restart-upload', {
      handle: d.handle,
      serverId,
    })) ?? false
  );
}

/** The app cancels a transmit task; whether it was pending. */
export async function cancelTransmit(
  d: TestDeployment,
  taskId: string,
  reason?: string,
): Promise<boolean> {
  return (
    (await executeServerCommand<boolean, object>('ws-servers:cancel-transmit', {
      handle: d.handle,
      taskId,
      ...(reason === undefined ? {} : { reason }),
    })) ?? false
  );
}

/** The app sends a message (a body and/or an inline item with `content`); how many it reached. */
export async function appSend(
  d: TestDeployment,
  to: { clientId: string } | { userId: string } | { room: string },
  message: { body?: string; item?: Record<string, unknown> },
): Promise<number> {
  return (
    (await executeServerCommand<number, object>('ws-servers:app-send', {
      handle: d.handle,
      to,
      message,
    })) ?? -1
  );
}

/** One step of a transmit task, as the control server's `onTask` saw it. */
export interface TaskLogEntry {
  readonly type: 'sent' | 'accepted' | 'progress' | 'complete' | 'fail';
  readonly taskId: string;
  readonly itemId: string;
  readonly clientId: string;
  readonly bytesStored?: number;
  readonly code?: string;
}

/** Every step of every transmit task of the deployment so far. */
export async function taskLog(d: TestDeployment): Promise<TaskLogEntry[]> {
  return (
    (await executeServerCommand<TaskLogEntry[], object>('ws-servers:tasks', {
      handle: d.handle,
    })) ?? []
  );
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
  /** The `Content-Range` of an upload request. */
  readonly contentRange: string | null;
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

/** An item as the control server knows it (a subset of its `ItemInfo`). */
export interface ControlItem {
  readonly meta: {
    readonly itemId: string;
    readonly name: string;
    readonly size: number;
    readonly mime: string;
    readonly content?: string;
  };
  readonly state: string;
  readonly servers: readonly string[];
  readonly sha256?: string;
  readonly inline?: boolean;
}

/** The items the control server knows. */
export async function controlItems(d: TestDeployment): Promise<ControlItem[]> {
  return (
    (await executeServerCommand<ControlItem[], object>('ws-servers:control-items', {
      handle: d.handle,
    })) ?? []
  );
}

/** A fault proxy in front of a server of a deployment (see ./fault-proxy.ts). */
export interface TestFaultProxy {
  /** `url` (a server's URL) with its host and port replaced by the proxy's. */
  via(url: string): string;
  /**
   * Black-holes the open connections: nothing more passes either way and no side is told.
   * @param afterBytes first let this many more bytes of each connection's client through
   * @returns how many connections it applies to
   */
  blackhole(afterBytes?: number): Promise<number>;
  /** Changes the shaping of open and new connections. */
  shape(shape: FaultShape): Promise<void>;
  /** Refuses new connections (or takes them again). */
  setDown(down: boolean): Promise<void>;
  /** What it did so far. */
  stats(): Promise<FaultProxyStats & { events: FaultProxyEvent[] }>;
}

/**
 * Starts a fault proxy in front of the control server (`'control'`) or an upload server (its id):
 * a black hole on command, a bandwidth limit, a slicer, an idle cut. The page reaches the server
 * through it by connecting to `proxy.via(url)`.
 */
export async function faultProxy(
  d: TestDeployment,
  to: 'control' | string,
  shape: FaultShape = {},
): Promise<TestFaultProxy> {
  const made = await executeServerCommand<{ proxyId: number; port: number }, object>(
    'ws-servers:fault-proxy',
    { handle: d.handle, to, shape },
  );
  if (!made) throw new Error('the test runner made no proxy');
  const command = <T>(action: string, fields: object = {}): Promise<T | undefined> =>
    executeServerCommand<T, object>('ws-servers:proxy', {
      handle: d.handle,
      proxyId: made.proxyId,
      action,
      ...fields,
    });
  return {
    via: (url) => {
      const u = new URL(url);
      u.host = `127.0.0.1:${made.port}`;
      return u.href;
    },
    blackhole: async (afterBytes = 0) => (await command<number>('blackhole', { afterBytes })) ?? -1,
    shape: async (next) => void (await command('shape', { shape: next })),
    setDown: async (down) => void (await command('down', { down })),
    stats: async () => {
      const stats = await command<FaultProxyStats & { events: FaultProxyEvent[] }>('stats');
      if (!stats) throw new Error('no such proxy');
      return stats;
    },
  };
}
