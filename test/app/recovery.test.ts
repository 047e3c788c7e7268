/**
 * Break-glass recovery (`recoverAdmin`, src/app/recovery.ts) on each engine: every active
 * `rotor:admin` token is revoked with reason `recovered` and one `revoked` event, whatever its
 * kind or family position; expired, revoked, rotated and non-admin tokens are left as they were.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppContext } from '../../src/app/context.js';
import { recoverAdmin } from '../../src/app/recovery.js';
import { insertCreated } from '../../src/app/token-service.js';
import { mintToken, type MintedToken } from '../../src/domain/new-token.js';
import { resolvePolicy } from '../../src/domain/policy.js';
import type { TokenKind } from '../../src/domain/token-kind.js';
import { tokenState } from '../../src/domain/token.js';
import { loadConfig } from '../../src/runtime/config.js';
import { createLogger } from '../../src/runtime/logger.js';
import { createApp } from '../../src/runtime/server.js';
import type { KnexStore } from '../../src/store/knex-store.js';
import { ENGINES, engineDatabase, type ScratchDatabase } from '../support/engines.js';

const HOUR = 3_600_000;
type App = AppContext & { store: KnexStore };

describe.each(ENGINES)('recoverAdmin on %s', (engine) => {
  let db: ScratchDatabase;
  let app: App;

  beforeAll(async () => {
    db = await engineDatabase(engine);
    app = await createApp(
      loadConfig({
        ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-recovery-data-')),
        ROTOR_DATABASE_URL: db.url,
        ROTOR_SECRET: randomBytes(32).toString('hex'),
        ROTOR_TOKEN_CACHE_TTL_MS: '0',
      }),
      createLogger('error', () => undefined),
    );
  });
  afterAll(async () => {
    await app?.store.close();
    await db?.drop();
  });

  async function token(kind: TokenKind, scopes: string[], expiresInMs = HOUR): Promise<MintedToken> {
    const now = app.now();
    const minted = mintToken(
      {
        kind,
        ownerId: 'ops',
        name: 'n',
        description: '',
        scopes,
        audiences: [],
        policy: resolvePolicy({}, app.limits),
        expiresAt: now + expiresInMs,
      },
      now,
      app.random,
      app.keys,
    );
    await app.store.transaction((tx) => insertCreated(tx, minted, { actor: 'system', peer: null }, now));
    return minted;
  }

  it('revokes every active admin token, and only those, with reason recovered', async () => {
    const admin = await token('service_account', ['rotor:admin']);
    const personalAdmin = await token('personal', ['rotor:admin', 'deploy']);
    const expiredAdmin = await token('service_account', ['rotor:admin'], -1000);
    const revokedAdmin = await token('service_account', ['rotor:admin']);
    await app.store.transaction((tx) => tx.tokens.revoke(revokedAdmin.record.id, 'revoked', app.now()));
    const plain = await token('project', ['rotor:rotate', 'rotor:adminish']);

    const { minted, revokedIds } = await recoverAdmin(app, { ownerId: 'ops', lifetimeSeconds: 86_400 });

    expect([...revokedIds].sort()).toEqual([admin.record.id, personalAdmin.record.id].sort());
    const now = app.now();
    const stateOf = async (t: MintedToken) => {
      const r = (await app.store.tokens.findById(t.record.id))!;
      return [tokenState(r, now), r.revokeReason];
    };
    expect(await stateOf(admin)).toEqual(['revoked', 'recovered']);
    expect(await stateOf(personalAdmin)).toEqual(['revoked', 'recovered']);
    expect(await stateOf(expiredAdmin)).toEqual(['expired', null]);
    expect(await stateOf(revokedAdmin)).toEqual(['revoked', 'revoked']);
    expect(await stateOf(plain)).toEqual(['active', null]);
    expect(await stateOf(minted)).toEqual(['active', null]);
    expect(minted.record.scopes).toContain('rotor:admin');
    expect(minted.record.expiresAt).toBe(minted.record.createdAt + 86_400_000);
    expect(await app.store.events.countByReason(admin.record.id, 'revoked')).toEqual({ recovered: 1 });
    expect(await app.store.events.countByReason(personalAdmin.record.id, 'revoked')).toEqual({ recovered: 1 });
    expect(await app.store.events.countByReason(revokedAdmin.record.id, 'revoked')).toEqual({});

    // A second recovery revokes the first one's token: exactly one admin token is active after each.
    const again = await recoverAdmin(app, { ownerId: 'ops', lifetimeSeconds: 86_400 });
    expect(again.revokedIds).toEqual([minted.record.id]);
    expect(await app.store.tokens.existsActiveWithScope('rotor:admin', app.now())).toBe(true);
    expect((await app.store.tokens.listActiveWithScope('rotor:admin', app.now())).map((t) => t.id)).toEqual([
      again.minted.record.id,
    ]);
  });
});
