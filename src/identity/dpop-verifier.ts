import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, importJWK, type JWK } from 'jose';
import type { DpopProofCheck, DpopVerifier, VerifiedProof } from '../app/dpop-port.js';
import {
  DPOP_SKEW_SECONDS,
  MAX_PROOF_CHARS,
  badProof,
  checkProofClaims,
  checkProofHeader,
} from '../domain/dpop-proof.js';
import type { DpopNonces } from '../domain/dpop-nonce.js';
import { RotorError } from '../domain/errors.js';
import { RecentMap } from '../domain/recent-map.js';
import type { Clock, ReplayCache } from '../domain/ports.js';

/** How many proof keys a verifier keeps imported (each a few hundred bytes). */
const KEY_CACHE_ENTRIES = 4096;

/** DPoP settings (`ROTOR_DPOP_MAX_AGE_SECONDS`, `ROTOR_DPOP_NONCE`). */
export interface DpopSettings {
  maxAgeSeconds: number;
  /** Set when nonces are on. */
  nonces: DpopNonces | undefined;
}

/**
 * Verifies DPoP proofs with jose (RFC 9449 §4.3): the key-free checks of src/domain/dpop-proof.ts,
 * the signature with the header's own key, the nonce, then the `jti` in the replay cache shared
 * through the database (the `workload_jtis` table, under a key of its own), so a proof accepted
 * by one replica is refused by every other.
 */
export class JoseDpopVerifier implements DpopVerifier {
  /**
   * Imported keys and their thumbprints by the exact `alg` and `jwk` header a proof carried: a
   * holder signs every proof with the same key, and importing it (about 80 µs) and hashing it
   * (about 40 µs) cost more than checking the signature (bench/README.md, "DPoP key cache").
   * Public keys only; entries are added after their signature verified, the oldest leave first.
   */
  private readonly keys = new RecentMap<string, { key: Awaited<ReturnType<typeof importJWK>>; jkt: string }>({
    maxEntries: KEY_CACHE_ENTRIES,
  });

  constructor(
    private readonly replay: ReplayCache,
    private readonly now: Clock,
    private readonly settings: DpopSettings,
  ) {}

  async verify(check: DpopProofCheck): Promise<VerifiedProof> {
    const bad = (m: string) => badProof(m, check.credential);
    const proof = check.proof;
    if (proof.length > MAX_PROOF_CHARS) throw bad(`is longer than ${MAX_PROOF_CHARS} characters`);
    if (proof.split('.').length !== 3) throw bad('is not a signed JWT (JWS compact serialization)');
    let header: Record<string, unknown>;
    try {
      header = decodeProtectedHeader(proof) as Record<string, unknown>;
    } catch {
      throw bad('has an unreadable header');
    }
    const { alg, jwk } = rethrow(() => checkProofHeader(header), check.credential);
    // The header as it was sent (member order included): the same text is the same key.
    const cacheKey = `${alg}\n${JSON.stringify(jwk)}`;
    const cached = this.keys.get(cacheKey);
    let key: Awaited<ReturnType<typeof importJWK>>;
    if (cached !== undefined) key = cached.key;
    else {
      try {
        key = await importJWK(jwk as JWK, alg);
      } catch {
        throw bad(`jwk is not a usable ${alg} public key`);
      }
    }
    let payload: Record<string, unknown>;
    try {
      const verified = await compactVerify(proof, key, { algorithms: [alg] });
      payload = JSON.parse(new TextDecoder().decode(verified.payload)) as Record<string, unknown>;
    } catch {
      throw bad('signature does not verify with its jwk');
    }
    let jkt = cached?.jkt;
    if (jkt === undefined) {
      try {
        jkt = await calculateJwkThumbprint(jwk as JWK, 'sha256');
      } catch {
        throw bad(`jwk is not a usable ${alg} public key`);
      }
    }
    if (cached === undefined) this.keys.set(cacheKey, { key, jkt });
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload))
      throw bad('payload is not a JSON object');
    const now = this.now();
    const claims = rethrow(
      () =>
        checkProofClaims(payload, {
          htm: check.htm,
          htus: check.htus,
          ath: check.ath,
          athRequired: check.athRequired,
          now,
          maxAgeSeconds: this.settings.maxAgeSeconds,
        }),
      check.credential,
    );
    const nonces = this.settings.nonces;
    if (nonces !== undefined && (claims.nonce === undefined || !nonces.accepts(claims.nonce, now))) {
      throw new RotorError(
        'use_dpop_nonce',
        claims.nonce === undefined
          ? 'DPoP proof must carry the server nonce: retry with the one in DPoP-Nonce'
          : 'DPoP proof carries a stale nonce: retry with the one in DPoP-Nonce',
        { dpopNonce: nonces.current(now), ...(check.credential && { dpopCredential: true }) },
      );
    }
    const jtiDigest = createHash('sha256').update(`dpop\n${jkt}\n${claims.jti}`).digest('hex');
    // Kept as long as a proof with this iat could still be accepted.
    const keepUntil = Math.max(claims.iat * 1000, now) + (this.settings.maxAgeSeconds + DPOP_SKEW_SECONDS) * 1000;
    const first = await this.replay.consume({ jtiDigest, expiresAt: keepUntil, retryKeyDigest: undefined }, now);
    if (!first) throw bad('jti has been used before (replay): make a fresh proof for every request');
    return { jkt };
  }

  /** The nonce to hand out now, when nonces are on. */
  nonce(): string | undefined {
    return this.settings.nonces?.current(this.now());
  }
}

/** Re-raises a domain check's error marked as the caller's credential when it is one. */
function rethrow<T>(check: () => T, credential: boolean): T {
  try {
    return check();
  } catch (e) {
    if (credential && e instanceof RotorError && e.code === 'invalid_dpop_proof')
      throw new RotorError(e.code, e.message, { ...e.details, dpopCredential: true });
    throw e;
  }
}
