import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { ENGINES } from '../support/engines.js';
import { CLI, ROOT, runCli } from '../support/process.js';
import { grpcApi, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * The CLI as a process against a real server: where it finds the server, what it says when it
 * cannot reach it, the policy flags of `token create`, server messages in the CLI's own flag
 * names, and a reader that closes the pipe early.
 */
describe.each(ENGINES)('rotor CLI rough edges on %s', (engine) => {
  let s: TestServer;
  let grpc: Api;
  /** ROTOR_SERVER unset, so the defaults apply. */
  const bare = (extra: Record<string, string>) => ({ ROTOR_SERVER: '', ...extra });

  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    grpc = grpcApi(s);
  });
  afterAll(async () => {
    grpc?.close();
    await s?.stop();
  });

  it('finds the server from ROTOR_HTTP_PORT/ROTOR_HOST when ROTOR_SERVER is unset; ROTOR_SERVER and --server win', async () => {
    const env = { ROTOR_TOKEN: s.adminSecret, ROTOR_HTTP_PORT: String(s.rotor.httpPort), ROTOR_HOST: '0.0.0.0' };
    const r = await runCli(['token', 'list', '--owner', 'admin', '--json'], bare(env));
    expect(r.stderr).toBe('');
    expect((JSON.parse(r.stdout) as { tokens: unknown[] }).tokens.length).toBe(1);

    const dead = `http://127.0.0.1:${await closedPort()}`;
    const viaEnv = await runCli(['token', 'list', '--json'], { ...env, ROTOR_SERVER: dead });
    expect(viaEnv.code).toBe(1);
    expect(viaEnv.stderr).toBe(
      `rotor: unavailable: cannot reach the Rotor server at ${dead} (ECONNREFUSED); set ROTOR_SERVER or --server\n`,
    );
    const viaFlag = await runCli(['token', 'list', '--json', '--server', s.httpUrl], { ...env, ROTOR_SERVER: dead });
    expect(viaFlag.stderr).toBe('');

    // Nothing set at all: the default address, named in the hint.
    const port = await closedPort();
    const none = await runCli(['token', 'get', 'tok_x'], bare({ ROTOR_TOKEN: 'x', ROTOR_HTTP_PORT: String(port) }));
    expect(none.stderr).toBe(
      `rotor: unavailable: cannot reach the Rotor server at http://127.0.0.1:${port} (ECONNREFUSED); set ROTOR_SERVER or --server\n`,
    );
    // With ROTOR_TLS_CERT_FILE set, the derived URL is https.
    const tls = await runCli(
      ['token', 'get', 'tok_x'],
      bare({ ROTOR_TOKEN: 'x', ROTOR_HTTP_PORT: String(port), ROTOR_TLS_CERT_FILE: '/nonexistent.pem' }),
    );
    expect(tls.stderr).toContain(`cannot reach the Rotor server at https://127.0.0.1:${port} (ECONNREFUSED)`);
    const bad = await runCli(['token', 'get', 'tok_x'], bare({ ROTOR_TOKEN: 'x', ROTOR_HTTP_PORT: 'eighty' }));
    expect([bad.code, bad.stderr.split('\n')[0]]).toEqual([
      2,
      'rotor: ROTOR_HTTP_PORT must be a port number (0-65535), got "eighty"',
    ]);
  });

  it('token create takes the policy flags (--overlap, --reuse-grace, --default-lifetime, --max-lifetime)', async () => {
    const r = await runCli(
      [
        'token',
        'create',
        '--server',
        s.httpUrl,
        '--kind',
        'project',
        '--owner',
        'pol',
        '--name',
        'p',
        '--expires-in',
        '7d',
        '--overlap',
        '1h',
        '--reuse-grace',
        '10s',
        '--default-lifetime',
        '30d',
        '--max-lifetime',
        '60d',
        '--json',
      ],
      { ROTOR_TOKEN: s.adminSecret },
    );
    expect(r.stderr).toBe('');
    const { token, secret } = JSON.parse(r.stdout) as { token: { id: string }; secret: string };
    issuedSecrets.add(secret);
    const got = await grpc.getToken({ id: token.id }, s.adminSecret);
    expect(got.token!.policy).toMatchObject({
      overlapSeconds: 3600n,
      reuseGraceSeconds: 10n,
      defaultLifetimeSeconds: 30n * 86400n,
      maxLifetimeSeconds: 60n * 86400n,
    });

    const zero = await runCli(
      ['token', 'create', '--server', s.httpUrl, '--owner', 'pol', '--name', 'q', '--expires-in', '1d'].concat([
        '--max-lifetime',
        '0',
      ]),
      { ROTOR_TOKEN: s.adminSecret },
    );
    expect([zero.code, zero.stderr.split('\n')[0]]).toEqual([
      2,
      'rotor: --max-lifetime must be a positive duration like 90s, 15m, 12h or 30d',
    ]);
  });

  it("speaks in the CLI's flag names, not the server's field names", async () => {
    const missing = await runCli(['token', 'create', '--server', s.httpUrl, '--owner', 'o', '--name', 'n'], {
      ROTOR_TOKEN: s.adminSecret,
    });
    expect([missing.code, missing.stderr.split('\n')[0]]).toEqual([
      2,
      'rotor: --expires-in or --expires-at is required',
    ]);
    const past = await runCli(
      ['token', 'create', '--server', s.httpUrl, '--owner', 'o', '--name', 'n', '--expires-at', '2001-01-01T00:00:00Z'],
      { ROTOR_TOKEN: s.adminSecret },
    );
    expect(past.code).toBe(1);
    expect(past.stderr).toBe(
      'rotor: invalid_argument: the expiry (--expires-in / --expires-at) must be in the future\n',
    );
  });

  it('`rotor token list | head -2`: a reader that closes the pipe early ends the CLI quietly with exit 0', async () => {
    // More output than a pipe buffers (64 KiB: 220 lines of about 350 bytes), so the CLI is still
    // writing when the reader goes.
    const owner = `pipe-${'o'.repeat(120)}`;
    // Created 20 at a time (the order does not matter here).
    for (let i = 0; i < 220; i += 20) {
      const created = await Promise.all(
        Array.from({ length: 20 }, (_, k) =>
          grpc.createToken(
            {
              kind: TokenKind.PROJECT,
              ownerId: owner,
              name: `${'n'.repeat(120)}-${i + k}`,
              scopes: ['read'],
              expiresAt: inMs(s.clock.now(), 86_400_000),
            },
            s.adminSecret,
          ),
        ),
      );
      for (const c of created) issuedSecrets.add(c.secret);
    }
    const child = spawn(
      process.execPath,
      [CLI, 'token', 'list', '--server', s.httpUrl, '--owner', owner, '--page-size', '500'],
      {
        env: { ...process.env, ROTOR_TOKEN: s.adminSecret },
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let first = '';
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        first += d.toString();
        if (first.includes('\n')) {
          child.stdout.destroy(); // head has its lines and exits
          resolve();
        }
      });
    });
    expect(first).toMatch(/^tok_\S+ +active +project +pipe-o{120} +n{120}-/);
    expect(await exited).toBe(0);
    expect(stderr).toBe('');
  }, 60_000);
});
