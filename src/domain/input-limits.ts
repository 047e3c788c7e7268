import { RotorError } from './errors.js';
import { nonRandomReason } from './key-material.js';

/** Size limits for every free-form field accepted at a boundary. */
export const LIMITS = {
  ownerId: 128,
  name: 128,
  description: 1024,
  id: 64,
  audiences: 16,
  audience: 256,
  pageSize: 500,
  /** Token ids one WatchExpiry call may select. */
  watchTokenIds: 100,
  /** Thresholds one WatchExpiry call may list. */
  watchThresholds: 16,
  /** 22 base64url characters carry 132 bits, the least that is at least 128. */
  idempotencyKeyMin: 22,
  /** A key of hex digits only carries 4 bits a character: 32 for 128 bits (`openssl rand -hex 16`). */
  idempotencyKeyMinHex: 32,
  idempotencyKeyMax: 128,
  /** Longest token of any type accepted as a parameter (opaque or JWT). */
  tokenParameter: 8192,
} as const;

const PRINTABLE = /^[\x21-\x7e]+$/;
/** Control and format characters (C0, C1, bidi overrides, zero-width, line separators) are refused. */
const CONTROL_OR_FORMAT = /[\p{Cc}\p{Cf}\u2028\u2029]/u;
const ID = /^[a-z]{3}_[0-9A-Za-z]{1,60}$/;
const IDEMPOTENCY_KEY = /^[A-Za-z0-9_-]+$/;
const HEX = /^[0-9A-Fa-f]+$/;

function fail(field: string, message: string): never {
  throw new RotorError('invalid_argument', `${field}: ${message}`, { field });
}

/** An identifier such as an owner id: 1..max printable characters, no whitespace. */
export function requireIdentifier(field: string, value: string, max: number): string {
  if (value.length === 0) fail(field, 'is required');
  if (value.length > max) fail(field, `must be at most ${max} characters`);
  if (!PRINTABLE.test(value)) fail(field, 'must be printable characters without whitespace');
  return value;
}

/** Free text such as a description: at most `max` characters, no control characters. */
export function requireText(field: string, value: string, max: number, required = false): string {
  if (required && value.trim().length === 0) fail(field, 'is required');
  if (value.length > max) fail(field, `must be at most ${max} characters`);
  if (CONTROL_OR_FORMAT.test(value)) fail(field, 'must not contain control or format characters');
  return value;
}

/** A Rotor id (`tok_…`, `fam_…`). Anything else cannot exist, so it is refused early. */
export function requireId(field: string, value: string): string {
  if (value.length === 0) fail(field, 'is required');
  if (value.length > LIMITS.id || !ID.test(value)) fail(field, 'is not a valid id');
  return value;
}

/**
 * An idempotency key (docs/rotation.md rule 3): it lets a retry fetch the successor's secret, so it
 * must be unguessable: at least 128 bits of key material (22+ URL-safe characters, 32+ when only
 * hex digits), and not obviously hand-made (src/domain/key-material.ts). Clients generate a
 * random key per rotation and keep it until the rotation succeeds.
 */
export function requireIdempotencyKey(value: string): string {
  if (
    value.length < LIMITS.idempotencyKeyMin ||
    value.length > LIMITS.idempotencyKeyMax ||
    !IDEMPOTENCY_KEY.test(value)
  ) {
    fail(
      'idempotency_key',
      `must be ${LIMITS.idempotencyKeyMin}-${LIMITS.idempotencyKeyMax} characters of A-Z a-z 0-9 _ - (at least 128 random bits, e.g. openssl rand -base64 24 | tr '+/' '-_')`,
    );
  }
  if (HEX.test(value) && value.length < LIMITS.idempotencyKeyMinHex) {
    fail(
      'idempotency_key',
      `a key of hex digits only must be at least ${LIMITS.idempotencyKeyMinHex} characters (128 random bits, e.g. openssl rand -hex 16)`,
    );
  }
  const flaw = nonRandomReason([...value].map((c) => c.charCodeAt(0)));
  if (flaw !== undefined)
    fail(
      'idempotency_key',
      `does not look random (${flaw}); generate a new key for each rotation from a secure random source`,
    );
  return value;
}

/** Audience values (RFC 8693 `audience`): a bounded list of printable strings. */
export function requireAudiences(field: string, values: readonly string[]): string[] {
  if (values.length > LIMITS.audiences) fail(field, `at most ${LIMITS.audiences} values`);
  const out: string[] = [];
  for (const v of values) {
    requireIdentifier(field, v, LIMITS.audience);
    if (!out.includes(v)) out.push(v);
  }
  return out;
}

/** RFC 8693 §2.1 / RFC 8707: each `resource` is an absolute URI without a fragment. */
export function requireResources(values: readonly string[]): string[] {
  const out = requireAudiences('resource', values);
  for (const v of out) {
    let url: URL | undefined;
    try {
      url = new URL(v);
    } catch {
      url = undefined;
    }
    if (!url || v.includes('#')) fail('resource', 'each value must be an absolute URI without a fragment');
  }
  return out;
}
