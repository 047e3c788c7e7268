import type { Knex } from 'knex';
import type { ReplayCache } from '../domain/ports.js';

interface JtiRow {
  jti_digest: string;
  expires_at: number | string;
  retry_key_digest: string | null;
}

/** Expired rows are deleted at most this often. */
const PURGE_EVERY_MS = 60_000;

/**
 * The `workload_jtis` table as a ReplayCache: first use wins through the primary key, so two
 * replicas on one database cannot both accept the same JWT. Engine-neutral: the insert-or-ignore
 * returns the row only to the use that inserted it; a later use reads the stored retry key.
 */
export class KnexReplayCache implements ReplayCache {
  private lastPurge = 0;

  constructor(private readonly db: Knex) {}

  async consume(
    entry: { jtiDigest: string; expiresAt: number; retryKeyDigest: string | undefined },
    now: number,
  ): Promise<boolean> {
    if (now - this.lastPurge >= PURGE_EVERY_MS) {
      this.lastPurge = now;
      await this.db('workload_jtis').where('expires_at', '<=', now).delete();
    }
    const inserted = await this.db<JtiRow>('workload_jtis')
      .insert({
        jti_digest: entry.jtiDigest,
        expires_at: entry.expiresAt,
        retry_key_digest: entry.retryKeyDigest ?? null,
      })
      .onConflict('jti_digest')
      .ignore()
      .returning('jti_digest');
    if (inserted.length === 1) return true;
    if (entry.retryKeyDigest === undefined) return false;
    const row = await this.db<JtiRow>('workload_jtis').where({ jti_digest: entry.jtiDigest }).first();
    return row?.retry_key_digest === entry.retryKeyDigest;
  }
}
