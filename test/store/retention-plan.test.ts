/**
 * The retention job's statements (src/store/retention-statements.ts), exactly as the repositories
 * send them, EXPLAINed on every engine over tables whose rows are mostly not due: live tokens,
 * tokens that ended long ago and tokens revoked long ago that expire later, and a log of a few
 * events per token. Every access to `tokens` and `token_events` must go through an index (the
 * log through its primary key only); a full scan would read a whole table on every batch. The
 * last test drops the indexes on `tokens` and checks that the same inspection then reports the
 * full scan, so the check itself can fail.
 */
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase } from '../../src/store/database.js';
import {
  deleteEndedStatement,
  deleteEventRangeStatement,
  deleteEventsStatement,
  endedCandidatesStatement,
  eventPageStatement,
  keptEventsStatement,
  liveFamiliesStatement,
  lookAheadStatement,
  unrevokedTokensStatement,
  type RetentionStatement,
} from '../../src/store/retention-statements.js';
import { ENGINES, engineDatabase, type Engine, type ScratchDatabase } from '../support/engines.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 7);
const CUTOFF = NOW - 90 * DAY;
const ROWS = 20_000;

interface Access {
  table: 'tokens' | 'token_events';
  how: string;
}

const TABLES: Record<string, Access['table']> = {
  tokens: 'tokens',
  t: 'tokens',
  token_events: 'token_events',
  e: 'token_events',
};

/** SQLite's EXPLAIN QUERY PLAN: SEARCH reads a range of an index, SCAN without an index reads the table. */
async function sqliteAccesses(knex: Knex, s: RetentionStatement): Promise<{ accesses: Access[]; plan: string[] }> {
  const rows = (await knex.raw(`EXPLAIN QUERY PLAN ${s.sql}`, s.bindings)) as { detail: string }[];
  const plan = rows.map((r) => r.detail);
  const accesses: Access[] = [];
  for (const d of plan) {
    const m = /^(SEARCH|SCAN) (\w+)\b(?: USING (?:COVERING )?(INDEX (\S+)|INTEGER PRIMARY KEY))?/.exec(d);
    if (!m || !TABLES[m[2]!]) continue;
    const index = m[4] ?? (m[3] ? 'primary key' : undefined);
    accesses.push({ table: TABLES[m[2]!]!, how: m[1] === 'SEARCH' && index ? `index ${index}` : 'full scan' });
  }
  return { accesses, plan };
}

interface PgPlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PgPlanNode[];
}

/** PostgreSQL's EXPLAIN (FORMAT JSON), not executed: a Seq Scan reads the table. */
async function pgAccesses(knex: Knex, s: RetentionStatement): Promise<{ accesses: Access[]; plan: string[] }> {
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
    if ((relation === 'tokens' || relation === 'token_events') && n['Node Type'] !== 'ModifyTable') {
      let how = n['Index Name'] ? `index ${n['Index Name']}` : 'full scan';
      const bitmap =
        n['Node Type'] === 'Bitmap Heap Scan'
          ? n.Plans?.find((c) => c['Node Type'] === 'Bitmap Index Scan')
          : undefined;
      if (bitmap?.['Index Name']) how = `index ${bitmap['Index Name']}`;
      accesses.push({ table: relation, how });
    }
    for (const c of n.Plans ?? []) walk(c, depth + 1);
  };
  walk(result.rows[0]!['QUERY PLAN'][0].Plan, 0);
  return { accesses, plan };
}

/** ROWS live tokens, ROWS that expired a year ago, ROWS revoked long ago that expire later; three events each. */
async function seed(engine: Engine, knex: Knex): Promise<void> {
  const columns =
    'id, family_id, kind, owner_id, name, description, scopes, audiences, policy, created_at, expires_at, revoked_at, revoke_reason, secret_digest, display_prefix';
  const row = (prefix: string, expires: string, revoked: string) =>
    `SELECT '${prefix}' || i, '${prefix}f' || (i / 4), 'service_account', 'plan-owner', 'n', '', '[]', '[]', '{}', ${NOW - 400 * DAY} + i, ${expires}, ${revoked}, ${revoked === 'NULL' ? 'NULL' : "'rotated'"}, '${prefix}-digest-' || i, 'rtr_x'`;
  const kinds: [string, string, string][] = [
    ['live', `${NOW + 60 * DAY} + i * 1000`, 'NULL'],
    ['gone', `${NOW - 365 * DAY} + i * 1000`, 'NULL'],
    ['rev', `${NOW + 100 * DAY} + i * 1000`, `${NOW - 200 * DAY} + i * 1000`],
  ];
  for (const [prefix, expires, revoked] of kinds) {
    const select = row(prefix, expires, revoked);
    if (engine === 'postgres')
      await knex.raw(`INSERT INTO tokens (${columns}) ${select} FROM generate_series(1, ${ROWS}) AS g(i)`);
    else
      await knex.raw(
        `WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ${ROWS}) INSERT INTO tokens (${columns}) ${select} FROM g`,
      );
  }
  const events = 'type, token_id, family_id, actor, occurred_at, unique_key, threshold_seconds';
  for (const type of ['created', 'expiring_soon', 'expired']) {
    const key = type === 'created' ? 'NULL' : `'${type}:' || id`;
    await knex.raw(
      `INSERT INTO token_events (${events}) SELECT '${type}', id, family_id, 'admin', created_at, ${key}, NULL FROM tokens ORDER BY created_at`,
    );
  }
  await knex.raw('ANALYZE');
}

