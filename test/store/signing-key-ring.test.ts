/**
 * Signing keys in the database, with several key rings (standing in for replicas) on one store:
 * they agree on one key per slot, keys are sealed at rest, publication follows the schedule, and
 * private keys are erased once a key has left the JWKS. On every engine (test/support/engines.ts):
 * SQLite always, PostgreSQL when ROTOR_TEST_DATABASE_URL is set (as .ci/run does), where the
 * inserts really race.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../src/app/logger-port.js';
import { SigningKeyRing } from '../../src/app/signing-key-ring.js';
import { createSigningKeySeal } from '../../src/domain/signing-key-seal.js';
import { migrate, openDatabase } from '../../src/store/database.js';
import { KnexSigningKeyRepository } from '../../src/store/signing-key-repository.js';
import { DAY, HOUR, MINUTE, NOW, SERVER_SECRET } from '../domain/fixtures.js';
import { ENGINES, scratchDatabase, type Engine } from '../support/engines.js';

const SCHEDULE = { rotationMs: 7 * DAY, ttlMs: 5 * MINUTE };
const quiet: Logger = { info() {}, warn() {}, error() {} };

async function scratch(engine: Engine): Promise<{ knex: Knex; drop(): Promise<void> }> {
  if (engine === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'rotor-keys-'));
    const { knex } = openDatabase({ url: `sqlite://${join(dir, 'rotor.db')}` });
    return { knex, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const db = await scratchDatabase();
  const { knex } = openDatabase({ url: db.url });
  return { knex, drop: () => db.drop() };
}

describe.each(ENGINES)('signing keys on %s', (engine) => {
  let db: { knex: Knex; drop(): Promise<void> };
  let repo: KnexSigningKeyRepository;
  const ring = (alg: 'ES256' | 'EdDSA' = 'ES256') =>
    new SigningKeyRing(
      repo,
      createSigningKeySeal(SERVER_SECRET),
      SCHEDULE,
      alg,
      (n) => new Uint8Array(randomBytes(n)),
      quiet,
    );

  beforeAll(async () => {
    db = await scratch(engine);
    await migrate(db.knex);
    repo = new KnexSigningKeyRepository(db.knex);
  });
  afterAll(async () => {
    await db.knex.destroy();
    await db.drop();
  });

  it('replicas racing for the first key and for its successor agree on one key per slot', async () => {
    const replicas = Array.from({ length: 5 }, () => ring());
    const first = await Promise.all(replicas.map((r) => r.signingKey(NOW)));
    expect(new Set(first.map((k) => k.meta.kid)).size).toBe(1);
    const dueAt = NOW + 6 * DAY + HOUR;
    await Promise.all(replicas.map((r) => r.signingKey(dueAt)));
    const rows = (await db.knex('signing_keys').select('slot', 'kid').orderBy('slot')) as {
      slot: number;
      kid: string;
    }[];
    expect(rows.map((r) => Number(r.slot))).toEqual([0, 1]);
    const next = await Promise.all(replicas.map((r) => r.signingKey(NOW + 7 * DAY + MINUTE)));
    expect(new Set(next.map((k) => k.meta.kid))).toEqual(new Set([rows[1]!.kid]));
  });

  it('stores the private key only sealed; the public JWK has no private part', async () => {
    const row = (await db.knex('signing_keys').where({ slot: 0 }).first()) as {
      kid: string;
      public_jwk: string;
      private_key_sealed: string;
    };
    expect(JSON.parse(row.public_jwk)).not.toHaveProperty('d');
    expect(row.private_key_sealed).toMatch(/^v2\.[\w-]{8}\./);
    const d = (JSON.parse(createSigningKeySeal(SERVER_SECRET).open(row.kid, row.private_key_sealed)) as { d: string })
      .d;
    expect(d.length).toBeGreaterThan(20);
    expect(JSON.stringify(await db.knex('signing_keys').select())).not.toContain(d);
  });

  it('publishes keys until their tokens expired, extends that when a token outlives the plan, then erases the private key', async () => {
    const r = ring();
    const at = NOW + 7 * DAY + 2 * MINUTE;
    const k0 = (await repo.findByKid(
      ((await db.knex('signing_keys').where({ slot: 0 }).first()) as { kid: string }).kid,
    ))!;
    expect((await r.jwks(at)).keys.map((k) => k.kid)).toContain(k0.kid);
    await repo.extendPublication(k0.kid, k0.publishUntil + 10 * MINUTE);
    await repo.extendPublication(k0.kid, k0.publishUntil);
    expect((await repo.findByKid(k0.kid))!.publishUntil).toBe(k0.publishUntil + 10 * MINUTE);
    // Retired, and past its planned window, but a token it signed is still valid: the private key
    // stays, and verification (which needs only the public key) goes on working.
    const stillValid = k0.publishUntil + 5 * MINUTE;
    expect(k0.retireAt).toBeLessThan(stillValid);
    expect(await repo.erasePrivateKeys(stillValid)).toBe(0);
    expect((await repo.findByKid(k0.kid))!.sealedPrivateKey).not.toBeNull();
    expect((await ring().verificationKey(k0.kid, stillValid))?.meta.kid).toBe(k0.kid);
    const later = k0.publishUntil + 10 * MINUTE;
    expect((await r.jwks(later)).keys.map((k) => k.kid)).not.toContain(k0.kid);
    expect(await r.verificationKey(k0.kid, later)).toBeUndefined();
    expect(await repo.erasePrivateKeys(later)).toBe(1);
    expect((await repo.findByKid(k0.kid))!.sealedPrivateKey).toBeNull();
    // Even with its private part erased, the public key verifies while the key is published
    // (here: a publication raised again, as a replica does for a token that outlives the plan).
    await repo.extendPublication(k0.kid, later + 10 * MINUTE);
    expect((await ring().verificationKey(k0.kid, later + MINUTE))?.meta.kid).toBe(k0.kid);
  });

  it('creates EdDSA keys when configured (new keys only; existing ones keep their algorithm)', async () => {
    const r = ring('EdDSA');
    const gap = NOW + 60 * DAY;
    const k = await r.signingKey(gap);
    expect(k.meta.alg).toBe('EdDSA');
    expect((await r.jwks(gap)).keys).toEqual([
      expect.objectContaining({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: k.meta.kid }),
    ]);
  });
});
