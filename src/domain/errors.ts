/**
 * The closed set of failure codes the domain raises. Transports switch on `code`; exactly one
 * function per transport maps it (see src/api/connect-errors.ts and src/http/oauth-errors.ts).
 */
export type RotorErrorCode =
  /** Malformed, bad checksum or unknown token presented as a credential or subject. */
  | 'invalid_token'
  | 'token_expired'
  | 'token_revoked'
  /** A superseded token presented for rotation outside every grace rule: the family is revoked. */
  | 'reuse_detected'
  /** The immediate predecessor presented inside the reuse grace window; names the successor. */
  | 'already_rotated'
  /** Rotation by id of a token that is expired or revoked: nothing left to rotate. */
  | 'not_rotatable'
  /** The caller's own credentials are missing or not usable. */
  | 'unauthenticated'
  | 'permission_denied'
  /** RFC 6750 §3.1: a usable bearer that lacks the scope a resource needs (GET /metrics: `rotor:metrics`). */
  | 'insufficient_scope'
  | 'not_found'
  /** RFC 7009 §2.2.1: the presented token's type cannot be revoked (JWT access tokens). */
  | 'revocation_unsupported'
  | 'invalid_argument'
  /** Requested scopes are not a subset of the scopes held (RFC 6749 invalid_scope). */
  | 'invalid_scope'
  /** Requested audience/resource not acceptable (RFC 8693 invalid_target). */
  | 'invalid_target'
  | 'unsupported_grant_type'
  | 'unsupported_token_type'
  /** A workload JWT (actor or subject) failed verification: signature, alg, iss, aud, times, typ, replay. */
  | 'invalid_workload_token'
  /** A token with a workload binding was rotated without an actor JWT (docs/rotation.md rule 4). */
  | 'workload_proof_required'
  /** A verified workload JWT does not match the binding or any federation rule. */
  | 'workload_mismatch'
  /** A dependency (database, an issuer's JWKS or discovery endpoint) did not answer in time. */
  | 'unavailable'
  /**
   * A watcher fell too far behind (its bounded buffer overflowed; it resumes by sequence), or a
   * WatchExpiry stream would exceed a cap on open streams (src/domain/watch-stream-caps.ts).
   */
  | 'resource_exhausted'
  /**
   * A brake of docs/limits.md: too many failed authentications from the caller's peer, tokens
   * minted for one owner id, or rotations of one family in the current window. `retryAfterSeconds`
   * says when the window ends.
   */
  | 'rate_limited'
  /**
   * A watcher resumed after a sequence whose successors the retention job may have deleted
   * (ROTOR_RETENTION_DAYS): the replay would have a hole, so it starts again from a snapshot.
   */
  | 'events_purged'
  /**
   * RFC 9449 §5.1/§7.1: a DPoP proof is missing, malformed, badly signed, stale, replayed, made for
   * another request or by another key than the token is bound to; or a bound token was sent as
   * `Bearer`. A failed authentication: nothing was changed (docs/dpop.md).
   */
  | 'invalid_dpop_proof'
  /** RFC 9449 §8: nonces are on and the proof carries none or a stale one; `dpopNonce` is the fresh one. */
  | 'use_dpop_nonce';

/** Details that may accompany an error; never a secret. */
export interface RotorErrorDetails {
  successorId?: string;
  familyId?: string;
  field?: string;
  /** The caller sent no credentials at all (RFC 6750 §3.1: the challenge then names no error). */
  noCredentials?: boolean;
  /** `rate_limited`: whole seconds until the limit's window ends (Retry-After, RetryInfo). */
  retryAfterSeconds?: number;
  /** RFC 9449 §8: the nonce the client must put in its next DPoP proof (public, not a secret). */
  dpopNonce?: string;
  /** A DPoP failure of the caller's own credential (a call, not a token request): 401 on HTTP. */
  dpopCredential?: boolean;
}

/**
 * What a `RotorError` carries besides its message: the details, and apart from them the standard
 * `cause` (ES2022 `ErrorOptions`), the error it stands for. The cause is for the log only: no
 * transport sends it, and it never becomes part of `details`.
 */
export interface RotorErrorOptions extends RotorErrorDetails, ErrorOptions {}

/**
 * The one error class of the domain. Its message is safe to show to the caller: it never
 * contains a secret, and it is written for the client who sent the request. A translated
 * failure keeps what it translates as `cause` (`new RotorError('unavailable', message, { cause })`).
 */
export class RotorError extends Error {
  override readonly name = 'RotorError';
  readonly details: RotorErrorDetails;
  constructor(
    readonly code: RotorErrorCode,
    message: string,
    options: RotorErrorOptions = {},
  ) {
    const { cause, ...details } = options;
    super(message, 'cause' in options ? { cause } : undefined);
    this.details = details;
  }
}

/** Narrowing helper for catch blocks. */
export function isRotorError(e: unknown): e is RotorError {
  return e instanceof RotorError;
}
