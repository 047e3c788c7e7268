import type { FederationRule } from '../domain/federation.js';
import type { WorkloadClaims } from '../domain/workload-binding.js';

/**
 * Workload identity as the use cases see it: verify a JWT (I/O: key sets, replay cache) into
 * claims the domain can decide on. Implemented by src/identity/workload-verifier.ts.
 */
export interface WorkloadIdentity {
  /**
   * Verifies `jwt` (RFC 8725) and records its `jti`; `field` names the parameter in errors.
   * `retryKeyDigest` lets a retry of the same rotation present the same JWT again.
   */
  verify(
    jwt: string,
    field: 'actor_token' | 'subject_token',
    opts?: { retryKeyDigest?: string },
  ): Promise<WorkloadClaims>;
  /** The audiences accepted from a configured issuer; undefined for an untrusted one. */
  issuerAudiences(issuer: string): readonly string[] | undefined;
  readonly federation: readonly FederationRule[];
}
