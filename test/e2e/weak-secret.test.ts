/**
 * The server secret's strength rules as an operator meets them (README: "The server secret"):
 * `rotor serve` and `rotor bootstrap` refuse a weak secret on a new database, start with hex or
 * base64 random bytes, and keep serving a database made under a weak secret by the code before
 * these rules (test/fixtures/weak-secret), with a warning at every start and
 * `rotor_server_secret_weak 1`.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSigningKeySeal } from '../../src/domain/signing-key-seal.js';
import { loadServerSecret } from '../../src/runtime/server-secret.js';
import { loadConfig } from '../../src/runtime/config.js';
import { migrate, openDatabase } from '../../src/store/database.js';
import { describeOnPostgres, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { secretsIn } from '../support/leak-scan.js';
import { ROOT, runCli, startServe, type ServeProcess } from '../support/process.js';
import { startTestServer } from '../support/server.js';

const FIXTURE = join(ROOT, 'test/fixtures/weak-secret');
/** The weak secret, admin and project token of the fixture (test-only values, see its README). */
const fixture = JSON.parse(readFileSync(join(FIXTURE, 'tokens.json'), 'utf8')) as {
  secret: string;
  admin: string;
  project: { id: string; secret: string };
};
const WEAK = fixture.secret;

const REFUSAL =
  'rotor: configuration: ROTOR_SECRET is too weak: it decodes (as hex) to 16 bytes, fewer than 32; use at least 32 random bytes as hex or base64, e.g. the output of `openssl rand -hex 32`. A weak secret is accepted only on a database that already holds tokens made under it; this one holds none\n';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'rotor-weak-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A copy of the fixture's data directory. */
function fixtureCopy(): string {
  const dir = tempDir();
  copyFileSync(join(FIXTURE, 'rotor.db'), join(dir, 'rotor.db'));
  return dir;
}

async function metric(httpPort: number, name: string): Promise<string | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return text
    .split('\n')
    .find((l) => l.startsWith(`${name} `))
    ?.slice(name.length + 1);
}

async function introspect(
  httpPort: number,
  bearer: string,
  token: string,
): Promise<{ active: boolean; token_id?: string }> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/oauth/introspect`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { active: boolean; token_id?: string };
}

/** The warn lines of a serve process's output about the weak secret. */
function weakWarnings(output: string): { level: string; msg: string; secret_source: string }[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string; secret_source: string })
    .filter((l) => l.msg.startsWith('the server secret is weak'));
}

/** Neither the weak secret nor a token secret reached the output. */
function expectNoSecretIn(output: string): void {
  expect(output).not.toContain(WEAK);
  expect(secretsIn(output, [fixture.admin, fixture.project.secret])).toEqual([]);
}

describe('a new data directory with a weak secret is refused', () => {
  it('rotor serve and rotor bootstrap exit 2 with a message naming ROTOR_SECRET and how to make one, never quoting it', async () => {
    const env = { ROTOR_DATA_DIR: tempDir(), ROTOR_SECRET: WEAK, ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0' };
    for (const [command, stderr] of [
      [['serve'], REFUSAL],
      [['bootstrap', '--create'], `rotor: database: sqlite ${env.ROTOR_DATA_DIR}/rotor.db\n${REFUSAL}`],
    ] as const) {
      const r = await runCli([...command], env, { timeoutMs: 20_000 });
      expect({ command, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
        command,
        code: 2,
        stdout: '',
        stderr,
      });
    }
  });

  it('the same for a weak secret.key written by the operator, named by its path', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'secret.key'), `${'0123456789abcdef'.repeat(4)}\n`, { mode: 0o600 });
    const r = await runCli(
      ['serve'],
      { ROTOR_DATA_DIR: dir, ROTOR_SECRET: '', ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0' },
      { timeoutMs: 20_000 },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `rotor: configuration: ${join(dir, 'secret.key')} (the server secret, read when ROTOR_SECRET is unset) is too weak: it repeats a block of 8 bytes; use at least 32 random bytes as hex or base64, e.g. the output of \`openssl rand -hex 32\`. A weak secret is accepted only on a database that already holds tokens made under it; this one holds none\n`,
    );
    expect(r.stderr).not.toContain('0123456789abcdef');
  });

  it('a value shorter than 32 characters is refused even before the database is opened', async () => {
    const r = await runCli(
      ['serve'],
      { ROTOR_DATA_DIR: tempDir(), ROTOR_SECRET: 'too-short-a-secret', ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0' },
      { timeoutMs: 20_000 },
    );
    expect(r).toEqual({
      code: 2,
      stdout: '',
      stderr:
        'rotor: configuration: ROTOR_SECRET is too short; use at least 32 random bytes as hex or base64, e.g. the output of `openssl rand -hex 32`\n',
    });
  });
});

describe('strong secrets start', () => {
  it.each([
    ['hex', randomBytes(32).toString('hex')],
    ['base64', randomBytes(32).toString('base64')],
  ])('%s: the server starts without a warning, the gauge is 0, and its tokens work', async (_name, secret) => {
    const s = await startTestServer({ ROTOR_SECRET: secret });
    try {
      expect(await metric(s.rotor.httpPort, 'rotor_server_secret_weak')).toBe('0');
      expect(await introspect(s.rotor.httpPort, s.adminSecret, s.adminSecret)).toMatchObject({ active: true });
      expect(s.logs.filter((l) => l.includes('secret is weak'))).toEqual([]);
    } finally {
      await s.stop();
    }
  });
});

