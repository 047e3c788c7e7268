import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { STATE_TO_PB } from '../api/token-mapping.js';
import { ExpiryEventType, type ExpiryEvent } from '../gen/rotor/v1/expiry_service_pb.js';

/** Event type names as `rotor watch` prints them: the proto enum without its prefix. */
function eventTypeName(type: ExpiryEventType): string {
  return ExpiryEventType[type] ?? `UNKNOWN_${type}`;
}

function stateName(state: number): string | null {
  return (Object.keys(STATE_TO_PB) as (keyof typeof STATE_TO_PB)[]).find((k) => STATE_TO_PB[k] === state) ?? null;
}

function iso(ts: Timestamp | undefined): string | null {
  return ts ? timestampDate(ts).toISOString() : null;
}

/** A sequence as a JSON number while it is exactly representable, else as a string. */
function sequenceJson(seq: bigint): number | string {
  return seq <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seq) : seq.toString();
}

/** One event as the JSON object `rotor watch --json` prints per line (snake_case, like the proto). */
export function eventJson(e: ExpiryEvent): Record<string, unknown> {
  return {
    sequence: sequenceJson(e.sequence),
    type: eventTypeName(e.type),
    token_id: e.tokenId || null,
    family_id: e.familyId || null,
    successor_id: e.successorId || null,
    expires_at: iso(e.expiresAt),
    threshold_seconds: e.threshold ? Number(e.threshold.seconds) : null,
    reason: e.reason || null,
    occurred_at: iso(e.occurredAt),
    state: stateName(e.state),
  };
}

/** One event as a human line: time, sequence, type, then the fields that are set. */
export function eventLine(e: ExpiryEvent): string {
  const j = eventJson(e);
  const parts = [String(j.occurred_at ?? '-'), `#${String(j.sequence)}`, String(j.type)];
  if (j.token_id) parts.push(String(j.token_id));
  for (const k of ['family_id', 'successor_id', 'state', 'expires_at', 'threshold_seconds', 'reason'] as const) {
    if (j[k] !== null)
      parts.push(
        `${k === 'threshold_seconds' ? 'threshold' : k}=${String(j[k])}${k === 'threshold_seconds' ? 's' : ''}`,
      );
  }
  return parts.join(' ');
}
