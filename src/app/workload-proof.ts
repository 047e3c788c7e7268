import { RotorError } from '../domain/errors.js';
import { LIMITS } from '../domain/input-limits.js';
import { TOKEN_TYPE_JWT } from '../domain/token-exchange.js';
import type { WorkloadBinding, WorkloadClaims } from '../domain/workload-binding.js';
import type { AppContext } from './context.js';

/**
 * DESIGN.md rule 4, the I/O half: verifies an RFC 8693 `actor_token` before the rotation
 * decision, so the domain decides on verified claims only. Undefined when none was sent.
 * `idempotencyKey` lets a retry of the same rotation present the same JWT again.
 */
export async function verifyActorToken(
  app: AppContext,
  actorToken: string | undefined,
  actorTokenType: string | undefined,
  idempotencyKey: string | undefined,
): Promise<WorkloadClaims | undefined> {
  const token = actorToken ?? '';
  const type = actorTokenType ?? '';
  if (token === '' && type === '') return undefined;
  if (type === '') throw new RotorError('invalid_argument', 'actor_token_type is required when actor_token is present', { field: 'actor_token_type' });
  if (token === '') throw new RotorError('invalid_argument', 'actor_token_type must not be sent without actor_token', { field: 'actor_token_type' });
  if (token.length > LIMITS.tokenParameter) throw new RotorError('invalid_argument', 'actor_token is too long', { field: 'actor_token' });
  if (type !== TOKEN_TYPE_JWT) throw new RotorError('invalid_argument', `actor_token_type must be ${TOKEN_TYPE_JWT}`, { field: 'actor_token_type' });
  if (app.identity === undefined) {
    throw new RotorError('invalid_argument', 'actor_token is not accepted: no trusted issuers are configured on this server', { field: 'actor_token' });
  }
  return app.identity.verify(token, 'actor_token', {
    retryKeyDigest: idempotencyKey === undefined ? undefined : app.keys.idempotencyDigest(idempotencyKey),
  });
}

/**
 * A binding can only ever match JWTs the server accepts: its issuer must be trusted and its
 * audience one of that issuer's audiences.
 */
export function requireSatisfiableBinding(app: AppContext, binding: WorkloadBinding | undefined): void {
  if (binding === undefined) return;
  const audiences = app.identity?.issuerAudiences(binding.issuer);
  if (audiences === undefined) {
    throw new RotorError('invalid_argument', 'policy.workload_binding.issuer: is not a trusted issuer of this server', { field: 'policy.workload_binding.issuer' });
  }
  if (!audiences.includes(binding.audience)) {
    throw new RotorError('invalid_argument', "policy.workload_binding.audience: is not one of the issuer's accepted audiences", {
      field: 'policy.workload_binding.audience',
    });
  }
}
