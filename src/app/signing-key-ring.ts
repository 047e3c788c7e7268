import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { SigningAlg } from '../domain/jwt-access-token.js';
import type { RandomSource } from '../domain/ports.js';
import {
  keyToCreate,
  publishedKeys,
  signingKeyAt,
  type KeyPlan,
  type KeySchedule,
  type SigningKeyMeta,
} from '../domain/signing-key-schedule.js';
import type { SigningKeySeal } from '../domain/signing-key-seal.js';
import type { Logger } from './logger-port.js';

/** A stored signing key: its schedule, public JWK and sealed private key (erased once unpublished). */
export interface StoredSigningKey extends SigningKeyMeta {
  publicJwk: JWK;
  sealedPrivateKey: string | null;
}

/** Storage of signing keys. Implementation: src/store/signing-key-repository.ts. */
export interface SigningKeyRepository {
  /** Keys still published at `now` (`publish_until > now`). */
  listPublished(now: number): Promise<StoredSigningKey[]>;
  findByKid(kid: string): Promise<StoredSigningKey | undefined>;
  /** The highest slot ever stored, -1 for none. */
  maxSlot(): Promise<number>;
  /** Inserts unless the slot is taken (another replica won); true when this row went in. */
  insertIfSlotFree(key: StoredSigningKey): Promise<boolean>;
  /** Raises `publish_until` to `until` if it is lower (a token outlives the planned window). */
  extendPublication(kid: string, until: number): Promise<void>;
  /** Erases the sealed private key of every key no longer published at `now`. */
  erasePrivateKeys(now: number): Promise<number>;
}

/** A key ready to sign with. */
export interface ActiveSigningKey {
  meta: SigningKeyMeta;
  privateKey: CryptoKey;
}

/**
 * The set of JWT signing keys: creates them on schedule (docs/jwt-access-tokens.md), caches the
 * decrypted current key, and serves the public keys for the JWKS and for verification. Every
 * decision is taken from the stored slot chain with the app clock, so replicas converge on the
 * same keys; the cache only saves database reads between the schedule's instants.
 */
