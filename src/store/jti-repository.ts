import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import type { ReplayCache } from '../domain/ports.js';

interface JtiRow {
  jti_digest: string;
  expires_at: number | string;
  retry_key_digest: string | null;
  nonce: string;
}

/** Expired rows are deleted at most this often. */
const PURGE_EVERY_MS = 60_000;

/**
 * The `workload_jtis` table as a ReplayCache: first use wins through the primary key, so two
 * replicas on one database cannot both accept the same JWT. Engine-neutral: insert-or-ignore,
 * then read back whose nonce is stored.
 */
export class KnexReplayCache implements ReplayCache {
  private lastPurge = 0;

  constructor(private readonly db: Knex) {}

  async consume(entry: { jtiDigest: string; expiresAt: number; retryKeyDigest: string | undefined }, now: number): Promise<boolean> {
    if (now - this.lastPurge >= PURGE_EVERY_MS) {
      this.lastPurge = now;
      await this.db('workload_jtis').where('expires_at', '<=', now).delete();
    }
    const nonce = randomBytes(16).toString('hex');
    await this.db<JtiRow>('workload_jtis')
      .insert({ jti_digest: entry.jtiDigest, expires_at: entry.expiresAt, retry_key_digest: entry.retryKeyDigest ?? null, nonce })
      .onConflict('jti_digest')
      .ignore();
    const row = await this.db<JtiRow>('workload_jtis').where({ jti_digest: entry.jtiDigest }).first();
    if (row === undefined) return false;
    if (row.nonce === nonce) return true;
    return entry.retryKeyDigest !== undefined && row.retry_key_digest === entry.retryKeyDigest;
  }
}
