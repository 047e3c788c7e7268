/**
 * The brakes (docs/limits.md) off: test servers start without rate limits, because many tests make
 * more failed authentications from loopback, or rotate one family more often, than the defaults
 * allow in a minute. Tests of the brakes turn them on with their own values.
 */
export const BRAKES_OFF: Readonly<Record<string, string>> = {
  ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER: '0',
  ROTOR_RATE_LIMIT_MINTS_PER_OWNER: '0',
  ROTOR_RATE_LIMIT_ROTATIONS_PER_FAMILY: '0',
};
