/**
 * The fast path's rotation commit on the driver itself: the statements of
 * `rotation-statements.ts` in one transaction on a pooled connection, prepared once per
 * connection, without knex's per-transaction and per-query machinery. A profile of `rotor serve`
 * under rotation load put that machinery (a knex instance per transaction, query compilation,
 * a fresh prepare per statement) at about a third of the main thread's time per rotation, and on
 * SQLite's single connection every microsecond the event loop spends between two statements of
 * one transaction holds up every other rotation (bench/README.md, "Rotation commit on the
 * driver"). The authoritative path (reuse, replay, lost races) stays on knex transactions and runs
 * the same SQL text.
 *
 * Errors leave as the driver raised them; `KnexStore.commitRotation` maps them like a knex
 * transaction's (`unavailable` for a lost database).
 */
import type { Knex } from 'knex';
import type { RotationCommit } from '../app/store-ports.js';
import type { Engine } from './database.js';
import {
  INSERT_TOKEN_SQL,
  MARK_ROTATED_SQL,
  eventValues,
  insertEventsSql,
  markRotatedValues,
  pgPlaceholders,
  tokenValues,
} from './rotation-statements.js';

/** The knex client methods that lend out a pooled connection. */
interface PoolClient {
  acquireConnection(): Promise<unknown>;
  releaseConnection(conn: unknown): Promise<void>;
}

/** What this module uses of a node-sqlite3 Database and Statement. */
interface SqliteStatement {
  all(params: unknown[], cb: (err: Error | null, rows: unknown[]) => void): void;
  finalize(cb?: () => void): void;
}
interface SqliteConnection {
  prepare(sql: string): SqliteStatement;
}

/** What this module uses of a pg Client. */
interface PgConnection {
  query(q: { name?: string; text: string; values?: unknown[] }): Promise<{ rows: unknown[] }>;
}

/** Statements already prepared on a SQLite connection (finalized by `close`). */
const sqliteStatements = new WeakMap<object, Map<string, SqliteStatement>>();

export class DirectRotationWriter {
  private readonly pool: PoolClient;
  private readonly prepared = new Set<SqliteStatement>();

  constructor(
    knex: Knex,
    private readonly engine: Engine,
  ) {
    this.pool = knex.client as PoolClient;
  }

  /** Runs the commit in one transaction; false when the compare-and-set lost (nothing written). */
  async commit(c: RotationCommit): Promise<boolean> {
    const conn = await this.pool.acquireConnection();
    try {
      return this.engine === 'postgres' ? await this.commitPg(conn as PgConnection, c) : await this.commitSqlite(conn as SqliteConnection, c);
    } finally {
      await this.pool.releaseConnection(conn);
    }
  }

  /**
   * SQLite: each statement is awaited before the next, except the two inserts (sent together).
   * A failed statement does not end a SQLite transaction, so COMMIT is sent only after both
   * inserts succeeded; anything else rolls back.
   */
  private async commitSqlite(conn: SqliteConnection, c: RotationCommit): Promise<boolean> {
    const run = (sql: string, values: unknown[]) =>
      new Promise<unknown[]>((resolve, reject) => this.sqliteStatement(conn, sql).all(values, (err, rows) => (err ? reject(err) : resolve(rows))));
    await run('BEGIN', []);
    try {
      const won = (await run(MARK_ROTATED_SQL, markRotatedValues(c.currentId, c.successor.id, c.rotationKeyDigest, c.now))).length === 1;
      if (won) {
        const settled = await Promise.allSettled([run(INSERT_TOKEN_SQL, tokenValues(c.successor)), run(insertEventsSql(c.events.length), eventValues(c.events))]);
        for (const s of settled) if (s.status === 'rejected') throw s.reason;
        await run('COMMIT', []);
      } else {
        await run('ROLLBACK', []);
      }
      return won;
    } catch (e) {
      await run('ROLLBACK', []).catch(() => undefined);
      throw e;
    }
  }

  private sqliteStatement(conn: SqliteConnection, sql: string): SqliteStatement {
    let byText = sqliteStatements.get(conn);
    if (!byText) sqliteStatements.set(conn, (byText = new Map()));
    let stmt = byText.get(sql);
    if (!stmt) {
      byText.set(sql, (stmt = conn.prepare(sql)));
      this.prepared.add(stmt);
    }
    return stmt;
  }

  /**
   * PostgreSQL: named prepared statements (pg prepares each once per connection), each awaited
   * before the next is sent (pg 8 deprecates queueing a query while another runs). A failed
   * statement aborts the transaction; the ROLLBACK ends it before the connection goes back.
   */
  private async commitPg(conn: PgConnection, c: RotationCommit): Promise<boolean> {
    await conn.query({ text: 'BEGIN' });
    try {
      const marked = await conn.query({ name: 'rotor_mark_rotated', text: PG_MARK_ROTATED, values: markRotatedValues(c.currentId, c.successor.id, c.rotationKeyDigest, c.now) });
      if (marked.rows.length !== 1) {
        await conn.query({ text: 'ROLLBACK' });
        return false;
      }
      await conn.query({ name: 'rotor_insert_token', text: PG_INSERT_TOKEN, values: tokenValues(c.successor) });
      await conn.query({ name: `rotor_insert_events_${c.events.length}`, text: pgPlaceholders(insertEventsSql(c.events.length)), values: eventValues(c.events) });
      await conn.query({ text: 'COMMIT' });
      return true;
    } catch (e) {
      await conn.query({ text: 'ROLLBACK' }).catch(() => undefined);
      throw e;
    }
  }

  /** Finalizes the SQLite statements prepared so far (before the pool closes its connection). */
  async close(): Promise<void> {
    const all = [...this.prepared];
    this.prepared.clear();
    await Promise.all(all.map((s) => new Promise<void>((resolve) => s.finalize(() => resolve()))));
  }
}

const PG_MARK_ROTATED = pgPlaceholders(MARK_ROTATED_SQL);
const PG_INSERT_TOKEN = pgPlaceholders(INSERT_TOKEN_SQL);
