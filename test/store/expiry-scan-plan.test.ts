/**
 * The expiry scheduler finds due work through an index on expiry, so its cost follows what is
 * due, not the table size. The scheduler's two statements, exactly as the repository
 * sends them (`expiringSoonStatement`, `expiredStatement`), are EXPLAINed on every engine over a
 * table whose rows are mostly not due: live tokens expiring far past the largest threshold, and
 * long-expired and revoked ones. Every access to `tokens` and to `token_events` must go through an
 * index; a full scan of either would read the whole table on every pass. The last test drops the
 * expiry indexes and checks that the same inspection then reports the full scan, so the check
 * itself can fail.
 */
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase } from '../../src/store/database.js';
import { expiredStatement, expiringSoonStatement, type ScheduledStatement } from '../../src/store/event-repository.js';
import { ENGINES, engineDatabase, type Engine, type ScratchDatabase } from '../support/engines.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 28);
/** Rows of each kind that are never due: enough that a full scan is the planner's bad choice. */
const ROWS = 20_000;
const DUE_SOON = 25;
const DUE_EXPIRED = 15;

/** How a plan reads a table: `index <name>` or `full scan`. */
interface Access {
  table: 'tokens' | 'token_events';
  how: string;
}

/** The accesses to `tokens` (alias t) and `token_events` (alias x) in SQLite's EXPLAIN QUERY PLAN. */
async function sqliteAccesses(knex: Knex, s: ScheduledStatement): Promise<{ accesses: Access[]; plan: string[] }> {
  const rows = (await knex.raw(`EXPLAIN QUERY PLAN ${s.sql}`, s.bindings)) as { detail: string }[];
  const plan = rows.map((r) => r.detail);
  const accesses: Access[] = [];
  for (const d of plan) {
    const m = /^(SEARCH|SCAN) (t|x)\b(?: USING (?:COVERING )?INDEX (\S+))?/.exec(d);
    if (!m) continue;
    accesses.push({ table: m[2] === 't' ? 'tokens' : 'token_events', how: m[3] ? `index ${m[3]}` : 'full scan' });
  }
  return { accesses, plan };
}

interface PgPlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PgPlanNode[];
}

/** The accesses to `tokens` and `token_events` in PostgreSQL's EXPLAIN (FORMAT JSON) (not executed). */
async function pgAccesses(knex: Knex, s: ScheduledStatement): Promise<{ accesses: Access[]; plan: string[] }> {
  const result = (await knex.raw(`EXPLAIN (FORMAT JSON) ${s.sql}`, s.bindings)) as {
    rows: { 'QUERY PLAN': [{ Plan: PgPlanNode }] }[];
  };
  const accesses: Access[] = [];
  const plan: string[] = [];
  const walk = (n: PgPlanNode, depth: number) => {
    plan.push(
      `${'  '.repeat(depth)}${n['Node Type']}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}${n['Index Name'] ? ` using ${n['Index Name']}` : ''}`,
    );
    const relation = n['Relation Name'];
    if (relation === 'tokens' || relation === 'token_events') {
      let how = 'full scan';
      if (n['Index Name']) how = `index ${n['Index Name']}`;
      // A bitmap heap scan reads the rows its bitmap index scan child found.
      const bitmap =
        n['Node Type'] === 'Bitmap Heap Scan'
          ? n.Plans?.find((c) => c['Node Type'] === 'Bitmap Index Scan')
          : undefined;
      if (bitmap?.['Index Name']) how = `index ${bitmap['Index Name']}`;
      if (n['Node Type'] !== 'ModifyTable') accesses.push({ table: relation, how });
    }
    for (const c of n.Plans ?? []) walk(c, depth + 1);
  };
  walk(result.rows[0]!['QUERY PLAN'][0].Plan, 0);
  return { accesses, plan };
}