describe('a data directory made under a weak secret by the previous code (test/fixtures/weak-secret)', () => {
  let serve: ServeProcess | undefined;
  afterAll(async () => {
    await serve?.stop();
  });

  it('starts with a warning at every start, exports rotor_server_secret_weak 1, and still serves its tokens and signing key', async () => {
    const dir = fixtureCopy();
    const env = { ROTOR_DATA_DIR: dir, ROTOR_SECRET: WEAK };
    for (const round of [1, 2]) {
      serve = await startServe(env);
      const output = serve.output();
      expect(weakWarnings(output), `start ${round}`).toEqual([
        expect.objectContaining({
          level: 'warn',
          secret_source: 'ROTOR_SECRET',
          msg: expect.stringMatching(
            /^the server secret is weak: it decodes \(as hex\) to 16 bytes, fewer than 32; the database holds tokens/,
          ),
        }),
      ]);
      expect(await metric(serve.httpPort, 'rotor_server_secret_weak')).toBe('1');
      expect(await introspect(serve.httpPort, fixture.admin, fixture.project.secret)).toMatchObject({
        active: true,
        token_id: fixture.project.id,
      });
      if (round === 1) {
        // A JWT for the project token: the signing key ring opens the sealed keys under the same secret.
        const res = await fetch(`http://127.0.0.1:${serve.httpPort}/oauth/token`, {
          method: 'POST',
          body: new URLSearchParams({
            grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
            subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
            subject_token: fixture.project.secret,
            requested_token_type: 'urn:ietf:params:oauth:token-type:jwt',
            scope: 'deploy',
          }),
        });
        expect(res.status).toBe(200);
      }
      expect(await serve.stop()).toBe(0);
      expectNoSecretIn(serve.output());
      serve = undefined;
    }
  });

  it('the signing key the previous code sealed opens under the key bytes the new code derives from the same value', async () => {
    const dir = fixtureCopy();
    const { knex } = openDatabase({ url: `sqlite://${join(dir, 'rotor.db')}` });
    try {
      const rows = (await knex('signing_keys').select('kid', 'private_key_sealed').orderBy('slot')) as {
        kid: string;
        private_key_sealed: string;
      }[];
      const secret = loadServerSecret(loadConfig({ ROTOR_DATA_DIR: dir, ROTOR_SECRET: WEAK }).secret);
      expect(secret.weak).toBeDefined();
      expect(
        JSON.parse(createSigningKeySeal(secret.bytes).open(rows[0]!.kid, rows[0]!.private_key_sealed)),
      ).toMatchObject({ kty: expect.any(String), d: expect.any(String) });
    } finally {
      await knex.destroy();
    }
  });

  it('the same database with the weak value in secret.key instead of ROTOR_SECRET starts with the warning naming the file', async () => {
    const dir = fixtureCopy();
    writeFileSync(join(dir, 'secret.key'), `${WEAK}\n`, { mode: 0o600 });
    serve = await startServe({ ROTOR_DATA_DIR: dir, ROTOR_SECRET: '' });
    expect(weakWarnings(serve.output()).map((w) => w.secret_source)).toEqual([
      `${join(dir, 'secret.key')} (the server secret, read when ROTOR_SECRET is unset)`,
    ]);
    expect(await introspect(serve.httpPort, fixture.admin, fixture.admin)).toMatchObject({ active: true });
    expect(await serve.stop()).toBe(0);
    expectNoSecretIn(serve.output());
    serve = undefined;
  });

  it('rotor bootstrap on it warns too (and is refused for the existing admin token, as always)', async () => {
    const r = await runCli(['bootstrap'], { ROTOR_DATA_DIR: fixtureCopy(), ROTOR_SECRET: WEAK });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(weakWarnings(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain('rotor: permission_denied: an active admin token already exists; bootstrap refused\n');
    expectNoSecretIn(r.stderr);
  });
});

describeOnPostgres('weak secret on PostgreSQL', () => {
  let db: ScratchDatabase;
  let serve: ServeProcess | undefined;
  afterAll(async () => {
    await serve?.stop();
    await db?.drop();
  });

  it("an empty database is refused; once it holds the fixture's tokens it starts with the warning and serves them", async () => {
    db = await scratchDatabase();
    const env = {
      ROTOR_DATA_DIR: tempDir(),
      ROTOR_DATABASE_URL: db.url,
      ROTOR_SECRET: WEAK,
      ROTOR_GRPC_PORT: '0',
      ROTOR_HTTP_PORT: '0',
    };
    const refused = await runCli(['serve'], env, { timeoutMs: 20_000 });
    expect({ code: refused.code, stderr: refused.stderr }).toEqual({ code: 2, stderr: REFUSAL });

    // The rows the previous code wrote to SQLite, copied into PostgreSQL: the same keyed digests and sealed keys.
    const source = openDatabase({ url: `sqlite://${join(fixtureCopy(), 'rotor.db')}` }).knex;
    const target = openDatabase({ url: db.url }).knex;
    try {
      await migrate(target);
      for (const table of ['tokens', 'token_events', 'signing_keys']) {
        const rows = (await source(table).select()) as Record<string, unknown>[];
        expect(rows.length, table).toBeGreaterThan(0);
        await target(table).insert(table === 'token_events' ? rows.map(({ sequence: _s, ...r }) => r) : rows);
      }
    } finally {
      await source.destroy();
      await target.destroy();
    }

    serve = await startServe(env);
    expect(weakWarnings(serve.output())).toHaveLength(1);
    expect(await metric(serve.httpPort, 'rotor_server_secret_weak')).toBe('1');
    expect(await introspect(serve.httpPort, fixture.admin, fixture.project.secret)).toMatchObject({
      active: true,
      token_id: fixture.project.id,
    });
    expect(await serve.stop()).toBe(0);
    expectNoSecretIn(serve.output());
    serve = undefined;
  });
});
