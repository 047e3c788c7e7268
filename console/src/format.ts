import { ConnectError } from '@connectrpc/connect';
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';

export const KINDS: [string, TokenKind][] = [
  ['personal', TokenKind.PERSONAL],
  ['project', TokenKind.PROJECT],
  ['group', TokenKind.GROUP],
  ['service_account', TokenKind.SERVICE_ACCOUNT],
];

export const STATES: [string, TokenState][] = [
  ['active', TokenState.ACTIVE],
  ['rotated', TokenState.ROTATED],
  ['revoked', TokenState.REVOKED],
  ['expired', TokenState.EXPIRED],
];

export const EVENT_TYPES = [
  'created',
  'rotated',
  'replayed',
  'retry_refused',
  'revoked',
  'family_revoked',
  'expiring_soon',
  'expired',
  'predecessor_retired',
  'superseded',
];

export function kindName(k: TokenKind): string {
  return KINDS.find(([, v]) => v === k)?.[0] ?? 'unspecified';
}

export function stateName(s: TokenState): string {
  return STATES.find(([, v]) => v === s)?.[0] ?? 'unspecified';
}

export function ms(ts: Timestamp | undefined): number | undefined {
  return ts === undefined ? undefined : timestampMs(ts);
}

/** `2026-12-07 09:10:00Z`: short, sortable, the same in every locale. */
export function iso(t: number | undefined): string {
  if (t === undefined) return '—';
  return `${new Date(t).toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** `in 3 h`, `5 min ago`. */
export function relative(t: number | undefined, now: number): string {
  if (t === undefined) return '—';
  const d = t - now;
  const a = Math.abs(d);
  const text =
    a < 60_000
      ? `${Math.round(a / 1000)} s`
      : a < 3_600_000
        ? `${Math.round(a / 60_000)} min`
        : a < 172_800_000
          ? `${Math.round(a / 3_600_000)} h`
          : `${Math.round(a / 86_400_000)} d`;
  return d >= 0 ? `in ${text}` : `${text} ago`;
}

/** `1h`, `7d`: a threshold in seconds, as the server's settings say it. */
export function duration(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400}d`;
  if (seconds % 3_600 === 0) return `${seconds / 3_600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** The server's message of a failed call (the code's name first), or the error's. */
export function errorText(e: unknown): string {
  if (e instanceof ConnectError) return e.rawMessage || e.message;
  return e instanceof Error ? e.message : String(e);
}
