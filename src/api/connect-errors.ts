import { Code, ConnectError } from '@connectrpc/connect';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../app/logger-port.js';
import { dpopChallenge } from '../domain/dpop-proof.js';
import { isRotorError, type RotorErrorCode } from '../domain/errors.js';
import { encodeRetryInfo, RETRY_INFO_TYPE } from './retry-info.js';

/** The one mapping from domain error codes to Connect/gRPC codes (docs/rotation.md, Errors). */
export function connectCodeOf(code: RotorErrorCode): Code {
  switch (code) {
    case 'invalid_token':
    case 'token_expired':
    case 'token_revoked':
    case 'unauthenticated':
    case 'invalid_workload_token':
    case 'workload_proof_required':
    case 'invalid_dpop_proof':
    case 'use_dpop_nonce':
      return Code.Unauthenticated;
    case 'reuse_detected':
    case 'permission_denied':
    case 'insufficient_scope':
    case 'workload_mismatch':
      return Code.PermissionDenied;
    case 'already_rotated':
    case 'not_rotatable':
      return Code.FailedPrecondition;
    case 'not_found':
      return Code.NotFound;
    case 'revocation_unsupported':
      return Code.FailedPrecondition;
    case 'invalid_argument':
    case 'invalid_scope':
    case 'invalid_target':
    case 'unsupported_grant_type':
    case 'unsupported_token_type':
      return Code.InvalidArgument;
    case 'unavailable':
      return Code.Unavailable;
    case 'resource_exhausted':
    case 'rate_limited':
      return Code.ResourceExhausted;
    // As etcd answers a watch from a compacted revision: the position lies outside the log kept.
    case 'events_purged':
      return Code.OutOfRange;
  }
}

/**
 * Converts anything thrown by a handler into a ConnectError. Domain errors keep their (safe)
 * message; ConnectErrors pass through; anything else is logged with a reference and answered
 * with a generic Internal error, so no cause or secret reaches the client.
 */
export function toConnectError(e: unknown, log: Logger, where: string): ConnectError {
  if (isRotorError(e)) {
    const err = new ConnectError(e.message, connectCodeOf(e.code));
    err.metadata.set('rotor-error', e.code);
    if (e.details.successorId) err.metadata.set('rotor-successor-id', e.details.successorId);
    if (e.details.familyId) err.metadata.set('rotor-family-id', e.details.familyId);
    // A brake (docs/limits.md): the wait as a `retry-after` header and a google.rpc.RetryInfo detail.
    if (e.details.retryAfterSeconds !== undefined) {
      err.metadata.set('retry-after', String(e.details.retryAfterSeconds));
      err.details.push({ type: RETRY_INFO_TYPE, value: encodeRetryInfo(e.details.retryAfterSeconds) });
    }
    // RFC 9449 §7.1 and §8: the DPoP challenge, and the nonce to use next.
    if (e.code === 'invalid_dpop_proof' || e.code === 'use_dpop_nonce')
      err.metadata.set('www-authenticate', dpopChallenge(e.code, e.message));
    if (e.details.dpopNonce) err.metadata.set('dpop-nonce', e.details.dpopNonce);
    return err;
  }
  if (e instanceof ConnectError) return e;
  const ref = randomUUID();
  log.error('unexpected error', { where, ref, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  return new ConnectError(`internal error (ref ${ref})`, Code.Internal);
}
