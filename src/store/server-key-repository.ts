import type { Knex } from 'knex';
import { asStoreError } from './database-errors.js';

/**
 * The `server_key` row (migration 20261207_071_server_key_fingerprint): the keyed fingerprint of
 * the server secret this database was created with, and a sealed JWT signing key to test a
 * secret against when the row is absent (src/runtime/server-key-check.ts).
 */
export class KnexServerKeyRepository {
  constructor(private readonly db: Knex) {}

  /** The stored fingerprint; undefined on a database that has none yet. */
  async fingerprint(): Promise<string | undefined> {
    return this.run(async () => {
      const row = (await this.db('server_key').where({ id: 1 }).first('fingerprint')) as
        | { fingerprint: string }
        | undefined;
      return row?.fingerprint;
    });
  }

  /**
   * Stores `fingerprint` unless a row exists (`ON CONFLICT DO NOTHING`: two replicas starting
   * together on a new database), then returns the one stored, which may be the other's.
   */
  async adopt(fingerprint: string, now: number): Promise<string> {
    return this.run(async () => {
      await this.db('server_key').insert({ id: 1, fingerprint, created_at: now }).onConflict('id').ignore();
      const stored = await this.fingerprint();
      if (stored === undefined) throw new Error('server_key row missing after insert');
      return stored;
    });
  }

  /** Some stored JWT signing key whose private half is still sealed in the database, if any. */
  async someSealedSigningKey(): Promise<{ kid: string; sealed: string } | undefined> {
    return this.run(async () => {
      const row = (await this.db('signing_keys')
        .whereNotNull('private_key_sealed')
        .orderBy('slot', 'desc')
        .first('kid', 'private_key_sealed')) as { kid: string; private_key_sealed: string } | undefined;
      return row === undefined ? undefined : { kid: row.kid, sealed: row.private_key_sealed };
    });
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      throw asStoreError(e);
    }
  }
}
