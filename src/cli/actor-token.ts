import { readFile } from 'node:fs/promises';
import { UsageError } from './usage-error.js';

/** RFC 8693 token type of a workload JWT sent as `actor_token`. */
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/**
 * Reads the workload JWT of a bound token's rotation from `--actor-token-file` (docs/workload-identity.md).
 * Never a command-line value, which other users could read in the process list. Read again for
 * every rotation: a Kubernetes projected token or a CI job's id_token is replaced on disk, and a
 * JWT is accepted once.
 */
export async function readActorTokenFile(file: string): Promise<{ actorToken: string; actorTokenType: string }> {
  let jwt: string;
  try {
    jwt = (await readFile(file, 'utf8')).trim();
  } catch (e) {
    throw new UsageError(`--actor-token-file: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  if (jwt === '') throw new UsageError(`--actor-token-file: ${file} is empty`);
  if (/\s/.test(jwt)) throw new UsageError(`--actor-token-file: ${file} must hold exactly one JWT`);
  return { actorToken: jwt, actorTokenType: JWT_TOKEN_TYPE };
}
