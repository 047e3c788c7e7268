import type { Knex } from 'knex';
import type { Repositories, Store } from '../app/store-ports.js';
import { type DatabaseConfig, type Engine, migrate, openDatabase } from './database.js';
import { KnexEventRepository } from './event-repository.js';
import { KnexTokenRepository } from './token-repository.js';

function repositories(db: Knex | Knex.Transaction): Repositories {
  return { tokens: new KnexTokenRepository(db), events: new KnexEventRepository(db) };
}

/** The knex-backed Store: repositories on the pool, plus transactions. */
export class KnexStore implements Store {
  readonly tokens;
  readonly events;

  constructor(
    readonly knex: Knex,
    readonly engine: Engine,
  ) {
    const r = repositories(knex);
    this.tokens = r.tokens;
    this.events = r.events;
  }

  transaction<T>(work: (tx: Repositories) => Promise<T>): Promise<T> {
    return this.knex.transaction((trx) => work(repositories(trx)));
  }

  async close(): Promise<void> {
    await this.knex.destroy();
  }
}

/** Opens the database, applies migrations and returns the store. */
export async function openStore(config: DatabaseConfig): Promise<KnexStore> {
  const { knex, engine } = openDatabase(config);
  try {
    await migrate(knex);
  } catch (e) {
    await knex.destroy();
    throw e;
  }
  return new KnexStore(knex, engine);
}
