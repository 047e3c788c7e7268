import type { Logger } from '../app/logger-port.js';
import { ConfigError } from './config-error.js';
import type { WeakSecret } from './server-secret.js';
import { SECRET_ADVICE } from './secret-strength.js';

/** What the gate asks of the store. */
export interface KeyedDataProbe {
  /** Whether any token row or JWT signing key exists, i.e. data keyed by the server secret. */
  holdsSecretKeyedData(): Promise<boolean>;
}

/**
 * Start-up's decision on a server secret that fails the strength rules but met the old ones
 * (`config.weakSecret`), taken once the database is open, which configuration parsing cannot see.
 * A database without tokens or signing keys loses nothing by a new secret: refused, with a
 * message naming the variable and how to make a good value. A database that holds them was keyed
 * by this secret, and a new one would lock every holder out: it starts, and every start logs a
 * warning (and GET /metrics shows `rotor_server_secret_weak 1`) until the server secret can be
 * rotated (docs/follow-ups.md). Neither message quotes the value.
 */
export async function admitWeakSecret(store: KeyedDataProbe, weak: WeakSecret, log: Logger): Promise<void> {
  if (!(await store.holdsSecretKeyedData())) {
    throw new ConfigError(
      `${weak.name} is too weak: ${weak.reason}; ${SECRET_ADVICE}. A weak secret is accepted only on a database that already holds tokens made under it; this one holds none`,
    );
  }
  log.warn(
    `the server secret is weak: ${weak.reason}; the database holds tokens keyed by it, so the server starts, but a copy of the database lets anyone test guesses of the secret offline and unseal the JWT signing keys. Rotating the server secret is not supported yet (docs/follow-ups.md)`,
    {
      secret_source: weak.name,
    },
  );
}
