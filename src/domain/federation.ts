import { RotorError } from './errors.js';
import { mismatchOf, type WorkloadClaims } from './workload-binding.js';

/**
 * A federation rule (docs/design.md, "Token exchange, federation and JWT access tokens"): a
 * workload JWT from `issuer` whose `sub` matches `subject`, whose `aud` contains
 * `audience` and whose claims hold `claims` may obtain a short-lived token for `serviceAccount`,
 * never wider than `scopes` and `maxLifetimeSeconds`.
 */
export interface FederationRule {
  issuer: string;
  /** Exact subject or `*` pattern. */
  subject: string;
  audience: string;
  claims: Record<string, string>;
  serviceAccount: string;
  scopes: string[];
  maxLifetimeSeconds: number;
  /** Never let the issued token outlive the presented JWT. */
  capToTokenExpiry: boolean;
  /** Audiences the issued token may be restricted to with `audience`/`resource`. */
  tokenAudiences: string[];
  /**
   * Most live tokens one workload (this rule and one JWT `sub`) may hold; minting one more
   * supersedes the oldest (docs/limits.md). 0 or absent: no cap.
   */
  maxActiveTokens?: number;
}

/** What a federation exchange asks for, besides the verified workload. */
export interface FederationRequest {
  scopes: readonly string[];
  audiences: readonly string[];
}

/** The token a federation exchange issues. */
export interface FederationGrant {
  rule: FederationRule;
  scopes: string[];
  audiences: string[];
  expiresAt: number;
}

/** The first rule the workload matches, in configuration order. */
export function matchRule(rules: readonly FederationRule[], w: WorkloadClaims): FederationRule | undefined {
  return rules.find((r) => mismatchOf(r, w) === undefined);
}

/**
 * Decides a federation exchange: the first matching rule; scopes ⊆ the rule's (`invalid_scope`);
 * audiences ⊆ the rule's `token_audiences` (`invalid_target`); lifetime = the rule's maximum,
 * capped by the server's and, when the rule says so, by the JWT's remaining life.
 */
export function decideFederation(
  rules: readonly FederationRule[],
  w: WorkloadClaims,
  req: FederationRequest,
  now: number,
  serverMaxLifetimeSeconds: number,
): FederationGrant {
  const rule = matchRule(rules, w);
  if (rule === undefined) {
    throw new RotorError('workload_mismatch', 'subject_token matches no federation rule', { field: 'subject_token' });
  }
  const extra = req.scopes.filter((s) => !rule.scopes.includes(s));
  if (extra.length > 0)
    throw new RotorError('invalid_scope', `requested scopes exceed the federation rule's scopes: ${extra.join(' ')}`);
  const scopes = req.scopes.length === 0 ? [...rule.scopes] : [...req.scopes];
  const outside = req.audiences.filter((a) => !rule.tokenAudiences.includes(a));
  if (outside.length > 0)
    throw new RotorError('invalid_target', `audience not allowed by the federation rule: ${outside.join(' ')}`);
  let expiresAt = now + Math.min(rule.maxLifetimeSeconds, serverMaxLifetimeSeconds) * 1000;
  if (rule.capToTokenExpiry) expiresAt = Math.min(expiresAt, w.exp);
  if (expiresAt <= now)
    throw new RotorError('invalid_workload_token', 'subject_token has expired', { field: 'subject_token' });
  return { rule, scopes, audiences: [...req.audiences], expiresAt };
}
