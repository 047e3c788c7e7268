import { RotorError } from './errors.js';

/**
 * Audiences (RFC 8693 `audience`/`resource`, RFC 8707) a token may be used for. A token without
 * any is unrestricted: every audience is within it. The one rule for creation, rotation and JWT
 * issuance.
 */
export function audiencesNotHeld(held: readonly string[], requested: readonly string[]): string[] {
  return held.length === 0 ? [] : requested.filter((a) => !held.includes(a));
}

/**
 * A successor's or a JWT's audiences: none requested keeps the held ones; requested ones narrow
 * (an unrestricted token narrows to any), never widen (`invalid_target`).
 */
export function narrowAudiences(held: readonly string[], requested: readonly string[]): string[] {
  if (requested.length === 0) return [...held];
  const extra = audiencesNotHeld(held, requested);
  if (extra.length > 0)
    throw new RotorError('invalid_target', `audience not allowed for this token: ${extra.join(' ')}`);
  return [...requested];
}