/**
 * A batch is a small part of a real table; here the tables hold 60,000 tokens, so batches of 100
 * keep that proportion (with 1,000 of 60,000 PostgreSQL rightly prefers reading the table).
 */
const BATCH = 100;
const families = Array.from({ length: BATCH }, (_, i) => `gonef${i}`);
const ids = Array.from({ length: BATCH }, (_, i) => `gone${i + 1}`);
const STATEMENTS: [string, () => RetentionStatement, Access['table'][]][] = [
  ['expired candidates, first batch', () => endedCandidatesStatement('expired', CUTOFF, undefined, BATCH), ['tokens']],
  [
    'expired candidates, after a cursor',
    () => endedCandidatesStatement('expired', CUTOFF, { at: NOW - 365 * DAY + 5_000_000, id: 'gone5000' }, BATCH),
    ['tokens'],
  ],
  ['revoked candidates, first batch', () => endedCandidatesStatement('revoked', CUTOFF, undefined, BATCH), ['tokens']],
  [
    'revoked candidates, after a cursor',
    () => endedCandidatesStatement('revoked', CUTOFF, { at: NOW - 200 * DAY + 5_000_000, id: 'rev5000' }, BATCH),
    ['tokens'],
  ],
  ['live families', () => liveFamiliesStatement(families, CUTOFF), ['tokens']],
  ['delete ended tokens', () => deleteEndedStatement(ids, CUTOFF), ['tokens']],
  ['event page', () => eventPageStatement(1000, BATCH), ['token_events']],
  ['look-ahead past expired events', () => lookAheadStatement(1000), ['token_events']],
  ['delete an event range', () => deleteEventRangeStatement(1000, 1000 + BATCH), ['token_events', 'tokens']],
  ['events kept below the mark', () => keptEventsStatement(50_000, 1000, BATCH), ['token_events']],
  ['their tokens still unrevoked', () => unrevokedTokensStatement(ids), ['tokens']],
  [
    'delete released events',
    () => deleteEventsStatement(Array.from({ length: BATCH }, (_, i) => 1000 + 7 * i)),
    ['token_events'],
  ],
];

describe.each(ENGINES)('retention statements on %s', (engine) => {
  let db: ScratchDatabase;
  let knex: Knex;
  const accesses = (s: RetentionStatement) => (engine === 'postgres' ? pgAccesses(knex, s) : sqliteAccesses(knex, s));

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

  it.each(STATEMENTS)('%s: every table through an index, no full scan', async (_name, statement, tables) => {
    const { accesses: found, plan } = await accesses(statement());
    const text = plan.join('\n');
    for (const table of tables) expect(found.filter((a) => a.table === table).length, text).toBeGreaterThan(0);
    for (const a of found) expect(a.how, text).not.toBe('full scan');
    for (const a of found.filter((x) => x.table === 'token_events'))
      expect(a.how, text).toMatch(/^index (primary key|token_events_pkey)$/);
  });

  // Last: it drops the indexes the other tests rely on.
  it('control: without the indexes on tokens the same inspection reports a full scan', async () => {
    await knex.schema.alterTable('tokens', (t) => {
      t.dropIndex(['revoked_at', 'expires_at'], 'tokens_live_expiry');
      t.dropIndex(['expires_at']);
      t.dropIndex(['family_id']);
    });
    if (engine === 'postgres') await knex.raw('ANALYZE tokens');
    for (const [, statement] of STATEMENTS.slice(0, 5)) {
      const { accesses: found, plan } = await accesses(statement());
      expect(
        found.map((a) => a.how),
        plan.join('\n'),
      ).toContain('full scan');
    }
  });
});
