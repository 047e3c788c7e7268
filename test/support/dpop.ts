import { createHash, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

/** A DPoP key pair as a client holds it: the private key, the public JWK and its thumbprint. */
export interface DpopKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  jkt: string;
}

/** A fresh ES256 key (RFC 9449 clients' usual choice). */
export async function newDpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk, 'sha256') };
}

/** What a test proof says; unset fields take the values of a valid proof. */
export interface ProofSpec {
  htu: string;
  htm?: string;
  /** The access token to hash into `ath`. */
  accessToken?: string;
  /** Overrides `ath` itself. */
  ath?: string;
  /** Seconds since the epoch. */
  iat?: number;
  jti?: string;
  nonce?: string;
  /** Header to sign with instead of `{typ, alg: ES256, jwk}`. */
  header?: Record<string, unknown>;
}

/** A DPoP proof (RFC 9449 §4.2) signed with jose. */
export function dpopProof(key: DpopKey, spec: ProofSpec): Promise<string> {
  const payload: Record<string, unknown> = {
    htm: spec.htm ?? 'POST',
    htu: spec.htu,
    iat: spec.iat ?? Math.floor(Date.now() / 1000),
    jti: spec.jti ?? randomBytes(16).toString('base64url'),
  };
  const ath = spec.ath ?? (spec.accessToken === undefined ? undefined : athOf(spec.accessToken));
  if (ath !== undefined) payload.ath = ath;
  if (spec.nonce !== undefined) payload.nonce = spec.nonce;
  return new SignJWT(payload)
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicJwk, ...spec.header } as never)
    .sign(key.privateKey);
}

/** An unsigned (`alg: none`) or HMAC-signed proof, which jose refuses to make. */
export function forgedProof(alg: 'none' | 'HS256', key: DpopKey, spec: ProofSpec): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const header = b64({ typ: 'dpop+jwt', alg, jwk: key.publicJwk });
  const payload = b64({
    htm: 'POST',
    htu: spec.htu,
    iat: spec.iat ?? Math.floor(Date.now() / 1000),
    jti: randomBytes(16).toString('base64url'),
    ...(spec.accessToken !== undefined && { ath: athOf(spec.accessToken) }),
  });
  const sig = alg === 'none' ? '' : randomBytes(32).toString('base64url');
  return `${header}.${payload}.${sig}`;
}

/** RFC 9449 §4.2 `ath`. */
export function athOf(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}
