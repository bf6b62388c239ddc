/**
 * The `ws-uploader` command: `upload-server`, `control-server`, `demo` and `token`.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createControlServer, type UploadServerEndpoint } from './control/control-server.js';
import { createPlanner } from './control/planner.js';
import { startDemo } from './demo.js';
import { createReadToken, createUserToken } from './tokens.js';
import { createUploadServer } from './upload/upload-server.js';
import { jsonLinesLogger } from './internal/log.js';

const SECRET_HELP =
  '  --secret S         shared secret, at least 32 bytes (default: $WS_UPLOADER_SECRET)';

const COMMANDS: Record<
  string,
  { help: string; options: ParseArgsConfig['options']; run: (v: Values) => Promise<void> }
> = {
  'upload-server': {
    help: `Usage: ws-uploader upload-server --id ID --data-dir DIR [options]

Runs an upload server: dup/2 over WebSocket at /dup, items at GET /files/{itemId} (with ranges,
for holders of a read token: see ws-uploader token --scope read), its description at
GET /.well-known/ws-uploader.

  --id ID                  server id, unique in the deployment ([A-Za-z0-9_-])
  --data-dir DIR           folder where items are stored
  --port N                 TCP port (default 8081)
  --host H                 interface (default 127.0.0.1)
${SECRET_HELP}
  --max-item-size N        largest item in bytes (default 524288000)
  --max-chunk N            largest DATA payload in bytes (default 1048576)
  --window N               unacknowledged bytes per connection (default 8388608)
  --durability MODE        fsync: acknowledged bytes survive a machine crash (default);
                           write: they survive a process crash only
  --max-bytes N            largest sum of all item sizes (default: no limit)
  --max-bytes-per-owner N  largest sum of one user's item sizes (default: no limit)
  --partial-ttl MS         delete partial items idle this long (default 86400000)
  --lock-timeout MS        how long a new writer of an item waits for the writer it takes over
                           from to finish its started writes; then it gets locked (default 10000)
  --hold MS                how long a reader waits for bytes not stored yet (default 10000)
  --read-access MODE       who may GET /files/{itemId}: token (default): holders of a read token,
                           in Authorization: Bearer or ?access_token=; public: anyone with the URL
                           (item ids are 128 random bits, but a leaked URL stays readable)
  --cross-origin-resource-policy P
                           Cross-Origin-Resource-Policy of /files: same-site (default),
                           same-origin, or cross-origin when the pages that show items (<img>,
                           <video>) are on another site than this server
  --auth-timeout MS        time a client has to send HELLO (default 10000)
  --drain MS               on SIGTERM/SIGINT, time to finish received writes (default 10000)
  --allowed-origins LIST   comma-separated origins whose pages may connect (default: any)
  --max-connections-per-ip N  WebSocket connections per IP address (default 64)
  --max-uploads-per-client N  uploads one client may have open at once (default 64)
  --idle-timeout MS        close connections silent this long (default 120000)
  --heartbeat MS           WebSocket ping interval (default 30000)
  --max-buffered-bytes N   bytes received and not yet stored, all connections (default 67108864)
  --protocols LIST         comma-separated, of dup/2, dup/1, tus/1, http/1 (default: all)
  --control-url URL        the control server's registry endpoint (ws://HOST:PORT/registry):
                           connect out to it, register, report completions and demand
  --public-url URL         this server's HTTP base URL as browsers reach it, sent when registering
                           (default: the address the control server sees, with --port)
  --peer-url URL           this server's HTTP base URL as the other upload servers reach it (a
                           private network address), sent when registering (default: as browsers)
  --relay                  with --control-url: browsers cannot reach this server (behind NAT, no
                           public port), so they reach it through the control server at
                           /relay/ID, over the link this server opens; --port/--host then only
                           serve local HTTP (reads, /healthz)
  --log FORMAT             json: one JSON line per event on standard output (default); off

Every option can also come from the environment: --max-item-size is WS_UPLOADER_MAX_ITEM_SIZE,
--data-dir is WS_UPLOADER_DATA_DIR, and so on. A flag wins over the environment.`,
    options: {
      id: { type: 'string' },
      'data-dir': { type: 'string' },
      port: { type: 'string', default: '8081' },
      host: { type: 'string', default: '127.0.0.1' },
      secret: { type: 'string' },
      'max-item-size': { type: 'string' },
      'max-chunk': { type: 'string' },
      window: { type: 'string' },
      durability: { type: 'string' },
      'max-bytes': { type: 'string' },
      'max-bytes-per-owner': { type: 'string' },
      'partial-ttl': { type: 'string' },
      'lock-timeout': { type: 'string' },
      hold: { type: 'string' },
      'read-access': { type: 'string' },
      'cross-origin-resource-policy': { type: 'string' },
      'auth-timeout': { type: 'string' },
      drain: { type: 'string' },
      'allowed-origins': { type: 'string' },
      'max-connections-per-ip': { type: 'string' },
      'max-uploads-per-client': { type: 'string' },
      'idle-timeout': { type: 'string' },
      heartbeat: { type: 'string' },
      'max-buffered-bytes': { type: 'string' },
      protocols: { type: 'string' },
      'control-url': { type: 'string' },
      'public-url': { type: 'string' },
      'peer-url': { type: 'string' },
      relay: { type: 'boolean' },
      log: { type: 'string', default: 'json' },
    },
    async run(v) {
      const durability = v['durability'];
      if (durability !== undefined && durability !== 'fsync' && durability !== 'write') {
        fatal('--durability must be fsync or write');
      }
      if (v['log'] !== 'json' && v['log'] !== 'off') fatal('--log must be json or off');
      const readAccess = v['read-access'];
      if (readAccess !== undefined && readAccess !== 'token' && readAccess !== 'public') {
        fatal('--read-access must be token or public');
      }
      const corp = v['cross-origin-resource-policy'];
      if (
        corp !== undefined &&
        corp !== 'same-site' &&
        corp !== 'same-origin' &&
        corp !== 'cross-origin'
      ) {
        fatal('--cross-origin-resource-policy must be same-site, same-origin or cross-origin');
      }
      const optional = (flag: string, key: string) =>
        v[flag] === undefined ? {} : { [key]: int(v, flag) };
      const server = createUploadServer({
        id: required(v, 'id'),
        dataDir: required(v, 'data-dir'),
        secret: secretOf(v),
        ...optional('max-item-size', 'maxItemSize'),
        ...optional('max-chunk', 'maxChunk'),
        ...optional('window', 'window'),
        ...optional('max-bytes', 'maxBytes'),
        ...optional('max-bytes-per-owner', 'maxBytesPerOwner'),
        ...optional('partial-ttl', 'partialTtlMs'),
        ...optional('lock-timeout', 'lockTimeoutMs'),
        ...optional('hold', 'holdMs'),
        ...optional('auth-timeout', 'authTimeoutMs'),
        ...optional('drain', 'drainMs'),
        ...optional('max-connections-per-ip', 'maxConnectionsPerIp'),
        ...optional('max-uploads-per-client', 'maxUploadsPerClient'),
        ...optional('idle-timeout', 'idleTimeoutMs'),
        ...optional('heartbeat', 'heartbeatMs'),
        ...optional('max-buffered-bytes', 'maxBufferedBytes'),
        ...(typeof v['control-url'] === 'string' ? { controlUrl: v['control-url'] } : {}),
        ...(typeof v['public-url'] === 'string' ? { publicUrl: v['public-url'] } : {}),
        ...(typeof v['peer-url'] === 'string' ? { peerUrl: v['peer-url'] } : {}),
        ...(v['relay'] === true ? { relay: true } : {}),
        ...(typeof v['protocols'] === 'string'
          ? {
              protocols: v['protocols']
                .split(',')
                .map((p) => p.trim())
                .filter(Boolean),
            }
          : {}),
        ...(typeof v['allowed-origins'] === 'string'
          ? {
              allowedOrigins: v['allowed-origins']
                .split(',')
                .map((o) => o.trim())
                .filter(Boolean),
            }
          : {}),
        ...(v['log'] === 'off' ? {} : { logger: jsonLinesLogger }),
        ...(durability === undefined ? {} : { durability }),
        ...(readAccess === undefined ? {} : { readAccess }),
        ...(corp === undefined ? {} : { crossOriginResourcePolicy: corp }),
      });
      const urls = await server.listen(int(v, 'port'), str(v, 'host'));
      console.log(`upload server ${server.id} at ${urls.ws} (HTTP ${urls.http})`);
      onStop(() => server.close());
    },
  },
  'control-server': {
    help: `Usage: ws-uploader control-server [options]

Runs a control server: browsers at ws://HOST:PORT/control, upload servers started with
--control-url at ws://HOST:PORT/registry. Upload servers that do not register are listed with
--upload-server or in the config file.

  --config FILE            JSON file with any of: uploadServers ([{ "id", "url", "httpUrl",
                           "protocols" }]), port, host, path, registryPath, heartbeatMs,
                           helloTimeoutMs, probeWaitMs, verifyWaitMs, maxItemSize, sessionResumeMs,
                           publicUrl, multipartMax, splitDigest,
                           inlineMax, inlineTotalMax, uploadTokenTtlSeconds, and planner
                           ({ "splitMin", "maxServers", "align" }). Flags win over the file.
  --upload-server S        an upload server as id=WS_URL,HTTP_URL (repeatable)
  --port N                 TCP port (default 8080)
  --host H                 interface (default 127.0.0.1)
${SECRET_HELP}
  --heartbeat MS           heartbeat asked of linked upload servers; three missed drop one
                           (default 10000)
  --hello-timeout MS       time a browser has to send hello (default 10000)
  --probe-wait MS          how long planning waits for a browser's first probes (default 1500)
  --verify-wait MS         how long a browser's complete waits for the linked server's
                           verification (default 30000)
  --max-item-size N        largest item in bytes (default 524288000)
  --session-resume MS      how long a disconnected browser may resume its session (default 600000)
  --inline-max N           largest item carried inline, in bytes; 0: none (default 65536)
  --inline-total-max N     inline bytes held in memory at most (default 67108864)
  --multipart-max N        items up to N bytes start as one multipart POST to an upload server
                           that speaks http/1, switched to parts when a reader waits (default 0: off)
  --upload-token-ttl S     lifetime of upload tokens, in seconds (default 3600)
  --split-min N            items at least this large are split across servers (default 67108864)
  --max-split-servers N    most servers one item is split across (default 3)
  --public-url URL         this control server's HTTP base URL as browsers reach it, for the URLs
                           of relayed upload servers (default: the Host of each registry link)
  --split-digest WAY       how upload servers hash an item split across them where both ways can:
                           read (one reads the others' ranges; less CPU) or steps (each hashes its
                           own in turn; no bytes between servers) (default read)
  --log FORMAT             json: one JSON line per event on standard output (default); off

Every flag can also come from the environment: --inline-max is WS_UPLOADER_INLINE_MAX, and so on.`,
    options: {
      config: { type: 'string' },
      'upload-server': { type: 'string', multiple: true },
      port: { type: 'string' },
      host: { type: 'string' },
      secret: { type: 'string' },
      heartbeat: { type: 'string' },
      'hello-timeout': { type: 'string' },
      'probe-wait': { type: 'string' },
      'verify-wait': { type: 'string' },
      'max-item-size': { type: 'string' },
      'session-resume': { type: 'string' },
      'inline-max': { type: 'string' },
      'inline-total-max': { type: 'string' },
      'multipart-max': { type: 'string' },
      'upload-token-ttl': { type: 'string' },
      'split-min': { type: 'string' },
      'max-split-servers': { type: 'string' },
      'public-url': { type: 'string' },
      'split-digest': { type: 'string' },
      log: { type: 'string', default: 'json' },
    },
    async run(v) {
      if (v['log'] !== 'json' && v['log'] !== 'off') fatal('--log must be json or off');
      const splitDigest = v['split-digest'];
      if (splitDigest !== undefined && splitDigest !== 'read' && splitDigest !== 'steps')
        fatal('--split-digest must be read or steps');
      const config = v['config'] ? await controlConfig(str(v, 'config')) : {};
      const fromFlags = ((v['upload-server'] as string[] | undefined) ?? []).map(parseEndpoint);
      const flag = (name: string, key: string): Record<string, number> =>
        v[name] === undefined ? {} : { [key]: int(v, name) };
      const planner = {
        ...(config.planner ?? {}),
        ...flag('split-min', 'splitMin'),
        ...flag('max-split-servers', 'maxServers'),
      };
      const { port: configPort, host: configHost, planner: _p, ...fromFile } = config;
      void _p;
      const control = createControlServer({
        ...fromFile,
        secret: secretOf(v),
        uploadServers: [...(config.uploadServers ?? []), ...fromFlags],
        ...flag('heartbeat', 'heartbeatMs'),
        ...flag('hello-timeout', 'helloTimeoutMs'),
        ...flag('probe-wait', 'probeWaitMs'),
        ...flag('verify-wait', 'verifyWaitMs'),
        ...flag('max-item-size', 'maxItemSize'),
        ...flag('session-resume', 'sessionResumeMs'),
        ...flag('inline-max', 'inlineMax'),
        ...flag('inline-total-max', 'inlineTotalMax'),
        ...flag('multipart-max', 'multipartMax'),
        ...flag('upload-token-ttl', 'uploadTokenTtlSeconds'),
        ...(Object.keys(planner).length > 0 ? { plan: createPlanner(planner) } : {}),
        ...(typeof v['public-url'] === 'string' ? { publicUrl: v['public-url'] } : {}),
        ...(splitDigest === undefined ? {} : { splitDigest }),
        ...(v['log'] === 'off' ? {} : { logger: jsonLinesLogger }),
      });
      const port = v['port'] ? int(v, 'port') : (configPort ?? 8080);
      const host = (v['host'] as string | undefined) ?? configHost ?? '127.0.0.1';
      const url = await control.listen(port, host);
      console.log(`control server at ${url} (registry ${url.replace(/\/control$/, '/registry')})`);
      onStop(() => control.close());
    },
  },
  demo: {
    help: `Usage: ws-uploader demo [options]

Starts a control server, three upload servers and the demo page on loopback.

  --port N          port of the demo page (default 8080; 0 for any free port)
  --host H          interface (default 127.0.0.1)
  --data-dir DIR    where the upload servers keep items (default ./data)`,
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      'data-dir': { type: 'string', default: 'data' },
    },
    async run(v) {
      const options = {
        host: str(v, 'host'),
        dataDir: str(v, 'data-dir'),
        ...(process.env['WS_UPLOADER_SECRET'] ? { secret: process.env['WS_UPLOADER_SECRET'] } : {}),
      };
      const port = v['port'] === undefined ? 8080 : int(v, 'port');
      const demo = await startDemo({ ...options, port }).catch((e: NodeJS.ErrnoException) => {
        // The default port is busy: take any free one rather than fail the two-command start.
        if (e.code !== 'EADDRINUSE' || v['port'] !== undefined) throw e;
        console.log(`port ${port} is in use; taking a free one`);
        return startDemo({ ...options, port: 0 });
      });
      for (const s of demo.uploadServers) console.log(`  upload server ${s.id}`);
      console.log(`  control server ${demo.controlUrl}`);
      console.log(`\nws-uploader demo running: open ${demo.url}\nPress Ctrl-C to stop.`);
      onStop(() => demo.close());
    },
  },
  token: {
    help: `Usage: ws-uploader token --user ID [options]
       ws-uploader token --scope read --server ID --user ID [--items LIST] [options]

Prints a token (an HS256 JWT). By default a user token for the control server (audience
ws-uploader:control). With --scope read, a read token for GET /files/{itemId} on one upload server
(audience ws-uploader:upload:<server id>, scope "read"), to send as Authorization: Bearer <token>
or as ?access_token=<token>.

  --user ID          the token's subject: the user (user token) or the reader (read token)
  --scope SCOPE      user: a user token (default); read: a read token
  --server ID        read token: the upload server that accepts it
  --items LIST       read token: comma-separated item ids it may read (default: any item)
  --ttl SECONDS      lifetime (default 86400 for a user token, 3600 for a read token)
${SECRET_HELP}`,
    options: {
      user: { type: 'string' },
      scope: { type: 'string', default: 'user' },
      server: { type: 'string' },
      items: { type: 'string' },
      ttl: { type: 'string' },
      secret: { type: 'string' },
    },
    async run(v) {
      const scope = v['scope'];
      if (scope !== 'user' && scope !== 'read') fatal('--scope must be user or read');
      const ttl = v['ttl'] === undefined ? undefined : int(v, 'ttl');
      if (ttl === 0) fatal('--ttl must be a positive integer');
      if (scope === 'user') {
        if (v['server'] !== undefined || v['items'] !== undefined)
          fatal('--server and --items make a read token: add --scope read');
        console.log(await createUserToken(secretOf(v), required(v, 'user'), ttl));
        return;
      }
      const items =
        typeof v['items'] === 'string'
          ? v['items']
              .split(',')
              .map((i) => i.trim())
              .filter(Boolean)
          : undefined;
      console.log(
        await createReadToken(secretOf(v), required(v, 'server'), {
          subject: required(v, 'user'),
          ...(items === undefined ? {} : { items }),
          ...(ttl === undefined ? {} : { ttlSeconds: ttl }),
        }),
      );
    },
  },
};

const MAIN_HELP = `Usage: ws-uploader <command> [options]

Commands:
  upload-server    run an upload server
  control-server   run a control server
  demo             run the demo (control server, three upload servers, demo page)
  token            print a user token for the control server, or a read token

Run ws-uploader <command> --help for a command's options.`;

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/**
 * Runs the command line.
 * @param argv the arguments after the program name
 */
