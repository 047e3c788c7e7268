/**
 * The knex store on every engine: migrations (idempotent, safe when replicas start together),
 * the bootstrap race (docs/follow-ups.md), the translation of driver failures into `unavailable`,
 * and LISTEN/NOTIFY wake-ups across two knex instances (PostgreSQL).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapAdmin } from '../../src/app/bootstrap.js';
import type { AppContext } from '../../src/app/context.js';
import { RotorError } from '../../src/domain/errors.js';
import { loadConfig } from '../../src/runtime/config.js';
import { createLogger } from '../../src/runtime/logger.js';
import { createApp } from '../../src/runtime/server.js';
import { asStoreError, unavailableReason } from '../../src/store/database-errors.js';
import { MIGRATIONS, migrationSource } from '../../migrations/index.js';
import { migrate, openDatabase } from '../../src/store/database.js';
import type { KnexStore } from '../../src/store/knex-store.js';
import { listenForEvents, parseEventPayload } from '../../src/store/pg-notify.js';
import {
  ENGINES,
  TEST_POSTGRES_URL,
  describeOnPostgres,
  engineDatabase,
  scratchDatabase,
  type ScratchDatabase,
} from '../support/engines.js';
import { hostPortOf, startTcpProxy } from '../support/tcp-proxy.js';

const SECRET = 'eB9JVzUkBaz0yP0musfKTJUDW52WVQOBpoex/H9fXFs=';
const numOrNull = (v: unknown): number | null => (v === null ? null : Number(v));

async function appOn(url: string): Promise<AppContext & { store: KnexStore }> {
  const config = loadConfig({
    ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-store-data-')),
    ROTOR_DATABASE_URL: url,
    ROTOR_SECRET: SECRET,
  });
  return createApp(
    config,
    createLogger('error', () => undefined),
  );
}

describe.each(ENGINES)('knex store on %s', (engine) => {
  let db: { url: string; drop(): Promise<void> };
  beforeAll(async () => {
    db = await engineDatabase(engine);
  });
  afterAll(async () => db?.drop());

  it('migrations: two runners starting together both succeed, the second applies nothing, a third run applies nothing', async () => {
    const a = openDatabase({ url: db.url });
    const b = openDatabase({ url: db.url });
    try {
      const [ra, rb] = await Promise.allSettled([migrate(a.knex), migrate(b.knex)]);
      if (engine === 'postgres') {
        // The advisory lock queues the second runner instead of letting knex's lock fail it.
        expect(ra.status).toBe('fulfilled');
        expect(rb.status).toBe('fulfilled');
      } else {
        // SQLite: one process per database file is the supported setup; at least one runner finishes.
        expect([ra, rb].some((r) => r.status === 'fulfilled')).toBe(true);
      }
      const applied = [ra, rb].flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
      expect(applied).toContain('20261127_001_core');
      expect(new Set(applied).size).toBe(applied.length);
      expect(await migrate(a.knex)).toEqual([]);
    } finally {
      await a.knex.destroy();
      await b.knex.destroy();
    }
  });

  it('migration 20261207_081_rotated_at backfills rotated_at from revoked_at for rotated rows only', async () => {
    const old = await engineDatabase(engine);
    const { knex } = openDatabase({ url: old.url });
    try {
      const before = MIGRATIONS.findIndex(([name]) => name === '20261207_081_rotated_at');
      expect(before).toBeGreaterThan(0);
      await knex.migrate.latest({
        migrationSource: { ...migrationSource, getMigrations: async () => MIGRATIONS.slice(0, before) },
      });
      const row = (id: string, revokedAt: number | null, reason: string | null) => ({
        id,
        family_id: 'fam_backfill',
        previous_id: null,
        successor_id: null,
        kind: 'project',
        owner_id: 'o',
        name: 'n',
        description: '',
        scopes: '[]',
        audiences: '[]',
        policy: '{}',
        created_at: 1_000,
        expires_at: 9_000_000_000_000,
        last_used_at: null,
        revoked_at: revokedAt,
        overlap_ended_at: null,
        revoke_reason: reason,
        secret_digest: `digest-${id}`,
        display_prefix: 'rtr_prj_abcd',
        rotation_key_digest: null,
      });
      await knex('tokens').insert([
        row('tok_rotated', 1_700_000_000_123, 'rotated'),
        row('tok_revoked', 1_700_000_000_456, 'reuse_detected'),
        row('tok_active', null, null),
      ]);
      // It and every migration after it (later ones are listed after it as they are added).
      expect(await migrate(knex)).toEqual(MIGRATIONS.slice(before).map(([name]) => name));
      const rows = await knex('tokens').select('id', 'revoked_at', 'rotated_at').orderBy('id');
      expect(rows.map((r) => [r.id, numOrNull(r.revoked_at), numOrNull(r.rotated_at)])).toEqual([
        ['tok_active', null, null],
        ['tok_revoked', 1_700_000_000_456, null],
        ['tok_rotated', 1_700_000_000_123, 1_700_000_000_123],
      ]);
    } finally {
      await knex.destroy();
      await old.drop();
    }
  });

  it('rotation sets rotated_at (knex path); revoking the family moves revoked_at and keeps rotated_at', async () => {
    const app = await appOn(db.url);
    try {
      const tokens = app.store.tokens;
      const a = await bootstrapAdmin(app, { ownerId: `rotated-at-${engine}`, lifetimeSeconds: 3600 });
      const b = {
        ...a.record,
        id: `${a.record.id}b`,
        secretDigest: `${a.record.secretDigest}b`,
        previousId: a.record.id,
      };
      const rotatedAt = a.record.createdAt + 1_000;
      expect(await app.store.transaction(async (tx) => tx.tokens.markRotated(a.record.id, b.id, null, rotatedAt))).toBe(
        true,
      );
      await tokens.insert(b);
      expect(await tokens.findById(a.record.id)).toMatchObject({
        revokedAt: rotatedAt,
        rotatedAt,
        revokeReason: 'rotated',
      });
      const revokedAt = rotatedAt + 5_000;
      const ids = await app.store.transaction((tx) =>
        tx.tokens.revokeFamily(a.record.familyId, 'reuse_detected', revokedAt),
      );
      expect(ids.sort()).toEqual([a.record.id, b.id].sort());
      expect(await tokens.findById(a.record.id)).toMatchObject({
        revokedAt,
        rotatedAt,
        revokeReason: 'reuse_detected',
      });
      expect(await tokens.findById(b.id)).toMatchObject({ revokedAt, rotatedAt: null, revokeReason: 'reuse_detected' });
    } finally {
      await app.store.close();
    }
  });

  it('bootstrap race: 12 concurrent bootstraps over two independent stores, exactly one succeeds, the rest are refused', async () => {
    const race = await engineDatabase(engine);
    const apps = [await appOn(race.url), await appOn(race.url)];
    try {
      const settled = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) =>
          bootstrapAdmin(apps[i % 2]!, { ownerId: `admin-${i}`, lifetimeSeconds: 3600 }),
        ),
      );
      const ok = settled.filter((r) => r.status === 'fulfilled');
      expect(ok).toHaveLength(1);
      for (const r of settled) {
        if (r.status === 'fulfilled') continue;
        expect(r.reason).toBeInstanceOf(RotorError);
        const e = r.reason as RotorError;
        if (engine === 'postgres') {
          expect(e.code).toBe('permission_denied');
          expect(e.message).toBe('an active admin token already exists; bootstrap refused');
        } else {
          // SQLite: the losing process's stale write transaction fails with SQLITE_BUSY.
          expect(['permission_denied', 'unavailable']).toContain(e.code);
        }
      }
      const admins = await apps[0]!.store.tokens.list({ state: 'active' }, Date.now(), 100, undefined);
      expect(admins).toHaveLength(1);
    } finally {
      for (const a of apps) await a.store.close();
      await race.drop();
    }
  });
});

describe('driver failures become `unavailable`, other errors pass through', () => {
  it.each([
    [
      'ECONNREFUSED',
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      'connection',
    ],
    ['ECONNRESET', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'connection'],
    [
      '57P01 admin shutdown',
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      'connection',
    ],
    ['08006 connection failure', Object.assign(new Error('connection failure'), { code: '08006' }), 'connection'],
    [
      '57014 statement timeout',
      Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }),
      'timeout',
    ],
    ['connection terminated', new Error('Connection terminated unexpectedly'), 'connection'],
    ['query read timeout', new Error('Query read timeout'), 'timeout'],
    [
      'pool acquire timeout',
      Object.assign(new Error('Knex: Timeout acquiring a connection. The pool is probably full.'), {
        name: 'KnexTimeoutError',
      }),
      'timeout',
    ],
    ['SQLITE_BUSY', Object.assign(new Error('SQLITE_BUSY: database is locked'), { code: 'SQLITE_BUSY' }), 'busy'],
  ] as const)('%s → unavailable (%s)', (_name, err, reason) => {
    expect(unavailableReason(err)).toBe(reason);
    const mapped = asStoreError(err) as RotorError;
    expect(mapped).toBeInstanceOf(RotorError);
    expect(mapped.code).toBe('unavailable');
    expect(mapped.message).toMatch(/^database unavailable: .+; retry shortly$/);
    expect(mapped.message).not.toContain('5432');
    // The driver error stays reachable for the log, as the standard cause.
    expect(mapped.cause).toBe(err);
  });

  it('a driver error wrapped in another error is found through its cause, and kept whole', () => {
    const driver = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const wrapped = new Error('pool: could not create a connection', { cause: driver });
    expect(unavailableReason(wrapped)).toBe('connection');
    const mapped = asStoreError(wrapped) as RotorError;
    expect(mapped.code).toBe('unavailable');
    expect(mapped.cause).toBe(wrapped);
    expect(mapped.cause).toMatchObject({ cause: driver });
  });

  it.each([
    ['unique violation', Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' })],
    [
      'SQLITE_CONSTRAINT',
      Object.assign(new Error('SQLITE_CONSTRAINT: UNIQUE constraint failed'), { code: 'SQLITE_CONSTRAINT' }),
    ],
    ['syntax error', Object.assign(new Error('syntax error at or near'), { code: '42601' })],
    ['a domain error', new RotorError('not_found', 'token tok_x not found')],
  ])('%s passes through unchanged', (_name, err) => {
    expect(asStoreError(err)).toBe(err);
  });
});

describeOnPostgres('LISTEN/NOTIFY across two knex instances on postgres', () => {
  let db: ScratchDatabase;
  let writer: AppContext & { store: KnexStore };
  beforeAll(async () => {
    db = await scratchDatabase();
    writer = await appOn(db.url);
  });
  afterAll(async () => {
    await writer?.store.close();
    await db?.drop();
  });

  /** Appends one event through the writer's own pool and transaction. */
  async function appendEvent(tokenId: string): Promise<number> {
    await writer.store.transaction((tx) =>
      tx.events.append([
        {
          type: 'revoked',
          tokenId,
          familyId: 'fam_x',
          successorId: null,
          actor: 'test',
          peer: null,
          reason: 'revoked',
          occurredAt: Date.now(),
        },
      ]),
    );
    const [last] = (await writer.store.events.list({ tokenId }, 10)).slice(-1);
    return last!.sequence;
  }

  it('a committed event insert wakes a listener on another connection with its sequence; a rolled-back one does not', async () => {
    const woke: (number | undefined)[] = [];
    const ids: (readonly string[] | 'all' | undefined)[] = [];
    const listener = listenForEvents({
      url: db.url,
      onWake: (w) => {
        woke.push(w?.sequence);
        ids.push(w?.tokenIds);
      },
    });
    try {
      await listener.ready;
      expect(woke).toEqual([undefined]);
      const seq = await appendEvent('tok_notify_1');
      await waitFor(() => woke.includes(seq));
      await expect(
        writer.store.transaction(async (tx) => {
          await tx.events.append([
            {
              type: 'revoked',
              tokenId: 'tok_rolled_back',
              familyId: 'fam_x',
              successorId: null,
              actor: 'test',
              peer: null,
              reason: 'revoked',
              occurredAt: Date.now(),
            },
          ]);
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      const seq2 = await appendEvent('tok_notify_2');
      await waitFor(() => woke.includes(seq2));
      // Exactly: the connect wake-up, then the two committed inserts (the rolled-back one sent nothing).
      expect(woke).toEqual([undefined, seq, seq2]);
      expect(ids).toEqual([undefined, ['tok_notify_1'], ['tok_notify_2']]);
    } finally {
      await listener.close();
    }
  });

  it('an insert naming more tokens than one payload holds announces "*" (every cached row is dropped)', async () => {
    const wakes: (readonly string[] | 'all' | undefined)[] = [];
    const listener = listenForEvents({ url: db.url, onWake: (w) => wakes.push(w?.tokenIds) });
    try {
      await listener.ready;
      const many = Array.from({ length: 400 }, (_, i) => ({
        type: 'family_revoked' as const,
        tokenId: `tok_${String(i).padStart(40, '0')}`,
        familyId: 'fam_big',
        successorId: null,
        actor: 'test',
        peer: null,
        reason: 'family_revoked',
        occurredAt: Date.now(),
      }));
      await writer.store.transaction((tx) => tx.events.append(many));
      await waitFor(() => wakes.length === 2);
      expect(wakes).toEqual([undefined, 'all']);
    } finally {
      await listener.close();
    }
  });

  it('the listener reconnects after its connection is cut, wakes once on reconnect, and receives later events', async () => {
    const proxy = await startTcpProxy(hostPortOf(TEST_POSTGRES_URL!));
    const woke: (number | undefined)[] = [];
    const errors: string[] = [];
    const listener = listenForEvents({
      url: proxy.rewrite(db.url),
      onWake: (w) => woke.push(w?.sequence),
      onError: (e) => errors.push(e.message),
      maxBackoffMs: 200,
    });
    try {
      await listener.ready;
      proxy.cut();
      await waitFor(() => errors.length > 0);
      expect(listener.connected).toBe(false);
      // Sent while the listener is away: lost as a notification, which is why it wakes on reconnect.
      await appendEvent('tok_missed');
      proxy.restore();
      await waitFor(() => listener.connected && woke.filter((w) => w === undefined).length === 2);
      const seq = await appendEvent('tok_after');
      await waitFor(() => woke.includes(seq));
      expect(woke).toEqual([undefined, undefined, seq]);
    } finally {
      await listener.close();
      await proxy.close();
    }
  });
});

describe('NOTIFY payloads of the events channel', () => {
  it.each([
    ['41 tok_a', { sequence: 41, tokenIds: ['tok_a'] }],
    ['42 tok_a,tok_b', { sequence: 42, tokenIds: ['tok_a', 'tok_b'] }],
    ['43 *', { sequence: 43, tokenIds: 'all' }],
  ])('%s', (payload, wake) => {
    expect(parseEventPayload(payload)).toEqual(wake);
  });
  it.each(['', '42', 'x tok_a', '42 tok a', '99999999999999999999 tok_a'])(
    '%j is not understood (the caller then treats it as "all")',
    (payload) => {
      expect(parseEventPayload(payload)).toBeUndefined();
    },
  );
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
