import { create } from '@bufbuild/protobuf';
import { durationFromMs, timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { WatchedEvent } from '../domain/token-event.js';
import { type AuditEvent, AuditEventSchema } from '../gen/rotor/v1/token_service_pb.js';

/** A token id as Rotor mints them (src/domain/input-limits.ts); any other actor is Rotor itself. */
const TOKEN_ID = /^[a-z]{3}_[0-9A-Za-z]{1,60}$/;

/** ListEvents' view of a stored event: the actor is a token id or `system` (with which part of Rotor). */
export function auditEventToPb(e: WatchedEvent): AuditEvent {
  const byToken = TOKEN_ID.test(e.actor);
  return create(AuditEventSchema, {
    sequence: BigInt(e.sequence),
    type: e.type,
    tokenId: e.tokenId,
    familyId: e.familyId,
    successorId: e.successorId ?? '',
    actor: byToken ? e.actor : 'system',
    systemActor: byToken ? '' : e.actor || 'unknown',
    ...(e.act ? { act: { iss: e.act.iss, sub: e.act.sub } } : {}),
    peer: e.peer ?? '',
    reason: e.reason ?? '',
    occurredAt: timestampFromMs(e.occurredAt),
    ...(e.thresholdSeconds != null ? { threshold: durationFromMs(e.thresholdSeconds * 1000) } : {}),
    ownerId: e.ownerId,
  });
}
