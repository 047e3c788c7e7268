/**
 * The family invariant under concurrency (docs/rotation.md, "Changes to one family are serialised"):
 * once a family is revoked, no member is active and none can be minted, and a revocation's answer
 * counts every member it revoked.
 *
 * Two application contexts on one database play two replicas (each its own connection pool, as two
 * `rotor serve` processes would have; the token cache is off so every read goes to the database).
 * Each trial rotates A → B, then at the same moment one replica revokes the family (by presenting
 * A again after the grace: reuse detection; or by RevokeFamily) while the other rotates B, the
 * thief's copy, staggered by 0-7 ms. On PostgreSQL, before families were serialised, the rotation
 * of B could commit between the revocation's read of the live members and its update, leaving B's
 * successor active in a family the answer called revoked (20 of 60 trials for reuse, 6 of 60 for
 * RevokeFamily). SQLite runs the same trials (one connection per process, so they cannot overlap).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../../src/app/authenticate.js';
import type { AppContext } from '../../src/app/context.js';
import { revokeFamily } from '../../src/app/revocation.js';
import { rotate } from '../../src/app/rotation-service.js';
import { insertCreated } from '../../src/app/token-service.js';
import { isRotorError } from '../../src/domain/errors.js';
import { mintToken, type MintedToken } from '../../src/domain/new-token.js';
import { resolvePolicy } from '../../src/domain/policy.js';
import { tokenState, type TokenRecord } from '../../src/domain/token.js';
import { loadConfig } from '../../src/runtime/config.js';
import { BRAKES_OFF } from '../support/brakes-off.js';
import { createLogger } from '../../src/runtime/logger.js';
import { createApp } from '../../src/runtime/server.js';
import type { KnexStore } from '../../src/store/knex-store.js';
import { ENGINES, engineDatabase, type ScratchDatabase } from '../support/engines.js';

const HOUR = 3_600_000;
const SECRET = randomBytes(32).toString('hex');
/** Trials per race: enough on PostgreSQL to see the old hole many times over (about 1 in 3 / 1 in 10). */
const TRIALS = { postgres: 150, sqlite: 30 } as const;

type App = AppContext & { store: KnexStore };

async function replica(url: string): Promise<App> {
  const config = loadConfig({
    ...BRAKES_OFF,
    ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-race-data-')),
    ROTOR_DATABASE_URL: url,
    ROTOR_SECRET: SECRET,
    ROTOR_TOKEN_CACHE_TTL_MS: '0',
  });
  return createApp(
    config,
    createLogger('error', () => undefined),
  );
}

/** A new family of one token, reuse grace 0 so that presenting a predecessor is reuse at once. */
async function newFamily(app: App, scopes = ['rotor:rotate']): Promise<MintedToken> {
  const now = app.now();
  const policy = resolvePolicy({ reuseGraceSeconds: 0 }, app.limits);
  const minted = mintToken(
    {
      kind: 'service_account',
      ownerId: 'race',
      name: 'n',
      description: '',
      scopes,
      audiences: [],
      policy,
      expiresAt: now + HOUR,
    },
    now,
    app.random,
    app.keys,
  );
  await app.store.transaction((tx) => insertCreated(tx, minted, { actor: 'system', peer: null }, now));
  return minted;
}

const rotateBySecret = (app: App, secret: string) =>
  rotate(
    app,
    { mode: 'presented', secret },
    { idempotencyKey: undefined, scopes: [], audiences: [], expiresAt: undefined, peer: null },
  );

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function members(app: App, familyId: string): Promise<TokenRecord[]> {
  return app.store.tokens.list({ familyId }, app.now(), 1000, undefined);
}

/** What must hold once a family is revoked: no member active, every member revoked. */
function activeOf(family: TokenRecord[], now: number): string[] {
  return family.filter((t) => tokenState(t, now) === 'active').map((t) => t.id);
}

