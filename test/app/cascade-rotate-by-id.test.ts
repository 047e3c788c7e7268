/**
 * docs/rotation.md rule 2 and "Lineage and cascade": a descendant of a token revoked with cascade
 * is revoked, and rotating a revoked token by id is `not_rotatable` (the target's state is wrong,
 * not the caller's credential), whether the cascade's batches reached the descendant already or
 * only its ancestor's mark did. Presented by its secret, the same token is `token_revoked`.
 * Found by the model-based test (test/model/rotation-model.test.ts), which answered
 * `token_revoked` to an admin naming such a token by id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate, type Caller } from '../../src/app/authenticate.js';
import { bootstrapAdmin } from '../../src/app/bootstrap.js';
import { revokeTokenWith } from '../../src/app/revocation.js';
import { rotate } from '../../src/app/rotation-service.js';
import { createToken } from '../../src/app/token-service.js';
import { isRotorError } from '../../src/domain/errors.js';
import type { RotorApp } from '../../src/runtime/create-app.js';
import { scratchApp } from '../support/app.js';
import { ENGINES, engineDatabase, type ScratchDatabase } from '../support/engines.js';

const HOUR = 3_600_000;
const OPTS = { idempotencyKey: undefined, scopes: [], audiences: [], expiresAt: undefined, peer: null };

describe.each(ENGINES)('rotation by id of a descendant of a cascade on %s', (engine) => {
  let db: ScratchDatabase;
  let app: RotorApp;
  let admin: Caller;

  beforeAll(async () => {
    db = await engineDatabase(engine);
    app = await scratchApp(db);
    admin = {
      token: (await bootstrapAdmin(app, { ownerId: 'cascade-admin', lifetimeSeconds: 24 * 3600 })).record,
      peer: null,
    };
  });
  afterAll(async () => {
    await app?.store.close();
    await db?.drop();
  });

  /** A root token of the admin's and a child created with the root as bearer. */
  async function tree() {
    const input = {
      kind: 'service_account' as const,
      ownerId: 'cascade-owner',
      name: 'n',
      description: '',
      scopes: ['rotor:rotate'],
      audiences: [],
      expiresAt: app.now() + HOUR,
      policy: {},
    };
    const root = await createToken(app, admin, input);
    const bearer = await authenticate(app, { authorization: `Bearer ${root.secret}`, peer: null });
    const child = await createToken(app, bearer, { ...input, name: 'child' });
    expect(child.record.parentId).toBe(root.record.id);
    return { root, child };
  }

  async function codeOf(p: Promise<unknown>): Promise<string> {
    try {
      await p;
      return 'ok';
    } catch (e) {
      if (!isRotorError(e)) throw e;
      return e.code;
    }
  }

  it('after the cascade revoked it', async () => {
    const { root, child } = await tree();
    const r = await revokeTokenWith(app, admin, root.record.id, { cascade: true, dryRun: false });
    expect(r.cascadeCount).toBe(1);
    expect(await codeOf(rotate(app, { mode: 'by_id', id: child.record.id, caller: admin }, OPTS))).toBe(
      'not_rotatable',
    );
    expect(await codeOf(rotate(app, { mode: 'presented', secret: child.secret }, OPTS))).toBe('token_revoked');
  });

  it('when only its ancestor carries the mark (a cascade cut off before its batches)', async () => {
    const { root, child } = await tree();
    await app.store.transaction((tx) => tx.tokens.markCascade({ ids: [root.record.id] }, app.now()));
    expect(await codeOf(rotate(app, { mode: 'by_id', id: child.record.id, caller: admin }, OPTS))).toBe(
      'not_rotatable',
    );
    expect(await codeOf(rotate(app, { mode: 'presented', secret: child.secret }, OPTS))).toBe('token_revoked');
  });
});
