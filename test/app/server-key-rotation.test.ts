/**
 * The rotatable server key on the store of each engine (docs/server-key.md): rows made under key A
 * (and legacy rows, made from A's raw secret before key ids), then the application opened again
 * with B current and A previous on the same database. Lookups find A's rows and move them to B,
 * an idempotent retry across the change gets the same successor, the signing key is re-sealed,
 * and start-up refuses a missing key, naming the count, unless ROTOR_SECRET_DROP_UNKNOWN=true.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBySecret } from '../../src/app/authenticate.js';
import { introspect } from '../../src/app/introspection.js';
import { rotate } from '../../src/app/rotation-service.js';
import { mintToken, type MintedToken } from '../../src/domain/new-token.js';
import { keyIdOf } from '../../src/domain/server-keys.js';
import { createTokenKeys } from '../../src/domain/token-keys.js';
import { loadConfig } from '../../src/runtime/config.js';
import { ConfigError } from '../../src/runtime/config-error.js';
import { createApp, type RotorApp } from '../../src/runtime/create-app.js';
import { createLogger } from '../../src/runtime/logger.js';
import { keyStatus, serverKeyFingerprint } from '../../src/runtime/server-key-check.js';
import { secretBytes } from '../../src/runtime/server-secret.js';
import { migrate, openDatabase } from '../../src/store/database.js';
import { KnexServerKeyRepository } from '../../src/store/server-key-repository.js';
import { MIGRATIONS, migrationSource } from '../../migrations/index.js';
import { testPolicy } from '../domain/fixtures.js';
import { ENGINES, engineDatabase, type ScratchDatabase } from '../support/engines.js';
import { waitFor } from '../support/process.js';

const A = randomBytes(32).toString('hex');
const B = randomBytes(32).toString('hex');
const ID_A = keyIdOf(secretBytes(A));
const ID_B = keyIdOf(secretBytes(B));
const RETRY_KEY = randomBytes(16).toString('base64url');

describe.each(ENGINES)('server key rotation on the store on %s', (engine) => {
  let db: ScratchDatabase;
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-serverkey-'));
  const logs: string[] = [];
  const open = (env: Record<string, string>): Promise<RotorApp> =>
    createApp(
      loadConfig({ ROTOR_DATA_DIR: dataDir, ROTOR_DATABASE_URL: db.url, ROTOR_RETENTION_INTERVAL_MS: '0', ...env }),
      createLogger('debug', (l) => void logs.push(l), { redact: false }),
    );
  let app: RotorApp;
  /** Used under B: one by introspection, one as a legacy row, one rotated under A and retried under B. */
  let used: MintedToken;
  let legacy: MintedToken;
  let rotated: MintedToken;
  let successor: MintedToken;
  let kid: string;

  async function mint(a: RotorApp, name: string): Promise<MintedToken> {
    const minted = mintToken(
      {
        kind: 'service_account',
        ownerId: 'svc',
        name,
        description: '',
        scopes: ['rotor:rotate', 'read'],
        audiences: [],
        policy: testPolicy(),
        expiresAt: a.now() + 86_400_000,
      },
      a.now(),
      a.random,
      a.keys,
    );
    await a.store.tokens.insert(minted.record);
    return minted;
  }

  async function digestOf(id: string, column = 'secret_digest'): Promise<string> {
    const row = (await app.store.knex('tokens').where({ id }).first(column)) as Record<string, string>;
    return row[column]!;
  }

  async function status() {
    const repo = new KnexServerKeyRepository(app.store.knex);
    return keyStatus(
      await repo.keyUsage(app.now(), 600_000),
      { current: secretBytes(B), previous: [secretBytes(A)] },
      await repo.legacyFingerprint(),
    );
  }

  beforeAll(async () => {
    db = await engineDatabase(engine);
    app = await open({ ROTOR_SECRET: A });
    used = await mint(app, 'used');
    legacy = await mint(app, 'legacy');
    rotated = await mint(app, 'rotated');
    // A row as the code before key ids stored it: the digest under A's raw-secret subkey, no key id.
    const legacyDigest = createTokenKeys(secretBytes(A)).older.at(-1)!.secretDigest(legacy.secret);
    await app.store.knex('tokens').where({ id: legacy.record.id }).update({ secret_digest: legacyDigest });
    successor = await rotate(app, { mode: 'presented', secret: rotated.secret }, rotationOptions());
    kid = (await app.jwt.keyRing.signingKey(app.now())).meta.kid;
    await app.store.close();
  });
  afterAll(async () => {
    await app?.store.close();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  function rotationOptions() {
    return { idempotencyKey: RETRY_KEY, scopes: [], audiences: [], expiresAt: undefined, peer: null };
  }

  it(`rows made under A name A's key id, never the key (${engine})`, async () => {
    app = await open({ ROTOR_SECRET: A });
    expect((await digestOf(used.record.id)).startsWith(`${ID_A}.`)).toBe(true);
    expect((await digestOf(rotated.record.id, 'rotation_key_digest')).startsWith(`${ID_A}.`)).toBe(true);
    const sealed = (await app.store.knex('signing_keys').where({ kid }).first('private_key_sealed')) as {
      private_key_sealed: string;
    };
    expect(sealed.private_key_sealed.startsWith(`v2.${ID_A}.`)).toBe(true);
    await app.store.close();
  });

  it(`B alone is refused, naming the rows that depend on A; ROTOR_SECRET_DROP_UNKNOWN=true starts (${engine})`, async () => {
    const refused = await open({ ROTOR_SECRET: B }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ConfigError);
    const message = (refused as Error).message;
    // Under A: two usable tokens (used, the successor; the rotated one has ended), the idempotency
    // digest of the rotation and the signing key; the legacy row apart.
    expect(message).toContain('ROTOR_SECRET differs from the server key of this database (fingerprint mismatch)');
    expect(message).toMatch(/^.*?(\d+) rows depend on server keys that are not configured/);
    expect(message).toContain(`key ${ID_A}: 2 tokens, 1 idempotency digests, 1 signing keys`);
    expect(message).toContain('legacy rows: 1 tokens, 0 idempotency digests, 0 signing keys');
    expect(message).toContain('ROTOR_SECRET_DROP_UNKNOWN=true');
    expect(message).not.toContain(A);
    expect(message).not.toContain(B);
  });

  it(`B current with A previous starts, records B and re-seals the signing key under B (${engine})`, async () => {
    app = await open({ ROTOR_SECRET: B, ROTOR_SECRET_PREVIOUS: A });
    const row = (await app.store.knex('server_key').first('fingerprint', 'legacy_fingerprint')) as {
      fingerprint: string;
      legacy_fingerprint: string;
    };
    expect(row.fingerprint).toBe(serverKeyFingerprint(secretBytes(B)));
    expect(row.legacy_fingerprint).toBe(serverKeyFingerprint(secretBytes(A)));
    const sealed = (await app.store.knex('signing_keys').where({ kid }).first('private_key_sealed')) as {
      private_key_sealed: string;
    };
    expect(sealed.private_key_sealed.startsWith(`v2.${ID_B}.`)).toBe(true);
    expect((await app.jwt.keyRing.signingKey(app.now())).meta.kid).toBe(kid);
    const s = await status();
    expect(s.find((k) => k.key === ID_A)).toMatchObject({
      role: 'previous',
      tokens: 2,
      retryKeys: 1,
      signingKeys: 0,
      ended: 1,
    });
    expect(s.find((k) => k.key === 'legacy')).toMatchObject({ role: 'previous', legacyOf: ID_A, tokens: 1 });
    expect(s.find((k) => k.key === ID_B)).toMatchObject({ role: 'current', signingKeys: 1 });
  });

  it(`a token made under A authenticates under B and moves to B; so does a legacy row (${engine})`, async () => {
    const found = await findBySecret(app, used.secret);
    expect(found?.id).toBe(used.record.id);
    await waitFor('the row to be re-digested under B', async () =>
      (await digestOf(used.record.id)).startsWith(`${ID_B}.`),
    );
    const self = await introspect(app, { token: found!, peer: null }, used.secret);
    expect(self).toMatchObject({ active: true, token: { tokenId: used.record.id } });
    expect((await findBySecret(app, legacy.secret))?.id).toBe(legacy.record.id);
    await waitFor('the legacy row to be re-digested under B', async () =>
      (await digestOf(legacy.record.id)).startsWith(`${ID_B}.`),
    );
    expect((await findBySecret(app, used.secret))?.id).toBe(used.record.id);
  });

  it(`an idempotent retry across the change returns the same successor and secret, and moves its digests to B (${engine})`, async () => {
    const again = await rotate(app, { mode: 'presented', secret: rotated.secret }, rotationOptions());
    expect(again.record.id).toBe(successor.record.id);
    expect(again.secret).toBe(successor.secret);
    await waitFor('the predecessor, its idempotency digest and the successor to move to B', async () =>
      (
        await Promise.all([
          digestOf(rotated.record.id),
          digestOf(rotated.record.id, 'rotation_key_digest'),
          digestOf(successor.record.id),
        ])
      ).every((d) => d.startsWith(`${ID_B}.`)),
    );
    // The retry works under B alone now.
    const third = await rotate(app, { mode: 'presented', secret: rotated.secret }, rotationOptions());
    expect(third.secret).toBe(successor.secret);
  });

  it(`once every row is used, nothing depends on A and B alone starts (${engine})`, async () => {
    const s = await status();
    expect(s.find((k) => k.key === ID_A)).toMatchObject({ tokens: 0, retryKeys: 0, signingKeys: 0, ended: 0 });
    expect(s.find((k) => k.key === 'legacy')).toBeUndefined();
    await app.store.close();
    app = await open({ ROTOR_SECRET: B });
    expect((await findBySecret(app, successor.secret))?.id).toBe(successor.record.id);
    await app.store.close();
  });

  it(`a key not configured (C) is refused with A's rows gone too, and DROP_UNKNOWN starts it and records C (${engine})`, async () => {
    const C = randomBytes(32).toString('hex');
    const refused = await open({ ROTOR_SECRET: C }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(refused?.message).toContain(`key ${ID_B}: 3 tokens, 1 idempotency digests, 1 signing keys`);
    app = await open({ ROTOR_SECRET: C, ROTOR_SECRET_DROP_UNKNOWN: 'true' });
    expect(await findBySecret(app, used.secret)).toBeUndefined();
    expect(logs.join('')).toContain('ROTOR_SECRET_DROP_UNKNOWN=true: starting although rows depend on server keys');
  });
});

describe.each(ENGINES)('migration 20261208_051_server_key_ids on %s', (engine) => {
  it(`keeps the recorded fingerprint as the legacy rows' key (${engine})`, async () => {
    const old = await engineDatabase(engine);
    const { knex } = openDatabase({ url: old.url });
    try {
      const before = MIGRATIONS.findIndex(([name]) => name === '20261208_051_server_key_ids');
      expect(before).toBeGreaterThan(0);
      await knex.migrate.latest({
        migrationSource: { ...migrationSource, getMigrations: async () => MIGRATIONS.slice(0, before) },
      });
      const fingerprint = serverKeyFingerprint(secretBytes(A));
      await knex('server_key').insert({ id: 1, fingerprint, created_at: 1 });
      await migrate(knex);
      expect(await new KnexServerKeyRepository(knex).legacyFingerprint()).toBe(fingerprint);
    } finally {
      await knex.destroy();
      await old.drop();
    }
  });
});
