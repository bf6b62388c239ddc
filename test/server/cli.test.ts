import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { secretKey, CONTROL_AUDIENCE, verifyToken } from '../../server/tokens.js';

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
});
