import { RotorError } from './errors.js';
import type { TokenState } from './token.js';
import type { TokenEventType } from './token-event.js';

/** The thresholds the scheduler uses when ROTOR_EXPIRY_THRESHOLDS is unset: 30d, 7d, 1d, 1h. */
export const DEFAULT_THRESHOLDS_SECONDS: readonly number[] = [30 * 86400, 7 * 86400, 86400, 3600];

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * `30d`, `12h`, `15m`, `90s` → seconds (with `bareSeconds`, also a plain `90`); undefined for
 * anything else. The one duration grammar of the configuration and the CLI; zero parses, callers
 * that need a positive duration say so.
 */
export function parseDurationSeconds(text: string, opts: { bareSeconds?: boolean } = {}): number | undefined {
  const m = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!m || (m[2] === '' && opts.bareSeconds !== true)) return undefined;
  return Number(m[1]) * UNIT_SECONDS[m[2] || 's']!;
}

/** Seconds → the shortest exact `Nd`/`Nh`/`Nm`/`Ns` spelling (for messages and docs). */
export function formatDurationSeconds(seconds: number): string {
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/** Sorted (largest first), de-duplicated thresholds. */
export function normalizeThresholds(seconds: readonly number[]): number[] {
  return [...new Set(seconds)].sort((a, b) => b - a);
}

/**
 * The unique key of a scheduled event in the log: at most one `expiring_soon` per (token,
 * threshold) and one `expired` per token, whichever scheduler or restart inserts it.
 */
export function expiringSoonKey(tokenId: string, thresholdSeconds: number): string {
  return `expiring_soon:${tokenId}:${thresholdSeconds}`;
}

export function expiredKey(tokenId: string): string {
  return `expired:${tokenId}`;
}

/**
 * A threshold applies to a token only when it is crossed during the token's life: a token issued
 * for one day gets no "expires within 30 days" notice, it was never further away than that.
 */
export function thresholdApplies(createdAt: number, expiresAt: number, thresholdSeconds: number): boolean {
  return expiresAt - createdAt > thresholdSeconds * 1000;
}

/**
 * The thresholds a watcher asked for, checked against the ones the server schedules: the
 * scheduler only ever writes those, so any other value could never fire. Empty means all.
 */
export function selectThresholds(requested: readonly number[], scheduled: readonly number[]): number[] {
  if (requested.length === 0) return [...scheduled];
  const unknown = requested.filter((s) => !scheduled.includes(s));
  if (unknown.length > 0) {
    throw new RotorError(
      'invalid_argument',
      `thresholds: ${unknown.map(formatDurationSeconds).join(', ')} not scheduled by this server; allowed: ${scheduled.map(formatDurationSeconds).join(', ')}`,
      { field: 'thresholds' },
    );
  }
  return normalizeThresholds(requested);
}

/**
 * The token's state right after an event: `revoked` with reason `overlap_ended` ends a rotated
 * token's overlap window, the token stays rotated.
 */
export function stateAfter(type: TokenEventType, reason: string | null): TokenState {
  switch (type) {
    case 'created':
    case 'expiring_soon':
      return 'active';
    case 'rotated':
    case 'replayed':
    case 'retry_refused':
    case 'predecessor_retired':
      return 'rotated';
    case 'revoked':
      return reason === 'overlap_ended' ? 'rotated' : 'revoked';
    case 'family_revoked':
    case 'superseded':
      return 'revoked';
    case 'expired':
      return 'expired';
  }
}

/** Which tokens a watcher follows (WatchExpiryRequest: at most one selector; none = own token). */
export type WatchSelection =
  | { kind: 'tokens'; tokenIds: readonly string[] }
  | { kind: 'owner'; ownerId: string }
  | { kind: 'family'; familyId: string };

/** Whether a watcher asking for `thresholds` gets the event: EXPIRING_SOON only for its own thresholds. */
export function wantsEvent(
  thresholds: ReadonlySet<number>,
  e: { type: string; thresholdSeconds?: number | null },
): boolean {
  return e.type !== 'expiring_soon' || thresholds.has(e.thresholdSeconds ?? -1);
}
