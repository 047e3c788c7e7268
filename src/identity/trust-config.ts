import { isRotorError } from '../domain/errors.js';
import type { FederationRule } from '../domain/federation.js';
import { SCOPE_ADMIN, SCOPE_ROTATE, normalizeScopes } from '../domain/scopes.js';
import { type WorkloadBinding, validateBinding } from '../domain/workload-binding.js';

/**
 * The trust configuration named by ROTOR_TRUST_CONFIG (docs/workload-identity.md): which
 * external issuers Rotor accepts workload JWTs from, and which of those workloads federate to a
 * service account. Parsed once at start; every unknown field or bad value is refused with its
 * path (`federation[0].scopes: ...`).
 */
export interface TrustConfig {
  issuers: TrustedIssuer[];
  federation: FederationRule[];
}

/** Asymmetric JWS algorithms only (RFC 8725 §3.1/§3.2): a shared secret cannot be trusted here. */
export const ALLOWED_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;

export type { FederationRule };

/** Where an issuer's public keys come from: exactly one of the three. */
export type KeySource =
  | { kind: 'discovery'; algorithm: 'oidc' | 'oauth2' }
  | { kind: 'jwks_uri'; uri: string }
  | { kind: 'inline'; jwks: { keys: Record<string, unknown>[] } };

export interface TrustedIssuer {
  issuer: string;
  keys: KeySource;
  /** A JWT's `aud` must contain one of these. */
  audiences: string[];
  algorithms: string[];
  /** Required JOSE header `typ` (e.g. `at+jwt`), when the issuer sets one. */
  typ: string | undefined;
  clockSkewSeconds: number;
  /** A JWT whose `iat` is older than this is refused, whatever its `exp`. */
  maxTokenAgeSeconds: number;
  /** Refuse JWTs without `jti` (no replay protection is possible for them). */
  requireJti: boolean;
  /** Plain http:// for a non-loopback issuer; loopback hosts are always allowed. */
  allowInsecureHttp: boolean;
  fetchTimeoutMs: number;
  /** An unknown `kid` refetches the key set at most once per this many seconds. */
  jwksCooldownSeconds: number;
  /** Cached key sets are refetched after this many seconds even when every kid is known. */
  jwksCacheSeconds: number;
}

export const ISSUER_DEFAULTS = {
  clockSkewSeconds: 60,
  maxTokenAgeSeconds: 86_400,
  fetchTimeoutMs: 3000,
  jwksCooldownSeconds: 30,
  jwksCacheSeconds: 600,
} as const;

/** A bad field; the message starts with its path. */
export class TrustConfigError extends Error {
  override readonly name = 'TrustConfigError';
}

type Obj = Record<string, unknown>;

function fail(path: string, message: string): never {
  throw new TrustConfigError(`${path === '' ? 'the document' : path}: ${message}`);
}

function object(path: string, v: unknown, allowed: readonly string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path, 'must be an object');
  for (const k of Object.keys(v))
    if (!allowed.includes(k)) fail(path === '' ? k : `${path}.${k}`, 'is not a known field');
  return v as Obj;
}

function str(path: string, v: unknown, max = 256): string {
  if (typeof v !== 'string' || v.length === 0) fail(path, 'must be a non-empty string');
  if (v.length > max || !/^[\x20-\x7e]+$/.test(v)) fail(path, `must be at most ${max} printable ASCII characters`);
  return v;
}

function bool(path: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') fail(path, 'must be true or false');
  return v;
}

function int(path: string, v: unknown, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    fail(path, `must be a whole number between ${min} and ${max}`);
  return v;
}

function strings(path: string, v: unknown, nonEmpty: boolean): string[] {
  if (v === undefined && !nonEmpty) return [];
  if (!Array.isArray(v) || (nonEmpty && v.length === 0))
    fail(path, nonEmpty ? 'must be a non-empty array of strings' : 'must be an array of strings');
  if (v.length > 64) fail(path, 'at most 64 values');
  return [...new Set(v.map((x, i) => str(`${path}[${i}]`, x)))];
}

/**
 * True for `localhost`, 127.0.0.0/8 and ::1 (as a URL writes it, `[::1]`, or bare, as in
 * ROTOR_HOST): test issuers that may speak plain http, and a bind address no one else reaches.
 */