/** The thief's successor, if its rotation won, must be revoked with the family: rotating it mints nothing. */
async function mintsAgain(app: App, secret: string, trial: number): Promise<string[]> {
  try {
    const minted = await rotateBySecret(app, secret);
    return [`trial ${trial}: the thief's successor rotated again to ${minted.record.id}`];
  } catch (e) {
    return isRotorError(e) && e.code === 'token_revoked'
      ? []
      : [`trial ${trial}: rotating the thief's successor failed with ${String(e)}`];
  }
}

describe.each(ENGINES)('family changes are serialised across replicas on %s', (engine) => {
  let db: ScratchDatabase;
  let a: App;
  let b: App;
  let admin: Caller;

  beforeAll(async () => {
    db = await engineDatabase(engine);
    a = await replica(db.url);
    // SQLite serves one process per database file (README): one context plays both replicas there.
    b = engine === 'postgres' ? await replica(db.url) : a;
    admin = { token: (await newFamily(a, ['rotor:admin'])).record, peer: null };
  });
  afterAll(async () => {
    await a?.store.close();
    if (b !== a) await b?.store.close();
    await db?.drop();
  });

  it(`reuse detection racing the thief's rotation of the successor leaves no member active (${TRIALS[engine]} trials) on ${engine}`, async () => {
    const survivors: string[] = [];
    let reuses = 0;
    for (let i = 0; i < TRIALS[engine]; i++) {
      const first = await newFamily(a);
      const second = await rotateBySecret(a, first.secret); // A → B; the thief holds B
      const [owner, thief] = await Promise.allSettled([
        rotateBySecret(a, first.secret), // A again: reuse, the family is revoked
        sleep(i % 8).then(() => rotateBySecret(b, second.secret)), // the thief rotates B
      ]);
      expect(owner.status).toBe('rejected');
      expect(
        isRotorError((owner as PromiseRejectedResult).reason) && (owner as PromiseRejectedResult).reason.code,
      ).toBe('reuse_detected');
      reuses++;
      const family = await members(a, first.record.familyId);
      const active = activeOf(family, a.now());
      if (active.length > 0) survivors.push(`trial ${i}: ${active.join(', ')} active (thief ${thief.status})`);
      // None can be minted: the thief's successor, if its rotation won, can be rotated no more.
      if (thief.status === 'fulfilled') survivors.push(...(await mintsAgain(b, thief.value.secret, i)));
      const unrevoked = family
        .filter((t) => t.revokeReason !== 'reuse_detected')
        .map((t) => `${t.id} ${t.revokeReason}`);
      if (unrevoked.length > 0) survivors.push(`trial ${i}: not revoked for reuse: ${unrevoked.join(', ')}`);
    }
    expect(reuses).toBe(TRIALS[engine]);
    expect(survivors).toEqual([]);
  });

  it(`RevokeFamily racing a rotation on another replica leaves no member active and counts every member it revoked (${TRIALS[engine]} trials) on ${engine}`, async () => {
    const problems: string[] = [];
    for (let i = 0; i < TRIALS[engine]; i++) {
      const first = await newFamily(a);
      const second = await rotateBySecret(a, first.secret);
      const [revoked, thief] = await Promise.allSettled([
        revokeFamily(a, admin, first.record.familyId),
        sleep(i % 8).then(() => rotateBySecret(b, second.secret)),
      ]);
      expect(revoked.status).toBe('fulfilled');
      const count = (revoked as PromiseFulfilledResult<number>).value;
      const family = await members(a, first.record.familyId);
      const active = activeOf(family, a.now());
      if (active.length > 0) problems.push(`trial ${i}: ${active.join(', ')} active (thief ${thief.status})`);
      if (count !== family.length) problems.push(`trial ${i}: answer counted ${count} of ${family.length} members`);
      if (thief.status === 'fulfilled') problems.push(...(await mintsAgain(b, thief.value.secret, i)));
    }
    expect(problems).toEqual([]);
  });
});
