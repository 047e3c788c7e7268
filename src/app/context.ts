import type { PolicyLimits } from '../domain/policy.js';
import type { Clock, RandomSource } from '../domain/ports.js';
import type { TokenKeys } from '../domain/token-keys.js';
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
}

/** Transport-neutral facts about a call: the bearer credential and the network peer. */
export interface CallMeta {
  /** The raw `authorization` header value, if any. */
  authorization: string | undefined;
  peer: string | null;
  /**
   * The id of the token the call authenticated with, once known: `authenticate` (and a
   * self-rotation, and a token exchange) note it here for the access log (src/api/access-log.ts).
   */
  tokenId?: string | undefined;
}