export function isLoopbackHost(hostname: string): boolean {
  return (
    hostname === 'localhost' ||
    hostname === '[::1]' ||
    hostname === '::1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}

function url(path: string, v: unknown, insecure: boolean): string {
  const s = str(path, v, 2048);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    fail(path, 'must be an absolute URL');
  }
  if (u.hash !== '' || u.username !== '' || u.password !== '') fail(path, 'must not carry a fragment or credentials');
  if (u.protocol === 'https:') return s;
  if (u.protocol === 'http:' && (insecure || isLoopbackHost(u.hostname))) return s;
  fail(path, 'must be https (http only for loopback hosts or with allow_insecure_http)');
}

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function inlineJwks(path: string, v: unknown): { keys: Record<string, unknown>[] } {
  const o = object(path, v, ['keys']);
  if (!Array.isArray(o.keys) || o.keys.length === 0) fail(`${path}.keys`, 'must be a non-empty array of JWKs');
  const keys = o.keys.map((k: unknown, i) => {
    const p = `${path}.keys[${i}]`;
    if (typeof k !== 'object' || k === null || Array.isArray(k)) fail(p, 'must be an object');
    const jwk = k as Obj;
    if (!['RSA', 'EC', 'OKP'].includes(jwk.kty as string))
      fail(`${p}.kty`, 'must be RSA, EC or OKP (public keys only)');
    if (PRIVATE_JWK_MEMBERS.some((m) => m in jwk)) fail(p, 'must hold a public key only (remove private members)');
    return jwk;
  });
  return { keys };
}

const ISSUER_FIELDS = [
  'issuer',
  'discovery',
  'jwks_uri',
  'jwks',
  'audiences',
  'algorithms',
  'typ',
  'clock_skew_seconds',
  'max_token_age_seconds',
  'require_jti',
  'allow_insecure_http',
  'fetch_timeout_ms',
  'jwks_cooldown_seconds',
  'jwks_cache_seconds',
] as const;

function parseIssuer(path: string, v: unknown): TrustedIssuer {
  const o = object(path, v, ISSUER_FIELDS);
  const allowInsecureHttp = bool(`${path}.allow_insecure_http`, o.allow_insecure_http, false);
  const issuer = url(`${path}.issuer`, o.issuer, allowInsecureHttp);
  const sources = (['discovery', 'jwks_uri', 'jwks'] as const).filter((k) => o[k] !== undefined && o[k] !== false);
  if (sources.length !== 1) fail(path, 'needs exactly one key source: discovery, jwks_uri or jwks');
  let keys: KeySource;
  if (sources[0] === 'discovery') {
    const d = o.discovery;
    if (d !== true && d !== 'oidc' && d !== 'oauth2') fail(`${path}.discovery`, 'must be true, "oidc" or "oauth2"');
    keys = { kind: 'discovery', algorithm: d === 'oauth2' ? 'oauth2' : 'oidc' };
  } else if (sources[0] === 'jwks_uri') {
    keys = { kind: 'jwks_uri', uri: url(`${path}.jwks_uri`, o.jwks_uri, allowInsecureHttp) };
  } else {
    keys = { kind: 'inline', jwks: inlineJwks(`${path}.jwks`, o.jwks) };
  }
  const algorithms = strings(`${path}.algorithms`, o.algorithms, true);
  for (const [i, a] of algorithms.entries()) {
    if (!(ALLOWED_ALGORITHMS as readonly string[]).includes(a))
      fail(`${path}.algorithms[${i}]`, `must be one of ${ALLOWED_ALGORITHMS.join(', ')}`);
  }
  return {
    issuer,
    keys,
    audiences: strings(`${path}.audiences`, o.audiences, true),
    algorithms,
    typ: o.typ === undefined ? undefined : str(`${path}.typ`, o.typ, 64),
    clockSkewSeconds: int(`${path}.clock_skew_seconds`, o.clock_skew_seconds, ISSUER_DEFAULTS.clockSkewSeconds, 0, 300),
    maxTokenAgeSeconds: int(
      `${path}.max_token_age_seconds`,
      o.max_token_age_seconds,
      ISSUER_DEFAULTS.maxTokenAgeSeconds,
      1,
      30 * 86_400,
    ),
    requireJti: bool(`${path}.require_jti`, o.require_jti, true),
    allowInsecureHttp,
    fetchTimeoutMs: int(`${path}.fetch_timeout_ms`, o.fetch_timeout_ms, ISSUER_DEFAULTS.fetchTimeoutMs, 100, 60_000),
    jwksCooldownSeconds: int(
      `${path}.jwks_cooldown_seconds`,
      o.jwks_cooldown_seconds,
      ISSUER_DEFAULTS.jwksCooldownSeconds,
      0,
      3600,
    ),
    jwksCacheSeconds: int(
      `${path}.jwks_cache_seconds`,
      o.jwks_cache_seconds,
      ISSUER_DEFAULTS.jwksCacheSeconds,
      1,
      86_400,
    ),
  };
}

const RULE_FIELDS = [
  'issuer',
  'subject',
  'audience',
  'claims',
  'service_account',
  'scopes',
  'max_lifetime_seconds',
  'cap_to_token_expiry',
  'token_audiences',
  'max_active_tokens',
] as const;

function parseRule(
  path: string,
  v: unknown,
  issuers: readonly TrustedIssuer[],
  maxLifetimeSeconds: number,
): FederationRule {
  const o = object(path, v, RULE_FIELDS);
  const issuer = str(`${path}.issuer`, o.issuer, 2048);
  const trusted = issuers.find((i) => i.issuer === issuer);
  if (!trusted) fail(`${path}.issuer`, 'is not one of the issuers');
  const claimsIn =
    o.claims === undefined
      ? {}
      : object(
          `${path}.claims`,
          o.claims,
          typeof o.claims === 'object' && o.claims !== null ? Object.keys(o.claims) : [],
        );
  const claims: Record<string, string> = {};
  for (const [k, val] of Object.entries(claimsIn)) claims[k] = str(`${path}.claims.${k}`, val);
  let binding: WorkloadBinding;
  try {
    binding = validateBinding(path, {
      issuer,
      subject: str(`${path}.subject`, o.subject),
      audience: str(`${path}.audience`, o.audience),
      claims,
    });
  } catch (e) {
    if (isRotorError(e)) throw new TrustConfigError(e.message);
    throw e;
  }
  if (!trusted.audiences.includes(binding.audience)) fail(`${path}.audience`, "must be one of the issuer's audiences");
  const serviceAccount = str(`${path}.service_account`, o.service_account, 128);
  if (!/^[\x21-\x7e]+$/.test(serviceAccount)) fail(`${path}.service_account`, 'must not contain whitespace');
  let scopes: string[];
  try {
    scopes = normalizeScopes(strings(`${path}.scopes`, o.scopes, true), `${path}.scopes`);
  } catch (e) {
    if (isRotorError(e)) throw new TrustConfigError(e.message);
    throw e;
  }
  if (scopes.includes(SCOPE_ADMIN)) fail(`${path}.scopes`, `${SCOPE_ADMIN} may not be granted by federation`);
  // A federated token that could rotate itself would outlive the workload JWT indefinitely, each
  // successor living the rule's maximum again without a fresh proof: federate again instead.
  if (scopes.includes(SCOPE_ROTATE))
    fail(
      `${path}.scopes`,
      `${SCOPE_ROTATE} may not be granted by federation (a federated token is renewed by federating again)`,
    );
  if (o.max_lifetime_seconds === undefined) fail(`${path}.max_lifetime_seconds`, 'is required');
  return {
    issuer,
    subject: binding.subject,
    audience: binding.audience,
    claims: binding.claims,
    serviceAccount,
    scopes,
    maxLifetimeSeconds: int(`${path}.max_lifetime_seconds`, o.max_lifetime_seconds, 0, 1, maxLifetimeSeconds),
    capToTokenExpiry: bool(`${path}.cap_to_token_expiry`, o.cap_to_token_expiry, true),
    tokenAudiences: strings(`${path}.token_audiences`, o.token_audiences, false),
    maxActiveTokens: int(`${path}.max_active_tokens`, o.max_active_tokens, 0, 1, MAX_ACTIVE_TOKENS),
  };
}

/** Highest `max_active_tokens` of a federation rule. */
const MAX_ACTIVE_TOKENS = 10_000;

/**
 * Validates a parsed trust-config document. `maxLifetimeSeconds` is the server's
 * ROTOR_MAX_LIFETIME_SECONDS: no rule may promise more.
 */
export function parseTrustConfig(doc: unknown, maxLifetimeSeconds: number): TrustConfig {
  const o = object('', doc, ['issuers', 'federation']);
  if (!Array.isArray(o.issuers) || o.issuers.length === 0) fail('issuers', 'must be a non-empty array');
  const issuers = o.issuers.map((v: unknown, i) => parseIssuer(`issuers[${i}]`, v));
  for (const [i, a] of issuers.entries()) {
    if (issuers.findIndex((b) => b.issuer === a.issuer) !== i) fail(`issuers[${i}].issuer`, 'appears twice');
  }
  if (o.federation !== undefined && !Array.isArray(o.federation)) fail('federation', 'must be an array');
  const federation = ((o.federation as unknown[] | undefined) ?? []).map((v, i) =>
    parseRule(`federation[${i}]`, v, issuers, maxLifetimeSeconds),
  );
  return { issuers, federation };
}
