import { RotorError } from './errors.js';

/**
 * A token's workload binding (docs/design.md, Domain): only a workload that proves, with a JWT from
 * `issuer`, that its `sub` matches `subject`, its `aud` contains `audience` and its claims hold
 * every value of `claims` may rotate the token (docs/rotation.md rule 4).
 */
export interface WorkloadBinding {
  issuer: string;
  /** Exact subject, or a pattern in which `*` matches any run of characters. */
  subject: string;
  audience: string;
  claims: Record<string, string>;
}

/**
 * The verified facts of a workload JWT: what src/identity hands the domain after checking the
 * signature, issuer, audience, times, type and replay. The JWT itself never travels further.
 */
export interface WorkloadClaims {
  iss: string;
  sub: string;
  aud: string[];
  /** Expiry, milliseconds since the epoch. */
  exp: number;
  jti: string | undefined;
  /** Every claim of the payload, for binding and federation claim conditions. */
  claims: Readonly<Record<string, unknown>>;
}

/** The audit identity of a workload (the event log's `act`, RFC 8693 §4.1 style). */
export interface WorkloadActor {
  iss: string;
  sub: string;
}

const MAX_FIELD = 256;
const MAX_CLAIMS = 16;
const CLAIM_NAME = /^[\x21-\x7e]{1,64}$/;
const PRINTABLE = /^[\x20-\x7e]*$/;

function fail(field: string, message: string): never {
  throw new RotorError('invalid_argument', `${field}: ${message}`, { field });
}

function text(field: string, value: string, required: boolean): string {
  if (required && value.length === 0) fail(field, 'is required');
  if (value.length > MAX_FIELD) fail(field, `must be at most ${MAX_FIELD} characters`);
  if (!PRINTABLE.test(value)) fail(field, 'must be printable ASCII');
  return value;
}

/**
 * Validates a requested binding's shape (`field` prefixes the error, e.g.
 * `policy.workload_binding`). Whether the issuer is trusted is checked where the trust
 * configuration is known (src/app).
 */
export function validateBinding(field: string, b: WorkloadBinding): WorkloadBinding {
  const issuer = text(`${field}.issuer`, b.issuer, true);
  const subject = text(`${field}.subject`, b.subject, true);
  if (subject.replaceAll('*', '') === '') fail(`${field}.subject`, 'must contain more than wildcards');
  const audience = text(`${field}.audience`, b.audience, true);
  const names = Object.keys(b.claims);
  if (names.length > MAX_CLAIMS) fail(`${field}.claims`, `at most ${MAX_CLAIMS} entries`);
  const claims: Record<string, string> = {};
  for (const name of names.sort()) {
    if (!CLAIM_NAME.test(name)) fail(`${field}.claims`, 'names must be 1-64 printable characters without whitespace');
    if (['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti'].includes(name))
      fail(`${field}.claims`, `${name} is checked by its own field, not as a claim condition`);
    claims[name] = text(`${field}.claims.${name}`, b.claims[name]!, false);
  }
  return { issuer, subject, audience, claims };
}

/** True when `value` matches `pattern`, where `*` matches any run of characters (even none). */
export function subjectMatches(pattern: string, value: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === value;
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (value.length < first.length + last.length || !value.startsWith(first) || !value.endsWith(last)) return false;
  let at = first.length;
  const end = value.length - last.length;
  for (const part of parts.slice(1, -1)) {
    const i = value.indexOf(part, at);
    if (i < 0 || i + part.length > end) return false;
    at = i + part.length;
  }
  return true;
}

/**
 * A claim condition holds when the claim is a string equal to the wanted value, or a number or
 * boolean whose decimal/`true`/`false` form is (CI systems send ids either way). Objects and
 * arrays never match.
 */
export function claimMatches(actual: unknown, wanted: string): boolean {
  if (typeof actual === 'string') return actual === wanted;
  if (typeof actual === 'number' || typeof actual === 'boolean') return String(actual) === wanted;
  return false;
}

/** The first condition of (subject, audience, claims) that `claims` fail, or undefined. */
export function mismatchOf(
  cond: { issuer: string; subject: string; audience: string; claims: Readonly<Record<string, string>> },
  w: WorkloadClaims,
): string | undefined {
  if (w.iss !== cond.issuer) return 'issuer';
  if (!subjectMatches(cond.subject, w.sub)) return 'subject';
  if (!w.aud.includes(cond.audience)) return 'audience';
  for (const [name, wanted] of Object.entries(cond.claims)) {
    if (!claimMatches(w.claims[name], wanted)) return `claim ${name}`;
  }
  return undefined;
}

/** Rule 4, other half: a token without a workload binding refuses an actor token rather than ignoring it. */
export function actorTokenWithoutBinding(): RotorError {
  return new RotorError('invalid_argument', 'actor_token is not accepted: this token has no workload binding', {
    field: 'actor_token',
  });
}

/**
 * docs/rotation.md rule 4: the verified actor must match the token's binding. The message names the
 * condition that failed, never the JWT or its claim values.
 */
export function checkBinding(binding: WorkloadBinding, actor: WorkloadClaims | undefined): void {
  if (actor === undefined) {
    throw new RotorError(
      'workload_proof_required',
      'this token is bound to a workload: rotating it needs actor_token with actor_token_type urn:ietf:params:oauth:token-type:jwt',
      { field: 'actor_token' },
    );
  }
  const failed = mismatchOf(binding, actor);
  if (failed !== undefined) {
    throw new RotorError('workload_mismatch', `actor_token does not match the token's workload binding: ${failed}`, {
      field: 'actor_token',
    });
  }
}

/** Two bindings ask for the same workload. */
export function sameBinding(a: WorkloadBinding | undefined, b: WorkloadBinding | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const ak = Object.keys(a.claims).sort();
  const bk = Object.keys(b.claims).sort();
  return (
    a.issuer === b.issuer &&
    a.subject === b.subject &&
    a.audience === b.audience &&
    ak.length === bk.length &&
    ak.every((k, i) => k === bk[i] && a.claims[k] === b.claims[k])
  );
}
