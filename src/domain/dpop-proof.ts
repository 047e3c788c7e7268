import { createHash } from 'node:crypto';
import { RotorError } from './errors.js';

/**
 * The checks of a DPoP proof JWT (RFC 9449 §4.3) that need no key and no storage, one clear
 * `invalid_dpop_proof` per check. The signature, the thumbprint and the `jti` replay cache are
 * src/identity/dpop-verifier.ts; which token needs a proof is src/app/dpop.ts (docs/dpop.md).
 */

/** RFC 9449 §4.2 `typ`. */
export const DPOP_TYP = 'dpop+jwt';

/** Asymmetric algorithms a proof may use (RFC 9449 §4.3 check 5: never `none`, never a MAC). */
export const DPOP_ALGS = [
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
] as const;
export type DpopAlg = (typeof DPOP_ALGS)[number];

/** How far a proof's `iat` may lie ahead of the server clock, and beyond the maximum age. */
export const DPOP_SKEW_SECONDS = 5;

/** Longest proof accepted (a proof with an RSA-4096 key is about 1.5 KB). */
export const MAX_PROOF_CHARS = 8192;

/** JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** The request a proof must be made for, and the server's limits. */
export interface ProofExpectations {
  /** The HTTP method (`POST` for every Rotor RPC and OAuth endpoint). */
  htm: string;
  /** The URLs this request may be named by, without query and fragment (docs/dpop.md, "htu"). */
  htus: readonly string[];
  /** RFC 9449 §4.3 check 11: the hash of the access token the proof must name, if any. */
  ath: string | undefined;
  /** True when the proof must carry `ath` (a call authenticated by the token, §7). */
  athRequired: boolean;
  /** Server clock, ms. */
  now: number;
  /** `ROTOR_DPOP_MAX_AGE_SECONDS`. */
  maxAgeSeconds: number;
}

/** What the claims checks leave for the stateful checks. */
export interface ProofClaims {
  jti: string;
  /** Seconds. */
  iat: number;
  nonce: string | undefined;
}

/** The one error of a bad proof. */
export function badProof(message: string, credential = false): RotorError {
  return new RotorError('invalid_dpop_proof', `DPoP proof ${message}`, credential ? { dpopCredential: true } : {});
}

/** RFC 9449 §4.3 checks 4-6: `typ`, an allowed asymmetric `alg`, a public `jwk` in the header. */
export function checkProofHeader(header: Record<string, unknown>): { alg: DpopAlg; jwk: Record<string, unknown> } {
  if (header.typ !== DPOP_TYP) throw badProof(`typ must be "${DPOP_TYP}"`);
  const alg = header.alg;
  if (typeof alg !== 'string' || !(DPOP_ALGS as readonly string[]).includes(alg))
    throw badProof(`alg must be one of ${DPOP_ALGS.join(', ')} (never none or an HMAC)`);
  const jwk = header.jwk;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk))
    throw badProof('must carry the public key as a jwk header');
  const members = jwk as Record<string, unknown>;
  if (PRIVATE_JWK_MEMBERS.some((m) => m in members))
    throw badProof('jwk must be a public key: it holds private or symmetric key members');
  if (members.kty !== 'EC' && members.kty !== 'RSA' && members.kty !== 'OKP')
    throw badProof('jwk must be an EC, RSA or OKP public key');
  return { alg: alg as DpopAlg, jwk: members };
}

/** RFC 9449 §4.3 checks 7-12 (without the nonce, which the verifier judges): `jti`, `htm`, `htu`, `iat`, `ath`. */
export function checkProofClaims(payload: Record<string, unknown>, expect: ProofExpectations): ProofClaims {
  const { jti, htm, htu, iat, ath, nonce } = payload;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256)
    throw badProof('must carry a jti of 1 to 256 characters');
  if (htm !== expect.htm) throw badProof(`htm must be "${expect.htm}"`);
  if (typeof htu !== 'string') throw badProof('must carry htu, the URL it was made for');
  const target = comparableUrl(htu);
  if (target === undefined || !expect.htus.some((u) => comparableUrl(u) === target))
    throw badProof(`htu does not name this endpoint (${expect.htus[0] ?? ''})`);
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw badProof('must carry a numeric iat');
  const ageMs = expect.now - iat * 1000;
  if (ageMs > (expect.maxAgeSeconds + DPOP_SKEW_SECONDS) * 1000)
    throw badProof(`is too old: iat more than ${expect.maxAgeSeconds} seconds ago; make a fresh proof`);
  if (ageMs < -DPOP_SKEW_SECONDS * 1000) throw badProof('iat lies in the future');
  if (ath !== undefined || expect.athRequired) {
    if (typeof ath !== 'string') throw badProof('must carry ath, the hash of the access token it is sent with');
    if (expect.ath === undefined || ath !== expect.ath) throw badProof('ath does not match the access token');
  }
  if (nonce !== undefined && (typeof nonce !== 'string' || nonce.length === 0 || nonce.length > 256))
    throw badProof('nonce must be a non-empty string');
  return { jti, iat, nonce: nonce as string | undefined };
}

/** RFC 9449 §4.2 `ath`: base64url SHA-256 of the access token's ASCII. */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/**
 * RFC 9449 §4.3 check 9: compared "without query and fragment", with scheme and host in lower
 * case and a default port dropped (RFC 3986 §6.2.2-6.2.3, as the URL parser normalises).
 */
function comparableUrl(text: string): string | undefined {
  if (text.length > 2048) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/** RFC 7638 thumbprint form: 43 base64url characters (SHA-256). */
const JKT = /^[A-Za-z0-9_-]{43}$/;

/** Validates a `dpop_jkt` given at creation (CLI `--dpop-jkt`, CreateToken policy). */
export function validateJkt(field: string, jkt: string): string {
  if (!JKT.test(jkt))
    throw new RotorError(
      'invalid_argument',
      `${field} must be an RFC 7638 SHA-256 JWK thumbprint (43 base64url characters)`,
      {
        field,
      },
    );
  return jkt;
}

/**
 * RFC 9449 §7.1: `DPoP error="…", error_description="…", algs="…"`, the description reduced to
 * the characters a quoted value allows.
 */
export function dpopChallenge(error: string, message: string): string {
  const description = message.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, "'");
  return `DPoP error="${error}", error_description="${description}", algs="${DPOP_ALGS.join(' ')}"`;
}
