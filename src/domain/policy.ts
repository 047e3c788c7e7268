import { validateJkt } from './dpop-proof.js';
import { RotorError } from './errors.js';
import { validateBinding, type WorkloadBinding } from './workload-binding.js';

/** Per-token rotation policy, fully resolved (docs/design.md, Domain). Values in seconds. */
export interface TokenPolicy {
  maxLifetimeSeconds: number;
  /** Lifetime of a successor when a rotation names none; 0 means "the predecessor's lifetime". */
  defaultLifetimeSeconds: number;
  overlapSeconds: number;
  reuseGraceSeconds: number;
  /** Rule 4: only the bound workload may rotate the token (absent: no binding). */
  workloadBinding?: WorkloadBinding;
  /**
   * The rotated predecessor stops authenticating at the successor's first use, at the latest
   * after `overlapSeconds` (docs/rotation.md, "Retire on first use"). Absent: false.
   */
  retireOnFirstUse?: boolean;
  /** RFC 9449: the thumbprint of the key every use must prove (absent: a bearer token; docs/dpop.md). */
  dpopJkt?: string;
}

/** The numeric knobs of a policy (seconds), compared when one policy must not be looser. */
export const POLICY_KNOBS = [
  'maxLifetimeSeconds',
  'defaultLifetimeSeconds',
  'overlapSeconds',
  'reuseGraceSeconds',
] as const;

/** A policy request: unset fields take the server defaults. */
export type PolicyRequest = Partial<TokenPolicy>;

/** Server-wide limits and defaults, from configuration. */
export interface PolicyLimits {
  /** Upper bound for every token's lifetime (`ROTOR_MAX_LIFETIME_SECONDS`, default 365 days). */
  maxLifetimeSeconds: number;
  defaultOverlapSeconds: number;
  defaultReuseGraceSeconds: number;
  /** How long an idempotent retry returns the same successor (docs/rotation.md rule 3; default 10 min). */
  retryWindowSeconds: number;
  /** Upper bound on a token's reuse grace, so a leaked predecessor cannot linger. */
  maxReuseGraceSeconds: number;
}

export const DEFAULT_LIMITS: PolicyLimits = {
  maxLifetimeSeconds: 365 * 24 * 3600,
  defaultOverlapSeconds: 0,
  defaultReuseGraceSeconds: 10,
  retryWindowSeconds: 600,
  maxReuseGraceSeconds: 3600,
};

function bounded(name: string, value: number | undefined, fallback: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 0 || v > max) {
    throw new RotorError('invalid_argument', `policy.${name} must be between 0 and ${max} seconds`, {
      field: `policy.${name}`,
    });
  }
  return v;
}

/** Resolves a requested policy against the server limits; out-of-range knobs are refused. */
export function resolvePolicy(request: PolicyRequest, limits: PolicyLimits): TokenPolicy {
  const maxLifetimeSeconds = bounded(
    'max_lifetime_seconds',
    request.maxLifetimeSeconds,
    limits.maxLifetimeSeconds,
    limits.maxLifetimeSeconds,
  );
  if (maxLifetimeSeconds === 0) {
    throw new RotorError('invalid_argument', 'policy.max_lifetime_seconds must be positive', {
      field: 'policy.max_lifetime_seconds',
    });
  }
  const policy: TokenPolicy = {
    maxLifetimeSeconds,
    defaultLifetimeSeconds: bounded('default_lifetime_seconds', request.defaultLifetimeSeconds, 0, maxLifetimeSeconds),
    overlapSeconds: bounded(
      'overlap_seconds',
      request.overlapSeconds,
      limits.defaultOverlapSeconds,
      maxLifetimeSeconds,
    ),
    reuseGraceSeconds: bounded(
      'reuse_grace_seconds',
      request.reuseGraceSeconds,
      limits.defaultReuseGraceSeconds,
      limits.maxReuseGraceSeconds,
    ),
  };
  if (request.workloadBinding !== undefined)
    policy.workloadBinding = validateBinding('policy.workload_binding', request.workloadBinding);
  if (request.retireOnFirstUse === true) {
    if (policy.overlapSeconds === 0) {
      throw new RotorError(
        'invalid_argument',
        'policy.retire_on_first_use needs policy.overlap_seconds > 0 (the longest the predecessor may still authenticate)',
        { field: 'policy.retire_on_first_use' },
      );
    }
    policy.retireOnFirstUse = true;
  }
  if (request.dpopJkt !== undefined) policy.dpopJkt = validateJkt('policy.dpop_jkt', request.dpopJkt);
  return policy;
}

/** The longest lifetime a token under `policy` may be given now, in milliseconds. */
export function lifetimeCapMs(policy: TokenPolicy, limits: PolicyLimits): number {
  return Math.min(policy.maxLifetimeSeconds, limits.maxLifetimeSeconds) * 1000;
}

/**
 * Checks a requested expiry (docs/design.md, Domain: expires_at required, capped by the max
 * lifetime). The effective cap is the smaller of the token's policy and the server's current limit.
 */
export function checkExpiry(expiresAt: number, now: number, policy: TokenPolicy, limits: PolicyLimits): number {
  if (!Number.isFinite(expiresAt) || expiresAt <= now) {
    throw new RotorError('invalid_argument', 'expires_at must be in the future', { field: 'expires_at' });
  }
  const cap = lifetimeCapMs(policy, limits);
  if (expiresAt > now + cap) {
    throw new RotorError('invalid_argument', `expires_at exceeds the max lifetime of ${cap / 1000} seconds`, {
      field: 'expires_at',
    });
  }
  return expiresAt;
}
