/** JWT settings of the app, apart from the use cases that issue and check JWTs so `AppContext` can name them without importing those use cases. */
import type { SigningKeyRing } from './signing-key-ring.js';

/** What the app needs to issue and check JWT access tokens. */
export interface JwtSettings {
  /**
   * RFC 8414 issuer (`iss`), without a trailing slash: `ROTOR_ISSUER`, else derived from the HTTP
   * port, which start-up binds before it builds the application (src/runtime/server.ts).
   */
  readonly issuer: string;
  /** Lifetime of a JWT access token (`ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS`). */
  readonly ttlSeconds: number;
  readonly keyRing: SigningKeyRing;
}
