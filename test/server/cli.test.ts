import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import {
  secretKey,
  signToken,
  CONTROL_AUDIENCE,
  uploadAudience,
  verifyToken,
} from '../../server/tokens.js';

const SECRET = 'c'.repeat(32);

/** Runs the CLI from source; resolves when it exits, or when `until` sees its output. */
function cli(
  args: string[],
  until?: RegExp,
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string; err: string; kill: () => void }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        `import('./server/cli.ts').then((m) => m.main(${JSON.stringify(args)}))`,
      ],
      {
        env: { ...process.env, WS_UPLOADER_SECRET: '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    const kill = () => child.kill('SIGINT');
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (until?.test(out)) resolve({ code: null, out, err, kill });
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, out, err, kill }));
  });
}

describe('ws-uploader command', () => {
  it('lists its commands', async () => {
    const { code, out } = await cli(['--help']);
    expect(code).to.equal(0);
    for (const c of ['upload-server', 'control-server', 'demo', 'token']) expect(out).to.include(c);
  });

  for (const command of ['upload-server', 'control-server', 'demo', 'token']) {
    it(`prints help for ${command}`, async () => {
      const { code, out } = await cli([command, '--help']);
      expect(code).to.equal(0);
      expect(out).to.match(new RegExp(`^Usage: ws-uploader ${command}`));
    });
  }

  it('says what is wrong with an unknown command or flag, and exits 2', async () => {
    const unknown = await cli(['nope']);
    expect(unknown.code).to.equal(2);
    expect(unknown.err).to.match(/^ws-uploader: unknown command "nope"/);
    const flag = await cli(['token', '--bogus']);
    expect(flag.code).to.equal(2);
    expect(flag.err).to.match(/bogus/);
  });

  it('refuses to start without a secret', async () => {
    const { code, err } = await cli(['token', '--user', 'u']);
    expect(code).to.equal(2);
    expect(err).to.match(/secret is required/);
  });

  it('prints a user token the control server accepts', async () => {
    const { code, out } = await cli(['token', '--user', 'alice', '--secret', SECRET]);
    expect(code).to.equal(0);
    const claims = await verifyToken(secretKey(SECRET), out.trim(), CONTROL_AUDIENCE);
    expect(claims?.sub).to.equal('alice');
  });

  it('A8: prints a read token for one upload server with --scope read', async () => {
    const { code, out } = await cli([
      'token',
      '--scope',
      'read',
      '--server',
      'up-1',
      '--user',
      'reader',
      '--items',
      'a, b',
      '--secret',
      SECRET,
    ]);
    expect(code).to.equal(0);
    const claims = await verifyToken(secretKey(SECRET), out.trim(), uploadAudience('up-1'));
    expect(claims).to.deep.include({ sub: 'reader', scope: 'read', items: ['a', 'b'] });
    const lifetime = claims!.exp - Math.floor(Date.now() / 1000);
    expect(lifetime).to.be.within(3590, 3600);
    expect(await verifyToken(secretKey(SECRET), out.trim(), CONTROL_AUDIENCE)).to.equal(undefined);

    const noServer = await cli(['token', '--scope', 'read', '--user', 'r', '--secret', SECRET]);
    expect(noServer.code).to.equal(2);
    expect(noServer.err).to.match(/--server is required/);
    const userWithItems = await cli(['token', '--user', 'r', '--items', 'a', '--secret', SECRET]);
    expect(userWithItems.code).to.equal(2);
    expect(userWithItems.err).to.match(/--scope read/);
    const badScope = await cli(['token', '--scope', 'upload', '--user', 'r', '--secret', SECRET]);
    expect(badScope.code).to.equal(2);
    expect(badScope.err).to.match(/--scope must be user or read/);
  });

  it('A8/S6: takes --read-access and --cross-origin-resource-policy, as flags or from the environment', async () => {
    const help = await cli(['upload-server', '--help']);
    expect(help.out).to.include('--read-access MODE').and.include('--cross-origin-resource-policy');
    const bad = await cli(
      ['upload-server', '--id', 'x', '--data-dir', '/tmp/x', '--read-access', 'open'],
      undefined,
      { WS_UPLOADER_SECRET: SECRET },
    );
    expect(bad.code).to.equal(2);
    expect(bad.err).to.match(/--read-access must be token or public/);
    const badCorp = await cli(['upload-server', '--id', 'x', '--data-dir', '/tmp/x'], undefined, {
      WS_UPLOADER_SECRET: SECRET,
      WS_UPLOADER_CROSS_ORIGIN_RESOURCE_POLICY: 'anyone',
    });
    expect(badCorp.code).to.equal(2);
    expect(badCorp.err).to.match(/--cross-origin-resource-policy must be/);

    const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-cli-'));
    try {
      const run = await cli(
        [
          'upload-server',
          '--id',
          'u1',
          '--data-dir',
          dir,
          '--port',
          '0',
          '--read-access',
          'public',
        ],
        /HTTP (http:\/\/\S+)\)/,
        { WS_UPLOADER_SECRET: SECRET, WS_UPLOADER_CROSS_ORIGIN_RESOURCE_POLICY: 'cross-origin' },
      );
      const http = /HTTP (http:\/\/\S+)\)/.exec(run.out)![1]!;
      // Public: no 401 without a token, just the 404 of an unknown item.
      const res = await fetch(`${http}/files/nothing`);
      expect(res.status).to.equal(404);
      expect(res.headers.get('cross-origin-resource-policy')).to.equal('cross-origin');
      run.kill();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes options from WS_UPLOADER_* environment variables, flags winning', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-cli-'));
    try {
      const run = await cli(
        ['upload-server', '--port', '0', '--hold', '100'],
        /HTTP (http:\/\/\S+)\)/,
        {
          WS_UPLOADER_ID: 'from-env',
          WS_UPLOADER_DATA_DIR: dir,
          WS_UPLOADER_SECRET: SECRET,
          WS_UPLOADER_PORT: '1',
        },
      );
      const http = /HTTP (http:\/\/\S+)\)/.exec(run.out)![1]!;
      const doc = (await (await fetch(`${http}/.well-known/ws-uploader`)).json()) as { id: string };
      expect(doc.id).to.equal('from-env');
      run.kill();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('F7: takes --lock-timeout as lockTimeoutMs, as a flag or from WS_UPLOADER_LOCK_TIMEOUT', async () => {
    const help = await cli(['upload-server', '--help']);
    expect(help.out).to.include('--lock-timeout MS');
    const base = ['upload-server', '--id', 'x', '--data-dir', '/tmp/x'];
    const notNumber = await cli([...base, '--lock-timeout', 'soon'], undefined, {
      WS_UPLOADER_SECRET: SECRET,
    });
    expect(notNumber.code).to.equal(2);
    expect(notNumber.err).to.match(/--lock-timeout must be a non-negative integer/);
    // The value reaches the server's option: 0 is refused there.
    const zero = await cli(base, undefined, {
      WS_UPLOADER_SECRET: SECRET,
      WS_UPLOADER_LOCK_TIMEOUT: '0',
    });
    expect(zero.code).to.equal(2);
    expect(zero.err).to.match(/lockTimeoutMs` must be a positive integer/);

    const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-cli-'));
    try {
      // A flag wins over the environment.
      const run = await cli(
        ['upload-server', '--id', 'u1', '--data-dir', dir, '--port', '0', '--lock-timeout', '500'],
        /HTTP (http:\/\/\S+)\)/,
        { WS_UPLOADER_SECRET: SECRET, WS_UPLOADER_LOCK_TIMEOUT: '0' },
      );
      expect(run.code).to.equal(null);
      const http = /HTTP (http:\/\/\S+)\)/.exec(run.out)![1]!;
      expect((await fetch(`${http}/healthz`)).status).to.equal(200);
      run.kill();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses an unknown durability mode', async () => {
    const { code, err } = await cli([
      'upload-server',
      '--id',
      'x',
      '--data-dir',
      '/tmp/x',
      '--secret',
      SECRET,
      '--durability',
      'maybe',
    ]);
    expect(code).to.equal(2);
    expect(err).to.match(/--durability must be fsync or write/);
  });

  it('runs an upload server until Ctrl-C', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-cli-'));
    try {
      const run = await cli(
        ['upload-server', '--id', 'u1', '--data-dir', dir, '--port', '0', '--secret', SECRET],
        /HTTP (http:\/\/\S+)\)/,
      );
      const http = /HTTP (http:\/\/\S+)\)/.exec(run.out)![1]!;
      const doc = (await (await fetch(`${http}/.well-known/ws-uploader`)).json()) as { id: string };
      expect(doc.id).to.equal('u1');
      const exited = new Promise<void>((resolve) => {
        const ws = new WebSocket(http.replace('http', 'ws') + '/dup', 'ws-uploader.dup.v2');
        ws.on('close', () => resolve());
        ws.on('error', () => resolve());
      });
      run.kill();
      await exited;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs a control server from a config file and flags; an upload server with --control-url registers with it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-cli-'));
    try {
      const config = join(dir, 'control.json');
      await writeFile(
        config,
        JSON.stringify({ port: 0, inlineMax: 2048, planner: { splitMin: 1024 } }),
      );
      const control = await cli(
        ['control-server', '--config', config, '--inline-max', '4096', '--log', 'off'],
        /registry (ws:\/\/\S+)\)/,
        { WS_UPLOADER_SECRET: SECRET },
      );
      const registry = /registry (ws:\/\/\S+)\)/.exec(control.out)![1]!;
      const controlUrl = /control server at (ws:\/\/\S+) /.exec(control.out)![1]!;
      const upload = await cli(
        ['upload-server', '--id', 'linked', '--data-dir', join(dir, 'data'), '--port', '0'],
        /"state":"registered"/,
        { WS_UPLOADER_SECRET: SECRET, WS_UPLOADER_CONTROL_URL: registry },
      );
      const token = (await signToken(secretKey(SECRET), 'bob', CONTROL_AUDIENCE, 60)).token;
      const welcome = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const ws = new WebSocket(controlUrl, 'ws-uploader.control.v1');
        ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', token })));
        ws.on('message', (m) => {
          resolve(JSON.parse(m.toString()) as Record<string, unknown>);
          ws.close();
        });
        ws.on('error', reject);
      });
      expect(welcome['limits']).to.deep.equal({ maxItemSize: 524288000, inlineMax: 4096 });
      expect((welcome['servers'] as { id: string }[]).map((s) => s.id)).to.deep.equal(['linked']);
      upload.kill();
      control.kill();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says what is wrong with a control-server config file and exits 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-cli-'));
    try {
      for (const [content, message] of [
        ['{"inlineMaxx": 1}', /unknown key "inlineMaxx"/],
        ['{"heartbeatMs": "10"}', /heartbeatMs must be a non-negative integer/],
        ['{"planner": {"split": 1}}', /unknown planner key "split"/],
        ['{"splitDigest": "both"}', /splitDigest must be "read" or "steps"/],
        ['[1]', /must hold a JSON object/],
        ['{oops', /cannot read config/],
      ] as const) {
        const config = join(dir, 'c.json');
        await writeFile(config, content);
        const run = await cli(['control-server', '--config', config], undefined, {
          WS_UPLOADER_SECRET: SECRET,
        });
        expect(run.code, content).to.equal(2);
        expect(run.err, content).to.match(message);
      }
      const flag = await cli(['control-server', '--split-digest', 'both'], undefined, {
        WS_UPLOADER_SECRET: SECRET,
      });
      expect(flag.code).to.equal(2);
      expect(flag.err).to.match(/--split-digest must be read or steps/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads switches such as --relay from the environment (WS_UPLOADER_RELAY=1)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ws-uploader-cli-'));
    try {
      const run = await cli(['upload-server', '--id', 'r1', '--data-dir', dir], undefined, {
        WS_UPLOADER_SECRET: SECRET,
        WS_UPLOADER_RELAY: '1',
      });
      expect(run.code).to.equal(2);
      expect(run.err).to.match(/relay/i);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
