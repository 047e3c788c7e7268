import type { ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../app/logger-port.js';
import { dpopChallenge } from '../domain/dpop-proof.js';
import { isRotorError, type RotorErrorCode } from '../domain/errors.js';

/** An RFC 6749 §5.2 error code and the HTTP status it is sent with. */
export interface OAuthError {
  error: string;
  status: number;
}

/**
 * The one mapping from domain error codes to OAuth errors on HTTP (docs/rotation.md, Errors).
 * RFC 8693 §2.2.2: an invalid, expired or revoked subject token is `invalid_request`.
 * RFC 6750 §3.1: a missing or bad bearer credential is 401 `invalid_token`.
 */
function oauthErrorOf(code: RotorErrorCode): OAuthError {
  switch (code) {
    case 'invalid_token':
    case 'token_expired':
    case 'token_revoked':
    case 'reuse_detected':
    case 'already_rotated':
    case 'not_rotatable':
    case 'invalid_argument':
    case 'not_found':
    case 'unsupported_token_type':
    // RFC 8693 §2.2.2: an actor or subject token that fails validation is invalid_request.
    case 'invalid_workload_token':
    case 'workload_proof_required':
    case 'workload_mismatch':
    // Only WatchExpiry raises it, which has no OAuth endpoint; listed so the mapping stays total.
    case 'events_purged':
      return { error: 'invalid_request', status: 400 };
    case 'invalid_scope':
      return { error: 'invalid_scope', status: 400 };
    // RFC 9449 §5.1 and §8 (token requests); a call's own credential is 401 (sendOAuthError).
    case 'invalid_dpop_proof':
      return { error: 'invalid_dpop_proof', status: 400 };
    case 'use_dpop_nonce':
      return { error: 'use_dpop_nonce', status: 400 };
    case 'invalid_target':
      return { error: 'invalid_target', status: 400 };
    case 'unsupported_grant_type':
      return { error: 'unsupported_grant_type', status: 400 };
    case 'revocation_unsupported':
      return { error: 'unsupported_token_type', status: 400 };
    case 'permission_denied':
      return { error: 'unauthorized_client', status: 400 };
    case 'unauthenticated':
      return { error: 'invalid_token', status: 401 };
    case 'insufficient_scope':
      return { error: 'insufficient_scope', status: 403 };
    case 'unavailable':
    case 'resource_exhausted':
      return { error: 'temporarily_unavailable', status: 503 };
    // RFC 6585 §4: 429 with Retry-After (sendOAuthError adds it); RFC 6749 has no code of its own for it.
    case 'rate_limited':
      return { error: 'temporarily_unavailable', status: 429 };
  }
}

/** Writes a JSON body with the headers RFC 6749 §5.1 requires for token responses. */
export function sendJson(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json;charset=UTF-8',
    'cache-control': 'no-store',
    pragma: 'no-cache',
    'content-length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

/**
 * Sends any thrown value as an RFC 6749 §5.2 error. Domain errors keep their safe message plus
 * `rotor_error` (the domain code) and, for "already rotated", `successor_id`; anything else is a
 * logged 500 `server_error` with a reference and no detail.
 */
export function sendOAuthError(res: ServerResponse, e: unknown, log: Logger, where: string): void {
  if (isRotorError(e)) {
    const { error, status: tokenRequestStatus } = oauthErrorOf(e.code);
    const dpop = e.code === 'invalid_dpop_proof' || e.code === 'use_dpop_nonce';
    // RFC 9449 §7.1: a DPoP failure of the caller's own credential is 401 with a DPoP challenge.
    const status = dpop && e.details.dpopCredential === true ? 401 : tokenRequestStatus;
    const body: Record<string, string> = { error, error_description: e.message, rotor_error: e.code };
    if (e.details.successorId) body.successor_id = e.details.successorId;
    // RFC 6750 §3: a bearer problem (401 invalid_token, 403 insufficient_scope) says so in a challenge.
    const extra: Record<string, string> = dpop
      ? { 'www-authenticate': dpopChallenge(error, e.message) }
      : status === 401 || error === 'insufficient_scope'
        ? { 'www-authenticate': bearerChallenge(error, e.message, e.details.noCredentials === true) }
        : {};
    if (e.details.retryAfterSeconds !== undefined) extra['retry-after'] = String(e.details.retryAfterSeconds);
    // RFC 9449 §8: the nonce the next proof must carry.
    if (e.details.dpopNonce) extra['dpop-nonce'] = e.details.dpopNonce;
    sendJson(res, status, body, extra);
    return;
  }
  const ref = randomUUID();
  log.error('unexpected error', { where, ref, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  sendJson(res, 500, { error: 'server_error', error_description: `internal error (ref ${ref})` });
}

/**
 * RFC 6750 §3: no error code when the request carried no credentials, else the error and its
 * description, reduced to the characters §3 allows in a quoted value (no quote, backslash,
 * control or non-ASCII character can reach the header).
 */
function bearerChallenge(error: string, message: string, noCredentials: boolean): string {
  if (noCredentials) return 'Bearer realm="rotor"';
  return `Bearer realm="rotor", error="${error}", error_description="${message.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, "'")}"`;
}
