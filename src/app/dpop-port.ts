/**
 * DPoP (RFC 9449) ports: what a transport hands the use cases about a request's proof, and the
 * verifier they call (implemented by src/identity/dpop-verifier.ts). Rules: src/app/dpop.ts.
 */

/** The DPoP facts of one request, as its transport saw them. */
export interface DpopRequest {
  /** The `DPoP` header (HTTP) or `dpop` metadata (gRPC, Connect); undefined when none was sent. */
  proof: string | undefined;
  /** The request's method: `POST`. */
  htm: string;
  /** The URL the request reached, `scheme://authority/path`, as the port saw it. */
  url: string;
  /** The request's path, for the form behind a proxy (`ROTOR_ISSUER` plus the path). */
  path: string;
}

/** One proof to verify, and the request it must be made for. */
export interface DpopProofCheck {
  proof: string;
  htm: string;
  htus: readonly string[];
  /** Hash of the access token presented with the proof, when there is one. */
  ath: string | undefined;
  athRequired: boolean;
  /** A call's own credential (401 on HTTP) rather than a token request (400). */
  credential: boolean;
}

/** A proof that passed every check: the thumbprint of its key. */
export interface VerifiedProof {
  jkt: string;
}

/** Verifies DPoP proofs: signature, claims, nonce and single use (RFC 9449 §4.3). */
export interface DpopVerifier {
  verify(check: DpopProofCheck): Promise<VerifiedProof>;
  /** The nonce to hand out now, when nonces are on (RFC 9449 §8). */
  nonce(): string | undefined;
}
