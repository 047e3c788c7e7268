import type { Knex } from 'knex';
import type { JWK } from 'jose';
import type { SigningKeyRepository, StoredSigningKey } from '../app/signing-key-ring.js';

/** The `signing_keys` table row. */
interface SigningKeyRow {
  kid: string;
  alg: string;
  slot: number | string;
  public_jwk: string;
  private_key_sealed: string | null;
  created_at: number | string;
  not_before: number | string;
  retire_at: number | string;
  publish_until: number | string;
}

function toKey(row: SigningKeyRow): StoredSigningKey {
  return {
    kid: row.kid,
    alg: row.alg,
    slot: Number(row.slot),
    publicJwk: JSON.parse(row.public_jwk) as JWK,
    sealedPrivateKey: row.private_key_sealed,
    createdAt: Number(row.created_at),
    notBefore: Number(row.not_before),
    retireAt: Number(row.retire_at),
    publishUntil: Number(row.publish_until),
  };
}

/** knex repository of `signing_keys` (migrations/20261127_003_signing_keys.ts). */
export class KnexSigningKeyRepository implements SigningKeyRepository {
  constructor(private readonly db: Knex) {}

  async listPublished(now: number): Promise<StoredSigningKey[]> {
    const rows = await this.db<SigningKeyRow>('signing_keys').where('publish_until', '>', now).orderBy('slot', 'desc');
    return rows.map(toKey);
  }

  async findByKid(kid: string): Promise<StoredSigningKey | undefined> {
    const row = await this.db<SigningKeyRow>('signing_keys').where({ kid }).first();
    return row ? toKey(row) : undefined;
  }

  async maxSlot(): Promise<number> {
    const row = (await this.db('signing_keys').max({ m: 'slot' }).first()) as { m: number | string | null } | undefined;
    return row?.m == null ? -1 : Number(row.m);
  }

  /** `INSERT … ON CONFLICT (slot) DO NOTHING`: the loser of a race inserts nothing and re-reads. */
  async insertIfSlotFree(key: StoredSigningKey): Promise<boolean> {
    const rows = await this.db('signing_keys')
      .insert({
        kid: key.kid,
        alg: key.alg,
        slot: key.slot,
        public_jwk: JSON.stringify(key.publicJwk),
        private_key_sealed: key.sealedPrivateKey,
        created_at: key.createdAt,
        not_before: key.notBefore,
        retire_at: key.retireAt,
        publish_until: key.publishUntil,
      })
      .onConflict('slot')
      .ignore()
      .returning('kid');
    return rows.length > 0;
  }

  async extendPublication(kid: string, until: number): Promise<void> {
    await this.db('signing_keys').where({ kid }).andWhere('publish_until', '<', until).update({ publish_until: until });
  }

  async erasePrivateKeys(now: number): Promise<number> {
    return this.db('signing_keys')
      .where('publish_until', '<=', now)
      .whereNotNull('private_key_sealed')
      .update({ private_key_sealed: null });
  }
}
