import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from 'jose';
import type { Logger } from '../app/logger-port.js';
import { RotorError } from '../domain/errors.js';
import type { Clock, ReplayCache } from '../domain/ports.js';
import type { WorkloadClaims } from '../domain/workload-binding.js';
import { IssuerKeySet } from './key-set.js';
import type { FederationRule, TrustConfig, TrustedIssuer } from './trust-config.js';

/** Which request parameter carried the JWT; error messages name it. */
export type WorkloadTokenField = 'actor_token' | 'subject_token';

export interface VerifyOptions {
  /**
   * Keyed digest of the request's idempotency key and the token it rotates: a retry of the same
   * rotation may present the same JWT again (docs/rotation.md rule 3); any other second use is a replay.
   */
  retryKeyDigest?: string;
}

/** Header parameters that would let the token choose its own keys (RFC 8725 §3.10). */
const KEY_HEADERS = ['jku', 'x5u', 'jwk'] as const;

/**
 * Verifies workload JWTs under RFC 8725: the issuer must be trusted, the algorithm on its
 * allow-list, the signature valid under the issuer's configured keys (never keys named by the
 * token: `jku`, `x5u` and `jwk` headers are refused), `aud` one of its audiences, `exp`/`nbf`
 * within the clock skew, `iat` no older than the max age, `typ` as configured, and the `jti`
 * unused. Errors are `invalid_workload_token` (or `unavailable` when the issuer's keys cannot be
 * fetched); their messages never contain the JWT.
 */
export class WorkloadVerifier {
  private readonly keySets = new Map<string, IssuerKeySet>();

  constructor(
    readonly trust: TrustConfig,
    private readonly replay: ReplayCache,
    private readonly now: Clock,
    log: Logger,
  ) {
    for (const issuer of trust.issuers) this.keySets.set(issuer.issuer, new IssuerKeySet(issuer, now, log));
  }

  /** The audiences accepted from a configured issuer; undefined for an untrusted one. */
  issuerAudiences(issuer: string): readonly string[] | undefined {
    return this.trust.issuers.find((i) => i.issuer === issuer)?.audiences;
  }

  get federation(): readonly FederationRule[] {
    return this.trust.federation;
  }

  async verify(jwt: string, field: WorkloadTokenField, opts: VerifyOptions = {}): Promise<WorkloadClaims> {
    const bad = (message: string) => new RotorError('invalid_workload_token', `${field} ${message}`, { field });
    const { header, issuer } = this.preflight(jwt, bad);
    const skew = issuer.clockSkewSeconds;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(jwt, this.keySets.get(issuer.issuer)!.getKey, {
        issuer: issuer.issuer,
        audience: issuer.audiences,
        algorithms: issuer.algorithms,
        clockTolerance: skew,
        maxTokenAge: issuer.maxTokenAgeSeconds,
        currentDate: new Date(this.now()),
        typ: issuer.typ,
        requiredClaims: ['sub', 'exp', 'iat', ...(issuer.requireJti ? ['jti'] : [])],
      }));
    } catch (e) {
      throw joseFailure(e, bad, header.alg);
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw bad('has no subject (sub)');
    const jti = typeof payload.jti === 'string' && payload.jti.length > 0 ? payload.jti : undefined;
    const exp = payload.exp! * 1000;
    if (jti !== undefined) {
      const jtiDigest = createHash('sha256').update(`${issuer.issuer}\n${jti}`).digest('hex');
      const first = await this.replay.consume(
        { jtiDigest, expiresAt: exp + skew * 1000, retryKeyDigest: opts.retryKeyDigest },
        this.now(),
      );
      if (!first) throw bad('has been used before (jti replay): request a fresh JWT');
    }
    const aud = typeof payload.aud === 'string' ? [payload.aud] : (payload.aud ?? []);
    return { iss: issuer.issuer, sub: payload.sub, aud, exp, jti, claims: payload as Record<string, unknown> };
  }

  /** Checks that need no key: the compact form, `alg`, key-selecting headers, a trusted `iss`. */
  private preflight(jwt: string, bad: (m: string) => RotorError): { header: { alg?: string }; issuer: TrustedIssuer } {
    if (jwt.split('.').length !== 3) throw bad('is not a signed JWT (JWS compact serialization)');
    let header: Record<string, unknown>;
    let payload: JWTPayload;
    try {
      header = decodeProtectedHeader(jwt) as Record<string, unknown>;
      payload = decodeJwt(jwt);
    } catch {
      throw bad('is not a signed JWT (JWS compact serialization)');
    }
    if (typeof header.alg !== 'string' || header.alg.toLowerCase() === 'none')
      throw bad('is unsigned (alg none is not accepted)');
    for (const h of KEY_HEADERS) {
      if (header[h] !== undefined) throw bad(`carries a ${h} header: keys come only from the trust configuration`);
    }
    if (header.crit !== undefined) throw bad('carries a crit header, which is not supported');
    if (typeof payload.iss !== 'string') throw bad('has no issuer (iss)');
    const issuer = this.trust.issuers.find((i) => i.issuer === payload.iss);
    if (issuer === undefined) throw bad('is from an issuer that is not trusted');
    if (!issuer.algorithms.includes(header.alg))
      throw bad(`is signed with ${safeAlg(header.alg)}, which this issuer's algorithms do not allow`);
    return { header: { alg: header.alg }, issuer };
  }
}

/** jose's verification failures → one coded error each, naming the claim that failed. */
function joseFailure(e: unknown, bad: (m: string) => RotorError, alg: string | undefined): RotorError {
  if (e instanceof RotorError) return e;
  // jose reports a too-old `iat` (maxTokenAge) as JWTExpired with claim iat.
  if (e instanceof errors.JWTExpired)
    return e.claim === 'iat' ? bad('is too old or issued in the future (iat)') : bad('has expired (exp)');
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.reason === 'missing') return bad(`lacks the required ${e.claim} claim`);
    switch (e.claim) {
      case 'nbf':
        return bad('is not valid yet (nbf)');
      case 'iat':
        return bad('is too old or issued in the future (iat)');
      case 'aud':
        return bad('is not for an accepted audience (aud)');
      case 'iss':
        return bad('is from an issuer that is not trusted');
      case 'typ':
        return bad("has the wrong type (typ header): this issuer's tokens are accepted only with the configured typ");
      default:
        return bad(`fails the ${e.claim} check`);
    }
  }
  if (e instanceof errors.JOSEAlgNotAllowed)
    return bad(`is signed with ${safeAlg(alg)}, which this issuer's algorithms do not allow`);
  if (e instanceof errors.JWKSNoMatchingKey) return bad('names a key (kid) the issuer does not publish');
  if (e instanceof errors.JWKSMultipleMatchingKeys) return bad('names no kid and the issuer publishes several keys');
  if (e instanceof errors.JWSSignatureVerificationFailed) return bad('has an invalid signature');
  return bad('is not a valid JWT');
}

/** The token's `alg` for a message: only when it looks like an algorithm name. */
function safeAlg(alg: string | undefined): string {
  return alg !== undefined && /^[A-Za-z0-9+_-]{1,16}$/.test(alg) ? alg : 'an algorithm';
}
