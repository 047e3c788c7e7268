import type { PolicyLimits } from '../domain/policy.js';
import type { Brakes } from './brakes.js';
import type { Clock, RandomSource } from '../domain/ports.js';
import type { TokenKeys } from '../domain/token-keys.js';
import type { DpopRequest, DpopVerifier } from './dpop-port.js';
import type { WorkloadIdentity } from './identity-port.js';
import type { JwtSettings } from './jwt-settings.js';
import type { Logger } from './logger-port.js';
import type { Store } from './store-ports.js';

/** What every use case needs: storage, keys, limits, a clock and a random source. */
export interface AppContext {
  store: Store;
  keys: TokenKeys;
  limits: PolicyLimits;
  now: Clock;
  random: RandomSource;
  log: Logger;
  /** Issuer, lifetime and signing keys of JWT access tokens. */
  jwt: JwtSettings;
  /** Trusted workload issuers and federation rules; undefined when ROTOR_TRUST_CONFIG is unset. */
  identity?: WorkloadIdentity;
  /** The rate limits of docs/limits.md; undefined: none (in-process tests that build a context by hand). */
  brakes?: Brakes;
  /** DPoP proof verification (docs/dpop.md); undefined only in tests that build a bare context. */
  dpop?: DpopVerifier;
}

/** Transport-neutral facts about a call: the bearer credential and the network peer. */
export interface CallMeta {
  /** The raw `authorization` header value, if any. */
  authorization: string | undefined;
  peer: string | null;
  /** The DPoP proof sent with the call and the URL it reached (undefined: no proof was sent). */
  dpop?: DpopRequest;
  /**
   * The id of the token the call authenticated with, once known: `authenticate` (and a
   * self-rotation, and a token exchange) note it here for the access log (src/api/access-log.ts).
   */
  tokenId?: string | undefined;
}
