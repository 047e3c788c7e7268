import type { Knex } from 'knex';
import { KEY_ID_CHARS } from '../domain/server-keys.js';
import type { KeyUsage } from '../runtime/server-key-check.js';
import { asStoreError } from './database-errors.js';

/**
 * The `server_key` row (migrations 20261207_071_server_key_fingerprint and 20261208_051_server_key_ids):
 * the keyed fingerprint of the current server secret, and of the one the legacy rows were made
 * with; and what the rows depend on, by key id (src/runtime/server-key-check.ts, docs/server-key.md).
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

  /** The fingerprint of the secret the legacy rows (made before key ids) depend on; undefined when unknown. */
  async legacyFingerprint(): Promise<string | undefined> {
    return this.run(async () => {
      const row = (await this.db('server_key').where({ id: 1 }).first('legacy_fingerprint')) as
        | { legacy_fingerprint: string | null }
        | undefined;
      return row?.legacy_fingerprint ?? undefined;
    });
  }

  /**
   * Stores `fingerprint` (as the current key and as the legacy rows' key) unless a row exists
   * (`ON CONFLICT DO NOTHING`: two replicas starting together on a new database), then returns the
   * one stored, which may be the other's.
   */
  async adopt(fingerprint: string, now: number): Promise<string> {
    return this.run(async () => {
      await this.db('server_key')
        .insert({ id: 1, fingerprint, legacy_fingerprint: fingerprint, created_at: now })
        .onConflict('id')
        .ignore();
      const stored = await this.fingerprint();
      if (stored === undefined) throw new Error('server_key row missing after insert');
      return stored;
    });
  }

  /** Records `fingerprint` as the current key's (a replica started with a new current key). */
  async record(fingerprint: string): Promise<void> {
    await this.run(() => this.db('server_key').where({ id: 1 }).update({ fingerprint }));
  }

  /** Some stored JWT signing key whose private half is still sealed in the database, if any. */
  async someSealedSigningKey(): Promise<{ kid: string; sealed: string } | undefined> {
    return (await this.sealedSigningKeys(1))[0];
  }

  /** The signing keys whose private half is still sealed in the database, newest first. */
  async sealedSigningKeys(limit = 1000): Promise<{ kid: string; sealed: string }[]> {
    return this.run(async () => {
      const rows = (await this.db('signing_keys')
        .whereNotNull('private_key_sealed')
        .orderBy('slot', 'desc')
        .limit(limit)
        .select('kid', 'private_key_sealed')) as { kid: string; private_key_sealed: string }[];
      return rows.map((r) => ({ kid: r.kid, sealed: r.private_key_sealed }));
    });
  }

  /** Replaces a sealed private key by its re-sealing, only while the row still holds `from`. */
  async replaceSealed(kid: string, from: string, to: string): Promise<boolean> {
    return this.run(
      async () =>
        (await this.db('signing_keys').where({ kid, private_key_sealed: from }).update({ private_key_sealed: to })) ===
        1,
    );
  }

  /**
   * How many stored digests and sealed keys each server key made, by the key id they start with
   * (legacy ones, without a key id, under `undefined`), split into the rows a client still relies
   * on and ended ones (src/runtime/server-key-check.ts, `KeyUsage`): one scan of each table.
   */
  async keyUsage(now: number, retryWindowMs: number): Promise<KeyUsage[]> {
    return this.run(async () => {
      const byKey = new Map<string, KeyUsage>();
      const entry = (id: string) => {
        let e = byKey.get(id);
        if (!e) {
          e = { keyId: id === '' ? undefined : id, tokens: 0, retryKeys: 0, signingKeys: 0, ended: 0 };
          byKey.set(id, e);
        }
        return e;
      };
      const pg = (this.db.client as { dialect?: string }).dialect === 'postgresql';
      const overlapMs = pg
        ? "coalesce(((policy::json)->>'overlapSeconds')::bigint, 0) * 1000"
        : "coalesce(cast(json_extract(policy, '$.overlapSeconds') as integer), 0) * 1000";
      const rotatedAt = 'coalesce(rotated_at, revoked_at)';
      // Usable now: unrevoked and unexpired, or rotated and still inside its overlap window.
      const liveToken =
        `expires_at > ${now} and (revoked_at is null or (revoke_reason = 'rotated' and overlap_ended_at is null ` +
        `and ${rotatedAt} + ${overlapMs} > ${now}))`;
      // Answered by an idempotent retry only inside the retry window.
      const liveRetry = `${rotatedAt} > ${now - retryWindowMs}`;
      const count = async (
        table: string,
        column: string,
        version: string,
        live: string,
        field: 'tokens' | 'retryKeys' | 'signingKeys',
      ) => {
        // A key id is the KEY_ID_CHARS characters after the version prefix, followed by a dot;
        // base64url (a legacy digest) never contains one.
        const at = version.length + 1;
        const rows = rowsOf<{ key_id: string; live: number | string; n: number | string }>(
          await this.db.raw(
            `select case when substr(${column}, 1, ${version.length}) = ? and substr(${column}, ${at + KEY_ID_CHARS}, 1) = '.' ` +
              `then substr(${column}, ${at}, ${KEY_ID_CHARS}) else '' end as key_id, ` +
              `case when ${live} then 1 else 0 end as live, count(*) as n ` +
              `from ${table} where ${column} is not null group by 1, 2`,
            [version],
          ),
        );
        for (const r of rows) {
          const e = entry(r.key_id);
          if (Number(r.live) === 1) e[field] += Number(r.n);
          else e.ended += Number(r.n);
        }
      };
      await count('tokens', 'secret_digest', '', liveToken, 'tokens');
      await count('tokens', 'rotation_key_digest', '', liveRetry, 'retryKeys');
      await count('signing_keys', 'private_key_sealed', 'v2.', '1 = 1', 'signingKeys');
      return [...byKey.values()];
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

/** Rows of a raw SELECT, on either driver. */
function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}
