/**
 * Lineage and cascade (docs/rotation.md, "Lineage and cascade"), end to end on both engines.
 *
 * A tree of 10,022 tokens in four levels: R (created by the admin) created 20 tokens, one of which
 * was rotated; each of those (the rotated one through its successor) created 5; each of those 100
 * has 99 children. The API creates R, level 2 and the 5 children of the rotated token; the rest
 * is inserted in bulk into the store (rows as CreateToken authenticated by each parent would
 * store them) so that the test takes seconds. Then:
 *
 * - RevokeToken(R, cascade, dry_run) lists exactly the tree and changes nothing;
 * - RevokeToken(R, cascade) revokes all of it (reason `cascade`, one event per token) with the
 *   statement timeout at 2 s, never hit; no descendant authenticates on either replica once the
 *   call has returned (PostgreSQL: a second server on the same database, which had cached them);
 *   a JWT access token minted from a descendant introspects inactive;
 * - a cascade interrupted after its first transaction (only the root marked) already shuts every
 *   descendant out, and running it again finishes it;
 * - reuse detection revokes with cascade; RevokeFamily takes cascade and dry_run too; and the CLI
 *   `rotor token revoke --cascade --dry-run`.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/domain/new-token.js';
import { resolvePolicy } from '../../src/domain/policy.js';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { toRow } from '../../src/store/token-row.js';
import { ENGINES } from '../support/engines.js';
import { runCli } from '../support/process.js';
import { connectApi, failure, grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';

const DAY_MS = 86_400_000;
const L2 = 20;
const L3_PER_L2 = 5;
const L4_PER_L3 = 99;
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

interface Held {
  id: string;
  secret: string;
}

describe.each(ENGINES)('lineage and cascade on %s', (engine) => {
  const SECRET = randomBytes(32).toString('base64url');
  let a: TestServer;
  let b: TestServer | undefined;
  let api: Api;
  let apiB: Api | undefined;

  beforeAll(async () => {
    const env = { ROTOR_SECRET: SECRET, ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '2000' };
    a = await startTestServer(env, { engine });
    if (engine === 'postgres') {
      // Replica B caches token rows for 60 s: only NOTIFYs of A's events can change its mind.
      b = await startTestServer({ ...env, ROTOR_TOKEN_CACHE_TTL_MS: '60000' }, { join: a });
      apiB = connectApi(b);
    }
    api = grpcApi(a);
  });
  afterAll(async () => {
    api.close();
    apiB?.close();
    await b?.stop();
    await a.stop();
  });

  /** A token created by the call `bearer` authenticates; `level` deeper expires a minute earlier (no child outlives its creator). */
  async function create(bearer: string, name: string, level = 0): Promise<Held> {
    const res = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'tree',
        name,
        scopes: ['rotor:rotate', 'read'],
        expiresAt: inMs(a.clock.now(), DAY_MS - (level + 1) * 60_000),
      },
      bearer,
    );
    issuedSecrets.add(res.secret);
    return { id: res.token!.id, secret: res.secret };
  }

  async function rotate(secret: string): Promise<Held> {
    const res = await api.rotateToken({ idempotencyKey: newKey() }, secret);
    issuedSecrets.add(res.secret);
    return { id: res.token!.id, secret: res.secret };
  }

  /** Whether `secret` authenticates a call (GetToken of itself) through `via`. */
  async function authenticates(via: Api, t: Held): Promise<boolean> {
    try {
      await via.getToken({ id: t.id }, t.secret);
      return true;
    } catch (e) {
      const f = await failure(Promise.reject(e));
      expect(f.code).toBe(Code.Unauthenticated);
      return false;
    }
  }

  async function jwtOf(t: Held): Promise<string> {
    const res = await api.exchangeToken({
      grantType: EXCHANGE,
      subjectToken: t.secret,
      subjectTokenType: ACCESS_TYPE,
      requestedTokenType: JWT_TYPE,
    });
    issuedSecrets.add(res.accessToken);
    return res.accessToken;
  }

  const count = async (table: string, where: (q: import('knex').Knex.QueryBuilder) => void) => {
    const q = a.rotor.store.knex(table);
    where(q);
    const row = (await q.count<{ n: number | string }[]>('* as n').first()) as { n: number | string } | undefined;
    return Number(row?.n ?? 0);
  };

  it(`a tree of ${1 + L2 + 1 + L2 * L3_PER_L2 * (1 + L4_PER_L3)} tokens: dry run lists it and changes nothing, the cascade revokes all of it, one event each on ${engine}`, async () => {
    const t0 = performance.now();
    const root = await create(a.adminSecret, 'root');
    const outside = await create(a.adminSecret, 'sibling');
    const level2: Held[] = [];
    for (let i = 0; i < L2; i++) level2.push(await create(root.secret, `l2-${i}`, 1));
    // One level-2 token is rotated; its successor (same family, same parent) creates 5 of level 3.
    const rotated = await rotate(level2[0]!.secret);
    const level3: Held[] = [];
    for (let j = 0; j < L3_PER_L2; j++) level3.push(await create(rotated.secret, 'l3', 3));
    expect((await api.getToken({ id: level3[0]!.id }, a.adminSecret)).token!.parentId).toBe(rotated.id);
    expect((await api.getToken({ id: rotated.id }, a.adminSecret)).token!.parentId).toBe(root.id);
    const t1 = performance.now();
    // The rest in bulk, as CreateToken calls authenticated by each parent would store them: the
    // first child of each parent minted for real (its secret is used below), the others copies
    // of it with ids and digests of their own.
    const now = a.clock.now();
    const policy = resolvePolicy({}, a.rotor.app.limits);
    const rows: ReturnType<typeof toRow>[] = [];
    const children = (parent: Held, n: number): Held[] => {
      const m = mintToken(
        {
          kind: 'service_account',
          ownerId: 'tree',
          name: 'bulk',
          description: '',
          scopes: ['read'],
          audiences: [],
          policy,
          expiresAt: now + DAY_MS / 2,
        },
        now,
        a.rotor.app.random,
        a.rotor.app.keys,
        parent.id,
      );
      issuedSecrets.add(m.secret);
      const first = toRow(m.record);
      rows.push(first);
      for (let k = 1; k < n; k++) {
        const id = randomBytes(16).toString('hex');
        rows.push({
          ...first,
          id: `tok_${id}`,
          family_id: `fam_${id}`,
          secret_digest: randomBytes(32).toString('hex'),
        });
      }
      return [{ id: m.record.id, secret: m.secret }];
    };
    for (const parent of level2.slice(1)) {
      for (let j = 0; j < L3_PER_L2; j++) level3.push(...children(parent, 1));
    }
    const level4: Held[] = [];
    for (const parent of level3) level4.push(...children(parent, L4_PER_L3));
    // SQLite's knex insert is one compound SELECT, at most 500 terms.
    await a.rotor.store.knex.batchInsert('tokens', rows, engine === 'sqlite' ? 400 : 1000);
    console.log(`tree via API ${(t1 - t0).toFixed(0)} ms, in bulk ${(performance.now() - t1).toFixed(0)} ms`);
    const treeIds = new Set([
      root.id,
      ...level2.map((t) => t.id),
      rotated.id,
      ...level3.map((t) => t.id),
      ...rows.map((r) => r.id),
    ]);
    expect(treeIds.size).toBe(1 + L2 + 1 + L2 * L3_PER_L2 * (1 + L4_PER_L3));
    expect(treeIds.size).toBeGreaterThanOrEqual(10_000);

    // Descendants in use on both replicas (their rows, and their ancestors', cached there).
    const sample = [level2[1]!, rotated, level3[0]!, level3[99]!, level4[0]!, level4[57]!];
    for (const t of sample) expect(await authenticates(api, t)).toBe(true);
    if (apiB) for (const t of sample) expect(await authenticates(apiB, t)).toBe(true);
    const jwt = await jwtOf(level4[3]!);
    expect((await api.introspectToken({ token: jwt }, a.adminSecret)).active).toBe(true);

    const events = () => count('token_events', () => undefined);
    const revoked = () => count('tokens', (q) => q.whereNotNull('revoked_at').where('owner_id', 'tree'));
    const eventsBefore = await events();
    const revokedBefore = await revoked();
    expect(revokedBefore).toBe(1); // level2[0], rotated

    const t2 = performance.now();
    const dry = await api.revokeToken({ id: root.id, cascade: true, dryRun: true }, a.adminSecret);
    console.log(`dry run ${(performance.now() - t2).toFixed(0)} ms`);
    // The root first, then every descendant (the rotated level-2 token too: a cascade revokes it).
    expect(dry.truncated).toBe(false);
    expect(new Set(dry.dryRunTokenIds)).toEqual(treeIds);
    expect(dry.dryRunTokenIds).toHaveLength(treeIds.size);
    expect(dry.dryRunTokenIds[0]).toBe(root.id);
    expect(dry.cascadeRevokedCount).toBe(treeIds.size - 1);
    expect(dry.token!.state).toBe(TokenState.ACTIVE);
    expect(await events()).toBe(eventsBefore);
    expect(await revoked()).toBe(revokedBefore);
    for (const t of sample) expect(await authenticates(api, t)).toBe(true);

    const started = performance.now();
    const res = await api.revokeToken({ id: root.id, cascade: true }, a.adminSecret);
    const tookMs = performance.now() - started;
    console.log(`cascade of ${treeIds.size - 1} descendants on ${engine}: ${tookMs.toFixed(0)} ms`);
    expect(res.token!.state).toBe(TokenState.REVOKED);
    expect(res.cascadeRevokedCount).toBe(treeIds.size - 1);
    expect(res.dryRunTokenIds).toEqual([]);

    // Every token of the tree revoked: the root by RevokeToken, every descendant by the cascade.
    const states = (await a.rotor.store
      .knex('tokens')
      .where('owner_id', 'tree')
      .select('id', 'revoke_reason', 'cascade_revoked_at')) as {
      id: string;
      revoke_reason: string | null;
      cascade_revoked_at: unknown;
    }[];
    const inTree = states.filter((r) => treeIds.has(r.id));
    expect(inTree).toHaveLength(treeIds.size);
    for (const r of inTree) {
      expect(r.revoke_reason).toBe(r.id === root.id ? 'revoked' : 'cascade');
      expect(r.cascade_revoked_at).not.toBeNull();
    }
    expect(states.find((r) => r.id === outside.id)?.revoke_reason).toBeNull();
    // One event per token: `revoked` for the root, `family_revoked` (cascade) for each descendant.
    const cascadeEvents = (await a.rotor.store
      .knex('token_events')
      .where({ type: 'family_revoked', reason: 'cascade' })
      .select('token_id')) as { token_id: string }[];
    expect(cascadeEvents).toHaveLength(treeIds.size - 1);
    expect(new Set(cascadeEvents.map((e) => e.token_id))).toEqual(new Set([...treeIds].filter((id) => id !== root.id)));
    expect(await events()).toBe(eventsBefore + treeIds.size);

    // No descendant authenticates, on this replica right away ...
    for (const t of sample) expect(await authenticates(api, t)).toBe(false);
    expect((await api.introspectToken({ token: jwt }, a.adminSecret)).active).toBe(false);
    const f = await failure(api.getToken({ id: level4[0]!.id }, level4[0]!.secret));
    expect(f.rawMessage).toMatch(/^bearer token has been revoked: an ancestor was revoked with cascade at /);
    expect(await authenticates(api, outside)).toBe(true);
    // ... and on the other replica, whose 60 s cache only the NOTIFYs cleared.
    if (apiB) {
      for (const t of sample) expect(await authenticates(apiB, t)).toBe(false);
      expect(await authenticates(apiB, outside)).toBe(true);
    }
    // The statement timeout (2 s) was never hit.
    for (const s of [a, b]) {
      if (!s) continue;
      expect(s.logs.filter((l) => /database unavailable|statement timeout|canceling statement/i.test(l))).toEqual([]);
    }
  });

  it(`a cascade stopped after its first transaction already shuts every descendant out; running it again finishes it on ${engine}`, async () => {
    const p = await create(a.adminSecret, 'p');
    const c = await create(p.secret, 'c', 1);
    const g = await create(c.secret, 'g', 2);
    const jwt = await jwtOf(g);
    for (const t of [p, c, g]) expect(await authenticates(api, t)).toBe(true);
    if (apiB) for (const t of [c, g]) expect(await authenticates(apiB, t)).toBe(true);
    // What the cascade's first transaction commits (the root's mark), and no batch after it.
    await a.rotor.store.transaction((tx) => tx.tokens.markCascade({ ids: [p.id] }, a.clock.now()));
    // Let the other replica hear of it (its event-less change travels by the cache TTL or the next NOTIFY).
    const pFamily = (await api.getToken({ id: p.id }, a.adminSecret)).token!.familyId;
    await a.rotor.store.transaction((tx) =>
      tx.events.append([
        {
          type: 'revoked',
          tokenId: p.id,
          familyId: pFamily,
          successorId: null,
          actor: 'test',
          peer: null,
          reason: 'revoked',
          occurredAt: a.clock.now(),
        },
      ]),
    );
    for (const t of [c, g]) {
      expect(await authenticates(api, t)).toBe(false);
      expect((await api.introspectToken({ token: t.secret }, a.adminSecret)).active).toBe(false);
      expect((await api.getToken({ id: t.id }, a.adminSecret)).token!.state).toBe(TokenState.ACTIVE);
    }
    const rot = await failure(api.rotateToken({ idempotencyKey: newKey() }, g.secret));
    expect(rot.code).toBe(Code.Unauthenticated);
    expect(rot.rawMessage).toMatch(/an ancestor was revoked with cascade/);
    expect((await api.introspectToken({ token: jwt }, a.adminSecret)).active).toBe(false);
    if (apiB) {
      const deadline = Date.now() + 10_000;
      while (await authenticates(apiB, g)) {
        if (Date.now() > deadline) throw new Error('replica B still accepts a descendant after 10 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(await authenticates(apiB, c)).toBe(false);
    }
    const done = await api.revokeToken({ id: p.id, cascade: true }, a.adminSecret);
    expect(done.cascadeRevokedCount).toBe(2);
    for (const t of [c, g])
      expect((await api.getToken({ id: t.id }, a.adminSecret)).token!.revokeReason).toBe('cascade');
  });

  it(`reuse detection revokes with cascade on ${engine}`, async () => {
    const p = await create(a.adminSecret, 'reused');
    const p2 = await rotate(p.secret);
    const child = await create(p2.secret, 'child of the successor', 2);
    const grandchild = await create(child.secret, 'grandchild', 3);
    a.clock.advance(11_000); // past the 10 s reuse grace
    const reuse = await failure(api.rotateToken({}, p.secret));
    expect(reuse.code).toBe(Code.PermissionDenied);
    for (const t of [p2, child, grandchild]) expect(await authenticates(api, t)).toBe(false);
    expect((await api.getToken({ id: child.id }, a.adminSecret)).token!.revokeReason).toBe('cascade');
    expect((await api.getToken({ id: grandchild.id }, a.adminSecret)).token!.revokeReason).toBe('cascade');
  });

  it(`RevokeFamily with cascade and dry_run on ${engine}`, async () => {
    const f1 = await create(a.adminSecret, 'family');
    const f2 = await rotate(f1.secret);
    const child = await create(f2.secret, 'child', 2);
    const fam = (await api.getToken({ id: f1.id }, a.adminSecret)).token!.familyId;
    const dry = await api.revokeFamily({ familyId: fam, cascade: true, dryRun: true }, a.adminSecret);
    expect(dry.revokedCount).toBe(2);
    expect(dry.cascadeRevokedCount).toBe(1);
    expect(new Set(dry.dryRunTokenIds)).toEqual(new Set([f1.id, f2.id, child.id]));
    expect(await authenticates(api, child)).toBe(true);
    const res = await api.revokeFamily({ familyId: fam, cascade: true }, a.adminSecret);
    expect(res.revokedCount).toBe(2);
    expect(res.cascadeRevokedCount).toBe(1);
    expect(await authenticates(api, child)).toBe(false);
    // Without cascade a child stays: lineage only matters when asked for.
    const g1 = await create(a.adminSecret, 'plain');
    const gChild = await create(g1.secret, 'plain child', 1);
    await api.revokeToken({ id: g1.id }, a.adminSecret);
    expect(await authenticates(api, gChild)).toBe(true);
  });

  it(`rotor token revoke --cascade [--dry-run] on ${engine}`, async () => {
    const p = await create(a.adminSecret, 'cli');
    const c = await create(p.secret, 'cli child', 1);
    const env = { ROTOR_SERVER: a.httpUrl, ROTOR_TOKEN: a.adminSecret };
    const dry = await runCli(['token', 'revoke', p.id, '--cascade', '--dry-run', '--json'], env);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    const out = JSON.parse(dry.stdout) as { cascade_revoked_count: number; dry_run_token_ids: string[] };
    expect(out.cascade_revoked_count).toBe(1);
    expect(out.dry_run_token_ids).toEqual([p.id, c.id]);
    expect(await authenticates(api, c)).toBe(true);
    const real = await runCli(['token', 'revoke', p.id, '--cascade'], env);
    expect(real.code).toBe(0);
    expect(real.stdout).toMatch(/cascade\s+1 descendant tokens revoked/);
    expect(await authenticates(api, c)).toBe(false);
  });
});
