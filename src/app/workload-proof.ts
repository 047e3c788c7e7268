import { RotorError, isRotorError } from '../domain/errors.js';
import { TOKEN_TYPE_JWT, checkActorParams } from '../domain/token-exchange.js';
import { actorTokenWithoutBinding, type WorkloadBinding, type WorkloadClaims } from '../domain/workload-binding.js';
import type { AppContext } from './context.js';

/** The outcome of verifying an actor token: its claims, or why it was rejected. */
export type ActorProof =
  | { claims: WorkloadClaims; rejection?: undefined }
  | { claims?: undefined; rejection: RotorError };

/**
 * docs/rotation.md rule 4, the I/O half: verifies an RFC 8693 `actor_token` before the rotation
 * decision, so the domain decides on verified claims only. Undefined when none was sent. A
 * malformed request (type missing or wrong) throws at once; a JWT that fails verification, or an
 * issuer whose keys are unavailable, is returned as a rejection, which the domain raises at rule
 * 4, so rules 2 and 3 (reuse detection) still come first. `retry` (the rotated token and the
 * request's idempotency key) lets a retry of the same rotation present the same JWT again; the
 * same key on a rotation of another token does not (the JWT was spent on the first one).
 * `bound`: whether the token has a workload binding. When it has none (or is unknown) the JWT is
 * refused unverified, so its jti is not spent and its issuer is not contacted.
 */
export async function verifyActorToken(
  app: AppContext,
  actorToken: string | undefined,
  actorTokenType: string | undefined,
  retry: { tokenRef: string; idempotencyKey: string } | undefined,
  bound: boolean,
): Promise<ActorProof | undefined> {
  const token = actorToken ?? '';
  const type = actorTokenType ?? '';
  if (token === '' && type === '') return undefined;
  checkActorParams(token, type);
  if (type !== TOKEN_TYPE_JWT)
    throw new RotorError('invalid_argument', `actor_token_type must be ${TOKEN_TYPE_JWT}`, {
      field: 'actor_token_type',
    });
  if (!bound) return { rejection: actorTokenWithoutBinding() };
  if (app.identity === undefined) {
    return {
      rejection: new RotorError(
        'invalid_argument',
        'actor_token is not accepted: no trusted issuers are configured on this server',
        { field: 'actor_token' },
      ),
    };
  }
  try {
    const claims = await app.identity.verify(token, 'actor_token', {
      retryKeyDigest:
        retry === undefined
          ? undefined
          : app.keys.idempotencyDigest(`actor-retry\n${retry.tokenRef}\n${retry.idempotencyKey}`),
    });
    return { claims };
  } catch (e) {
    if (isRotorError(e)) return { rejection: e };
    throw e;
  }
}

/**
 * A binding can only ever match JWTs the server accepts: its issuer must be trusted and its
 * audience one of that issuer's audiences.
 */
export function requireSatisfiableBinding(app: AppContext, binding: WorkloadBinding | undefined): void {
  if (binding === undefined) return;
  const audiences = app.identity?.issuerAudiences(binding.issuer);
  if (audiences === undefined) {
    throw new RotorError('invalid_argument', 'policy.workload_binding.issuer: is not a trusted issuer of this server', {
      field: 'policy.workload_binding.issuer',
    });
  }
  if (!audiences.includes(binding.audience)) {
    throw new RotorError(
      'invalid_argument',
      "policy.workload_binding.audience: is not one of the issuer's accepted audiences",
      {
        field: 'policy.workload_binding.audience',
      },
    );
  }
}
