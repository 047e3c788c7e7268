import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { secretsIn, secretsInDirectory, secretsInPostgres } from '../support/leak-scan.js';
import { startTestIssuer, type TestIssuer } from '../support/jwt-issuer.js';
import { ROOT, runCli, startServe, type ServeProcess } from '../support/process.js';
import { writeTrustConfig } from '../support/trust.js';

const BUF = join(ROOT, 'node_modules/.bin/buf');

function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(BUF, ['curl', '--schema', ROOT, ...args], { cwd: ROOT }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * The product as an operator runs it: `rotor bootstrap`, `rotor serve` as a process, the CLI and
 * `buf curl` against it; afterwards no issued secret is in the database files or the output.
 */
describe.each(ENGINES)('rotor CLI, serve process, buf curl, and no secret at rest or in logs on %s', (engine) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-cli-'));
  const env: Record<string, string> = { ROTOR_DATA_DIR: dataDir, ROTOR_LOG_LEVEL: 'debug' };
  const secrets: string[] = [];
  let admin: string;
  let serve: ServeProcess;
  let server: string;
  /** A workload issuer the serve process trusts (for bound tokens). */
  let ci: TestIssuer;
  let db: ScratchDatabase | undefined;
  /** The database line `migrate` and `bootstrap` print on stderr (the scratch URL has no password). */
  const opened = () => (db === undefined ? `sqlite ${join(dataDir, 'rotor.db')}` : `postgres ${db.url}`);

  beforeAll(async () => {
    ci = await startTestIssuer();
    env.ROTOR_TRUST_CONFIG = writeTrustConfig({
      issuers: [{ issuer: ci.issuer, jwks_uri: ci.jwksUri, audiences: ['rotor'], algorithms: ['ES256'] }],
    });
    if (engine === 'postgres') {
      db = await scratchDatabase();
      env.ROTOR_DATABASE_URL = db.url;
    }
    const migrated = await runCli(['migrate'], env);
    expect(migrated.stderr).toBe(`rotor: database: ${opened()}\n`);
    expect(migrated.stdout).toContain('applied 20261127_001_core\n');
    expect(migrated.stdout).toMatch(
      new RegExp(`^${engine} database is up to date \\(\\d+ migrations applied now\\)$`, 'm'),
    );
    const again = await runCli(['migrate'], env);
    expect(again.stdout).toBe(`${engine} database is up to date (0 migrations applied now)\n`);
    const boot = await runCli(['bootstrap', '--owner', 'ops'], env);
    expect(boot.stderr).toBe(`rotor: database: ${opened()}\n`);
    expect(boot.code).toBe(0);
    admin = boot.stdout.trim();
    expect(boot.stdout).toMatch(/^rtr_sa_[0-9A-Za-z]{49}\n$/);
    secrets.push(admin);
    serve = await startServe(env);
    server = `http://127.0.0.1:${serve.httpPort}`;
  });

  afterAll(async () => {
    if (serve?.child.exitCode === null) await serve.stop();
    rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
    await ci?.close();
  });

  it('refuses a second bootstrap with a non-zero exit and a clear message', async () => {
    const again = await runCli(['bootstrap'], env);
    expect(again.code).not.toBe(0);
    expect(again.stdout).toBe('');
    expect(again.stderr).toContain('an active admin token already exists');
  });

  it('refuses an unknown --kind or --state with exit code 2, including inherited object keys', async () => {
    for (const args of [
      ['create', '--kind', 'constructor', '--owner', 'a', '--name', 'b'],
      ['list', '--state', 'toString'],
    ]) {
      const r = await runCli(['token', ...args, '--server', server], { ROTOR_TOKEN: admin });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^rotor: --(kind|state) must be one of /);
    }
  });

  it('creates, rotates (idempotently), lists, gets and revokes tokens with the CLI', async () => {
    const created = await runCli(
      [
        'token',
        'create',
        '--server',
        server,
        '--kind',
        'project',
        '--owner',
        'proj-1',
        '--name',
        'deploy',
        '--scope',
        'rotor:rotate',
        '--scope',
        'deploy',
        '--expires-in',
        '7d',
        '--json',
      ],
      {
        ROTOR_TOKEN: admin,
      },
    );
    expect(created.stderr).toBe('');
    const { token, secret } = JSON.parse(created.stdout) as {
      token: { id: string; family_id: string; state: string };
      secret: string;
    };
    expect(token.state).toBe('active');
    expect(secret).toMatch(/^rtr_prj_/);
    secrets.push(secret);

    const key = ['--idempotency-key', 'cli-retry-key-000000001', '--json'];
    const rotated = await runCli(['token', 'rotate', '--server', server, ...key], { ROTOR_TOKEN: secret });
    const retried = await runCli(['token', 'rotate', '--server', server, ...key], { ROTOR_TOKEN: secret });
    const first = JSON.parse(rotated.stdout) as { token: { id: string; previous_id: string }; secret: string };
    expect(first.token.previous_id).toBe(token.id);
    expect(JSON.parse(retried.stdout)).toEqual(first);
    secrets.push(first.secret);

    const list = await runCli(['token', 'list', '--server', server, '--family', token.family_id, '--json'], {
      ROTOR_TOKEN: admin,
    });
    const states = (JSON.parse(list.stdout) as { tokens: { id: string; state: string }[] }).tokens.map((t) => [
      t.id,
      t.state,
    ]);
    expect(states).toEqual([
      [token.id, 'rotated'],
      [first.token.id, 'active'],
    ]);

    const human = await runCli(['token', 'get', first.token.id, '--server', server], { ROTOR_TOKEN: admin });
    expect(human.stdout).toMatch(/^state +active$/m);

    const revoked = await runCli(['token', 'revoke', first.token.id, '--server', server, '--json'], {
      ROTOR_TOKEN: admin,
    });
    expect(JSON.parse(revoked.stdout)).toMatchObject({
      id: first.token.id,
      state: 'revoked',
      revoke_reason: 'revoked',
    });

    const denied = await runCli(['token', 'get', first.token.id, '--server', server], { ROTOR_TOKEN: first.secret });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('unauthenticated: bearer token has been revoked');
    // Nine CLI processes, about 7 s alone: the default 30 s is too close under load.
  }, 60_000);

  it('creates a token bound to a workload and rotates it with the workload JWT from a file', async () => {
    const bind = [
      '--bind-issuer',
      ci.issuer,
      '--bind-subject',
      'project_path:group/app:*',
      '--bind-audience',
      'rotor',
      '--bind-claim',
      'namespace_id=42',
    ];
    const half = await runCli(
      [
        'token',
        'create',
        '--server',
        server,
        '--owner',
        'proj-2',
        '--name',
        'b',
        '--expires-in',
        '1d',
        '--bind-issuer',
        ci.issuer,
      ],
      { ROTOR_TOKEN: admin },
    );
    expect([half.code, half.stderr]).toEqual([
      2,
      expect.stringContaining('--bind-issuer, --bind-subject and --bind-audience go together'),
    ]);
    const created = await runCli(
      [
        'token',
        'create',
        '--server',
        server,
        '--kind',
        'project',
        '--owner',
        'proj-2',
        '--name',
        'bound',
        '--scope',
        'rotor:rotate',
        '--expires-in',
        '1d',
        ...bind,
        '--json',
      ],
      { ROTOR_TOKEN: admin },
    );
    expect(created.stderr).toBe('');
    const { token, secret } = JSON.parse(created.stdout) as {
      token: { id: string; workload_binding: unknown };
      secret: string;
    };
    secrets.push(secret);
    expect(token.workload_binding).toEqual({
      issuer: ci.issuer,
      subject: 'project_path:group/app:*',
      audience: 'rotor',
      claims: { namespace_id: '42' },
    });

    const without = await runCli(['token', 'rotate', '--server', server], { ROTOR_TOKEN: secret });
    expect(without.code).toBe(1);
    expect(without.stderr).toBe(
      "rotor: unauthenticated: this token is bound to a workload: rotating it needs the workload's JWT (--actor-token-file PATH or ROTOR_ACTOR_TOKEN)\n",
    );

    const jwt = await ci.sign(Date.now());
    secrets.push(jwt);
    const jwtFile = join(mkdtempSync(join(tmpdir(), 'rotor-cli-jwt-')), 'id_token');
    writeFileSync(jwtFile, `${jwt}\n`, { mode: 0o600 });
    const rotated = await runCli(['token', 'rotate', '--server', server, '--actor-token-file', jwtFile, '--json'], {
      ROTOR_TOKEN: secret,
    });
    expect(rotated.stderr).toBe('');
    const next = JSON.parse(rotated.stdout) as {
      token: { previous_id: string; workload_binding: unknown };
      secret: string;
    };
    secrets.push(next.secret);
    expect(next.token.previous_id).toBe(token.id);
    expect(next.token.workload_binding).toEqual(token.workload_binding);
    rmSync(jwtFile, { force: true });
  });

  it('answers buf curl over gRPC on the gRPC port and Connect on the HTTP port', async () => {
    const health = await bufCurl([
      '--protocol',
      'grpc',
      '--http2-prior-knowledge',
      `http://127.0.0.1:${serve.grpcPort}/rotor.v1.HealthService/Check`,
    ]);
    expect(health.stderr).toBe('');
    expect(JSON.parse(health.stdout)).toEqual({ status: 'SERVING' });

    const introspect = await bufCurl([
      '-H',
      `authorization: Bearer ${admin}`,
      '-d',
      JSON.stringify({ token: admin }),
      `${server}/rotor.v1.TokenService/IntrospectToken`,
    ]);
    expect(JSON.parse(introspect.stdout)).toMatchObject({
      active: true,
      ownerId: 'ops',
      scope: 'rotor:admin rotor:rotate rotor:introspect',
    });

    const bad = await bufCurl([
      '--protocol',
      'grpc',
      '--http2-prior-knowledge',
      '-d',
      '{"token":"rtr_pat_nonsense"}',
      `http://127.0.0.1:${serve.grpcPort}/rotor.v1.TokenService/IntrospectToken`,
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('unauthenticated');
  });

  it('leaves no issued secret in the database (SQLite files, PostgreSQL rows) or the server output', async () => {
    // Exercise the paths where a secret passes through: exchange, failures that carry secrets.
    const form = (body: Record<string, string>) =>
      fetch(`${server}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(body),
      });
    const create = await runCli(
      [
        'token',
        'create',
        '--server',
        server,
        '--owner',
        'svc',
        '--name',
        'x',
        '--scope',
        'rotor:rotate',
        '--expires-in',
        '1h',
        '--json',
      ],
      { ROTOR_TOKEN: admin },
    );
    const s1 = (JSON.parse(create.stdout) as { secret: string }).secret;
    secrets.push(s1);
    const ok = (await (
      await form({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: s1,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      })
    ).json()) as { access_token: string };
    secrets.push(ok.access_token);
    const wrongGrant = await form({ grant_type: 'password', subject_token: ok.access_token });
    expect(wrongGrant.status).toBe(400);
    expect(await wrongGrant.text()).not.toContain(ok.access_token);
    await new Promise((r) => setTimeout(r, 100));
    const reuse = await form({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: s1,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    });
    expect(reuse.status).toBe(400);

    expect(await serve.stop()).toBe(0);
    const output = serve.output();
    expect(output).toContain('"rotor listening"');
    expect(secretsIn(output, secrets)).toEqual([]);
    // The logger's redaction is only a safety net: nothing may even have tried to log a secret.
    expect(output).not.toContain('[redacted]');
    expect(secretsInDirectory(dataDir, secrets)).toEqual([]);
    if (db) expect(await secretsInPostgres(db.url, secrets)).toEqual([]);
    // The scan itself must be able to fail: a secret written into the output would be found.
    expect(secretsIn(`${output} ${s1}`, secrets)).toEqual([s1]);
  });
});
