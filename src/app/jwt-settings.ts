/** JWT settings of the app, apart from the use cases that issue and check JWTs so `AppContext` can name them without importing those use cases. */
import type { SigningKeyRing } from './signing-key-ring.js';

/** What the app needs to issue and check JWT access tokens. */
export interface JwtSettings {
  /**
   * RFC 8414 issuer (`iss`), without a trailing slash. Set once at start: from `ROTOR_ISSUER`,
   * else from the HTTP port once it is bound.
   */
  issuer: string;
  /** Lifetime of a JWT access token (`ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS`). */
  ttlSeconds: number;
  keyRing: SigningKeyRing;
}