export class SigningKeyRing {
  private keys: StoredSigningKey[] | undefined;
  private readonly privateKeys = new Map<string, CryptoKey>();
  private readonly publicKeys = new Map<string, CryptoKey>();
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly repo: SigningKeyRepository,
    private readonly seal: SigningKeySeal,
    private readonly schedule: KeySchedule,
    private readonly alg: SigningAlg,
    private readonly random: RandomSource,
    private readonly log: Logger,
  ) {}

  /** The key that signs at `now`, creating it (or pre-publishing its successor) when due. */
  async signingKey(now: number): Promise<ActiveSigningKey> {
    const meta = await this.currentKey(now);
    return { meta, privateKey: await this.privateKey(meta.kid) };
  }

  /** The key that signs at `now` (created or pre-published when due), without its private part. */
  private async currentKey(now: number): Promise<SigningKeyMeta> {
    if (
      this.keys === undefined ||
      keyToCreate(this.keys, this.maxCachedSlot(), now, this.schedule) !== undefined ||
      !signingKeyAt(this.keys, now)
    ) {
      await this.refresh(now);
    }
    const meta = signingKeyAt(this.keys ?? [], now);
    if (!meta) throw new Error('no signing key is current after a refresh');
    return meta;
  }

  /** The public keys published at `now` (RFC 7517 JWK Set), newest first. Never touches a private key. */
  async jwks(now: number): Promise<{ keys: JWK[] }> {
    await this.currentKey(now);
    const keys = await this.repo.listPublished(now);
    return { keys: publishedKeys(keys, now).map((k) => ({ ...k.publicJwk, kid: k.kid, alg: k.alg, use: 'sig' })) };
  }

  /** The public key of `kid` while it is published at `now`; undefined otherwise. */
  async verificationKey(kid: string, now: number): Promise<{ key: CryptoKey; meta: SigningKeyMeta } | undefined> {
    let meta: StoredSigningKey | undefined = this.keys?.find((k) => k.kid === kid);
    // Not cached, or cached as unpublished: another replica may have created or extended it.
    if (!meta || now >= meta.publishUntil) meta = await this.repo.findByKid(kid);
    if (!meta || now >= meta.publishUntil) return undefined;
    let key = this.publicKeys.get(kid);
    if (!key) {
      key = (await importJWK(meta.publicJwk, meta.alg)) as CryptoKey;
      this.publicKeys.set(kid, key);
    }
    return { key, meta };
  }

  /** Records that `meta` signed a token expiring at `exp` (ms), extending its publication if needed. */
  async signed(meta: SigningKeyMeta, exp: number): Promise<void> {
    if (exp <= meta.publishUntil) return;
    await this.repo.extendPublication(meta.kid, exp);
    meta.publishUntil = exp;
  }

  private maxCachedSlot(): number {
    return (this.keys ?? []).reduce((m, k) => Math.max(m, k.slot), -1);
  }

  /** One reload (and creation, when due) at a time per process. */
  private async refresh(now: number): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.reload(now).finally(() => {
        this.refreshing = undefined;
      });
    }
    await this.refreshing;
  }

  private async reload(now: number): Promise<void> {
    // The highest slot is read BEFORE the keys: a key another replica inserts in between is then
    // in `keys` (so no second "first key" is planned above it) or takes the slot this replica
    // plans (so its insert loses). Read the other way round, a replica could see no keys but the
    // new slot, and plan a competing key in the slot above it that also signs at once.
    const maxSlot = await this.repo.maxSlot();
    let keys = await this.repo.listPublished(now);
    const plan = keyToCreate(keys, maxSlot, now, this.schedule);
    if (plan) {
      await this.create(plan, now);
      keys = await this.repo.listPublished(now);
      const erased = await this.repo.erasePrivateKeys(now);
      if (erased > 0) this.log.info('erased private signing keys no longer published', { count: erased });
    }
    this.keys = keys;
    const live = new Set(keys.map((k) => k.kid));
    for (const kid of [...this.privateKeys.keys()]) if (!live.has(kid)) this.privateKeys.delete(kid);
    for (const kid of [...this.publicKeys.keys()]) if (!live.has(kid)) this.publicKeys.delete(kid);
  }

  private async create(plan: KeyPlan, now: number): Promise<void> {
    const pair = await generateKeyPair(this.alg, { extractable: true });
    const { kty, crv, x, y } = await exportJWK(pair.publicKey);
    const publicJwk: JWK = y === undefined ? { kty, crv, x } : { kty, crv, x, y };
    const kid = await calculateJwkThumbprint(publicJwk);
    const sealedPrivateKey = this.seal.seal(kid, JSON.stringify(await exportJWK(pair.privateKey)), this.random);
    const inserted = await this.repo.insertIfSlotFree({
      kid,
      alg: this.alg,
      slot: plan.slot,
      createdAt: now,
      notBefore: plan.notBefore,
      retireAt: plan.retireAt,
      publishUntil: plan.publishUntil,
      publicJwk,
      sealedPrivateKey,
    });
    if (inserted) {
      this.log.info('created JWT signing key', {
        kid,
        alg: this.alg,
        slot: plan.slot,
        not_before: new Date(plan.notBefore).toISOString(),
        retire_at: new Date(plan.retireAt).toISOString(),
      });
    }
  }

  private async privateKey(kid: string): Promise<CryptoKey> {
    const cached = this.privateKeys.get(kid);
    if (cached) return cached;
    const stored = this.keys?.find((k) => k.kid === kid) ?? (await this.repo.findByKid(kid));
    if (!stored?.sealedPrivateKey) throw new Error(`signing key ${kid} has no private key`);
    const jwk = JSON.parse(this.seal.open(kid, stored.sealedPrivateKey)) as JWK;
    const key = (await importJWK(jwk, stored.alg, { extractable: false })) as CryptoKey;
    this.privateKeys.set(kid, key);
    return key;
  }
}