/** ROWS far-future live tokens, ROWS long-expired live ones, ROWS revoked ones, and the few that are due. */
async function seed(engine: Engine, knex: Knex): Promise<void> {
  const columns =
    'id, family_id, kind, owner_id, name, description, scopes, audiences, policy, created_at, expires_at, revoked_at, revoke_reason, secret_digest, display_prefix';
  const row = (prefix: string, expires: string, revoked: string) =>
    `SELECT '${prefix}' || i, '${prefix}' || i, 'service_account', 'plan-owner', 'n', '', '[]', '[]', '{}', ${NOW - 400 * DAY}, ${expires}, ${revoked}, ${revoked === 'NULL' ? 'NULL' : "'revoked'"}, '${prefix}-digest-' || i, 'rtr_x'`;
  const kinds: [string, number, string, string][] = [
    // Live, expiring 60 days out and later: past every threshold (largest default 30 days).
    ['far', ROWS, `${NOW + 60 * DAY} + i * 1000`, 'NULL'],
    // Live but expired a year ago: before the EXPIRED look-back, never due again.
    ['old', ROWS, `${NOW - 365 * DAY} + i * 1000`, 'NULL'],
    // Revoked (rotated or revoked), expiring soon: their thresholds are moot.
    ['rev', ROWS, `${NOW + 1000} + i * 1000`, String(NOW - DAY)],
    ['soon', DUE_SOON, `${NOW + 3_600_000} + i * 1000`, 'NULL'],
    ['gone', DUE_EXPIRED, `${NOW - 3_600_000} + i * 1000`, 'NULL'],
  ];
  for (const [prefix, n, expires, revoked] of kinds) {
    const select = row(prefix, expires, revoked);
    if (engine === 'postgres')
      await knex.raw(`INSERT INTO tokens (${columns}) ${select} FROM generate_series(1, ${n}) AS g(i)`);
    else
      await knex.raw(
        `WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ${n}) INSERT INTO tokens (${columns}) ${select} FROM g`,
      );
  }
  // The log a table like that has: a `created` event per token, and keyed scheduler events.
  const events = 'type, token_id, family_id, actor, occurred_at, unique_key, threshold_seconds';
  const created = `SELECT 'created', id, family_id, 'admin', created_at, NULL, NULL FROM tokens`;
  const keyed = `SELECT 'expiring_soon', id, family_id, 'scheduler', ${NOW - 30 * DAY}, 'expiring_soon:' || id || ':2592000', 2592000 FROM tokens WHERE id LIKE 'old%'`;
  await knex.raw(`INSERT INTO token_events (${events}) ${created}`);
  await knex.raw(`INSERT INTO token_events (${events}) ${keyed}`);
  await knex.raw('ANALYZE');
}

const soonScan = (limit = 500) =>
  expiringSoonStatement({ thresholdSeconds: 2 * 86_400, from: NOW, to: NOW + 2 * DAY, now: NOW, limit });
const expiredScan = (limit = 500) => expiredStatement({ from: NOW - 30 * DAY, to: NOW, limit });

describe.each(ENGINES)('expiry scheduler statements on %s', (engine) => {
  let db: ScratchDatabase;
  let knex: Knex;
  const accesses = (s: ScheduledStatement) => (engine === 'postgres' ? pgAccesses(knex, s) : sqliteAccesses(knex, s));

  beforeAll(async () => {
    db = await engineDatabase(engine);
    knex = openDatabase({ url: db.url }).knex;
    await migrate(knex);
    await seed(engine, knex);
  }, 120_000);
  afterAll(async () => {
    await knex?.destroy();
    await db?.drop();
  });

  it.each([
    ['EXPIRING_SOON', soonScan],
    ['EXPIRED', expiredScan],
  ])(
    '%s: tokens through an index on expiry, token_events through its unique key; no full scan',
    async (_name, scan) => {
      const { accesses: found, plan } = await accesses(scan());
      const tokens = found.filter((a) => a.table === 'tokens');
      const events = found.filter((a) => a.table === 'token_events');
      expect(tokens.length, plan.join('\n')).toBeGreaterThan(0);
      expect(events.length, plan.join('\n')).toBeGreaterThan(0);
      for (const a of tokens) expect(a.how, plan.join('\n')).toMatch(/^index tokens_(live_expiry|expires_at_index)$/);
      for (const a of events) expect(a.how, plan.join('\n')).toBe('index token_events_unique_key');
      if (engine === 'sqlite') {
        // The index order is the statement's order: a batch stops at LIMIT instead of sorting every due row.
        expect(
          plan.some((d) => d.includes('TEMP B-TREE')),
          plan.join('\n'),
        ).toBe(false);
      }
    },
  );

  it('the statements write exactly the due rows, once', async () => {
    const run = async (s: ScheduledStatement) => {
      const r = (await knex.raw(s.sql, s.bindings)) as { rows?: unknown[] } | unknown[];
      return Array.isArray(r) ? r.length : (r.rows?.length ?? 0);
    };
    expect(await run(soonScan())).toBe(DUE_SOON);
    expect(await run(expiredScan())).toBe(DUE_EXPIRED);
    expect(await run(soonScan())).toBe(0);
    expect(await run(expiredScan())).toBe(0);
  });

  // Last: it drops the indexes the other tests rely on.
  it('control: without the expiry indexes the same inspection reports a full scan of tokens', async () => {
    await knex.schema.alterTable('tokens', (t) => {
      t.dropIndex(['revoked_at', 'expires_at'], 'tokens_live_expiry');
      t.dropIndex(['expires_at']);
    });
    if (engine === 'postgres') await knex.raw('ANALYZE tokens');
    for (const scan of [soonScan, expiredScan]) {
      const { accesses: found, plan } = await accesses(scan());
      expect(
        found.filter((a) => a.table === 'tokens').map((a) => a.how),
        plan.join('\n'),
      ).toContain('full scan');
    }
  });
});
