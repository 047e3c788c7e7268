/**
 * The fast path's rotation commit on the driver itself: the statements of
 * `rotation-statements.ts` in one transaction on a pooled connection, without knex's
 * per-transaction and per-query machinery (SQLite statements are prepared once per connection).
 * A profile of `rotor serve` under rotation load put that machinery (a knex instance per
 * transaction, query compilation, a fresh prepare per statement) at about a third of the main
 * thread's time per rotation, and on SQLite's single connection every microsecond the event loop
 * spends between two statements of one transaction holds up every other rotation (bench/README.md,
 * "Rotation commit on the driver"). The authoritative path (reuse, replay, lost races) stays on
 * knex transactions and runs the same SQL text.
 *
 * Errors leave as the driver raised them; `KnexStore.commitRotation` maps them like a knex
 * transaction's (`unavailable` for a lost database).
 */
import type { Knex } from 'knex';
import type { RotationCommit } from '../app/store-ports.js';
import type { NewTokenEvent } from '../domain/token-event.js';
import { RotorError } from '../domain/errors.js';
import type { Engine } from './database.js';
import { familyLockSql } from './family-lock.js';
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
  prepare(sql: string, cb: (err: Error | null) => void): SqliteStatement;
}

/** What this module uses of a pg Client. */
interface PgConnection {
  query(q: { text: string; values?: unknown[] }): Promise<{ rows: unknown[] }>;
}

/** What a commit did: whether the compare-and-set won, and the events it appended. */
export interface CommitOutcome {
  won: boolean;
  events: readonly NewTokenEvent[];
}

const LOST: CommitOutcome = { won: false, events: [] };

export class DirectRotationWriter {
  private readonly pool: PoolClient;
  /** Statements prepared (or being prepared) on each SQLite connection, by SQL text. */
  private readonly sqlite = new Map<object, Map<string, Promise<SqliteStatement>>>();
  private readonly running = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    knex: Knex,
    private readonly engine: Engine,
  ) {
    this.pool = knex.client as PoolClient;
  }

  /** Runs the commit in one transaction of its own; `won` is false when the compare-and-set lost (nothing written). */
  commit(c: RotationCommit): Promise<CommitOutcome> {
    if (this.closed)
      return Promise.reject(new RotorError('unavailable', 'server is shutting down; retry on another replica'));
    const run = this.run(c);
    this.running.add(run);
    const done = () => void this.running.delete(run);
    run.then(done, done);
    return run;
  }

  private async run(c: RotationCommit): Promise<CommitOutcome> {
    const conn = await this.pool.acquireConnection();
    try {
      return this.engine === 'postgres'
        ? await this.commitPg(conn as PgConnection, c)
        : await this.commitSqlite(conn as SqliteConnection, c);
    } finally {
      await this.pool.releaseConnection(conn);
    }
  }

  /**
   * SQLite: each statement is awaited before the next. A failed statement does not always end a
   * SQLite transaction (a constraint error does not; SQLITE_FULL, IOERR or NOMEM roll it back by
   * themselves), so nothing after a failure is sent, not even the second INSERT, which would
   * otherwise run in autocommit and commit alone; the ROLLBACK then ends whatever is left.
   */
  private async commitSqlite(conn: SqliteConnection, c: RotationCommit): Promise<CommitOutcome> {
    const run = async (sql: string, values: unknown[]) => {
      const stmt = await this.sqliteStatement(conn, sql);
      return new Promise<unknown[]>((resolve, reject) =>
        stmt.all(values, (err, rows) => (err ? reject(err) : resolve(rows))),
      );
    };
    await run('BEGIN', []);
    try {
      const now = c.clock();
      const won =
        (await run(MARK_ROTATED_SQL, markRotatedValues(c.currentId, c.successor.id, c.rotationKeyDigest, now)))
          .length === 1;
      if (!won) {
        await run('ROLLBACK', []);
        return LOST;
      }
      const events = c.events(now);
      await run(INSERT_TOKEN_SQL, tokenValues(c.successor));
      await run(insertEventsSql(events.length), eventValues(events));
      await run('COMMIT', []);
      return { won: true, events };
    } catch (e) {
      await run('ROLLBACK', []).catch(() => undefined);
      throw e;
    }
  }

  /** A statement prepared on `conn`, once; a failed prepare rejects (and is not kept). */
  private sqliteStatement(conn: SqliteConnection, sql: string): Promise<SqliteStatement> {
    let byText = this.sqlite.get(conn);
    if (!byText) {
      byText = new Map();
      this.sqlite.set(conn, byText);
    }
    let prepared = byText.get(sql);
    if (!prepared) {
      prepared = new Promise<SqliteStatement>((resolve, reject) => {
        const stmt: SqliteStatement = conn.prepare(sql, (err) => {
          if (!err) return resolve(stmt);
          byText.delete(sql);
          reject(err);
        });
      });
      byText.set(sql, prepared);
    }
    return prepared;
  }

  /**
   * PostgreSQL: BEGIN and the family's lock (src/store/family-lock.ts) in one simple-protocol round
   * trip, then unnamed parameterised statements, each awaited before the next is sent (pg 8
   * deprecates queueing a query while another runs). Unnamed, not named prepared statements: a
   * connection pooler in transaction mode (README, "Operating Rotor on PostgreSQL") may run the
   * next transaction on another server session, where a named statement would not exist. A failed
   * statement aborts the transaction; the ROLLBACK ends it before the connection goes back.
   */
  private async commitPg(conn: PgConnection, c: RotationCommit): Promise<CommitOutcome> {
    await conn.query({ text: `BEGIN; ${familyLockSql(c.successor.familyId)}` });
    try {
      const now = c.clock();
      const marked = await conn.query({
        text: PG_MARK_ROTATED,
        values: markRotatedValues(c.currentId, c.successor.id, c.rotationKeyDigest, now),
      });
      if (marked.rows.length !== 1) {
        await conn.query({ text: 'ROLLBACK' });
        return LOST;
      }
      const events = c.events(now);
      await conn.query({ text: PG_INSERT_TOKEN, values: tokenValues(c.successor) });
      await conn.query({ text: pgPlaceholders(insertEventsSql(events.length)), values: eventValues(events) });
      await conn.query({ text: 'COMMIT' });
      return { won: true, events };
    } catch (e) {
      await conn.query({ text: 'ROLLBACK' }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Refuses new commits, waits for the running ones (each ends with COMMIT or ROLLBACK), then
   * finalizes the SQLite statements, which must happen before the pool closes its connection.
   */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.running]);
    const all = [...this.sqlite.values()].flatMap((byText) => [...byText.values()]);
    this.sqlite.clear();
    await Promise.all(
      all.map((p) =>
        p.then(
          (s) => new Promise<void>((resolve) => s.finalize(() => resolve())),
          () => undefined,
        ),
      ),
    );
  }
}

const PG_MARK_ROTATED = pgPlaceholders(MARK_ROTATED_SQL);
const PG_INSERT_TOKEN = pgPlaceholders(INSERT_TOKEN_SQL);