export async function main(argv: readonly string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(MAIN_HELP);
    return;
  }
  const command = COMMANDS[name];
  if (!command) fatal(`unknown command ${JSON.stringify(name)}\n\n${MAIN_HELP}`);
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.help);
    return;
  }
  // Options not given as flags may come from the environment (WS_UPLOADER_<NAME>); a flag, coming
  // later in the list, wins.
  const fromEnv = Object.entries(command.options ?? {}).flatMap(([flag, o]) => {
    const value = process.env[`WS_UPLOADER_${flag.toUpperCase().replace(/-/g, '_')}`];
    if (!value || o.multiple) return [];
    if (o.type === 'string') return [`--${flag}`, value];
    // A switch: on with 1, true or yes; anything else leaves it off.
    return /^(1|true|yes)$/i.test(value) ? [`--${flag}`] : [];
  });
  let values: Values;
  try {
    values = parseArgs({
      args: [...fromEnv, ...rest],
      options: command.options ?? {},
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    fatal(`${(e as Error).message}\n\n${command.help}`);
  }
  try {
    await command.run(values);
  } catch (e) {
    fatal(e instanceof TypeError || e instanceof Error ? e.message : String(e));
  }
}

function fatal(message: string): never {
  console.error(`ws-uploader: ${message.replace(/^ws-uploader: /, '')}`);
  process.exit(2);
}

function str(v: Values, name: string): string {
  return String(v[name]);
}

function required(v: Values, name: string): string {
  if (typeof v[name] !== 'string' || v[name] === '') fatal(`--${name} is required`);
  return v[name];
}

function int(v: Values, name: string): number {
  const n = Number(v[name]);
  if (!Number.isSafeInteger(n) || n < 0) fatal(`--${name} must be a non-negative integer`);
  return n;
}

function secretOf(v: Values): string {
  const secret = (v['secret'] as string | undefined) ?? process.env['WS_UPLOADER_SECRET'];
  if (!secret) fatal('a shared secret is required: --secret or $WS_UPLOADER_SECRET');
  return secret;
}

/** What a control-server config file may hold. */
interface ControlConfig {
  uploadServers?: UploadServerEndpoint[];
  port?: number;
  host?: string;
  publicUrl?: string;
  path?: string;
  registryPath?: string;
  heartbeatMs?: number;
  helloTimeoutMs?: number;
  probeWaitMs?: number;
  verifyWaitMs?: number;
  maxItemSize?: number;
  sessionResumeMs?: number;
  inlineMax?: number;
  inlineTotalMax?: number;
  multipartMax?: number;
  uploadTokenTtlSeconds?: number;
  splitDigest?: 'read' | 'steps';
  planner?: { splitMin?: number; maxServers?: number; align?: number };
}

const CONFIG_NUMBERS = [
  'port',
  'heartbeatMs',
  'helloTimeoutMs',
  'probeWaitMs',
  'verifyWaitMs',
  'maxItemSize',
  'sessionResumeMs',
  'inlineMax',
  'inlineTotalMax',
  'multipartMax',
  'uploadTokenTtlSeconds',
] as const;

/** Reads and checks a control-server config file; unknown keys and wrong types are fatal. */
async function controlConfig(file: string): Promise<ControlConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    fatal(`cannot read config ${file}: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    fatal(`config ${file} must hold a JSON object`);
  const o = raw as Record<string, unknown>;
  const known = new Set<string>([
    ...CONFIG_NUMBERS,
    'uploadServers',
    'host',
    'publicUrl',
    'path',
    'registryPath',
    'splitDigest',
    'planner',
  ]);
  for (const key of Object.keys(o))
    if (!known.has(key)) fatal(`config ${file}: unknown key ${JSON.stringify(key)}`);
  for (const key of CONFIG_NUMBERS) {
    const n = o[key];
    if (n !== undefined && !(typeof n === 'number' && Number.isSafeInteger(n) && n >= 0))
      fatal(`config ${file}: ${key} must be a non-negative integer`);
  }
  for (const key of ['host', 'publicUrl', 'path', 'registryPath'])
    if (o[key] !== undefined && typeof o[key] !== 'string')
      fatal(`config ${file}: ${key} must be a string`);
  if (o['splitDigest'] !== undefined && o['splitDigest'] !== 'read' && o['splitDigest'] !== 'steps')
    fatal(`config ${file}: splitDigest must be "read" or "steps"`);
  if (o['uploadServers'] !== undefined && !Array.isArray(o['uploadServers']))
    fatal(`config ${file}: uploadServers must be an array`);
  const planner = o['planner'];
  if (planner !== undefined) {
    if (typeof planner !== 'object' || planner === null || Array.isArray(planner))
      fatal(`config ${file}: planner must be an object`);
    for (const [key, n] of Object.entries(planner)) {
      if (!['splitMin', 'maxServers', 'align'].includes(key))
        fatal(`config ${file}: unknown planner key ${JSON.stringify(key)}`);
      if (!(typeof n === 'number' && n >= 0))
        fatal(`config ${file}: planner.${key} must be a non-negative number`);
    }
  }
  return o as ControlConfig;
}

function parseEndpoint(spec: string): UploadServerEndpoint {
  const m = /^([A-Za-z0-9_-]+)=(wss?:\/\/[^,]+),(https?:\/\/.+)$/.exec(spec);
  if (!m) fatal(`--upload-server must be id=WS_URL,HTTP_URL, got ${JSON.stringify(spec)}`);
  return { id: m[1]!, url: m[2]!, httpUrl: m[3]! };
}

function onStop(close: () => Promise<void>): void {
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(130);
    stopping = true;
    console.log('\nstopping…');
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
