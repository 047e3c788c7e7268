import { accessTokenHash, badProof } from '../domain/dpop-proof.js';
import { RotorError } from '../domain/errors.js';
import type { TokenRecord } from '../domain/token.js';
import { digestsEqual } from '../domain/token-keys.js';
import type { AppContext } from './context.js';
import type { DpopRequest, VerifiedProof } from './dpop-port.js';

export type { DpopRequest } from './dpop-port.js';

/**
 * DPoP (RFC 9449) as the use cases see it: which presented token needs a proof, and what a proof
 * binds (docs/dpop.md). The proof itself is checked by a `DpopVerifier`
 * (src/identity/dpop-verifier.ts).
 */

/** How a token was presented with the proof. */
export type Presentation =
  /** `authorization: DPoP <token>` on a call (RFC 9449 §7: the proof must carry `ath`). */
  | 'call'
  /** `subject_token` of an exchange (§5: no `ath` needed; one that is sent must match). */
  | 'subject';

/** The URLs a proof's `htu` may name for this request (docs/dpop.md, "htu"). */
export function acceptedUrls(app: AppContext, dpop: DpopRequest): string[] {
  return [dpop.url, `${app.jwt.issuer.replace(/\/+$/, '')}${dpop.path}`];
}

/** Verifies the request's proof for `secret`; the proof must be present. */
async function verifyProof(
  app: AppContext,
  dpop: DpopRequest | undefined,
  secret: string,
  use: Presentation,
  missing: string,
): Promise<VerifiedProof> {
  const credential = use === 'call';
  if (dpop?.proof === undefined || dpop.proof === '') throw badProof(missing, credential);
  if (app.dpop === undefined) throw new RotorError('unavailable', 'DPoP proofs cannot be verified by this server');
  return app.dpop.verify({
    proof: dpop.proof,
    htm: dpop.htm,
    htus: acceptedUrls(app, dpop),
    ath: accessTokenHash(secret),
    athRequired: use === 'call',
    credential,
  });
}

/**
 * The proof-first rule for a token bound to a key (docs/dpop.md): before anything else is decided
 * about it, the request must carry a valid proof signed by that key. Resolves to the token's
 * thumbprint, or to undefined for an unbound token.
 */
export async function proveBoundToken(
  app: AppContext,
  dpop: DpopRequest | undefined,
  token: TokenRecord,
  secret: string,
  use: Presentation,
): Promise<string | undefined> {
  const jkt = token.policy.dpopJkt;
  if (jkt === undefined) return undefined;
  const proof = await verifyProof(app, dpop, secret, use, 'missing: the token is bound to a key (DPoP)');
  if (!digestsEqual(proof.jkt, jkt))
    throw badProof('is signed by another key than the token is bound to', use === 'call');
  return jkt;
}

/**
 * The key a presented token's successor is bound to: the token's own binding (after its proof),
 * or, for an unbound token sent with a proof, the proof's key (RFC 9449 §5: a bound token may be
 * issued for an unbound grant). Undefined: the successor stays unbound.
 */
export async function successorBinding(
  app: AppContext,
  dpop: DpopRequest | undefined,
  token: TokenRecord,
  secret: string,
  use: Presentation,
): Promise<string | undefined> {
  const bound = await proveBoundToken(app, dpop, token, secret, use);
  if (bound !== undefined) return bound;
  if (dpop?.proof === undefined || dpop.proof === '') return undefined;
  return (await verifyProof(app, dpop, secret, use, 'missing')).jkt;
}

/** RFC 9449 §7.1 / RFC 6750: the token type a token is presented with. */
export function tokenTypeOf(token: TokenRecord): 'DPoP' | 'Bearer' {
  return token.policy.dpopJkt === undefined ? 'Bearer' : 'DPoP';
}
