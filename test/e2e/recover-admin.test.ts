import { createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/store/database.js';
import { ENGINES, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { secretsIn } from '../support/leak-scan.js';
import { runCli, startServe, waitFor, type ServeProcess } from '../support/process.js';

const SECRET = '90741e96932df58f7ca547076bc7183c53782a87ac6c0d6330c72e21612b47d4';
const OTHER_SECRET = '4f1c0b7e2a9d8c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b';
const MISMATCH =
  'rotor: configuration: ROTOR_SECRET differs from the server key of this database (fingerprint mismatch)';

/**
 * Break-glass recovery and the server key fingerprint, as an operator runs them: `rotor
 * bootstrap`, `rotor recover-admin` and `rotor serve` as processes on one database.
 */
describe.each(ENGINES)('rotor recover-admin and the server key fingerprint on %s', (engine) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-recover-'));
  const env: Record<string, string> = { ROTOR_DATA_DIR: dataDir, ROTOR_SECRET: SECRET };
  const wrongKey = () => ({ ...env, ROTOR_SECRET: OTHER_SECRET });
  let db: ScratchDatabase | undefined;
  let serve: ServeProcess | undefined;
  let first: string;
  const url = () => env.ROTOR_DATABASE_URL ?? `sqlite://${join(dataDir, 'rotor.db')}`;

  /** Rows of the database, read directly (the event log and the fingerprint row). */
  async function query<T>(sql: string): Promise<T[]> {
    const { knex } = openDatabase({ url: url() });
    try {
      const r = await knex.raw(sql);
      return (engine === 'postgres' ? r.rows : r) as T[];
    } finally {
      await knex.destroy();
    }
  }

  beforeAll(async () => {
    if (engine === 'postgres') {
      db = await scratchDatabase();
      env.ROTOR_DATABASE_URL = db.url;
    }
    const boot = await runCli(['bootstrap', '--create', '--owner', 'ops'], env);
    expect(boot.code).toBe(0);
    first = boot.stdout.trim();
  });

  afterAll(async () => {
    if (serve?.child.exitCode === null) await serve.stop();
    rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
  });

  it('bootstrap recorded a keyed fingerprint of the server secret, not the secret', async () => {
    const rows = await query<{ id: number; fingerprint: string }>('select id, fingerprint from server_key');
    expect(rows).toHaveLength(1);
    expect(rows[0]!.fingerprint).toMatch(/^v1:[0-9a-f]{64}$/);
    expect(rows[0]!.fingerprint).not.toContain(SECRET);
  });

  it('recover-admin with another key is refused (exit 2, nothing printed on stdout, nothing revoked)', async () => {
    const r = await runCli(['recover-admin'], wrongKey());
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(MISMATCH);
    expect(r.stderr).not.toContain(OTHER_SECRET);
    expect(await query(`select * from token_events where reason = 'recovered'`)).toEqual([]);
  });

  it('migrate with another key (ROTOR_SECRET, or an existing secret.key) is refused before it migrates; with the right one it runs', async () => {
    const r = await runCli(['migrate'], wrongKey());
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    expect(r.stderr).toContain(MISMATCH);
    expect(r.stderr).not.toContain(OTHER_SECRET);
    const ok = await runCli(['migrate'], env);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('database is up to date');
  });

  it('bootstrap with another key is refused the same way', async () => {
    const r = await runCli(['bootstrap'], wrongKey());
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    expect(r.stderr).toContain(MISMATCH);
  });

  it('a second replica (rotor serve) with another key refuses to start, naming the variable', async () => {
    const r = await runCli(
      ['serve'],
      { ...wrongKey(), ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0' },
      { timeoutMs: 20_000 },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(MISMATCH);
  });

  // On SQLite another data directory is another database: PostgreSQL only.
  it.skipIf(engine === 'sqlite')(
    'a replica reading another secret.key (ROTOR_SECRET unset) is refused, naming the file',
    async () => {
      const otherDir = mkdtempSync(join(tmpdir(), 'rotor-recover-other-'));
      try {
        const { ROTOR_SECRET: _unset, ...noSecret } = env;
        const r = await runCli(
          ['serve'],
          { ...noSecret, ROTOR_SECRET: '', ROTOR_DATA_DIR: otherDir, ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0' },
          { timeoutMs: 20_000 },
        );
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(
          `rotor: configuration: the server secret in ${join(otherDir, 'secret.key')} (read because ROTOR_SECRET is unset) differs from the server key of this database (fingerprint mismatch)`,
        );
      } finally {
        rmSync(otherDir, { recursive: true, force: true });
      }
    },
  );

  it('recover-admin revokes every active admin token (reason recovered) and prints only the new secret', async () => {
    serve = await startServe(env);
    const server = `http://127.0.0.1:${serve.httpPort}`;
    // A second admin token, made with the first.
    const second = await runCli(
      [
        'token',
        'create',
        '--server',
        server,
        '--kind',
        'service_account',
        '--owner',
        'ops',
        '--name',
        'second',
        '--scope',
        'rotor:admin',
        '--expires-in',
        '1d',
        '--json',
      ],
      { ROTOR_TOKEN: first },
    );
    expect(second.stderr).toBe('');
    const { secret: secondSecret, token: secondToken } = JSON.parse(second.stdout) as {
      secret: string;
      token: { id: string };
    };

    const r = await runCli(['recover-admin', '--owner', 'ops', '--expires-in', '2d'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^rtr_sa_[0-9A-Za-z]{49}\n$/);
    expect(r.stderr).toMatch(/rotor: revoked 2 admin tokens \(tok_\S+, tok_\S+\); new admin token tok_\S+\n$/);
    expect(secretsIn(r.stderr, [first, secondSecret])).toEqual([]);
    const recovered = r.stdout.trim();

    const events = await query<{ token_id: string; type: string; actor: string }>(
      `select token_id, type, actor from token_events where reason = 'recovered' order by token_id`,
    );
    expect(events).toHaveLength(2);
    expect(events.every((e) => e.type === 'revoked' && e.actor === 'recover-admin')).toBe(true);
    expect(events.map((e) => e.token_id)).toContain(secondToken.id);

    // The old admin tokens no longer work (the serve process sees the revocation within its cache TTL).
    const refused = await waitFor('the old admin token to be refused', async () => {
      const r = await runCli(['token', 'list', '--server', server, '--owner', 'ops'], { ROTOR_TOKEN: first });
      return r.code === 0 ? undefined : r;
    });
    expect(refused.code).toBe(1);
    const listed = await runCli(['token', 'get', secondToken.id, '--server', server, '--json'], {
      ROTOR_TOKEN: recovered,
    });
    expect(JSON.parse(listed.stdout)).toMatchObject({ state: 'revoked', revoke_reason: 'recovered' });
  });

  it('an older database without a fingerprint adopts the key only if it unseals the stored signing key', async () => {
    // The JWKS makes serve create a JWT signing key, sealed under SECRET; then forget the
    // fingerprint, as a database made by an older release has none.
    const jwks = await fetch(`http://127.0.0.1:${serve!.httpPort}/.well-known/jwks.json`);
    expect(jwks.status).toBe(200);
    if (serve?.child.exitCode === null) await serve.stop();
    expect(await query('select kid from signing_keys where private_key_sealed is not null')).not.toEqual([]);
    await query('delete from server_key');
    const wrong = await runCli(['recover-admin'], wrongKey());
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(
      /ROTOR_SECRET differs from the server key of this database \(it cannot unseal the JWT signing key \S+ stored in the database\)/,
    );
    expect(await query('select id from server_key')).toEqual([]);
    const right = await runCli(['recover-admin'], env);
    expect(right.code).toBe(0);
    expect(await query('select id from server_key')).toHaveLength(1);
  });
});

describe('configuration gaps name the variable', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'rotor-gaps-'));
    dirs.push(d);
    return d;
  };
  let holder: Server | undefined;
  afterAll(() => {
    holder?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a misspelled variable gets one warning naming the closest setting (CLI on stderr, serve in its log)', async () => {
    const dir = tempDir();
    const r = await runCli(['migrate'], { ROTOR_DATA_DIR: dir, ROTOR_LOG_LEVLE: 'debug' });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      `rotor: warning: ROTOR_LOG_LEVLE is not a Rotor setting; did you mean ROTOR_LOG_LEVEL?\nrotor: database: sqlite ${dir}/rotor.db\n`,
    );
    const serve = await startServe({ ROTOR_DATA_DIR: dir, ROTOR_LOG_LEVLE: 'debug' });
    try {
      const warnings = serve
        .output()
        .split('\n')
        .filter((l) => l.includes('ROTOR_LOG_LEVLE'));
      expect(warnings).toHaveLength(1);
      expect(JSON.parse(warnings[0]!)).toMatchObject({
        level: 'warn',
        msg: 'ROTOR_LOG_LEVLE is not a Rotor setting; did you mean ROTOR_LOG_LEVEL?',
      });
    } finally {
      await serve.stop();
    }
  });

  it('a port in use is named by its variable', async () => {
    holder = createServer();
    const port = await new Promise<number>((resolve) =>
      holder!.listen(0, '127.0.0.1', () => resolve((holder!.address() as { port: number }).port)),
    );
    for (const [variable, other] of [
      ['ROTOR_HTTP_PORT', 'ROTOR_GRPC_PORT'],
      ['ROTOR_GRPC_PORT', 'ROTOR_HTTP_PORT'],
    ]) {
      const r = await runCli(
        ['serve'],
        { ROTOR_DATA_DIR: tempDir(), [variable!]: String(port), [other!]: '0' },
        { timeoutMs: 20_000 },
      );
      expect({ code: r.code, stderr: r.stderr }).toEqual({
        code: 2,
        stderr: `rotor: configuration: ${variable}: port ${port} is in use on 127.0.0.1; stop what holds it, or choose another port (0 picks a free one)\n`,
      });
    }
  });

  it('ROTOR_DATA_DIR that is a file, or under a file, is named; serve and migrate exit at once', async () => {
    const file = join(tempDir(), 'not-a-dir');
    writeFileSync(file, '');
    for (const [dir, detail] of [
      [file, `${file} is a file, not a directory`],
      [join(file, 'sub'), `${file} is a file, not a directory (on the way to ${join(file, 'sub')})`],
    ]) {
      for (const command of ['migrate', 'serve']) {
        const r = await runCli(
          [command],
          { ROTOR_DATA_DIR: dir!, ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0' },
          {
            timeoutMs: 20_000,
          },
        );
        expect({ command, code: r.code }).toEqual({ command, code: 2 });
        expect(r.stderr).toContain(`rotor: configuration: ROTOR_DATA_DIR: ${detail}\n`);
        expect(r.stderr).not.toContain('ENOTDIR');
      }
    }
  });

  it('ROTOR_DATA_DIR=/proc/nope fails at once instead of hanging (serve, migrate, bootstrap --create)', async () => {
    for (const args of [['migrate'], ['serve'], ['bootstrap', '--create']]) {
      const r = await runCli(
        args,
        { ROTOR_DATA_DIR: '/proc/nope', ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0' },
        {
          timeoutMs: 20_000,
        },
      );
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toContain(
        'rotor: configuration: ROTOR_DATA_DIR: cannot create the directory /proc/nope: the file system refused (ENOENT)\n',
      );
    }
  });

  it('bootstrap and recover-admin refuse to create a new SQLite database (bootstrap unless --create), writing nothing', async () => {
    const dir = join(tempDir(), 'data');
    const boot = await runCli(['bootstrap'], { ROTOR_DATA_DIR: dir });
    expect(boot.code).toBe(2);
    expect(boot.stdout).toBe('');
    expect(boot.stderr).toBe(
      `rotor: database: sqlite ${dir}/rotor.db\nrotor: configuration: no database at ${dir}/rotor.db (ROTOR_DATA_DIR, ROTOR_DATABASE_URL); start \`rotor serve\` (or run \`rotor migrate\`) there first, or pass --create to create a new database in that place\n`,
    );
    const recover = await runCli(['recover-admin'], { ROTOR_DATA_DIR: dir });
    expect(recover.code).toBe(2);
    expect(recover.stderr).toContain(
      `no database at ${dir}/rotor.db (ROTOR_DATA_DIR, ROTOR_DATABASE_URL): nothing to recover`,
    );
    const { existsSync } = await import('node:fs');
    expect(existsSync(dir)).toBe(false);
  });
});
